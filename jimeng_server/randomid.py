"""Fresh random 128-bit values as hex, for ids many of which are made at once (webhook event ids, the UUIDs of
an upstream request body, request ids).

Each value is 16 bytes from the operating system's CSPRNG (`os.urandom`, what `uuid.uuid4` and `secrets` read),
read `BLOCK` values at a time instead of one system call per value; each is handed out once, also when threads ask
at once, and a forked child drops its parent's unread values (`os.register_at_fork`), so two processes never hand
out the same bytes.
"""

from __future__ import annotations

import os
import threading
from typing import Final

BLOCK: Final = 256
"""Values read from the operating system at once."""


class _Source:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hex = ""
        self._at = 0

    def take(self) -> str:
        with self._lock:
            if self._at >= len(self._hex):
                self._hex, self._at = os.urandom(16 * BLOCK).hex(), 0
            start = self._at
            self._at = start + 32
            return self._hex[start : self._at]

    def forget(self) -> None:
        self._hex, self._at = "", 0
        self._lock = threading.Lock()


_SOURCE: Final = _Source()
os.register_at_fork(after_in_child=_SOURCE.forget)


def random_hex() -> str:
    """32 hex digits (128 random bits) never handed out before in this process."""
    return _SOURCE.take()
