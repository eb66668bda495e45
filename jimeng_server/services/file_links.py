"""Kept result files (`[results] keep = "local"`): their ids, where they lie, and the signed links that open them.

- A file's id is the SHA-256 hex of its bytes plus an extension for its type (`<64 hex>.png`); it lies at
  `<path>/<first two hex digits>/<id>`. The same bytes kept twice are one file.
- A link is `<base>/v1/files/<id>?expires=<unix s>&sig=<hex>`, `sig` = HMAC-SHA256(key, "<id>.<expires>") (first
  32 hex digits). Expiry times are rounded up to a step of half the lifetime, so the links of one task stay the
  same for a while (answers can be cached) and always live at least half of `link_seconds`.
Pure functions; the HTTP side is `api/files.py`, the keeping `services/keeper.py`.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Final

SECRET_ENV: Final = "JIMENG_RESULTS_SECRET"
FILE_ID: Final = re.compile(r"^[0-9a-f]{64}\.(png|jpeg|webp|gif|mp4|bin)$")
EXTENSIONS: Final = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/webp": "webp",
    "image/gif": "gif",
    "video/mp4": "mp4",
}
CONTENT_TYPES: Final = {ext: ctype for ctype, ext in EXTENSIONS.items()} | {"bin": "application/octet-stream"}


def link_key(configured: str, environ: Mapping[str, str] = os.environ) -> tuple[bytes, bool]:
    """The HMAC key of file links: env JIMENG_RESULTS_SECRET, else `[results] link_secret`, else a random key
    (second value False: links then die with the process)."""
    text = environ.get(SECRET_ENV, "").strip() or configured.strip()
    if text:
        return hashlib.sha256(text.encode()).digest(), True
    return secrets.token_bytes(32), False


def file_id_of(digest: str, content_type: str) -> str:
    """The id of a file with SHA-256 `digest` and this content type."""
    return f"{digest}.{EXTENSIONS.get(content_type, 'bin')}"


def content_type_of(file_id: str) -> str:
    """The content type a file id stands for."""
    return CONTENT_TYPES[file_id.rsplit(".", 1)[-1]]


def file_path(root: Path, file_id: str) -> Path:
    """Where a kept file lies under `root`."""
    return root / file_id[:2] / file_id


def _sig(key: bytes, file_id: str, expires: int) -> str:
    return hmac.new(key, f"{file_id}.{expires}".encode(), hashlib.sha256).hexdigest()[:32]


def link_expiry(now: float, link_seconds: float) -> int:
    """When a link made `now` expires: at least `link_seconds / 2` ahead, rounded up to that step."""
    step = max(1.0, link_seconds / 2)
    return int((math.floor(now / step) + 2) * step)


def file_url(base: str, key: bytes, file_id: str, expires: int) -> str:
    """The signed link of a kept file."""
    return f"{base.rstrip('/')}/v1/files/{file_id}?expires={expires}&sig={_sig(key, file_id, expires)}"


def link_problem(key: bytes, file_id: str, expires: str, sig: str, now: float) -> str | None:
    """Why a signed link does not open its file (None when it does)."""
    if not expires.isdigit() or not hmac.compare_digest(sig, _sig(key, file_id, int(expires))):
        return "the link's signature does not match; use the link exactly as the task query gave it"
    if now > int(expires):
        return "the link expired; query the task again for a fresh link"
    return None
