"""Logging set-up: text or JSON lines, the request id on every line, and a last line of defence against
secrets (a filter that masks anything shaped like a credential).

The code never logs tokens on purpose; the redacting filter catches accidents (a Bearer header or a cookie
pair inside an exception message, say). The request id lives in a context variable that the HTTP layer
sets for the duration of one request (`REQUEST_ID`); `RequestIdFilter` copies it onto each record as
`record.request_id` ("-" outside a request).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import threading
import time
from collections import deque

_PATTERNS = (
    # A token list may have spaces around its commas ("Bearer a, b").
    re.compile(r"(Bearer\s+)[^\s,\"']+(?:\s*,\s*[^\s,\"']*)*", re.IGNORECASE),
    re.compile(r"((?:sessionid|sessionid_ss|sid_tt|sid_guard)=)[^;\s&\"']+", re.IGNORECASE),
    re.compile(r"((?:secret_access_key|session_token|access_key_id)[\"']?\s*[:=]\s*[\"']?)[^\"'\s,;&}]+"),
    # Proxy credentials in a URL: scheme://user:PASSWORD@host
    re.compile(r"((?:https?|socks[45]?)://[^\s:/@]+:)[^\s@/]+(?=@)", re.IGNORECASE),
    # An API key's text anywhere (its 8-character prefix, shown in lists, stays readable).
    re.compile(r"\b(jk_[A-Za-z0-9_-]{5})[A-Za-z0-9_-]{3,}"),
)


def redact(text: str) -> str:
    """Mask credential-shaped substrings of `text`."""
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and formatted exception) with `redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("jimeng_request_id", default=None)
"""The id of the HTTP request being handled (None outside a request)."""


class RequestIdFilter(logging.Filter):
    """Sets `record.request_id`: the record's own `request_id` extra if it has one, else `REQUEST_ID`, else "-"."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = REQUEST_ID.get() or "-"
        return True


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_JSON_UNSAFE = re.compile(r"[\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """`text` with every control character (C0, DEL, C1, the Unicode line separators) written as a visible escape
    (`\\n`, `\\x1b`, `\\u2028`): request data in a log message cannot start a line of its own (log forging)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class TextFormatter(logging.Formatter):
    """`TEXT_FORMAT` lines: the message and the request id with control characters escaped, so one record is
    one line (a traceback, written by this code, still follows on lines of its own)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        record.request_id = escape_controls(str(getattr(record, "request_id", "-")))
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, request_id, message, and exc_info
    (the formatted traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        # json.dumps escapes C0 controls; DEL, C1 and the Unicode line separators are escaped too (a line reader
        # such as str.splitlines would break a record at them).
        return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(entry, ensure_ascii=False))


class ProcessTagFilter(logging.Filter):
    """Prefixes each record's logger name with a process tag (`sender-1:jimeng_server.webhooks.sender`), so the
    lines of a server's child processes, written to the same output, say which process wrote them."""

    def __init__(self, tag: str) -> None:
        super().__init__()
        self._prefix = f"{tag}:"

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self._prefix):
            record.name = self._prefix + record.name
        return True


def setup_logging(level: str, fmt: str = "text", *, tag: str = "") -> None:
    """Log to stderr at `level` in `fmt` ("text" or "json"), every record through the redacting filter and
    stamped with the request id; with `tag` (a child process of the server) each logger name carries it."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    handler.addFilter(RequestIdFilter())
    if tag:
        handler.addFilter(ProcessTagFilter(tag))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class LogTail(logging.Handler):
    """The latest `size` log lines in memory, for the dashboard's live log view: each formatted as the text log
    (with the request id) and then passed through `redact`, numbered from 1 so a reader asks only for lines
    after the last one it has. Thread-safe (records may come from worker threads)."""

    def __init__(self, size: int = 500) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(TEXT_FORMAT))
        self.addFilter(RequestIdFilter())
        self._lines: deque[tuple[int, float, str, str]] = deque(maxlen=size)
        self._seq = 0
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = redact(self.format(record))
        except Exception:  # a record that cannot be formatted is not worth failing the caller
            self.handleError(record)
            return
        with self._guard:
            self._seq += 1
            self._lines.append((self._seq, record.created, record.levelname, line))

    def since(self, after: int) -> tuple[list[dict[str, object]], int]:
        """The kept lines numbered above `after`, oldest first, and the number of the newest line (0: none)."""
        with self._guard:
            kept = [entry for entry in self._lines if entry[0] > after]
            newest = self._seq
        return [{"seq": s, "at": at, "level": level, "line": line} for s, at, level, line in kept], newest
