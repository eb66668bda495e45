"""Request helpers shared by every handler: the Authorization header (raw session tokens or an API key) and
JSON bodies."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from aiohttp import web

from ..errors import BadRequest, Unauthorized
from ..services.apikeys import looks_like_key
from ..services.callers import Caller
from ..upstream.tokens import Account, TokenError, parse_authorization
from .appkeys import ACCOUNT_POOL, API_KEYS, CONFIG

_CALLER = web.RequestKey("jimeng_caller", Caller)  # the caller is resolved (and rate-counted) once per request


def accounts_of(request: web.Request) -> list[Account]:
    """The accounts of `Authorization: Bearer TOKEN[,TOKEN...]`; 401 when missing or unusable."""
    header = request.headers.get("Authorization")
    try:
        return parse_authorization(header)
    except TokenError as exc:
        code = "MISSING_AUTHORIZATION" if not header else "INVALID_TOKEN"
        raise Unauthorized(str(exc), code=code) from None


async def caller_of(request: web.Request) -> Caller:
    """Who sent the request: `Bearer jk_...` is an API key of the pool (401 unknown/revoked, 429 over its rate);
    anything else is raw session tokens (`accounts_of`), refused with 401 API_KEY_REQUIRED when
    `[auth] allow_raw_tokens` is false. Resolved once per request."""
    if _CALLER in request:
        return request[_CALLER]
    key = _api_key_of(request.headers.get("Authorization"))
    if key is not None:
        grant = await request.app[API_KEYS].authenticate(key)
        usable = await request.app[ACCOUNT_POOL].usable(grant.accounts)
        caller = Caller(tuple(account for _, account in usable), grant)
    else:
        caller = Caller(tuple(raw_accounts_of(request)))
    request[_CALLER] = caller
    return caller


def raw_accounts_of(request: web.Request) -> list[Account]:
    """The header's raw session tokens, for endpoints that work on the caller's own accounts; 401 when raw
    tokens are turned off or the header holds an API key."""
    if not request.app[CONFIG].auth.allow_raw_tokens:
        raise Unauthorized(
            "this server takes API keys only: send 'Authorization: Bearer jk_...' (ask the operator for a key)",
            code="API_KEY_REQUIRED",
        )
    if _api_key_of(request.headers.get("Authorization")) is not None:
        raise Unauthorized(
            "this endpoint works on session tokens, not API keys; the pool's accounts are managed by the operator",
            code="SESSION_TOKEN_REQUIRED",
        )
    return accounts_of(request)


def _api_key_of(header: str | None) -> str | None:
    """The API key of a `Bearer jk_...` header, or None for anything else; 401 for a key mixed with tokens
    (anywhere in the list, also behind a proxy or region prefix): a key never travels upstream as a session."""
    if header is None:
        return None
    scheme, _, rest = header.strip().partition(" ")
    value = rest.strip()
    if scheme.lower() != "bearer":
        return None
    if not looks_like_key(value) and _KEY_INSIDE.search(value) is None:
        return None
    if not looks_like_key(value) or "," in value or " " in value:
        raise Unauthorized("send one API key alone: 'Authorization: Bearer jk_...'", code="INVALID_API_KEY")
    return value


_KEY_INSIDE = re.compile(r"(?:^|[,\s@-])jk_")
"""An API key in a token list: at the start of an entry, or after a proxy (`...@`) or region (`us-`) prefix."""


MAX_JSON_DEPTH = 32
MAX_NUMBER_DIGITS = 40


class _Refused(ValueError):
    """A JSON value this server refuses although the standard library would parse it."""


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise _Refused(f"a number has more than {MAX_NUMBER_DIGITS} digits")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:20]} is too large")
    return value


def _parse_constant(text: str) -> Any:
    raise _Refused(f"{text} is not a JSON number")


_DECODER = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
"""The strict reader's decoder, built once (`json.loads` with these hooks builds one per call)."""


def _check_tree(data: Any) -> None:
    """Refuse nesting deeper than MAX_JSON_DEPTH and strings (or keys) holding lone UTF-16 surrogates
    (`"\\ud800"` escapes), which no UTF-8 text can carry. Iterative: the depth is not limited by the stack."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            items: list[Any] = [value]
        elif isinstance(value, dict):
            items = [*value.keys(), *value.values()]
        elif isinstance(value, list):
            items = value
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            raise _Refused(f"objects and arrays are nested more than {MAX_JSON_DEPTH} levels deep")
        for item in items:
            if isinstance(item, str):
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise _Refused("a string holds a lone UTF-16 surrogate escape (such as \\ud800)") from None
            else:
                stack.append((item, depth + 1))


def parse_json(raw: bytes) -> Any:
    """Parse a request body as strict JSON; the one reader of every JSON body. Raises BadRequest
    (INVALID_JSON) saying what to fix for: empty or non-UTF-8 bodies, syntax errors, NaN/Infinity, numbers
    with more than MAX_NUMBER_DIGITS digits or out of float range, nesting beyond MAX_JSON_DEPTH, and lone
    surrogate escapes. Never raises anything else for any input."""
    if not raw.strip():
        raise BadRequest("the request body is empty: send a JSON object", code="INVALID_JSON")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the request body is not UTF-8 text: send a JSON object", code="INVALID_JSON") from None
    try:
        if text.startswith("\ufeff"):  # as json.loads says it (the decoder alone does not look)
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        data = _DECODER.decode(text)
        _check_tree(data)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"the request body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
            code="INVALID_JSON",
        ) from None
    except _Refused as exc:
        raise BadRequest(f"the request body is refused: {exc}", code="INVALID_JSON") from None
    except RecursionError:
        raise BadRequest(
            f"the request body is refused: objects and arrays are nested more than {MAX_JSON_DEPTH} levels deep",
            code="INVALID_JSON",
        ) from None
    return data


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object (`parse_json`); 400 saying what to fix when it is not one."""
    data = parse_json(await request.read())
    if not isinstance(data, dict):
        raise BadRequest(f"the request body must be a JSON object, not {_json_type(data)}", code="INVALID_JSON")
    return data


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")
