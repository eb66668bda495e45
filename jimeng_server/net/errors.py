"""What the guarded network layer raises: refusals by the address guard, failed fetches, bodies over the cap."""

from __future__ import annotations

MIB = 1024 * 1024


class UnsafeURLError(ValueError):
    """A URL the guard refuses: bad syntax, a scheme other than http/https, or a non-public address."""


class FetchError(Exception):
    """A fetch that failed: network error, timeout, or (for downloads) a 4xx/5xx status.

    `status` is the HTTP status when the server answered, else None; `reason` is the human-readable message.
    """

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class TooLargeError(FetchError):
    """The body exceeded the byte cap (`limit` bytes); nothing more was read."""

    def __init__(self, limit: int, reason: str | None = None) -> None:
        super().__init__(reason or f"the file is larger than the limit of {human_size(limit)}")
        self.limit = limit


def human_size(n: int) -> str:
    if n >= MIB and n % MIB == 0:
        return f"{n // MIB} MB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KB"
    return f"{n} bytes"
