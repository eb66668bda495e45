"""Spending records: the pure side of `POST /commerce/v1/benefits/user_credit_history` (upstream-protocol §19.10).

The request body asks for one page of spending records (`history_type` 2) from a cursor; the answer's `data`
carries the available balance (`total_credit`), the page's `records[]` (`amount`, `create_time` in seconds,
`title`, `submit_id`, `status`), `new_cursor` and `has_more`. Records settle late: a task that just finished may
have no record yet, so a caller treats a missing record as "not known yet", never as "free".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import UpstreamBadResponse

CREDIT_HISTORY_PATH = "/commerce/v1/benefits/user_credit_history"
SPENDING = 2  # `history_type` of spending records
PAGE_SIZE = 20  # the page size the web page asks for


def credit_history_body(cursor: str = "0", count: int = PAGE_SIZE) -> dict[str, Any]:
    """The request body for one page of spending records from `cursor` ("0" = the newest)."""
    return {"count": count, "cursor": cursor, "history_type": SPENDING}


@dataclass(frozen=True, slots=True)
class SpendRecord:
    """One charge: `amount` credits (positive), when (`created_at`, Unix seconds), the generate's `submit_id`
    ("" when the record names none, e.g. an expiry "积分到期清零"), the upstream's `title` and raw `status`."""

    amount: int
    created_at: int
    title: str
    submit_id: str
    status: str


@dataclass(frozen=True, slots=True)
class SpendPage:
    """One page of `user_credit_history`: the available balance, the records, and where the next page starts
    (`next_cursor` is meaningful only when `has_more`)."""

    total_credit: int
    records: tuple[SpendRecord, ...]
    next_cursor: str
    has_more: bool

    def by_submit_id(self, submit_id: str) -> SpendRecord | None:
        """The record of the generate sent with `submit_id`, or None when it has not settled (or is elsewhere)."""
        if not submit_id:
            return None
        return next((r for r in self.records if r.submit_id == submit_id), None)


def _number(value: Any, what: str) -> int:
    """An integer the upstream may send as a number or a numeric string (amounts may be negative refunds)."""
    if isinstance(value, bool):
        raise UpstreamBadResponse(f"{CREDIT_HISTORY_PATH}: {what} is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise UpstreamBadResponse(f"{CREDIT_HISTORY_PATH}: {what} is not a number")


def parse_credit_history(data: Any) -> SpendPage:
    """The page of a `user_credit_history` answer's `data` (after `ret` was checked).

    `records` is required (a list, possibly empty); every record needs a numeric `amount` and `create_time`;
    `title`, `submit_id` and `status` are optional strings (numbers are rendered as strings). A missing
    `total_credit` reads as 0, a missing `has_more` as False. Anything else raises UpstreamBadResponse naming the
    field, so a drifted answer is a clear 502, never a wrong figure.
    """
    if not isinstance(data, dict):
        raise UpstreamBadResponse(f"{CREDIT_HISTORY_PATH}: data is not an object")
    items = data.get("records")
    if not isinstance(items, list):
        raise UpstreamBadResponse(f"{CREDIT_HISTORY_PATH}: no records list")
    records = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise UpstreamBadResponse(f"{CREDIT_HISTORY_PATH}: records[{i}] is not an object")
        records.append(
            SpendRecord(
                amount=abs(_number(item.get("amount"), f"records[{i}].amount")),
                created_at=_number(item.get("create_time"), f"records[{i}].create_time"),
                title=_text(item.get("title")),
                submit_id=_text(item.get("submit_id")),
                status=_text(item.get("status")),
            )
        )
    total = data.get("total_credit")
    return SpendPage(
        total_credit=0 if total is None else _number(total, "total_credit"),
        records=tuple(records),
        next_cursor=_text(data.get("new_cursor")),
        has_more=data.get("has_more") is True,
    )


def _text(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return ""
    return value if isinstance(value, str) else str(value)
