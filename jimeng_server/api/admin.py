"""The operator's admin API (`/admin/api/...`) and dashboard (`/admin`), both present only when `[admin] key`
(or env JIMENG_ADMIN_KEY) is set.

Every API call needs `Authorization: Bearer <admin key>` (compared in constant time); a missing or wrong key is
401. The dashboard is static files shipped in the package (`api/dashboard/`: no CDN, no build step); it asks for
the admin key and calls the API from the browser. Answers never hold a session id, proxy URL or API key,
except the new key's text in the answer that creates it (shown once).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from ..config import AdminConfig
from ..errors import BadRequest, Unauthorized
from ..services.insights import failure_code
from ..store.pool import key_owner
from ..tasks.records import TaskRecord
from .admin_views import account_view, account_views, key_view
from .appkeys import ACCOUNT_POOL, ACCOUNTS, API_KEYS, TASK_RECORDS
from .fields import ADMIN_ACCOUNT, ADMIN_KEY, ADMIN_TASKS
from .request import json_object
from .responses import json_answer

ENV_VAR = "JIMENG_ADMIN_KEY"
DASHBOARD = Path(__file__).with_name("dashboard")
_ADMIN_DIGEST = web.AppKey("admin_digest", bytes)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
routes = web.RouteTableDef()


def admin_key(config: AdminConfig, environ: Mapping[str, str] | None = None) -> str:
    """The admin key: env JIMENG_ADMIN_KEY, else `[admin] key`; "" = admin API and dashboard off."""
    env = os.environ if environ is None else environ
    return env.get(ENV_VAR) or config.key


def setup_admin(app: web.Application, config: AdminConfig) -> bool:
    """Add the dashboard and the admin API when an admin key is set; returns whether they were added."""
    key = admin_key(config)
    if not key:
        return False
    app[_ADMIN_DIGEST] = hashlib.sha256(key.encode("utf-8")).digest()
    from .admin_insights import install_log_tail  # it builds on admin_only
    from .admin_insights import routes as insight_routes

    app.router.add_routes(insight_routes)  # the dashboard's read side: stats, task detail, log tail
    install_log_tail(app)
    app.router.add_routes(routes)
    app.router.add_static("/admin/static/", DASHBOARD, append_version=False)
    return True


def admin_only(handler: Handler) -> Handler:
    """401 ADMIN_KEY_REQUIRED / INVALID_ADMIN_KEY unless the request carries the admin key."""

    async def checked(request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise Unauthorized(
                "the admin API needs 'Authorization: Bearer <admin key>' ([admin] key of the server config)",
                code="ADMIN_KEY_REQUIRED",
            )
        digest = hashlib.sha256(given.strip().encode("utf-8")).digest()
        if not hmac.compare_digest(digest, request.app[_ADMIN_DIGEST]):
            raise Unauthorized("the admin key is wrong", code="INVALID_ADMIN_KEY")
        return await handler(request)

    checked.__doc__ = handler.__doc__
    return checked


def _str_field(data: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise BadRequest(f"'{name}' is required", code="MISSING_PARAMETER")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'{name}' must be a string", code="INVALID_PARAMETER")
    return value


def account_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `POST /admin/api/accounts` (`fields.ADMIN_ACCOUNT`, all strings) by name: the declared
    default (None, the note "") when absent or empty; 400 naming a field that is not a string, or a missing
    `name`. What they must hold (one of token or cookies, a known region and transport, the note's length) is
    the pool's to say (`AccountPool.add`)."""
    values = {f.name: _str_field(data, f.name, required=f.required) for f in ADMIN_ACCOUNT.fields}
    return {f.name: f.default if values[f.name] is None else values[f.name] for f in ADMIN_ACCOUNT.fields}


