"""Services between the HTTP handlers and the upstream: account choice, generation, results."""
