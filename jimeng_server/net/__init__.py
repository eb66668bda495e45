"""Network helpers for talking to untrusted, user-supplied URLs (SSRF guard, bounded downloads, webhook POSTs)."""
