"""Rendering history records as `get_history_by_ids` shows them (upstream-protocol.md §9.2–9.3, §14.16–18).

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


def render_record(record: SimRecord, now: float, step_seconds: float, base: str, secret: bytes) -> dict[str, Any]:
    """The wire form of `record` at sim time `now`; `base` is `scheme://host` of the request."""
    index, step = record.script.at(now - record.created_at, step_seconds)
    renderer = ITEM_RENDERERS[record.kind]
    finish_time = int(record.created_at + index * step_seconds) if step.final else 0
    return {
        "status": step.status,
        "fail_code": step.fail_code,
        "item_list": [renderer(base, secret, record, i) for i in range(step.items)],
        "task": {"finish_time": finish_time, "submit_id": record.submit_id},
        "generate_type": VIDEO_GENERATE_TYPE if record.kind == "video" else IMAGE_GENERATE_TYPE,
        "history_record_id": record.history_id,
        "origin_history_record_id": None,
        "created_time": record.created_at,
        "submit_id": record.submit_id,
        "model_key": record.model_key,
    }
