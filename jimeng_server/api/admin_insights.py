"""The dashboard's read side (issue 24), under the admin key like the rest of `/admin/api/`:

- `GET /admin/api/stats?limit=N` — totals and breakdowns of the latest N tasks (`fields.ADMIN_STATS`)
  and the pool's credits (`services.insights.summarize`);
- `GET /admin/api/tasks/{history_id}` — one task: its parameters, status history, error code and message,
  webhook events and attempts, and its result URLs for previews;
- `GET /admin/api/logs?after=SEQ` — the server's latest log lines after line SEQ, secrets masked
  (`logs.LogTail`, installed while the admin API is on);
- `POST /admin/api/accounts/check` — read every pool account's balance now, in parallel (the dashboard calls
  it when it opens, so credits are never blank).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from ..errors import NotFound
from ..logs import LogTail
from ..services.insights import STATUS_NAMES, status_history, summarize
from ..store.pool import key_owner
from ..tasks.answer import body_of_row
from ..tasks.records import TaskRecord
from .admin import admin_only
from .admin_views import account_views
from .appkeys import ACCOUNT_POOL, ACCOUNTS, API_KEYS, TASK_RECORDS
from .deliveries import delivery_view
from .fields import ADMIN_LOGS, ADMIN_STATS
from .responses import json_answer

LOG_LINES = 500
LOG_TAIL = web.AppKey("log_tail", LogTail)

routes = web.RouteTableDef()


def install_log_tail(app: web.Application) -> None:
    """Keep the latest log lines for `GET /admin/api/logs` while `app` runs (the handler leaves the root logger
    when the app is cleaned up)."""
    tail = app[LOG_TAIL] = LogTail(LOG_LINES)
    logging.getLogger().addHandler(tail)

    async def remove(_: web.Application) -> None:
        logging.getLogger().removeHandler(tail)

    app.on_cleanup.append(remove)


@routes.get("/admin/api/stats")
@admin_only
async def stats(request: web.Request) -> web.Response:
    """Totals and breakdowns (per day, model, key, account, failure code) of the latest `?limit=` tasks,
    credits per key and per account, and the credits per day of those tasks' stored costs."""
    limit: int = ADMIN_STATS["limit"].read(request.query)
    records = request.app[TASK_RECORDS]
    tasks = [task for task, _ in await records.recent(limit)]
    costs = await records.costs_of([task.history_id for task in tasks])
    keys = await request.app[API_KEYS].rows()
    accounts = await request.app[ACCOUNT_POOL].rows()
    return json_answer(summarize(tasks, keys, accounts, limit=limit, costs=costs))


@routes.post("/admin/api/accounts/check")
@admin_only
async def check_all_accounts(request: web.Request) -> web.Response:
    """Read every pool account's balance now, in parallel; `{"data": [account, ...]}` with fresh health."""
    pool = request.app[ACCOUNT_POOL]
    rows = await request.app[ACCOUNTS].check_pooled_all([row.id for row in await pool.rows()])
    return json_answer({"data": await account_views(pool, rows)})


@routes.get("/admin/api/tasks/{history_id}")
@admin_only
async def task_detail(request: web.Request) -> web.Response:
    """One stored task for the dashboard: 404 TASK_NOT_FOUND when the store does not hold it."""
    history_id = request.match_info["history_id"]
    records = request.app[TASK_RECORDS]
    task = await records.find(history_id)
    if task is None:
        raise NotFound(
            f"no stored task {history_id[:80]!r}; the tasks list shows the stored ones", code="TASK_NOT_FOUND"
        )
    key_names = {key_owner(k.id): k.name for k in await request.app[API_KEYS].rows()}
    account = await request.app[ACCOUNT_POOL].find(task.account_id) if task.account_id is not None else None
    return json_answer(
        _detail(task, key_names.get(task.account_fp), account.name if account else None)
        | {"webhook": delivery_view(task, await records.deliveries(history_id))}
    )


def _detail(task: TaskRecord, key: str | None, account: str | None) -> dict[str, Any]:
    """The detail view; its error and results are those of the owner's query answer (`body_of_row`)."""
    answer = body_of_row(task)
    return {
        "history_id": task.history_id,
        "type": task.kind.value,
        "status": int(task.status),
        "status_name": STATUS_NAMES.get(task.status, "processing"),
        "parameters": {
            "model": task.model,
            "type": task.kind.value,
            "input_images": task.input_images,
            "callback_url": task.callback_url,
            "submit_id": task.submit_id,
        },
        "owner": f"key {key}" if key else f"token {task.account_fp[:8]}",
        "key": key,
        "account": account,
        "status_history": status_history(task),
        "error": answer.get("error"),
        "fail_code": answer["fail_code"],
        "fail_message": answer["fail_message"],
        "results": [{"url": item["url"], "kind": task.kind.value} for item in answer["results"] or ()],
        "created_at": task.created_at,
        "finished_at": task.finished_at,
    }


@routes.get("/admin/api/logs")
@admin_only
async def log_lines(request: web.Request) -> web.Response:
    """`{"data": [{"seq", "at", "level", "line"}], "last": SEQ}`: the kept log lines after `?after=` (0: all),
    oldest first, secrets masked; ask again with `after=last`."""
    after: int = ADMIN_LOGS["after"].read(request.query)
    lines, last = request.app[LOG_TAIL].since(after)
    return json_answer({"data": lines, "last": last})
