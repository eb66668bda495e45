"""Logging set-up with a last line of defence: a filter that masks anything shaped like a credential.

The code never logs tokens on purpose; this filter catches accidents (a Bearer header or a cookie pair
inside an exception message, say).
"""

from __future__ import annotations

import logging
import re

_PATTERNS = (
    # A token list may have spaces around its commas ("Bearer a, b").
    re.compile(r"(Bearer\s+)[^\s,\"']+(?:\s*,\s*[^\s,\"']*)*", re.IGNORECASE),
    re.compile(r"((?:sessionid|sessionid_ss|sid_tt|sid_guard)=)[^;\s&\"']+", re.IGNORECASE),
    re.compile(r"((?:secret_access_key|session_token|access_key_id)[\"']?\s*[:=]\s*[\"']?)[^\"'\s,;&}]+"),
    # Proxy credentials in a URL: scheme://user:PASSWORD@host
    re.compile(r"((?:https?|socks[45]?)://[^\s:/@]+:)[^\s@/]+(?=@)", re.IGNORECASE),
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


def setup_logging(level: str) -> None:
    """Log to stderr at `level`, every record through the redacting filter."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
