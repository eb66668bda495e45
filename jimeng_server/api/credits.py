"""Credit endpoints (`/token/...`): a token's liveness, its balance and the daily claim. Tokens are only ever shown
masked."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from ..errors import ApiError, BadRequest, from_upstream
from ..upstream.errors import UpstreamError, UpstreamRetError
from ..upstream.tokens import Account, ProxyPrefixError, TokenError, parse_token
from .appkeys import ACCOUNTS, CLIENT, CONFIG, FETCHER
from .fields import TOKEN_CHECK
from .request import json_object, raw_accounts_of
from .token_guard import check_caller_proxy

routes = web.RouteTableDef()


def _who(account: Account) -> dict[str, str]:
    """How an entry names its account: the masked token (as jimeng-api shows it, but never raw) and a short
    stable id, since two masked tokens can look alike."""
    return {"token": account.masked, "account": account.fingerprint[:12]}


@routes.post("/token/check")
async def check(request: web.Request) -> web.Response:
    """`{"token"}` -> `{"live": bool}`; an unusable or refused session is simply not live."""
    body = await json_object(request)
    name = TOKEN_CHECK["token"].name
    token = body.get(name)
    if not isinstance(token, str) or not token.strip():
        raise BadRequest(f'\'{name}\' is required: send {{"{name}": "<sessionid>"}}', code="MISSING_PARAMETER")
    try:
        account = parse_token(token)
    except ProxyPrefixError as exc:  # the same code the account pool gives a bad proxy
        raise BadRequest(str(exc), code="INVALID_PROXY") from None
    except TokenError as exc:
        raise BadRequest(str(exc), code="INVALID_TOKEN") from None
    if account.proxy is not None:
        await check_caller_proxy(account.proxy, request.app[CONFIG].security, request.app[FETCHER].resolver)
    try:
        user_id = await request.app[CLIENT].account_user_id(account)
    except UpstreamRetError as exc:
        if exc.ret != "1015":
            raise  # the upstream could not say (risk control, region, version): not a verdict on the session
        return web.json_response({"live": False})
    # Transport failures propagate (502/504): an unreachable upstream says nothing about the session.
    return web.json_response({"live": user_id is not None})


@routes.post("/token/points")
async def points(request: web.Request) -> web.Response:
    """Balances of every token in the Authorization header."""
    accounts = raw_accounts_of(request)
    service = request.app[ACCOUNTS]

    async def one(account: Account) -> dict[str, Any]:
        try:
            credits = await service.credits(account, fresh=True)
        except UpstreamError as exc:
            return {**_who(account), "error": from_upstream(exc).message}
        return {**_who(account), "points": credits.as_points()}

    return web.json_response(list(await asyncio.gather(*(one(a) for a in accounts))))


@routes.post("/token/receive")
async def receive(request: web.Request) -> web.Response:
    """Claim the daily credits for every token whose balance is zero (as jimeng-api does). A refused claim
    says why: `error` (message with the remedy) and `code` (e.g. CLAIM_RISK_REJECTED for ret -4)."""
    accounts = raw_accounts_of(request)
    service = request.app[ACCOUNTS]

    async def one(account: Account) -> dict[str, Any]:
        entry: dict[str, Any] = {**_who(account), "received": False}
        try:
            credits = await service.credits(account, fresh=True)
            entry["credits"] = credits.as_points()  # shown even when the claim below is refused
            if credits.total <= 0:
                granted = await service.receive(account)
                entry["received"] = granted > 0
                entry["credits"] = (await service.credits(account, fresh=True)).as_points()
        except UpstreamError as exc:
            err = from_upstream(exc)
            entry["error"], entry["code"] = err.message, err.code
        except ApiError as err:
            entry["error"], entry["code"] = err.message, err.code
        return entry

    return web.json_response(list(await asyncio.gather(*(one(a) for a in accounts))))