def key_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `POST /admin/api/keys` (`fields.ADMIN_KEY`) by name: `name` (required), `accounts` (a list
    of names or ids), the limits as sent (`ApiKeys.create` checks their bounds and applies the defaults)."""
    name, accounts = ADMIN_KEY["name"], ADMIN_KEY["accounts"]
    value = data.get(accounts.name)
    if value is not None and (
        not isinstance(value, list) or not all(isinstance(a, str | int) and not isinstance(a, bool) for a in value)
    ):
        raise BadRequest(f"'{accounts.name}' must be a list of account names or ids", code="INVALID_PARAMETER")
    limits = {f.name: data.get(f.name) for f in ADMIN_KEY.fields if f.kind == "integer"}
    return {name.name: _str_field(data, name.name, required=True) or "", accounts.name: value, **limits}


# ---------------------------------------------------------------------------------------------- dashboard


@routes.get("/admin")
async def dashboard(request: web.Request) -> web.FileResponse:
    """The dashboard page (static; it asks for the admin key itself)."""
    return web.FileResponse(DASHBOARD / "index.html", headers={"Cache-Control": "no-store"})


# ---------------------------------------------------------------------------------------------- accounts


@routes.get("/admin/api/accounts")
@admin_only
async def list_accounts(request: web.Request) -> web.Response:
    """`{"data": [account, ...]}`: name, region, masked session, health, credits, tasks in flight."""
    pool = request.app[ACCOUNT_POOL]
    return json_answer({"data": await account_views(pool, await pool.rows())})


@routes.post("/admin/api/accounts")
@admin_only
async def add_account(request: web.Request) -> web.Response:
    """`{"name", "token" | "cookies", "region"?, "user_agent"?, "transport"?, "proxy"?, "note"?}` -> 201 the new
    account: a session id (token grammar `[proxy@][us-]sessionid`) or a browser cookie jar (Cookie header,
    Netscape cookies.txt or an extension's JSON export, for `region`)."""
    fields = account_fields(await json_object(request))
    pool = request.app[ACCOUNT_POOL]
    row = await pool.add(**fields)
    return json_answer(await account_view(pool, row), status=201)


@routes.post("/admin/api/accounts/{ref}/check")
@admin_only
async def check_account(request: web.Request) -> web.Response:
    """Read the account's balance now; answers the account with its fresh health."""
    row = await request.app[ACCOUNTS].check_pooled(request.match_info["ref"])
    return json_answer(await account_view(request.app[ACCOUNT_POOL], row))


@routes.post("/admin/api/accounts/{ref}/enable")
@admin_only
async def enable_account(request: web.Request) -> web.Response:
    """Enable the account (ending its cool-down)."""
    pool = request.app[ACCOUNT_POOL]
    return json_answer(await account_view(pool, await pool.set_enabled(request.match_info["ref"], True)))


@routes.post("/admin/api/accounts/{ref}/disable")
@admin_only
async def disable_account(request: web.Request) -> web.Response:
    """Disable the account: no new task uses it."""
    pool = request.app[ACCOUNT_POOL]
    return json_answer(await account_view(pool, await pool.set_enabled(request.match_info["ref"], False)))


@routes.delete("/admin/api/accounts/{ref}")
@admin_only
async def remove_account(request: web.Request) -> web.Response:
    """Remove the account (409 while it has tasks in flight)."""
    pool = request.app[ACCOUNT_POOL]
    return json_answer({"removed": await account_view(pool, await pool.remove(request.match_info["ref"]))})


# ---------------------------------------------------------------------------------------------- keys


@routes.get("/admin/api/keys")
@admin_only
async def list_keys(request: web.Request) -> web.Response:
    """`{"data": [key, ...]}`: name, prefix, limits, revoked, usage (never the key)."""
    keys = request.app[API_KEYS]
    return json_answer({"data": [key_view(keys.pool, row) for row in await keys.rows()]})


@routes.post("/admin/api/keys")
@admin_only
async def create_key(request: web.Request) -> web.Response:
    """`{"name", "accounts"? (names or ids), "rate_per_minute"?, "max_in_flight"?}` -> 201 with `"key"`: the
    key's text, shown this once."""
    fields = key_fields(await json_object(request))
    keys = request.app[API_KEYS]
    text, row = await keys.create(**fields)
    return json_answer({"key": text, **key_view(keys.pool, row)}, status=201)


@routes.post("/admin/api/keys/{ref}/revoke")
@admin_only
async def revoke_key(request: web.Request) -> web.Response:
    """Revoke the key: its next request is 401."""
    keys = request.app[API_KEYS]
    return json_answer(key_view(keys.pool, await keys.revoke(request.match_info["ref"])))


# ---------------------------------------------------------------------------------------------- tasks


@routes.get("/admin/api/tasks")
@admin_only
async def recent_tasks(request: web.Request) -> web.Response:
    """`{"data": [task, ...]}`: the latest tasks (`?limit=`: `fields.ADMIN_TASKS`), newest first, each with its status,
    owner (key name, or a short account fingerprint), paying pool account and webhook delivery state."""
    limit: int = ADMIN_TASKS["limit"].read(request.query)
    key_names = {key_owner(k.id): k.name for k in await request.app[API_KEYS].rows()}
    account_names = {a.id: a.name for a in await request.app[ACCOUNT_POOL].rows()}
    rows = await request.app[TASK_RECORDS].recent(limit)
    return json_answer({"data": [_task_view(t, state, key_names, account_names) for t, state in rows]})


def _task_view(
    task: TaskRecord, webhook_state: str | None, key_names: dict[str, str], account_names: dict[int, str]
) -> dict[str, Any]:
    owner = key_names.get(task.account_fp)
    return {
        "history_id": task.history_id,
        "type": task.kind.value,
        "model": task.model,
        "status": int(task.status),
        "fail_code": task.fail_code,
        "error_code": failure_code(task),  # the code a failed task answers with; None unless it failed
        "key": owner,
        "owner": f"key {owner}" if owner else f"token {task.account_fp[:8]}",
        "account": account_names.get(task.account_id) if task.account_id is not None else None,
        "webhook": webhook_state,
        "created_at": task.created_at,
        "finished_at": task.finished_at,
    }
