"""The answers of the video shapes gateways speak, for our async video tasks (same ids, store, webhooks). Pure
functions: a task query body -> their answer (their requests are read by `api/gateway_params.py`).

- OpenAI Videos (`/v1/videos`, the `openai` SDK's `videos` resource, the gateways' "Sora format"): a `video`
  object. Status: `queued` while the upstream says the task waits behind others, `in_progress` while it runs,
  then `completed` / `failed` (with `error`).
- The unified gateway shape (new-api's `/v1/video/generations`): `task_id`, the same four statuses, `url`,
  `format`, `metadata`, `error`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..tasks.records import TaskStatus

_PROGRESS = {"queued": 0, "in_progress": 50, "completed": 100, "failed": 100}


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
