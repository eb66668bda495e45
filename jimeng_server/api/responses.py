"""JSON answers: one encoding (`services.answers.encode_json`, non-ASCII kept) and one content type
(`application/json; charset=utf-8`), whether the body is encoded here or was encoded (and cached) before."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..services.answers import encode_json

JSON_CONTENT_TYPE = "application/json; charset=utf-8"


def encoded_answer(body: bytes, *, status: int = 200) -> web.Response:
    """An answer whose body `encode_json` already made."""
    return web.Response(body=body, status=status, content_type="application/json", charset="utf-8")


def json_answer(value: Any, *, status: int = 200) -> web.Response:
    """`value` encoded with `encode_json`."""
    return encoded_answer(encode_json(value), status=status)
