"""The body of `POST /v1/chat/completions`, read through its declaration (`fields.CHAT`) into a `ChatAsk`.

- The LAST `user` message is the request: its text parts (joined by newlines) are the prompt, its `image_url`
  parts (URLs or data URIs) the input images. Earlier messages are context for a chat model and are ignored.
- `model` picks the task (`services.chat.kind_of_model`; `jimeng-4.5` when absent). Options ride as extra body
  keys (`fields.CHAT_IMAGE_OPTIONS`, `fields.CHAT_VIDEO_OPTIONS`) and are validated by the same parsers as the
  image and video endpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import BadRequest
from ..services.chat import ChatAsk, kind_of_model
from ..tasks.records import TaskKind
from .fields import CHAT, CHAT_IMAGE_OPTIONS, CHAT_STREAM_OPTIONS, CHAT_VIDEO_OPTIONS, is_http_url

_MESSAGES = CHAT["messages"].name


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


def chat_ask(data: Mapping[str, Any], aliases: Mapping[str, str]) -> ChatAsk:
    """Parse a chat completions body. Raises BadRequest naming the field: no messages, no user message, a
    user message with neither text nor images, an unknown content part, a non-boolean `stream`, a `model` that
    is not a string."""
    messages = CHAT[_MESSAGES].read(data)
    if not isinstance(messages, list) or not messages:
        raise BadRequest(
            f"'{_MESSAGES}' must be a non-empty list of chat messages; the last user message is the prompt",
            code="MISSING_PARAMETER" if messages is None else "INVALID_PARAMETER",
        )
    users = [i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise BadRequest(
            f"'{_MESSAGES}' has no message with role 'user'; its text is the prompt", code="MISSING_PARAMETER"
        )
    where = f"{_MESSAGES}[{users[-1]}]"
    prompt, images = _text_and_images(messages[users[-1]].get("content"), where)
    if not prompt.strip() and not images:
        raise BadRequest(f"{where} has no text: describe the image or video to make", code="MISSING_PARAMETER")
    stream = bool(CHAT["stream"].read(data))
    model: str = CHAT["model"].read(data)
    kind = kind_of_model(model, aliases)
    options = CHAT_VIDEO_OPTIONS if kind is TaskKind.VIDEO else CHAT_IMAGE_OPTIONS
    fields: dict[str, Any] = {k: data[k] for k in options if k in data}
    fields.update(model=model, prompt=prompt)
    if kind is TaskKind.VIDEO and images:
        if not all(is_http_url(ref) for ref in images):
            raise BadRequest(
                f"{where}: the image parts of a video request must be http(s) URLs (the first and last frame); "
                "data URIs are taken for images only",
                code="INVALID_PARAMETER",
            )
        fields["file_paths"] = images
    return ChatAsk(model, kind, stream, tuple(images), fields)


def canonical_body(data: Mapping[str, Any]) -> dict[str, Any]:
    """The body an Idempotency-Key is bound to: everything but the streaming switches (`CHAT_STREAM_OPTIONS`)."""
    return {k: v for k, v in data.items() if k not in CHAT_STREAM_OPTIONS}
