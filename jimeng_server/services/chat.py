"""Chat completions onto tasks (`POST /v1/chat/completions`): what a chat request asks for, and how a task's
answer reads as an assistant message. Pure functions; the handler (`api/chat.py`) submits and waits.

- The LAST `user` message is the request: its text parts (joined by newlines) are the prompt, its `image_url`
  parts (URLs or data URIs) the input images. Earlier messages are context for a chat model and are ignored.
- `model` picks the task: a video model (or an alias of one, e.g. `sora-2`) makes a video, anything else an
  image (`jimeng-4.5` when absent). Options ride as extra body keys (`IMAGE_OPTIONS`, `VIDEO_OPTIONS`) and are
  validated by the same parsers as the image and video endpoints.
- The answer is built from the task's query body (`services/task_queries.py`), so the chat text, the query, the
  webhook and the MCP tool tell the same story: Markdown image links (or a video link), the task id in the extra
  field `history_id`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequest
from ..tasks.records import TaskKind
from ..upstream import catalog

POLL_SECONDS = 5.0
"""How long one look at a running task waits for it to end; a stream sends progress or a keep-alive comment
at least this often."""
IMAGE_OPTIONS = ("n", "size", "ratio", "resolution", "sample_strength", "negative_prompt", "intelligent_ratio")
"""Body keys passed on to the image parser (`api/params.image_params`)."""
VIDEO_OPTIONS = ("duration", "ratio", "resolution")
"""Body keys passed on to the video parser (`api/video_params.video_params`)."""
CANONICAL_SKIP = ("stream", "stream_options")
"""Keys left out of the Idempotency-Key's request hash: a retry may switch between streamed and whole answers."""


@dataclass(frozen=True, slots=True)
class ChatAsk:
    """A parsed chat request: the model as asked (echoed in answers), the kind of task it makes, whether to
    stream, the input image references, and the fields for the image or video parser."""

    model: str
    kind: TaskKind
    stream: bool
    images: tuple[str, ...]
    fields: dict[str, Any]


def _text_and_images(content: Any, where: str) -> tuple[str, list[str]]:
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise BadRequest(f"{where}.content must be a string or a list of content parts", code="INVALID_PARAMETER")
    texts: list[str] = []
    images: list[str] = []
    for i, part in enumerate(content):
        here = f"{where}.content[{i}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            ref = part.get("image_url")
            url = ref.get("url") if isinstance(ref, dict) else ref
            if not isinstance(url, str) or not url.strip():
                raise BadRequest(
                    f'{here}.image_url must be {{"url": "<http(s) URL or data:image/...;base64 URI>"}}',
                    code="INVALID_PARAMETER",
                )
            images.append(url.strip())
        else:
            raise BadRequest(
                f'{here} must be a text part {{"type": "text", "text": ...}} or an image part '
                f'{{"type": "image_url", "image_url": {{"url": ...}}}}, got type {kind!r}',
                code="UNSUPPORTED_PARAMETER",
            )
    return "\n".join(t for t in texts if t.strip()), images


def kind_of_model(model: str, aliases: Mapping[str, str]) -> TaskKind:
    """VIDEO for a video model or an alias of one, IMAGE otherwise (the image parser refuses unknown names)."""
    return TaskKind.VIDEO if aliases.get(model, model) in catalog.VIDEO_MODELS else TaskKind.IMAGE


def chat_ask(data: Mapping[str, Any], aliases: Mapping[str, str]) -> ChatAsk:
    """Parse a chat completions body. Raises BadRequest naming the field: no messages, no user message, a
    user message with neither text nor images, an unknown content part, a non-boolean `stream`."""
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest(
            "'messages' must be a non-empty list of chat messages; the last user message is the prompt",
            code="MISSING_PARAMETER" if messages is None else "INVALID_PARAMETER",
        )
    users = [i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise BadRequest("'messages' has no message with role 'user'; its text is the prompt", code="MISSING_PARAMETER")
    where = f"messages[{users[-1]}]"
    prompt, images = _text_and_images(messages[users[-1]].get("content"), where)
    if not prompt.strip() and not images:
        raise BadRequest(f"{where} has no text: describe the image or video to make", code="MISSING_PARAMETER")
    stream = data.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be true or false", code="INVALID_PARAMETER")
    model = data.get("model")
    if model is None or model == "":
        model = catalog.DEFAULT_IMAGE_MODEL
    if not isinstance(model, str):
        raise BadRequest("'model' must be a model name string (see GET /v1/models)", code="INVALID_PARAMETER")
    kind = kind_of_model(model, aliases)
    options = VIDEO_OPTIONS if kind is TaskKind.VIDEO else IMAGE_OPTIONS
    fields: dict[str, Any] = {k: data[k] for k in options if k in data}
    fields.update(model=model, prompt=prompt)
    if kind is TaskKind.VIDEO and images:
        if any(not ref.lower().startswith(("http://", "https://")) for ref in images):
            raise BadRequest(
                f"{where}: the image parts of a video request must be http(s) URLs (the first and last frame); "
                "data URIs are taken for images only",
                code="INVALID_PARAMETER",
            )
        fields["file_paths"] = images
    return ChatAsk(model, kind, stream, tuple(images), fields)


def canonical_body(data: Mapping[str, Any]) -> dict[str, Any]:
    """The body an Idempotency-Key is bound to: everything but the streaming switches."""
    return {k: v for k, v in data.items() if k not in CANONICAL_SKIP}


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
