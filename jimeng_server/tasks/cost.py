"""What a task cost: credits and where the figure comes from (issue 20 item 8, upstream-protocol §19.10).

Pure data and decisions, no I/O. A cost is `measured` when it was read from the upstream's spending record of
the task's submit_id, `estimated` otherwise (a known price, or the pooled balance difference). Spending records
settle late, so a task may first carry an estimate that a later reading turns into a measurement; a
measurement is final and is never replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class CostSource(StrEnum):
    """Where a task's cost figure comes from."""

    MEASURED = "measured"  # the upstream's spending record of the task's submit_id
    ESTIMATED = "estimated"  # a known price or a balance difference


@dataclass(frozen=True, slots=True)
class TaskCost:
    """A task's cost: `credits` (>= 0) and its `source`."""

    credits: int
    source: CostSource

    def __post_init__(self) -> None:
        if self.credits < 0:
            raise ValueError(f"a task's cost cannot be negative, got {self.credits}")

    def as_body(self) -> dict[str, Any]:
        """The `cost` object of a task's query answer and webhook: `{"credits", "source"}`."""
        return {"credits": self.credits, "source": self.source.value}


def best_cost(measured: int | None, estimate: int | None) -> TaskCost | None:
    """The cost to record now: the spending record's amount when there is one, else the estimate, else None
    (nothing known: nothing is recorded rather than a guessed zero)."""
    if measured is not None:
        return TaskCost(max(0, measured), CostSource.MEASURED)
    if estimate is not None:
        return TaskCost(max(0, estimate), CostSource.ESTIMATED)
    return None


def replaces(old: TaskCost | None, new: TaskCost) -> bool:
    """Whether `new` may overwrite the stored `old`: anything replaces nothing or an estimate; a measurement
    is final. (The store applies the same rule in its update's WHERE clause.)"""
    return old is None or old.source is CostSource.ESTIMATED
