"""What a caller is told about a task, built in one place for the query endpoints, webhook events and the
sync endpoints: the final state an upstream outcome settles to (`settlement_of`), why a task failed
(`Failure`), and the spec's task query body.

The body is `{"history_id", "task_type", "status", "fail_code", "item_count", "results", "raw_data"}`, plus
`error` (`{"code", "message"}`) when `status` is 30; events carry the same body without `raw_data`. Two more
fields are always present (additions; the spec's fields stay as they are): `queue` (`{"position", "length",
"eta_seconds"}` while the task is processing and the upstream record gives queue fields, else null) and
`fail_message` (the upstream's readable reason of a failed task, else null). Each `results[i]` is `{"url",
"expires_at", "kept"}` (`ResultItem`; the last two are additions too).

Mapping (the same on the sync and the async path):
- upstream done (10/50) with items -> 10 with the results;
- upstream done with NO items -> 30, `EMPTY_RESULT` (sync: 502);
- upstream failed (30) -> 30, `CONTENT_REJECTED` for the content-review fail codes (sync: 422), else
  `GENERATION_FAILED` (sync: 502); items made before the failure are kept in `results`;
- upstream rejected after generating (40) -> 30, `REJECTED_AFTER_GENERATION` (sync: 422); deleted (100) -> 30,
  `DELETED_UPSTREAM` (sync: 502); status 10 without items (the JS enum's pre-check rejection, `[upstream]
  status_10`) -> 30, `PRE_CHECK_REJECTED` (sync: 422);
- settled by the watcher: `TIMEOUT` (no final status within the settle horizon), `TASK_NOT_VISIBLE` (the
  upstream never showed the task), `TOKEN_EXPIRED` (the owner's session was refused) -> 30.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, NotRequired, TypedDict

from ..upstream.codes import STATUS_FAILURES, content_codes
from ..upstream.history import HistoryRecord, QueueBody, fail_message_of, parse_record, queue_of
from ..upstream.links import url_expiry
from .cost import TaskCost
from .records import Outcome, Reason, Settlement, TaskKind, TaskRecord, TaskStatus

CONTENT_FAIL_CODES: Final = content_codes()
"""Upstream fail codes of the content review and copyright blocks (the code table, upstream/codes.py)."""

GENERATION_FAILED: Final = "GENERATION_FAILED"
CONTENT_REJECTED: Final = "CONTENT_REJECTED"
EMPTY_RESULT: Final = "EMPTY_RESULT"
TIMEOUT: Final = "TIMEOUT"
TASK_NOT_VISIBLE: Final = "TASK_NOT_VISIBLE"
TOKEN_EXPIRED: Final = "TOKEN_EXPIRED"

_SETTLED_BY_WATCHER: Final[dict[Reason, tuple[str, str]]] = {
    Reason.TIMEOUT: (TIMEOUT, "the task did not reach a final status in time"),
    Reason.NOT_FOUND: (TASK_NOT_VISIBLE, "the upstream never showed the task"),
    Reason.SESSION_EXPIRED: (TOKEN_EXPIRED, "the upstream refused the session; sign in again"),
}


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a task failed: a stable UPPER_SNAKE `code` and a message that says what to do."""

    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        """The wire form `{"code", "message"}`."""
        return {"code": self.code, "message": self.message}


class ResultItem(TypedDict):
    """One result of a task query body: its `url`, when that URL stops working (`expires_at`, unix seconds from
    its `x-expires`; null when the URL does not say) and whether the server keeps the bytes (`kept`; false
    while results are re-signed, README "Keeping results")."""

    url: str
    expires_at: int | None
    kept: bool
    keep_error: NotRequired[str]  # why a result could not be kept ([results] keep = "local"), when it could not


def result_item(url: str) -> ResultItem:
    """The `results[i]` entry of a URL."""
    expiry = url_expiry(url)
    return {"url": url, "expires_at": int(expiry) if expiry is not None else None, "kept": False}


class TaskQueryBody(TypedDict):
    """The spec's task query answer without `raw_data` (what a webhook event's `data` carries)."""

    history_id: str
    task_type: str
    status: int
    fail_code: int | str
    item_count: int
    results: list[ResultItem] | None
    queue: QueueBody | None
    fail_message: str | None
    error: NotRequired[dict[str, str]]
    parent_history_id: NotRequired[str]  # a post-edit: the task whose result it edits
    post_edits: NotRequired[list[str]]  # the post-edits made from this task's results, oldest first
    cost: NotRequired[dict[str, Any]]  # a settled task's stored cost `{"credits", "source"}` (tasks/cost.py)


