"""The upstream's forecast (`forecast_queue_cost` + `forecast_generate_cost`, seconds from the answer) read from
the real recorded answers that carry it (§18.2, §18.3), and its absence treated as normal."""

from __future__ import annotations

from typing import Any

import pytest
from samples import load_sample

from jimeng_server.upstream.client import generated_record
from jimeng_server.upstream.envelope import unwrap
from jimeng_server.upstream.history import forecast_left, parse_record


def test_the_real_generate_answer_forecasts_queue_plus_generation() -> None:
    data = unwrap(load_sample("aigc_draft_generate/cn_success_image_v40_2025-09-13.json"))
    # fields directly under `data` in that capture (§18.3): forecast_queue_cost 0, forecast_generate_cost 23
    assert forecast_left(generated_record(data)) == 23.0
    assert forecast_left(generated_record({"aigc_data": data})) == 23.0  # the §3 shape


def test_the_real_running_record_forecasts_without_queue_fields() -> None:
    data = unwrap(load_sample("get_history_by_ids/cn_status45_keyed_by_submit_id_2025-09-13.json"))
    raw = data["19637d71-15df-445e-b86d-490f3549cb85"]
    assert "forecast_queue_cost" not in raw  # out of the queue: only the generation forecast (22)
    assert forecast_left(raw) == 22.0
    assert not parse_record(raw).final


def test_a_real_final_record_without_a_forecast_gives_none() -> None:
    raw = load_sample("get_history_by_ids/cn_status30_fail2036_fragment.txt")
    assert parse_record(raw).failed and forecast_left(raw) is None


@pytest.mark.parametrize(
    ("raw", "left"),
    [
        ({"forecast_generate_cost": 12, "forecast_queue_cost": 30}, 42.0),
        ({"forecast_generate_cost": 7.5}, 7.5),
        ({"forecast_generate_cost": 0, "forecast_queue_cost": 0}, 0.0),
        ({"forecast_generate_cost": 9, "forecast_queue_cost": -3}, 9.0),  # an unusable queue cost counts as none
        ({"forecast_generate_cost": 9, "forecast_queue_cost": "3"}, 9.0),
        ({"forecast_queue_cost": 30}, None),  # the queue alone does not say when it ends
        ({"forecast_generate_cost": "23"}, None),
        ({"forecast_generate_cost": True}, None),
        ({"forecast_generate_cost": -1}, None),
        ({"forecast_generate_cost": float("nan")}, None),
        ({"forecast_generate_cost": float("inf")}, None),
        ({"forecast_generate_cost": None}, None),
        ({}, None),
        (None, None),
        ([1, 2], None),
    ],
)
def test_forecast_fields_are_read_strictly(raw: Any, left: float | None) -> None:
    assert forecast_left(raw) == left
