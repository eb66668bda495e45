"""The settle plan (pure): which of a batch of finishes a store applies, and which of them write an event.

A store backend reads, in its settle transaction, the tasks of the batch still processing, whether each has
a callback URL and what their events carry from the row (source task, stored cost), calls `plan_settle`, then
writes exactly what the plan says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .cost import TaskCost
from .records import Finish, NewEvent, Settled

__all__ = ["SettlePlan", "check_finals", "plan_settle"]

_NONE: tuple[None, None] = (None, None)


@dataclass(frozen=True, slots=True)
class SettlePlan:
    """What one settle transaction writes: `finishes` (the task updates, in order), `events` (history id and
    event of each outbox row to insert) and `settled` (the answer of `TaskTable.settle`)."""

    finishes: list[Finish]
    events: list[tuple[str, NewEvent]]
    settled: list[Settled]


def check_finals(finals: Sequence[Finish]) -> None:
    """Raise ValueError unless every finish carries a final status (checked before any write)."""
    for final in finals:
        if not final.settlement.status.final:
            raise ValueError(f"settle() needs a final status, got {final.settlement.status!r}")


def plan_settle(
    finals: Sequence[Finish],
    hooked: Mapping[str, bool],
    facts: Mapping[str, tuple[str | None, TaskCost | None]] | None = None,
) -> SettlePlan:
    """The plan for `finals` given `hooked`: the tasks still processing when the transaction looked, each mapped
    to whether it has a callback URL; `facts`: the source task and stored cost of those that have either.

    A task not in `hooked` (unknown or already final) is left alone; a task named twice is settled by its first
    finish; an event is written only for a task with a callback URL and a finish that carries one (a finish's
    `MakeEvent` is called here, with the task's facts, only then).
    """
    first: dict[str, Finish] = {}
    for final in finals:
        if final.history_id in hooked:
            first.setdefault(final.history_id, final)
    finishes = list(first.values())
    events: list[tuple[str, NewEvent]] = []
    for f in finishes:
        if f.event is not None and hooked[f.history_id]:
            made = f.event if isinstance(f.event, NewEvent) else f.event(*(facts or {}).get(f.history_id, _NONE))
            events.append((f.history_id, made))
    written = {history_id for history_id, _ in events}
    return SettlePlan(finishes, events, [Settled(f.history_id, f.history_id in written) for f in finishes])