class TaskBody(TaskQueryBody):
    """The full query answer: the query body plus the untouched upstream record."""

    raw_data: dict[str, Any] | None


def failure_of(
    reason: Reason,
    *,
    fail_code: str = "",
    has_items: bool = True,
    detail: str = "",
    upstream_status: int | None = None,
) -> Failure:
    """The failure a final outcome stands for (see the module doc); `detail` explains a settled watch. A failed
    status with a reason of its own (10 pre-check, 40 post-check, 100 deleted: `codes.STATUS_FAILURES`) gives
    that reason unless the record names a content fail code."""
    if reason in _SETTLED_BY_WATCHER:
        code, message = _SETTLED_BY_WATCHER[reason]
        return Failure(code, f"{message} ({detail})" if detail else message)
    if reason is Reason.DONE and not has_items:
        return Failure(EMPTY_RESULT, "the upstream finished the task but returned no results; try again")
    by_status = STATUS_FAILURES.get(upstream_status) if upstream_status is not None else None
    if by_status is not None and fail_code not in CONTENT_FAIL_CODES:
        named = f" (fail_code {fail_code})" if fail_code else ""
        return Failure(by_status.code, by_status.message + named)
    if fail_code in CONTENT_FAIL_CODES:
        return Failure(
            CONTENT_REJECTED,
            f"the upstream's content review blocked the task (fail_code {fail_code}); change the prompt or images",
        )
    return Failure(
        GENERATION_FAILED,
        f"the upstream reported the generation as failed (fail_code {fail_code or 'none'}); try again",
    )


def settle_record(record: HistoryRecord | None, task_type: str, reason: Reason, detail: str = "") -> Settlement:
    """The final state for a watch that ended with `reason` on `record` (the last upstream record, if any)."""
    # A watch settled by the watcher (timeout, never visible, session refused) keeps no partial items.
    keeps_items = record is not None and reason in (Reason.DONE, Reason.UPSTREAM_FAILED)
    urls = tuple(record.urls(task_type)) if keeps_items and record is not None else ()
    upstream_status = record.status if record is not None else None
    fail_code = record.fail_code if record is not None else ""
    item_count = record.item_count if record is not None else 0
    raw = record.raw if record is not None else None
    if reason is Reason.DONE and urls:
        return Settlement(TaskStatus.DONE, upstream_status, fail_code, None, urls, item_count, raw)
    failure = failure_of(
        reason, fail_code=fail_code, has_items=bool(urls), detail=detail, upstream_status=upstream_status
    )
    return Settlement(TaskStatus.FAILED, upstream_status, fail_code, failure.as_dict(), urls or None, item_count, raw)


def settlement_of(outcome: Outcome) -> Settlement:
    """The final state a watcher outcome settles to. Not for a sync wait that ran out (status PROCESSING)."""
    return settle_record(outcome.record, outcome.kind.value, outcome.reason, outcome.detail)


def outcome_of_row(row: TaskRecord) -> Outcome:
    """The outcome a stored FINAL task was settled from, as far as the row tells (for waiters in a process that
    did not settle it, e.g. another replica): its reason from the failure code, its last upstream record from
    `raw_data`. The detail of a settled watch is not kept (its message is)."""
    code = (row.error or {}).get("code", "")
    by_code = {settled_code: reason for reason, (settled_code, _) in _SETTLED_BY_WATCHER.items()}
    if code in by_code:
        reason = by_code[code]
    elif row.status is TaskStatus.DONE or code == EMPTY_RESULT:
        reason = Reason.DONE
    else:
        reason = Reason.UPSTREAM_FAILED
    record = parse_record(row.raw_data) if row.raw_data is not None else None
    if record is not None and row.kind is TaskKind.VIDEO and row.results:
        record = replace(record, video_urls=row.results)  # the download-quality URLs the settler stored
    return Outcome(row.history_id, row.kind, row.status, reason, record)


