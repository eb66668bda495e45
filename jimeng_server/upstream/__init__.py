"""The upstream Jimeng / Dreamina web protocol: pure protocol functions and a thin I/O client."""
