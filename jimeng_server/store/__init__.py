"""The task store: task records, the SQLite backend, the webhook outbox SQL, and the task answer body."""
