"""Request helpers shared by every handler: the Authorization header and JSON bodies."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ..errors import BadRequest, Unauthorized
from ..upstream.tokens import Account, TokenError, parse_authorization


def accounts_of(request: web.Request) -> list[Account]:
    """The accounts of `Authorization: Bearer TOKEN[,TOKEN...]`; 401 when missing or unusable."""
    header = request.headers.get("Authorization")
    try:
        return parse_authorization(header)
    except TokenError as exc:
        code = "MISSING_AUTHORIZATION" if not header else "INVALID_TOKEN"
        raise Unauthorized(str(exc), code=code) from None


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; 400 with the parser's position when it is not one."""
    raw = await request.read()
    if not raw.strip():
        raise BadRequest("the request body is empty: send a JSON object", code="INVALID_JSON")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequest("the request body is not UTF-8 text: send a JSON object", code="INVALID_JSON") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"the request body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
            code="INVALID_JSON",
        ) from None
    if not isinstance(data, dict):
        raise BadRequest(f"the request body must be a JSON object, not {_json_type(data)}", code="INVALID_JSON")
    return data


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")
