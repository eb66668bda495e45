"""Request bodies that may be JSON, a urlencoded form or multipart: `request_fields(request)` gives one
field mapping either way.

Multipart text fields become strings (a repeated name becomes a list, in order); file parts are spooled to
temporary files (never held whole in memory) and appear as `UploadedFile`. The temporary files are deleted
when the `async with` block ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from ..errors import BadRequest, PayloadTooLarge
from ..net.errors import TooLargeError
from ..net.spool import spool_chunks
from ..services.params import UploadedFile
from .request import json_object

_CHUNK = 64 * 1024


def _is_multipart(request: web.Request) -> bool:
    return request.content_type.lower().startswith("multipart/")


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(_CHUNK):
        yield chunk


def _add(fields: dict[str, Any], name: str, value: Any) -> None:
    if name not in fields:
        fields[name] = value
    elif isinstance(fields[name], list):
        fields[name].append(value)
    else:
        fields[name] = [fields[name], value]


@contextlib.asynccontextmanager
async def request_fields(request: web.Request, *, max_bytes: int, max_files: int) -> AsyncIterator[dict[str, Any]]:
    """The request's fields (JSON object or multipart form). Files count against `max_bytes` in total; a
    multipart body with more than `max_files` file parts is refused (400 TOO_MANY_FILES) as soon as the
    first one too many starts, before it is read."""
    if request.content_type.lower() == "application/x-www-form-urlencoded":
        form = await request.post()
        fields: dict[str, Any] = {}
        for name, value in form.items():
            _add(fields, name, str(value))
        yield fields
        return
    if not _is_multipart(request):
        yield await json_object(request)
        return
    fields = {}
    files: list[UploadedFile] = []
    try:
        await _read_multipart(request, fields, files, max_bytes, max_files)
        yield fields
    finally:
        for f in files:
            f.download.cleanup()


async def _read_multipart(
    request: web.Request, fields: dict[str, Any], files: list[UploadedFile], max_bytes: int, max_files: int
) -> None:
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError) as exc:
        raise BadRequest(f"the multipart body cannot be read ({exc})", code="INVALID_MULTIPART") from None
    used = 0
    while True:
        try:
            part = await reader.next()
        except ValueError as exc:
            raise BadRequest(f"the multipart body is malformed ({exc})", code="INVALID_MULTIPART") from None
        except HttpProcessingError:  # its message quotes the raw header: never echoed
            raise BadRequest(
                "the multipart body is malformed (a part's headers cannot be read)", code="INVALID_MULTIPART"
            ) from None
        if part is None:
            return
        if not isinstance(part, BodyPartReader):
            raise BadRequest("nested multipart bodies are not supported", code="INVALID_MULTIPART")
        name = part.name
        if not name:
            raise BadRequest("every multipart part needs a name", code="INVALID_MULTIPART")
        if part.filename is None:
            raw = await part.read(decode=True)
            if len(raw) > 1024 * 1024:
                raise BadRequest(f"the form field '{name}' is longer than 1 MB", code="INVALID_PARAMETER")
            try:
                _add(fields, name, raw.decode(part.get_charset("utf-8")))
            except (UnicodeDecodeError, LookupError):
                raise BadRequest(f"the form field '{name}' is not UTF-8 text", code="INVALID_PARAMETER") from None
            continue
        if len(files) >= max_files:
            raise BadRequest(
                f"the form holds more than {max_files} files; send at most {max_files}", code="TOO_MANY_FILES"
            )
        try:
            download = await spool_chunks(
                _part_chunks(part),
                max_bytes=max_bytes - used,
                content_type=part.headers.get("Content-Type"),
            )
        except TooLargeError:
            raise PayloadTooLarge(
                f"the uploaded files are larger than {max_bytes} bytes in total; send smaller files"
            ) from None
        used += download.size
        upload = UploadedFile(name, part.filename, download)
        files.append(upload)
        _add(fields, name, upload)
