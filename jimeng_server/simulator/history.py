"""Rendering history records as `get_history_by_ids` shows them (docs/protocol.md §9.2–9.3, §14.16–18).

Image URLs point at the simulator's CDN (`/cdn/img/{history_id}/{index}.png?sig=...&t=...`). Even-numbered items
join the query with the 6 literal characters `\\u0026` instead of `&`, as upstream JSON sometimes does; a client
that does not replace them fetches a URL whose `sig` is wrong and gets HTTP 403.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from .state import SimRecord

IMAGE_GENERATE_TYPE = 12  # history `generate_type` for image records (value seen in issue #126 logs)
VIDEO_GENERATE_TYPE = 10  # our choice for video records
LITERAL_AMP = "\\u0026"
POLLING_CONFIG = {"interval_seconds": 30, "timeout_seconds": 86400}  # the real generate answer's advice (§18.3)
# fail_code -> (fail_starling_key, fail_starling_message) of failed records (§17.9, §18.5); others get the generic one.
FAIL_TEXTS: dict[str, tuple[str, str]] = {
    "2038": ("web_input_text_risk", "输入的文字不符合平台规则，请修改后重试"),
    "2039": ("web_input_image_risk", "上传的图片不符合平台规则，请更换后重试"),
    "2036": ("web_generate_fail_no_cost", "生成失败，本次不消耗积分"),
}
GENERIC_FAIL = ("web_generate_fail", "生成失败，请稍后重试")


def url_sig(secret: bytes, history_id: str, index: int) -> str:
    """The CDN signature of one item."""
    return hmac.new(secret, f"{history_id}/{index}".encode(), hashlib.sha256).hexdigest()[:32]


def image_url(base: str, secret: bytes, record: SimRecord, index: int) -> str:
    """The CDN URL of image item `index`, with a literal `\\u0026` on even items."""
    sep = LITERAL_AMP if index % 2 == 0 else "&"
    sig = url_sig(secret, record.history_id, index)
    return f"{base}/cdn/img/{record.history_id}/{index}.png?sig={sig}{sep}t={int(record.created_at)}"


def item_id(record: SimRecord, index: int) -> str:
    """A numeric item id unique across records."""
    return f"{record.history_id}{index:02d}"


def image_item(base: str, secret: bytes, record: SimRecord, index: int) -> dict[str, Any]:
    """One image item (§9.3: the URL lives only at image.large_images[0].image_url)."""
    url = image_url(base, secret, record, index)
    iid = item_id(record, index)
    return {
        "item_id": iid,
        "common_attr": {"id": iid, "item_type": 1, "status": 50},
        "image": {
            "format": "png",
            "large_images": [{"image_url": url, "width": record.width, "height": record.height, "format": "png"}],
        },
    }


ItemRenderer = Callable[[str, bytes, SimRecord, int], dict[str, Any]]
# kind -> item renderer; the video issue adds "video".
ITEM_RENDERERS: dict[str, ItemRenderer] = {"image": image_item}


def queue_info(record: SimRecord, now: float, step_seconds: float, factor: float = 1.0) -> dict[str, Any]:
    """The queue and forecast fields of a waiting record at sim time `now` (§17.9, §18.3), consistent with its own
    timeline: `queue_info`, and the top-level `forecast_queue_cost` (seconds until it leaves the queue) and
    `forecast_generate_cost` (seconds of generating after that), whole seconds whose sum is the record's finish
    time minus `now`, rounded (so off by at most half a second; docs/protocol.md §17.9 for the reading).

    The record's queue phase is its script's leading status-20 steps with no items (`Script.queued_steps`). It
    starts behind `extra["queue_ahead"]` others (at most one per queued step) and moves up one place per step. A
    script that never ends is forecast to end at its last step. `factor` (`SimSettings.forecast_factor`) scales
    both forecasts, for an upstream whose forecasts run long or short."""
    script = record.script
    ahead = min(int(record.extra.get("queue_ahead", 0)), script.queued_steps)
    elapsed = now - record.created_at
    index, _ = script.at(elapsed, step_seconds)
    position = max(0, ahead - index)
    final = script.final_index
    end = (len(script) - 1 if final is None else final) * step_seconds
    left = max(0.0, end - elapsed)
    queue_cost = min(round(max(0.0, ahead * step_seconds - elapsed)), round(left))
    info = {
        "queue_idx": position,
        "priority": 1,
        "queue_status": 1 if position else 2,
        "queue_length": int(record.extra.get("queue_ahead", 0)) + 1,
        "polling_config": POLLING_CONFIG,
    }
    return {
        "queue_info": info,
        "forecast_queue_cost": round(queue_cost * factor),
        "forecast_generate_cost": round((round(left) - queue_cost) * factor),
    }


def render_record(
    record: SimRecord, now: float, step_seconds: float, base: str, secret: bytes, forecast_factor: float = 1.0
) -> dict[str, Any]:
    """The wire form of `record` at sim time `now`; `base` is `scheme://host` of the request. Shaped like the
    real records of §18.1-18.5 (task object, image counts, queue fields while waiting, failure texts)."""
    index, step = record.script.at(now - record.created_at, step_seconds)
    renderer = ITEM_RENDERERS[record.kind]
    finish_time = int(record.created_at + index * step_seconds) if step.final else 0
    out: dict[str, Any] = {
        "status": step.status,
        "fail_code": step.fail_code,
        "item_list": [renderer(base, secret, record, i) for i in range(step.items)],
        "task": {
            "task_id": f"{record.history_id}1",
            "submit_id": record.submit_id,
            "status": step.status,
            "history_id": record.history_id,
            "finish_time": finish_time,
        },
        "generate_type": VIDEO_GENERATE_TYPE if record.kind == "video" else IMAGE_GENERATE_TYPE,
        "history_record_id": record.history_id,
        "origin_history_record_id": None,
        "created_time": record.created_at,
        "submit_id": record.submit_id,
        "model_key": record.model_key,
        "total_image_count": record.script.max_items if record.kind == "image" else 0,
        "finished_image_count": step.items if record.kind == "image" else 0,
    }
    if step.status == 20:
        out.update(queue_info(record, now, step_seconds, forecast_factor))
    elif not step.final:  # generating (42, 45, ...): out of the queue, only the forecast (as the real 45 record)
        out["forecast_generate_cost"] = queue_info(record, now, step_seconds, forecast_factor)["forecast_generate_cost"]
    if step.status == 30:
        key, message = FAIL_TEXTS.get(step.fail_code, GENERIC_FAIL)
        out.update(fail_msg="GenerateFail", fail_starling_key=key, fail_starling_message=message)
    return out
