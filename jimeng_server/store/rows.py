"""Row mapping shared by the backends: a database row (anything indexable by column name, e.g. `sqlite3.Row`
or `asyncpg.Record`) to a `TaskRecord` / `OutboxEvent` / `Attempt` / `AccountRow` / `KeyRow` / `KeepJob`, the
column lists, and the JSON text columns.

The column names and meanings are the same in every backend's schema; pure functions, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol, cast

from .. import jsonfast
from ..tasks.records import Finish, Progress, TaskKind, TaskRecord, TaskStatus
from ..upstream.links import ResultRef
from .keeping import KeepJob, KeepState
from .outbox import Attempt, AttemptResult, EventState, OutboxEvent
from .pool import AccountRow, Cooldown, KeyRow

__all__ = [
    "ACCOUNT_COLUMNS",
    "EVENT_COLUMNS",
    "KEEP_COLUMNS",
    "KEY_COLUMNS",
    "TASK_COLUMNS",
    "Row",
    "account_from_row",
    "attempt_from_row",
    "attempt_params",
    "cooldown_from_row",
    "dump_json",
    "event_from_row",
    "finish_params",
    "keep_job_from_row",
    "key_from_row",
    "progress_params",
    "record_from_row",
    "record_params",
    "results_json",
    "settle_params",
]

TASK_COLUMNS: Final = (
    "history_id, account_fp, token, kind, model, submit_id, status, upstream_status, fail_code, "
    "error, item_count, results, raw_data, callback_url, input_images, created_at, updated_at, "
    "finished_at, account_id, parent_history_id"
)
EVENT_COLUMNS: Final = (
    "event_id, seq, history_id, account_fp, type, body, callback_url, state, attempts, round_start, "
    "next_attempt_at, lease_until, created_at, updated_at, links_expire_at"
)

ACCOUNT_COLUMNS: Final = (
    "id, name, region, fingerprint, masked, secret, sealed, has_proxy, enabled, note, last_check_at, "
    "last_error_code, last_error, cooldown_until, credits, credits_at, created_at"
)
KEY_COLUMNS: Final = (
    "id, name, hash, prefix, accounts, rate_per_minute, max_in_flight, revoked_at, submits, credits_spent, "
    "last_used_at, created_at"
)
KEEP_COLUMNS: Final = (
    "history_id, position, url, state, attempts, next_attempt_at, lease_until, file_id, size, content_type, error, "
    "created_at, updated_at"
)
"""The columns of `kept_results` in `KeepJob` order."""


class Row(Protocol):
    """A result row addressed by column name."""

    def __getitem__(self, key: str | int, /) -> Any: ...


def dump_json(value: Mapping[str, Any] | None) -> str | None:
    """The compact JSON text stored for a dict column (UTF-8 kept as is); None stays None."""
    if value is None:
        return None
    return jsonfast.dumps(value).decode()


def results_json(results: tuple[str, ...] | None) -> str | None:
    """The JSON array text stored for result URLs; None stays None."""
    return jsonfast.dumps(list(results)).decode() if results is not None else None


def record_from_row(row: Row) -> TaskRecord:
    """A task row (all of `TASK_COLUMNS`) as a record."""
    results = row["results"]
    raw_data = row["raw_data"]
    error = row["error"]
    return TaskRecord(
        history_id=row["history_id"],
        account_fp=row["account_fp"],
        token=row["token"],
        kind=TaskKind(row["kind"]),
        model=row["model"],
        submit_id=row["submit_id"],
        status=TaskStatus(row["status"]),
        upstream_status=row["upstream_status"],
        fail_code=row["fail_code"],
        error=cast("dict[str, str]", json.loads(error)) if error is not None else None,
        item_count=row["item_count"],
        results=tuple(jsonfast.loads(results)) if results is not None else None,
        raw_data=cast("dict[str, Any]", jsonfast.loads(raw_data)) if raw_data is not None else None,
        callback_url=row["callback_url"],
        input_images=row["input_images"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        account_id=row["account_id"],
        parent_history_id=row["parent_history_id"],
    )


def event_from_row(row: Row) -> OutboxEvent:
    """An event row (all of `EVENT_COLUMNS`) as an event."""
    return OutboxEvent(
        event_id=row["event_id"],
        seq=int(row["seq"]),
        history_id=row["history_id"],
        account_fp=row["account_fp"],
        type=row["type"],
        body=row["body"],
        callback_url=row["callback_url"],
        state=EventState(row["state"]),
        attempts=int(row["attempts"]),
        round_start=int(row["round_start"]),
        next_attempt_at=row["next_attempt_at"],
        lease_until=row["lease_until"],
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
        links_expire_at=row["links_expire_at"],
    )


def attempt_from_row(row: Row) -> Attempt:
    """An attempt row (event_id, attempt, at, status, error, latency_ms, next_attempt_at) as an attempt."""
    return Attempt(
        event_id=row["event_id"],
        attempt=int(row["attempt"]),
        at=float(row["at"]),
        status=row["status"],
        error=row["error"],
        latency_ms=int(row["latency_ms"]),
        next_attempt_at=row["next_attempt_at"],
    )


def attempt_params(results: Sequence[AttemptResult]) -> list[tuple[Any, ...]]:
    """The parameters of the `webhook_attempts` insert, one tuple per result: (event_id, attempt, at, status,
    error, latency_ms, next_attempt_at) — the same order in both backends' SQL."""
    return [
        (a.event_id, a.attempt, a.at, a.status, a.error, a.latency_ms, a.next_attempt_at)
        for a in (r.attempt for r in results)
    ]


