"""The video shapes gateways speak, mapped onto our async video tasks (same ids, store, webhooks). Pure
functions: request fields in their shape -> the fields of `/v1/async/videos/generations`, and a task query body
-> their answer.

- OpenAI Videos (`/v1/videos`, the `openai` SDK's `videos` resource, the gateways' "Sora format"): `seconds`
  becomes the model's nearest allowed `duration` (the longer on a tie), `size` "WxH" the nearest video `ratio`
  and the smallest of the model's resolutions whose short side covers it; `input_reference` (a file, a URL or
  `{"image_url": ...}`) is the first frame. Status: `queued` while the upstream says the task waits behind
  others, `in_progress` while it runs, then `completed` / `failed` (with `error`).
- The unified gateway shape (new-api's `/v1/video/generations`): `duration`, `width`/`height` or `size`,
  `image` (a URL) as the first frame; answers `task_id`, the same four statuses, `url`, `format`, `metadata`,
  `error`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import BadRequest
from ..tasks.records import TaskStatus
from ..upstream import catalog

_SIZE = re.compile(r"\s*(\d{1,5})\s*[xX×*]\s*(\d{1,5})\s*")
_SHORT_SIDE = {"480p": 480, "540p": 540, "720p": 720, "1080p": 1080, "2k": 1440, "4k": 2160}
_PROGRESS = {"queued": 0, "in_progress": 50, "completed": 100, "failed": 100}


def nearest_duration(model: str, seconds: int) -> int:
    """The allowed duration of `model` nearest to `seconds` (the longer one on a tie); `seconds` itself for a
    model the table lacks (a key only discovery lists: the video parser checks it against discovery's list)."""
    if model not in catalog.VIDEO_MODELS:
        return seconds
    return min(catalog.allowed_durations(model), key=lambda d: (abs(d - seconds), -d))


def _seconds(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadRequest(f"'{field}' must be a number of seconds, e.g. \"8\"", code="INVALID_PARAMETER")
    try:
        seconds = float(value)
    except ValueError:
        raise BadRequest(f"'{field}' must be a number of seconds, got {value!r}", code="INVALID_PARAMETER") from None
    if not 1 <= seconds <= 600 or math.isnan(seconds):
        raise BadRequest(f"'{field}' must be 1 to 600 seconds, got {value!r}", code="INVALID_PARAMETER")
    return round(seconds)


def _shape(width: int, height: int, model: str, ratios: Sequence[str]) -> tuple[str, str | None]:
    wanted = math.log(width / height)
    ratio = min(ratios, key=lambda r: abs(math.log(int(r.split(":")[0]) / int(r.split(":")[1])) - wanted))
    offered = [r for r in catalog.video_resolutions(model) if r in _SHORT_SIDE]
    if not offered:
        return ratio, None
    offered.sort(key=_SHORT_SIDE.__getitem__)
    short = min(width, height)
    return ratio, next((r for r in offered if _SHORT_SIDE[r] >= short), offered[-1])


def _size(value: Any, field: str) -> tuple[int, int]:
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if match is None or 0 in (int(match.group(1)), int(match.group(2))):
        raise BadRequest(
            f"'{field}' must be WIDTHxHEIGHT in pixels (e.g. 1280x720), got {value!r}", code="INVALID_PARAMETER"
        )
    return int(match.group(1)), int(match.group(2))


def _frame_urls(value: Any, field: str) -> list[str]:
    """http(s) URLs of first (and last) frame images, named by the gateway's own field when refused."""
    values = value if isinstance(value, list) else [value]
    urls = [v.strip() for v in values if isinstance(v, str) and v.strip()]
    if len(urls) != len(values) or any(not u.lower().startswith(("http://", "https://")) for u in urls):
        raise BadRequest(
            f"'{field}' must be an http(s) image URL (or a list of 1 or 2: first and last frame)",
            code="INVALID_PARAMETER",
        )
    return urls


def target_model(asked: str, aliases: Mapping[str, str]) -> str:
    """The catalogue video model `asked` names (the video parser refuses anything else)."""
    return aliases.get(asked, asked)


def openai_video_fields(data: Mapping[str, Any], aliases: Mapping[str, str], ratios: Sequence[str]) -> dict[str, Any]:
    """`/v1/videos` fields (JSON or multipart) -> the video parser's fields (`ratios`: the ratios it takes).
    `model` defaults to `sora-2`."""
    asked = data.get("model") or "sora-2"
    fields: dict[str, Any] = {"model": asked, "prompt": data.get("prompt")}
    if fields["prompt"] in (None, ""):
        raise BadRequest("'prompt' is required: describe the video to make", code="MISSING_PARAMETER")
    model = target_model(str(asked), aliases)
    if data.get("seconds") not in (None, ""):
        fields["duration"] = nearest_duration(model, _seconds(data["seconds"], "seconds"))
    if data.get("size") not in (None, ""):
        fields["ratio"], resolution = _shape(*_size(data["size"], "size"), model, ratios)
        if resolution is not None:
            fields["resolution"] = resolution
    reference = data.get("input_reference")
    if isinstance(reference, Mapping):
        reference = reference.get("image_url") or reference.get("url")
    if isinstance(reference, str) and reference.strip():
        fields["file_paths"] = _frame_urls(reference, "input_reference")
    elif reference not in (None, ""):
        fields["input_reference"] = reference  # an uploaded file: the first frame
    return fields


def gateway_video_fields(data: Mapping[str, Any], aliases: Mapping[str, str], ratios: Sequence[str]) -> dict[str, Any]:
    """new-api's `/v1/video/generations` body -> the video parser's fields (`ratios`: the ratios it takes)."""
    asked = data.get("model") or catalog.DEFAULT_VIDEO_MODEL
    model = target_model(str(asked), aliases)
    # `model` only when sent: an unnamed request keeps the default's withdrawn-model fallback (VideoService).
    fields: dict[str, Any] = {"model": data.get("model"), "prompt": data.get("prompt")}
    if data.get("duration") not in (None, ""):
        fields["duration"] = nearest_duration(model, _seconds(data["duration"], "duration"))
    width, height = data.get("width"), data.get("height")
    if data.get("size") not in (None, ""):
        width, height = _size(data["size"], "size")
    if width is not None or height is not None:
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 100_000 for v in (width, height)):
            raise BadRequest("'width' and 'height' must both be positive pixel counts", code="INVALID_PARAMETER")
        assert isinstance(width, int) and isinstance(height, int)
        fields["ratio"], resolution = _shape(width, height, model, ratios)
        if resolution is not None:
            fields["resolution"] = resolution
    for name in ("ratio", "resolution"):
        if data.get(name) not in (None, ""):
            fields[name] = data[name]
    image = data.get("image") or data.get("image_url")
    if image not in (None, "", []):
        fields["file_paths"] = _frame_urls(image, "image")
    return fields


def status_of(body: Mapping[str, Any]) -> str:
    """queued / in_progress / completed / failed for a task query body (failed: a final task without results)."""
    status = body.get("status")
    if status == TaskStatus.PROCESSING:
        queue = body.get("queue")
        return "queued" if isinstance(queue, Mapping) and queue.get("position") else "in_progress"
    if body.get("results"):
        return "completed"
    return "failed"


def _error(body: Mapping[str, Any]) -> dict[str, Any] | None:
    error = body.get("error")
    if status_of(body) != "failed":
        return None
    if isinstance(error, Mapping):
        return {"code": error.get("code"), "message": error.get("message")}
    return {"code": "GENERATION_FAILED", "message": "the task failed"}


def _url(body: Mapping[str, Any]) -> str | None:
    results = body.get("results") or []
    return str(results[0]["url"]) if results else None


def openai_video(
    body: Mapping[str, Any], *, model: str, created_at: int, seconds: str | None = None, size: str | None = None
) -> dict[str, Any]:
    """An OpenAI `video` object for a task query body; `seconds` and `size` as asked when known."""
    status = status_of(body)
    return {
        "id": body["history_id"],
        "object": "video",
        "model": model,
        "status": status,
        "progress": _PROGRESS[status],
        "created_at": created_at,
        "completed_at": None,
        "expires_at": None,
        "seconds": seconds,
        "size": size,
        "error": _error(body),
        "url": _url(body),
    }


def gateway_task(body: Mapping[str, Any]) -> dict[str, Any]:
    """new-api's task answer for a task query body."""
    return {
        "task_id": body["history_id"],
        "status": status_of(body),
        "url": _url(body),
        "format": "mp4",
        "metadata": {"queue": body.get("queue"), "item_count": body.get("item_count")},
        "error": _error(body),
    }
