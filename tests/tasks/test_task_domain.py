"""The pure task-domain decisions every store backend applies (jimeng_server/tasks/): the idempotency claim and
the settle plan. The backends' behaviour over real databases is in test_store.py / test_idempotency.py."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from jimeng_server.tasks.claims import ClaimState, IdempotencyClaim, decide_claim
from jimeng_server.tasks.records import Finish, NewEvent, Settled, Settlement, TaskStatus
from jimeng_server.tasks.settle import check_finals, plan_settle

NOW = 1_000.0


def key_row(
    *,
    request_hash: str = "h",
    status: int | None = None,
    body: bytes | None = None,
    created_at: float = NOW - 10,
    expires_at: float = NOW + 100,
) -> dict[str, object]:
    return {
        "request_hash": request_hash,
        "status": status,
        "body": body,
        "created_at": created_at,
        "expires_at": expires_at,
    }


@pytest.mark.parametrize(
    ("row", "lease", "expected"),
    [
        (None, None, IdempotencyClaim(ClaimState.NEW)),
        (key_row(expires_at=NOW), None, IdempotencyClaim(ClaimState.NEW)),  # expiry is inclusive
        (key_row(), None, IdempotencyClaim(ClaimState.IN_PROGRESS)),
        (key_row(created_at=NOW - 30), 30.0, IdempotencyClaim(ClaimState.NEW)),  # a dead claim's lease ran out
        (key_row(created_at=NOW - 29), 30.0, IdempotencyClaim(ClaimState.IN_PROGRESS)),
        (key_row(request_hash="other"), None, IdempotencyClaim(ClaimState.MISMATCH)),
        (
            key_row(status=201, body=b'{"a":1}', created_at=NOW - 99),
            30.0,
            IdempotencyClaim(ClaimState.REPLAY, status=201, body=b'{"a":1}'),
        ),  # an answer never goes stale
        (key_row(status=204, body=None), None, IdempotencyClaim(ClaimState.REPLAY, status=204, body=b"")),
        (key_row(request_hash="other", status=200, body=b"x"), None, IdempotencyClaim(ClaimState.MISMATCH)),
    ],
)
def test_decide_claim(row: dict[str, object] | None, lease: float | None, expected: IdempotencyClaim) -> None:
    assert decide_claim(row, "h", now=NOW, lease=lease) == expected


DONE = Settlement(TaskStatus.DONE, 50, "", None, ("https://x/1.png",), 1, None)


def finish(history_id: str, *, event: bool = True, settlement: Settlement = DONE) -> Finish:
    return Finish(history_id, settlement, NewEvent(f"evt_{history_id}", "task.succeeded", "{}") if event else None)


def test_plan_settle_first_finish_wins_and_events_need_a_callback() -> None:
    a1, a2, b, c, gone = finish("a"), finish("a", event=False), finish("b"), finish("c", event=False), finish("z")
    plan = plan_settle([a1, b, a2, c, gone], {"a": True, "b": False, "c": True})
    assert plan.finishes == [a1, b, c]  # order kept, "a" by its first finish, "z" (not processing) left alone
    assert plan.events == [("a", a1.event)]  # b has no callback URL, c's finish carries no event
    assert plan.settled == [Settled("a", True), Settled("b", False), Settled("c", False)]


def test_plan_settle_nothing_processing() -> None:
    plan = plan_settle([finish("a")], {})
    assert (plan.finishes, plan.events, plan.settled) == ([], [], [])


def test_check_finals_refuses_a_status_that_is_not_final() -> None:
    running = Settlement(TaskStatus.PROCESSING, 20, "", None, None, 0, None)
    check_finals([finish("a")])
    with pytest.raises(ValueError, match="needs a final status"):
        check_finals([finish("a"), finish("b", settlement=running)])


def test_tasks_package_is_pure() -> None:
    """No I/O in the task domain: no database driver, network, file or process module is imported."""
    banned = {"aiosqlite", "asyncpg", "sqlite3", "aiohttp", "asyncio", "socket", "os", "subprocess", "pathlib"}
    package = Path(__file__).resolve().parents[2] / "jimeng_server" / "tasks"
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            )
            for name in names:
                assert name.split(".")[0] not in banned, f"{source.name} imports {name}"
