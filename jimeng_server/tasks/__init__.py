"""The task domain, pure (no I/O, no database driver): task records, statuses and reasons (`records.py`), how an
upstream outcome becomes a status and the public task body (`answer.py`), and the decisions every store backend
applies the same way: the idempotency claim (`claims.py`) and the settle plan (`settle.py`)."""
