"""`Idempotency-Key` on submit endpoints: `idempotent(request, canonical, respond)` wraps a submit handler's
spending part; every submit handler (sync and async) goes through it.

- The key belongs to the account of the header's FIRST token (its fingerprint), or to the API key, and lives
  `store.idempotency_hours` (24 h by default).
- Same key, same request (method + path + canonical body): the first answer (status and body) is
  replayed with `Idempotent-Replayed: true`, without a second upstream submit.
- Same key, different request: 422 `IDEMPOTENCY_KEY_REUSED`. First request still running: 409
  `IDEMPOTENCY_KEY_IN_USE` (a claim older than `store.idempotency_lease_minutes` counts as abandoned).
- A first request that failed before its generate was sent, or was refused outright by the upstream
  (nothing spent), releases the key so a retry runs anew; any answer after the generate was accepted (or
  may have been) is stored and replayed, errors included.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..concurrency import uncancellable
from ..errors import ApiError, BadRequest, Conflict, Unprocessable, from_upstream
from ..services.answers import encode_json
from ..services.idempotency import MAX_KEY_LENGTH, SpendMark, request_hash, valid_key
from ..tasks.claims import ClaimState
from ..upstream.errors import UpstreamError
from .appkeys import IDEMPOTENCY
from .request import caller_of

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"

Respond = Callable[[SpendMark], Awaitable[web.Response]]
"""The spending part of a submit handler; it passes the mark to the service that sends the generate."""


def _error_bytes(err: ApiError) -> bytes:
    # The same text the error middleware sends for `err`.
    return encode_json(err.body())


async def idempotent(request: web.Request, canonical: Any, respond: Respond) -> web.Response:
    """Run `respond` (the part of a submit handler that spends credits) under the request's
    Idempotency-Key, if it has one, with the request's `SpendMark`. `canonical` is the parsed request body
    (JSON object or form fields)."""
    key = request.headers.get(HEADER)
    if key is None:
        return await respond(SpendMark())
    if not valid_key(key):
        raise BadRequest(
            f"'{HEADER}' must be 1 to {MAX_KEY_LENGTH} visible ASCII characters (a UUID works well)",
            code="INVALID_IDEMPOTENCY_KEY",
        )
    account_fp = (await caller_of(request)).idempotency_owner
    keys = request.app[IDEMPOTENCY]
    claim = await keys.begin(account_fp, key, request_hash(request.method, request.path, canonical))
    if claim.state is ClaimState.REPLAY:
        return web.Response(
            body=claim.body,
            status=claim.status or 200,
            content_type="application/json",
            headers={REPLAYED_HEADER: "true"},
        )
    if claim.state is ClaimState.MISMATCH:
        raise Unprocessable(
            f"this {HEADER} was already used with a different request in the last "
            f"{keys.ttl / 3600:g} h; send a new key for a new request",
            code="IDEMPOTENCY_KEY_REUSED",
        )
    if claim.state is ClaimState.IN_PROGRESS:
        raise Conflict(
            f"the first request with this {HEADER} is still running; retry after it has answered",
            code="IDEMPOTENCY_KEY_IN_USE",
        )
    mark = SpendMark()
    try:
        response = await respond(mark)
    except (ApiError, UpstreamError) as exc:
        err = exc if isinstance(exc, ApiError) else from_upstream(exc)
        if mark.spent:
            await uncancellable(keys.complete(account_fp, key, err.status, _error_bytes(err)))
        else:
            await uncancellable(keys.abandon(account_fp, key))
        raise err from None
    except BaseException:
        # Unexpected failure or cancellation: spent -> keep the claim (it lapses after the lease),
        # so a retry cannot submit twice; nothing spent -> release the key.
        if not mark.spent:
            await uncancellable(keys.abandon(account_fp, key))
        raise
    body = response.body if isinstance(response.body, bytes) else b""
    await uncancellable(keys.complete(account_fp, key, response.status, body))
    return response
