"""The dashboard's numbers (issue 24): totals and breakdowns of the latest tasks (per UTC day, model, API key,
pool account and failure code), credits per key and per account, and the detail of one task.

Pure functions over stored records: the admin API reads the rows and the names, these functions count. Credits
are what the pool knows: each key's measured spend (`credits_spent`, counted by the pool on each submit) and
each account's last read balance; credits per day add up the stored per-task costs (tasks/cost.py) of the
window's tasks, by the UTC day each task was created, measured and estimated apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ..store.pool import AccountRow, KeyRow, key_owner
from ..tasks.cost import CostSource, TaskCost
from ..tasks.records import TaskRecord, TaskStatus

STATUS_NAMES = {TaskStatus.DONE: "done", TaskStatus.FAILED: "failed", TaskStatus.PROCESSING: "processing"}


def failure_code(task: TaskRecord) -> str | None:
    """The code a failed task answers with (its stored error's code, else the upstream fail_code); None unless
    the task failed."""
    if task.status is not TaskStatus.FAILED:
        return None
    if task.error and task.error.get("code"):
        return task.error["code"]
    return task.fail_code or "GENERATION_FAILED"


def utc_day(ts: float) -> str:
    """`YYYY-MM-DD` of a unix time, in UTC."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _rows(counts: Mapping[str, Counter[str]]) -> list[dict[str, Any]]:
    """`[{"name", "tasks", "done", "failed", "processing"}]`, most tasks first (then by name)."""
    rows = [
        {"name": name, "tasks": sum(c.values()), **{s: c[s] for s in STATUS_NAMES.values()}}
        for name, c in counts.items()
    ]
    return sorted(rows, key=lambda r: (-r["tasks"], r["name"]))


def credits_per_day(tasks: Sequence[TaskRecord], costs: Mapping[str, TaskCost]) -> list[dict[str, Any]]:
    """`[{"day", "credits", "measured", "estimated", "tasks"}]`, oldest UTC day first: per day the credits of
    the `tasks` that have a stored cost (`measured` + `estimated` = `credits`) and how many such tasks. Days
    without a costed task are absent; a task without a cost counts nowhere (unknown is not free)."""
    days: dict[str, Counter[str]] = {}
    for task in tasks:
        cost = costs.get(task.history_id)
        if cost is None:
            continue
        day = days.setdefault(utc_day(task.created_at), Counter())
        day[cost.source.value] += cost.credits
        day["tasks"] += 1
    return [
        {
            "day": name,
            "credits": c[CostSource.MEASURED.value] + c[CostSource.ESTIMATED.value],
            "measured": c[CostSource.MEASURED.value],
            "estimated": c[CostSource.ESTIMATED.value],
            "tasks": c["tasks"],
        }
        for name, c in sorted(days.items())
    ]


def summarize(
    tasks: Sequence[TaskRecord],
    keys: Iterable[KeyRow],
    accounts: Iterable[AccountRow],
    *,
    limit: int,
    costs: Mapping[str, TaskCost] | None = None,
) -> dict[str, Any]:
    """The dashboard's overview of `tasks` (the latest `limit` stored ones, newest first) and the pool.

    `totals` counts tasks by status, result items and credits; `per_day` runs oldest to newest (UTC days with
    tasks); `per_model`, `per_key`, `per_account` (tasks by status each; raw-token tasks count under the key
    "(session token)" and the account "(caller's own)") and `failure_codes` are sorted by count; `credits`
    holds each key's spend and each account's balance; `credits_per_day` sums the tasks' stored `costs` (by
    history id; `credits_per_day`)."""
    key_list, account_list = list(keys), list(accounts)
    key_names = {key_owner(k.id): k.name for k in key_list}
    account_names = {a.id: a.name for a in account_list}
    by: dict[str, dict[str, Counter[str]]] = {d: {} for d in ("day", "model", "key", "account")}
    failures: Counter[str] = Counter()
    status_counts: Counter[str] = Counter()
    items = 0
    for task in tasks:
        status = STATUS_NAMES.get(task.status, "processing")
        status_counts[status] += 1
        items += task.item_count if task.status is TaskStatus.DONE else 0
        key = key_names.get(task.account_fp, "(session token)")
        account = account_names.get(task.account_id, "(removed)") if task.account_id is not None else "(caller's own)"
        for dimension, name in (
            ("day", utc_day(task.created_at)),
            ("model", task.model),
            ("key", key),
            ("account", account),
        ):
            by[dimension].setdefault(name, Counter())[status] += 1
        code = failure_code(task)
        if code:
            failures[code] += 1
    per_day = sorted(_rows(by["day"]), key=lambda r: r["name"])
    return {
        "window": {
            "limit": limit,
            "tasks": len(tasks),
            "since": min((t.created_at for t in tasks), default=None),
        },
        "totals": {
            "tasks": len(tasks),
            **{s: status_counts[s] for s in STATUS_NAMES.values()},
            "items": items,
            "credits_spent": sum(k.credits_spent for k in key_list),
            "credits_left": sum(a.credits or 0 for a in account_list if a.enabled),
            "accounts": len(account_list),
            "keys_active": sum(1 for k in key_list if k.revoked_at is None),
        },
        "per_day": per_day,
        "credits_per_day": credits_per_day(tasks, costs or {}),
        "per_model": _rows(by["model"]),
        "per_key": _rows(by["key"]),
        "per_account": _rows(by["account"]),
        "failure_codes": [{"code": c, "tasks": n} for c, n in sorted(failures.items(), key=lambda p: (-p[1], p[0]))],
        "credits": {
            "per_key": sorted(
                ({"name": k.name, "credits_spent": k.credits_spent} for k in key_list),
                key=lambda r: (-r["credits_spent"], r["name"]),
            ),
            "per_account": sorted(
                ({"name": a.name, "credits": a.credits, "credits_at": a.credits_at} for a in account_list),
                key=lambda r: (-(r["credits"] or 0), r["name"]),
            ),
        },
    }


def status_history(task: TaskRecord) -> list[dict[str, Any]]:
    """What the store knows of a task's course, oldest first: submitted, its last poll (when it was polled and
    is not final) and its end, each `{"at", "status", "note"}`."""
    steps: list[dict[str, Any]] = [{"at": task.created_at, "status": "submitted", "note": f"{task.kind.value} task"}]
    if task.finished_at is None and task.updated_at > task.created_at:
        seen = f"upstream status {task.upstream_status}" if task.upstream_status is not None else "not visible yet"
        steps.append(
            {"at": task.updated_at, "status": "processing", "note": f"last poll: {seen}, {task.item_count} item(s)"}
        )
    if task.finished_at is not None:
        status = STATUS_NAMES.get(task.status, "processing")
        note = f"{task.item_count} item(s)" if task.status is TaskStatus.DONE else (failure_code(task) or "")
        steps.append({"at": task.finished_at, "status": status, "note": note})
    return steps
