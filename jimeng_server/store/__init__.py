"""The task store: the `Store` Protocol (`base.py`), its tables written once over a dialect adapter (`tables.py`,
`dialect.py`, `schema.py`) and the two backends (`sqlite.py`, `postgres.py`). The task domain is in `tasks/`."""