def finish_params(results: Sequence[AttemptResult]) -> list[tuple[Any, ...]]:
    """The parameters of the `webhook_events` update after an attempt, one tuple per result: (state, attempt,
    next_attempt_at, at, event_id) — the same order in both backends' SQL."""
    return [
        (r.state.value, r.attempt.attempt, r.attempt.next_attempt_at, r.attempt.at, r.attempt.event_id) for r in results
    ]


def progress_params(updates: Sequence[Progress], *, now: float) -> list[tuple[Any, ...]]:
    """The parameters of the progress update, one tuple per task: (upstream_status, item_count, raw_data JSON,
    updated_at, history_id) — the same order in both backends' SQL."""
    return [(u.upstream_status, u.item_count, dump_json(u.raw_data), now, u.history_id) for u in updates]


def settle_params(final: Finish, *, now: float) -> tuple[Any, ...]:
    """The parameters of the settle update of one task: (status, upstream_status, fail_code, error JSON, results
    JSON, item_count, raw_data JSON, now, history_id) — numbered 1-9 in both backends' SQL (now is both
    `updated_at` and `finished_at`)."""
    done = final.settlement
    return (
        int(done.status),
        done.upstream_status,
        done.fail_code,
        dump_json(done.error),
        results_json(done.results),
        done.item_count,
        dump_json(done.raw_data),
        now,
        final.history_id,
    )


def record_params(record: TaskRecord) -> tuple[Any, ...]:
    """A task row's values in `TASK_COLUMNS` order (the JSON columns as text): the parameters 1-20 of both
    backends' insert."""
    return (
        record.history_id,
        record.account_fp,
        record.token,
        record.kind.value,
        record.model,
        record.submit_id,
        int(record.status),
        record.upstream_status,
        record.fail_code,
        dump_json(record.error),
        record.item_count,
        results_json(record.results),
        dump_json(record.raw_data),
        record.callback_url,
        record.input_images,
        record.created_at,
        record.updated_at,
        record.finished_at,
        record.account_id,
        record.parent_history_id,
    )


def refs_text(refs: Sequence[ResultRef | None]) -> str:
    """The stored JSON of a task's result refs: `[[kind, key] | null, ...]`."""
    return jsonfast.dumps([[r.kind, r.key] if r is not None else None for r in refs]).decode()


def refs_from_text(text: str) -> tuple[ResultRef | None, ...]:
    """The refs of `refs_text` (entries that are not `[kind, key]` read as None)."""
    items = jsonfast.loads(text)
    return tuple(
        ResultRef(str(item[0]), str(item[1])) if isinstance(item, list) and len(item) == 2 else None
        for item in (items if isinstance(items, list) else [])
    )


def account_from_row(row: Row) -> AccountRow:
    """An `accounts` row (all of `ACCOUNT_COLUMNS`) as a record."""
    return AccountRow(
        id=row["id"],
        name=row["name"],
        region=row["region"],
        fingerprint=row["fingerprint"],
        masked=row["masked"],
        secret=bytes(row["secret"]),
        sealed=bool(row["sealed"]),
        has_proxy=bool(row["has_proxy"]),
        enabled=bool(row["enabled"]),
        note=row["note"],
        last_check_at=row["last_check_at"],
        last_error_code=row["last_error_code"],
        last_error=row["last_error"],
        cooldown_until=row["cooldown_until"],
        credits=row["credits"],
        credits_at=row["credits_at"],
        created_at=row["created_at"],
    )


def cooldown_from_row(row: Row) -> tuple[int, Cooldown]:
    """A `model_cooldowns` row as (account id, record)."""
    cool = Cooldown(row["model"], float(row["rest_until"]), row["reason"], row["message"])
    return int(row["account_id"]), cool


def key_from_row(row: Row) -> KeyRow:
    """An `api_keys` row (all of `KEY_COLUMNS`) as a record."""
    accounts = row["accounts"]
    return KeyRow(
        id=row["id"],
        name=row["name"],
        hash=row["hash"],
        prefix=row["prefix"],
        accounts=tuple(json.loads(accounts)) if accounts is not None else None,
        rate_per_minute=row["rate_per_minute"],
        max_in_flight=row["max_in_flight"],
        revoked_at=row["revoked_at"],
        submits=row["submits"],
        credits_spent=row["credits_spent"],
        last_used_at=row["last_used_at"],
        created_at=row["created_at"],
    )


def keep_job_from_row(row: Row) -> KeepJob:
    """A `KeepJob` from a row with `KEEP_COLUMNS` (sqlite3.Row or asyncpg.Record)."""
    return KeepJob(
        history_id=row["history_id"],
        position=int(row["position"]),
        url=row["url"],
        state=KeepState(row["state"]),
        attempts=int(row["attempts"]),
        next_attempt_at=row["next_attempt_at"],
        lease_until=row["lease_until"],
        file_id=row["file_id"],
        size=row["size"],
        content_type=row["content_type"],
        error=row["error"],
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
    )
