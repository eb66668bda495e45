"""`callback_url` on submits: validated by the async endpoints, refused by their sync twins.

An async submit may name a `callback_url` (JSON field, or a multipart/urlencoded form field). It is checked
before anything is downloaded, uploaded or spent: an http(s) URL whose host is (or resolves only to) public
addresses unless `security.allow_private_networks` (400 INVALID_CALLBACK_URL otherwise). The task record
keeps it, and the task's final event is POSTed there (tasks/events.py, tasks/webhooks.py).

Sync endpoints answer with the result itself and send no webhook, so a `callback_url` there is a 400
UNSUPPORTED_PARAMETER naming the async twin, rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractResolver

from ..errors import BadRequest
from ..net.errors import FetchError, UnsafeURLError
from ..net.policy import FetchPolicy, check_url
from ..net.resolver import check_url_resolves_public
from .appkeys import CONFIG, FETCHER
from .fields import CALLBACK, MAX_CALLBACK_URL_LENGTH


async def validate_callback_url(value: object, policy: FetchPolicy, *, resolver: AbstractResolver | None = None) -> str:
    """Check a submitted `callback_url` and return it normalised; raise BadRequest (INVALID_CALLBACK_URL).

    Requires an http(s) URL with a host, at most 2048 characters, whose host is (or resolves only to)
    public addresses unless `policy.allow_private_networks`. DNS goes through `resolver` (default: the
    system resolver). Delivery re-checks every address at connect time, so a later DNS change is caught too.
    """
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(
            "callback_url must be an http(s) URL string, e.g. https://example.com/hooks/jimeng",
            code="INVALID_CALLBACK_URL",
        )
    text = value.strip()
    if len(text) > MAX_CALLBACK_URL_LENGTH:
        raise BadRequest(
            f"callback_url is {len(text)} characters long; the limit is {MAX_CALLBACK_URL_LENGTH}",
            code="INVALID_CALLBACK_URL",
        )
    try:
        parsed = check_url(text, policy, what="callback_url")
        await check_url_resolves_public(str(parsed), policy, resolver, what="callback_url")
    except UnsafeURLError as exc:
        raise BadRequest(str(exc), code="INVALID_CALLBACK_URL") from None
    except FetchError as exc:
        raise BadRequest(
            f"{exc.reason}; callback_url must name a host this server can reach", code="INVALID_CALLBACK_URL"
        ) from None
    return str(parsed)


async def optional_callback_url(
    value: object, policy: FetchPolicy, *, resolver: AbstractResolver | None = None
) -> str | None:
    """`validate_callback_url` for an optional field: None for an absent (None) or empty value."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return await validate_callback_url(value, policy, resolver=resolver)


async def callback_url_of(request: web.Request, fields: Mapping[str, Any]) -> str | None:
    """The validated, normalised `callback_url` of an async submit's fields; None when absent or empty.

    Raises BadRequest (INVALID_CALLBACK_URL) for a value that is not one http(s) URL, or whose host is not
    public while `security.allow_private_networks` is off (the same rule the sender applies at delivery).
    Names are resolved with the app fetcher's resolver.
    """
    policy = FetchPolicy(allow_private_networks=request.app[CONFIG].security.allow_private_networks)
    return await optional_callback_url(fields.get(CALLBACK.name), policy, resolver=request.app[FETCHER].resolver)


def refuse_callback_url(fields: Mapping[str, Any], async_path: str) -> None:
    """400 UNSUPPORTED_PARAMETER when a sync request carries a non-empty `callback_url`: sync endpoints
    answer with the result and send no webhook; the message names the async twin (`async_path`)."""
    if fields.get(CALLBACK.name) in (None, ""):
        return
    raise BadRequest(
        f"'{CALLBACK.name}' is not supported here: this endpoint answers with the result and sends no "
        f"webhook; POST {async_path} instead, which answers at once with a history_id and POSTs the final "
        f"task to {CALLBACK.name}",
        code="UNSUPPORTED_PARAMETER",
    )
