"""Chat completions onto tasks (`POST /v1/chat/completions`): what a parsed chat request is (`ChatAsk`; the
body is read by `api/chat_params.py`), and how a task's answer reads as an assistant message. Pure functions;
the handler (`api/chat.py`) submits and waits.

- `model` picks the task: a video model (or an alias of one, e.g. `sora-2`) makes a video, anything else an
  image (`kind_of_model`).
- The answer is built from the task's query body (`services/task_queries.py`), so the chat text, the query, the
  webhook and the MCP tool tell the same story: Markdown image links (or a video link), the task id in the extra
  field `history_id`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..tasks.records import TaskKind
from ..upstream import catalog

POLL_SECONDS = 5.0
"""How long one look at a running task waits for it to end; a stream sends progress or a keep-alive comment
at least this often."""


@dataclass(frozen=True, slots=True)
class ChatAsk:
    """A parsed chat request: the model as asked (echoed in answers), the kind of task it makes, whether to
    stream, the input image references, and the fields for the image or video parser."""

    model: str
    kind: TaskKind
    stream: bool
    images: tuple[str, ...]
    fields: dict[str, Any]


def kind_of_model(model: str, aliases: Mapping[str, str]) -> TaskKind:
    """VIDEO for a video model or an alias of one, IMAGE otherwise (the image parser refuses unknown names)."""
    return TaskKind.VIDEO if aliases.get(model, model) in catalog.VIDEO_MODELS else TaskKind.IMAGE


def progress_text(body: Mapping[str, Any]) -> str:
    """One readable line for a running task's query body: its place in the upstream's queue (and the expected
    wait) while the upstream says it waits behind others, else that it is being generated."""
    queue = body.get("queue")
    if isinstance(queue, Mapping) and queue.get("position"):  # place 0: at the front, being generated
        parts = []
        if queue.get("position") is not None:
            of = f" of {queue['length']}" if queue.get("length") is not None else ""
            parts.append(f"position {queue['position']}{of}")
        if queue.get("eta_seconds") is not None:
            parts.append(f"about {round(float(queue['eta_seconds']))} s to wait")
        return f"Queued: {', '.join(parts)}.\n"
    return "Generating…\n"


def result_urls(body: Mapping[str, Any]) -> list[str]:
    """The result URLs of a task query body, in order."""
    return [item["url"] for item in body.get("results") or () if isinstance(item, Mapping) and "url" in item]


def results_markdown(body: Mapping[str, Any]) -> str:
    """The results of a final task as Markdown: one image per line (`![image N](url)`), or a video link; a note
    for a task the upstream marked failed after making some of them."""
    urls = result_urls(body)
    if body.get("task_type") == TaskKind.VIDEO.value:
        lines = [f"[video {n}]({u})" if len(urls) > 1 else f"[video]({u})" for n, u in enumerate(urls, 1)]
    else:
        lines = [f"![image {n}]({u})" for n, u in enumerate(urls, 1)]
    text = "\n".join(lines) + "\n"
    if body.get("status") == 30 and urls:
        text += f"\n(The upstream marked the task failed after {len(urls)} result(s); these are kept.)\n"
    return text


def submitted_text(history_id: str, kind: TaskKind, model: str) -> str:
    """The first line of a streamed answer."""
    return f"Submitted {kind.value} task {history_id} ({model}).\n"


def completion(ask: ChatAsk, history_id: str, created: int, content: str) -> dict[str, Any]:
    """A whole (non-stream) chat completion with the task id in `history_id`."""
    return {
        "id": f"chatcmpl-{history_id}",
        "object": "chat.completion",
        "created": created,
        "model": ask.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "history_id": history_id,
    }


def chunk(
    ask: ChatAsk, history_id: str, created: int, delta: dict[str, str], finish_reason: str | None = None
) -> dict[str, Any]:
    """One streamed chunk (`chat.completion.chunk`) with the task id in `history_id`."""
    return {
        "id": f"chatcmpl-{history_id}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": ask.model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        "history_id": history_id,
    }
