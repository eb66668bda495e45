"""`callback_url` on submits: validated by the async endpoints, refused by their sync twins.

An async submit may name a `callback_url` (JSON field, or a multipart/urlencoded form field). It is checked
before anything is downloaded, uploaded or spent: an http(s) URL whose host is (or resolves only to) public
addresses unless `security.allow_private_networks` (400 INVALID_CALLBACK_URL otherwise). The task record
keeps it, and the task's final event is POSTed there (tasks/webhooks.py).

Sync endpoints answer with the result itself and send no webhook, so a `callback_url` there is a 400
UNSUPPORTED_PARAMETER naming the async twin, rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..errors import BadRequest
from ..keys import CONFIG, FETCHER
from ..net.safe_fetch import FetchPolicy
from ..tasks.webhooks import optional_callback_url

CALLBACK_FIELD = "callback_url"


async def callback_url_of(request: web.Request, fields: Mapping[str, Any]) -> str | None:
    """The validated, normalised `callback_url` of an async submit's fields; None when absent or empty.

    Raises BadRequest (INVALID_CALLBACK_URL) for a value that is not one http(s) URL, or whose host is not
    public while `security.allow_private_networks` is off (the same rule the sender applies at delivery).
    Names are resolved with the app fetcher's resolver.
    """
    policy = FetchPolicy(allow_private_networks=request.app[CONFIG].security.allow_private_networks)
    return await optional_callback_url(fields.get(CALLBACK_FIELD), policy, resolver=request.app[FETCHER].resolver)


def refuse_callback_url(fields: Mapping[str, Any], async_path: str) -> None:
    """400 UNSUPPORTED_PARAMETER when a sync request carries a non-empty `callback_url`: sync endpoints
    answer with the result and send no webhook; the message names the async twin (`async_path`)."""
    if fields.get(CALLBACK_FIELD) in (None, ""):
        return
    raise BadRequest(
        f"'{CALLBACK_FIELD}' is not supported here: this endpoint answers with the result and sends no "
        f"webhook; POST {async_path} instead, which answers at once with a history_id and POSTs the final "
        f"task to {CALLBACK_FIELD}",
        code="UNSUPPORTED_PARAMETER",
    )