def record_reason(record: HistoryRecord) -> Reason | None:
    """DONE / UPSTREAM_FAILED for a final upstream record; None while it is still processing."""
    if record.done:
        return Reason.DONE
    if record.failed:
        return Reason.UPSTREAM_FAILED
    return None


def wire_fail_code(code: str) -> int | str:
    """The spec's `fail_code` on the wire: 0 when there is none, an int for a numeric code, else the text."""
    text = code.strip()
    if not text:
        return 0
    if text.isascii() and text.isdigit():
        return int(text)
    return text


def task_query_body(
    *,
    history_id: str,
    task_type: str,
    status: int,
    fail_code: str,
    item_count: int,
    results: Sequence[str] | None,
    error: dict[str, str] | None = None,
    raw: dict[str, Any] | None = None,
    parent_history_id: str | None = None,
    post_edits: Sequence[str] = (),
    cost: TaskCost | None = None,
) -> TaskQueryBody:
    """Build the task query body (pure). `results` None stays null; URLs become `[{"url": ...}]`; `error`
    is added for a failed task; `queue` and `fail_message` come from the upstream record `raw` when the
    status calls for them."""
    body: TaskQueryBody = {
        "history_id": history_id,
        "task_type": task_type,
        "status": int(status),
        "fail_code": wire_fail_code(fail_code),
        "item_count": item_count,
        "results": [result_item(url) for url in results] if results is not None else None,
        "queue": queue_of(raw) if raw is not None and status == TaskStatus.PROCESSING else None,
        "fail_message": fail_message_of(raw) if raw is not None and status == TaskStatus.FAILED else None,
    }
    if status == TaskStatus.FAILED and error is not None:
        body["error"] = dict(error)
    if parent_history_id is not None:
        body["parent_history_id"] = parent_history_id
    if post_edits:
        body["post_edits"] = list(post_edits)
    if cost is not None:
        body["cost"] = cost.as_body()
    return body


def settled_body(
    history_id: str,
    task_type: str,
    settlement: Settlement,
    *,
    parent_history_id: str | None = None,
    cost: TaskCost | None = None,
) -> TaskQueryBody:
    """The query body of a settled task (also the `data` of its webhook event; a post-edit names its source;
    the post-edits of a task come later than its event, so only a query lists them; `cost`: the stored cost
    read when it settled, so the event's data equals the query)."""
    return task_query_body(
        history_id=history_id,
        task_type=task_type,
        status=int(settlement.status),
        fail_code=settlement.fail_code,
        item_count=settlement.item_count,
        results=settlement.results,
        error=settlement.error,
        raw=settlement.raw_data,
        parent_history_id=parent_history_id,
        cost=cost,
    )


def with_raw(body: TaskQueryBody, raw: dict[str, Any] | None) -> TaskBody:
    """`body` plus `raw_data`."""
    return {**body, "raw_data": raw}


def body_of_row(row: TaskRecord, post_edits: Sequence[str] = (), cost: TaskCost | None = None) -> TaskBody:
    """The query answer of a stored task (with the post-edits made from it, when the caller looked them up, and
    its stored cost, when the caller read it)."""
    body = task_query_body(
        history_id=row.history_id,
        task_type=row.kind.value,
        status=int(row.status),
        fail_code=row.fail_code,
        item_count=row.item_count,
        results=row.results,
        error=row.error,
        raw=row.raw_data,
        parent_history_id=row.parent_history_id,
        post_edits=post_edits,
        cost=cost,
    )
    return with_raw(body, row.raw_data)


def body_of_record(
    history_id: str, task_type: str, record: HistoryRecord, *, parent_history_id: str | None = None
) -> TaskBody:
    """The query answer of an upstream record: settled as the watcher would settle it once final,
    processing (status 20, no results) otherwise; `raw_data` untouched."""
    reason = record_reason(record)
    if reason is not None:
        settled = settle_record(record, task_type, reason)
        return with_raw(settled_body(history_id, task_type, settled, parent_history_id=parent_history_id), record.raw)
    body = task_query_body(
        history_id=history_id,
        task_type=task_type,
        status=int(TaskStatus.PROCESSING),
        fail_code=record.fail_code,
        item_count=record.item_count,
        results=None,
        raw=record.raw,
        parent_history_id=parent_history_id,
    )
    return with_raw(body, record.raw)
