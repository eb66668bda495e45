"""The simulator answers in the shapes of the real recorded answers (§18): every key a real answer has at the
levels a client reads is in the simulator's answer too."""

from __future__ import annotations

from typing import Any

from samples import load_sample
from sim_helpers import Upstream, image_body

from jimeng_server.simulator import Simulator


def keys(obj: Any) -> set[str]:
    return set(obj) if isinstance(obj, dict) else set()


async def test_generate_answer_has_the_real_fields(up: Upstream, sim: Simulator) -> None:
    real = load_sample("aigc_draft_generate/cn_success_image_v40_2025-09-13.json")["data"]
    answer = (await up.generate(image_body())).data["aigc_data"]
    wanted = {"history_record_id", "task", "forecast_generate_cost", "forecast_queue_cost", "queue_info"}
    assert wanted <= keys(real) and wanted <= keys(answer)
    assert keys(real["queue_info"]) <= keys(answer["queue_info"])
    assert answer["queue_info"]["polling_config"] == real["queue_info"]["polling_config"]
    assert keys(real["task"]) - {"aid"} <= keys(answer["task"])


async def test_running_and_failed_records_have_the_real_fields(up: Upstream, sim: Simulator) -> None:
    running = load_sample("get_history_by_ids/cn_status45_keyed_by_submit_id_2025-09-13.json")["data"]
    (real,) = running.values()
    hid = (await up.generate(image_body())).data["aigc_data"]["history_record_id"]
    await up.clock.advance(3.5)  # step 3: status 45
    record = (await up.history([hid])).data[hid]
    assert record["status"] == 45
    assert keys(real) - {"image_type"} <= keys(record)
    assert keys(real["task"]) <= keys(record["task"]) and record["task"]["status"] == 45
    failed_real = load_sample("get_history_by_ids/cn_status30_fail2036_fragment.txt")
    hid = (await up.generate(image_body(prompt="x [sim:fail]"))).data["aigc_data"]["history_record_id"]
    await up.clock.advance(10)
    failed = (await up.history([hid])).data[hid]
    assert failed["status"] == 30 and isinstance(failed["fail_code"], str)
    assert keys(failed_real) - {"model_info"} <= keys(failed)


async def test_refusal_data_has_the_real_fields(up: Upstream, sim: Simulator) -> None:
    real = load_sample("aigc_draft_generate/cn_ret5001_credit_prededuct_failed_2026-03-08.txt")["data"]
    refused = (await up.generate({"x": 1})).json["data"]
    assert refused == real  # {aigc_data: null, fail_code: "", fail_starling_key: "", fail_starling_message: ""}
