"""One fast JSON codec for hot paths (upstream answers, the watcher's compact records), with a pure-Python fallback.

With msgspec installed (the `fast` extra; its C decoder keeps integers of any size exact, like `json`), `loads`
decodes with it; without it (e.g. a single-file build on a platform with no wheel) the standard library does the
same work. Any text msgspec refuses is handed to `json.loads`, so what is accepted and what is returned never
depend on which codec is present: a text `json` refuses raises ValueError either way. `dumps` gives compact UTF-8
bytes (no spaces, non-ASCII kept as UTF-8) for JSON this process reads back itself.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import msgspec
except ImportError:  # pragma: no cover - the pure-Python path is exercised by tests with FAST forced off
    msgspec = None  # type: ignore[assignment]

_decode = msgspec.json.decode if msgspec is not None else None
_encode = msgspec.json.encode if msgspec is not None else None
FAST = msgspec is not None
"""True when the C codec is in use."""


def loads(data: bytes | str) -> Any:
    """`json.loads(data)`, faster when msgspec is installed (same values, integers beyond 64 bits exact)."""
    if _decode is not None:
        try:
            return _decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError):
            pass  # whatever msgspec refuses, json decides (the same answer or the same ValueError)
    return json.loads(data)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON of `value` (dicts, lists, str, int, float, bool, None) for this process to read back."""
    if _encode is not None:
        try:
            return _encode(value)
        except (TypeError, msgspec.EncodeError):
            pass
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
