"""Durable async tasks: the SQLite task store, the shared upstream watcher and webhook delivery."""
