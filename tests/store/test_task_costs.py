"""What a task cost (tasks/cost.py) and where the store keeps it (`tasks.cost_credits` / `cost_source`, the
`_TASK_COSTS` migration): the decision rules, and on both backends that an estimate is stored, replaced by a
later measurement, and that a measurement is final."""

from __future__ import annotations

import pytest
from record_support import DONE, make_record

from jimeng_server.store.base import Store
from jimeng_server.tasks.cost import CostSource, TaskCost, best_cost, replaces
from jimeng_server.tasks.records import Finish, TaskKind

MEASURED, ESTIMATED = CostSource.MEASURED, CostSource.ESTIMATED


def test_a_spending_record_beats_an_estimate_and_nothing_known_records_nothing() -> None:
    assert best_cost(3, 8) == TaskCost(3, MEASURED)
    assert best_cost(0, 8) == TaskCost(0, MEASURED)  # a free task (e.g. normal_hd) is measured as 0
    assert best_cost(None, 8) == TaskCost(8, ESTIMATED)
    assert best_cost(None, None) is None
    assert TaskCost(70, MEASURED).as_body() == {"credits": 70, "source": "measured"}
    with pytest.raises(ValueError, match="negative"):
        TaskCost(-1, ESTIMATED)


def test_a_measurement_is_final() -> None:
    assert replaces(None, TaskCost(1, ESTIMATED))
    assert replaces(TaskCost(1, ESTIMATED), TaskCost(2, ESTIMATED))
    assert replaces(TaskCost(1, ESTIMATED), TaskCost(3, MEASURED))
    assert not replaces(TaskCost(3, MEASURED), TaskCost(1, ESTIMATED))
    assert not replaces(TaskCost(3, MEASURED), TaskCost(4, MEASURED))


async def test_an_estimate_is_stored_then_turned_into_a_measurement_that_stays(store: Store) -> None:
    await store.insert(make_record("h1"))
    await store.insert(make_record("h2", kind=TaskKind.VIDEO))
    assert await store.costs_of(["h1", "h2", "unknown"]) == {}
    assert await store.record_cost("h1", TaskCost(8, ESTIMATED))
    assert await store.costs_of(["h1", "h2"]) == {"h1": TaskCost(8, ESTIMATED)}
    assert await store.record_cost("h1", TaskCost(3, MEASURED))  # the spending record settled
    assert not await store.record_cost("h1", TaskCost(8, ESTIMATED))  # a late estimate changes nothing
    assert not await store.record_cost("h1", TaskCost(5, MEASURED))
    assert not await store.record_cost("unknown", TaskCost(5, MEASURED))
    assert await store.record_cost("h2", TaskCost(70, MEASURED))
    assert await store.costs_of(["h1", "h2"]) == {"h1": TaskCost(3, MEASURED), "h2": TaskCost(70, MEASURED)}
    assert await store.costs_of([]) == {}
    # A stored cost survives the task's other writes (a re-insert of the same processing task).
    await store.insert(make_record("h1"))
    assert (await store.costs_of(["h1"]))["h1"] == TaskCost(3, MEASURED)


async def test_the_cost_reader_is_told_only_final_pooled_tasks_still_estimated(store: Store) -> None:
    """`estimated_pool_costs`: what `CostReconciler` measures, without reading the tasks' records."""
    pooled = {"account_id": 7, "account_fp": "key:1"}
    await store.insert(make_record("done", **pooled))
    await store.insert(make_record("running", **pooled))
    await store.insert(make_record("measured", **pooled))
    await store.insert(make_record("raw"))  # a raw-token task: no paying pool account
    await store.insert(make_record("no-cost", **pooled))
    for hid in ("done", "running", "measured", "raw"):
        assert await store.record_cost(hid, TaskCost(8, ESTIMATED))
    assert await store.record_cost("measured", TaskCost(3, MEASURED))
    for hid in ("done", "measured", "raw", "no-cost"):
        await store.settle([Finish(hid, DONE, None)])
    wanted = ["done", "running", "measured", "raw", "no-cost", "unknown"]
    assert await store.estimated_pool_costs(wanted) == [("done", 7, "submit-done")]
    assert await store.estimated_pool_costs([]) == []
