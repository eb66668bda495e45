"""jimeng-server: the Jimeng / Dreamina AI generation web service as a clean HTTP API."""

__version__ = "0.1.0"
