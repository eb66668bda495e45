"""The OpenAPI 3.1 document of the whole API (`GET /openapi.json`), written as data, and the `/docs` page that
renders it with a small script shipped in the package (`api/assets/`, no CDN).

Every route of the app appears here (a test compares the two); request bodies are rendered from the field
declarations the parsers read (`api/fields.py`: JSON and, where accepted, multipart), with the `model` names
the app's aliases add; every operation's `default` answer is the error shape.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

from aiohttp import web

from .. import __version__
from ..services.task_queries import MAX_BATCH
from ..upstream import catalog
from .appkeys import CONFIG
from .async_tasks import SUBMITTED_MESSAGE
from .fields import QUERY_PARAMETERS, REQUEST_BODIES, query_parameters
from .openapi_examples import ADMIN_EXAMPLES, add_examples

routes = web.RouteTableDef()

Schema = dict[str, Any]

JSON = "application/json"
MULTIPART = "multipart/form-data"


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict[str, Schema], required: tuple[str, ...] = (), **extra: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, **extra}
    if required:
        schema["required"] = list(required)
    return schema


_STR = {"type": "string"}
_INT = {"type": "integer"}
_TIME = {"type": "number", "description": "unix seconds"}
_NULLABLE_STR = {"type": ["string", "null"]}
_ERROR: Schema = _obj(
    {
        "error": _obj(
            {
                "message": {"type": "string", "description": "what went wrong and what to send instead"},
                "type": _STR,
                "code": {"type": "string", "description": "stable UPPER_SNAKE code"},
                "history_id": {"type": "string", "description": "504 TASK_TIMEOUT: the task, which goes on; query it"},
            },
            ("message", "type", "code"),
        )
    },
    ("error",),
)

_RESULT_ITEM = _obj(
    {
        "url": _STR,
        "expires_at": {"type": ["integer", "null"], "description": "unix seconds the URL stops working; null: unknown"},
        "kept": {"type": "boolean", "description": "true when the server keeps the bytes (README: Keeping results)"},
    },
    ("url", "expires_at", "kept"),
)
_EXPIRING = _obj({"amount": _INT, "expiresAt": _INT, "source": _STR}, ("amount", "expiresAt", "source"))
_POINTS = _obj(
    {
        **{k: _INT for k in ("giftCredit", "purchaseCredit", "vipCredit", "totalCredit")},
        "expiringCredits": {"type": "array", "items": _EXPIRING},
        "nextExpiry": {"oneOf": [_EXPIRING, {"type": "null"}]},
    }
)
_SCHEMAS: dict[str, Schema] = {
    "Error": _ERROR,
    "ImageResult": _obj(
        {
            "created": _INT,
            "data": {"type": "array", "items": _obj({"url": _STR, "b64_json": _STR})},
            "note": _STR,
        },
        ("created", "data"),
    ),
    "VideoResult": _obj(
        {
            "created": _INT,
            "model": {"type": "string", "description": "the model used (the site's default when ours was withdrawn)"},
            "data": {"type": "array", "items": _obj({"url": _STR, "b64_json": _STR, "revised_prompt": _STR})},
            "note": _STR,
        },
        ("created", "data"),
    ),
    "Submitted": _obj(
        {
            "created": _INT,
            "history_id": _STR,
            "input_images": {"type": "integer", "description": "how many input images the task was given"},
            "status": {"const": "submitted"},
            "message": {"type": "string", "examples": [SUBMITTED_MESSAGE]},
        },
        ("created", "history_id", "status", "message"),
    ),
    "Task": _obj(
        {
            "history_id": _STR,
            "task_type": _STR,
            "status": {"type": "integer", "description": "20 running, 10 succeeded, 30 failed"},
            "fail_code": {"type": ["integer", "string"]},
            "item_count": _INT,
            "results": {"type": ["array", "null"], "items": _RESULT_ITEM},
            "queue": {
                "type": ["object", "null"],
                "description": "while processing: where the task stands in the upstream's queue",
                "properties": {
                    "position": {"type": ["integer", "null"]},
                    "length": {"type": ["integer", "null"]},
                    "eta_seconds": {"type": ["number", "null"]},
                },
            },
            "fail_message": {"type": ["string", "null"], "description": "the upstream's readable failure reason"},
            "raw_data": {"type": ["object", "null"]},
            "error": _obj({"code": _STR, "message": _STR}, ("code", "message")),
            "cost": _obj(
                {"credits": _INT, "source": {"type": "string", "enum": ["measured", "estimated"]}},
                ("credits", "source"),
                description="a final task's cost when known: measured from its spending record, else estimated",
            ),
        },
        ("history_id", "task_type", "status", "fail_code", "item_count", "results"),
    ),
    "Tasks": _obj(
        {"data": {"type": "array", "items": _ref("Task")}, "not_found": {"type": "array", "items": _STR}},
        ("data", "not_found"),
    ),
    "Deliveries": _obj(
        {
            "history_id": _STR,
            "callback_url": _NULLABLE_STR,
            "events": {
                "type": "array",
                "items": _obj(
                    {
                        "webhook_id": _STR,
                        "type": _STR,
                        "state": _STR,
                        "attempts": _INT,
                        "next_attempt_at": {"type": ["number", "null"]},
                        "created_at": _TIME,
                    }
                ),
            },
            "deliveries": {
                "type": "array",
                "items": _obj(
                    {
                        "webhook_id": _STR,
                        "attempt": _INT,
                        "at": _TIME,
                        "status": {"type": ["integer", "null"]},
                        "error": _NULLABLE_STR,
                        "latency_ms": {"type": ["number", "null"]},
                        "next_attempt_at": {"type": ["number", "null"]},
                    }
                ),
            },
        },
        ("history_id", "callback_url", "events", "deliveries"),
    ),
    "Redelivery": _obj(
        {"history_id": _STR, "webhook_id": _STR, "state": {"const": "pending"}, "next_attempt_at": _TIME},
        ("history_id", "webhook_id", "state", "next_attempt_at"),
    ),
    "Readiness": _obj(
        {"status": {"enum": ["ready", "not ready"]}, "checks": {"type": "object", "additionalProperties": _STR}},
        ("status", "checks"),
    ),
    "Points": {
        "type": "array",
        "items": _obj(
            {
                "token": {"type": "string", "description": "masked"},
                "account": _STR,
                "points": _POINTS,
                "credits": _POINTS,
                "received": {"type": "boolean"},
                "error": _STR,
                "code": {"type": "string", "description": "why a claim was refused (e.g. CLAIM_RISK_REJECTED)"},
            },
            ("token", "account"),
        ),
    },
}


def _answer(description: str, schema: Schema | None = None, *, media: str = JSON) -> Schema:
    answer: Schema = {"description": description}
    if schema is not None:
        answer["content"] = {media: {"schema": schema}}
    return answer


_DEFAULT_ERROR = _answer('an error: `{"error": {"message", "type", "code"}}` with a 4xx/5xx status', _ref("Error"))
_AUTH: list[dict[str, list[str]]] = [{"bearer": []}]
_IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "1 to 255 visible ASCII characters; a retry with the same key replays the first answer",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
_BINARY = {"type": "string", "format": "binary"}
_HISTORY_ID = {"name": "history_id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 128}}


def _op(
    summary: str,
    answers: dict[str, Schema],
    *,
    auth: bool = True,
    parameters: list[Schema] | None = None,
) -> Schema:
    operation: Schema = {"summary": summary, "responses": {**answers, "default": _DEFAULT_ERROR}}
    if auth:
        operation["security"] = _AUTH
    if parameters:
        operation["parameters"] = parameters
    return operation


_ADMIN_NOTE = " (admin API: only when an admin key is set, else 404; `Authorization: Bearer <admin key>`)"
_REF = {"name": "ref", "in": "path", "required": True, "schema": {"type": "string"}}
_ANY = {"type": "object"}


def _admin(summary: str, status: str = "200", *, ref: bool = False) -> Schema:
    operation = _op(
        summary + _ADMIN_NOTE,
        {status: _answer("done", _ANY)},
        parameters=[_REF] if ref else None,
        auth=False,
    )
    operation["security"] = [{"admin": []}]
    return operation


def _submit(summary: str) -> Schema:
    return _op(summary, {"200": _answer("accepted by the upstream", _ref("Submitted"))}, parameters=[_IDEMPOTENCY])


PATHS: dict[str, dict[str, Schema]] = {
    "/": {"get": _op("service info and the endpoint map", {"200": _answer("info", {"type": "object"})}, auth=False)},
    "/ping": {"get": _op("liveness", {"200": _answer("pong", {"type": "string"}, media="text/plain")}, auth=False)},
    "/openapi.json": {"get": _op("this document", {"200": _answer("OpenAPI 3.1", {"type": "object"})}, auth=False)},
    "/docs": {
        "get": _op("this document, rendered", {"200": _answer("HTML page", _STR, media="text/html")}, auth=False)
    },
    "/docs/{asset}": {
        "get": _op(
            "the /docs page's script and style",
            {"200": {"description": "the file"}},
            auth=False,
            parameters=[{"name": "asset", "in": "path", "required": True, "schema": {"type": "string"}}],
        )
    },
    "/healthz": {"get": _op("liveness", {"200": _answer("ok", _obj({"status": _STR}, ("status",)))}, auth=False)},
    "/readyz": {
        "get": _op(
            "readiness: the store answers, the watcher and webhook sender run",
            {
                "200": _answer("ready", _ref("Readiness")),
                "503": _answer("not ready; `checks` names what is wrong", _ref("Readiness")),
            },
            auth=False,
        )
    },
    "/metrics": {
        "get": _op("Prometheus metrics", {"200": _answer("text exposition", _STR, media="text/plain")}, auth=False)
    },
    "/v1/models": {
        "get": _op(
            "every model with the regions that serve it",
            {"200": _answer("models", _obj({"object": _STR, "data": {"type": "array"}}, ("object", "data")))},
            auth=False,
        )
    },
    "/v1/images/generations": {
        "post": _op(
            "text to image; answers when the images are ready",
            {"200": _answer("the images", _ref("ImageResult"))},
            parameters=[_IDEMPOTENCY],
        )
    },
    "/v1/images/compositions": {
        "post": _op(
            "image to image (1 to 10 input images); answers when the images are ready",
            {"200": _answer("the images", _ref("ImageResult"))},
            parameters=[_IDEMPOTENCY],
        )
    },
    "/v1/images/edits": {
        "post": _op(
            "OpenAI's image edit, served as a composition; answers when the images are ready",
            {"200": _answer("the images", _ref("ImageResult"))},
            parameters=[_IDEMPOTENCY],
        )
    },
    "/v1/videos/generations": {
        "post": _op(
            "text/frames/omni reference to video; answers when the video is ready",
            {"200": _answer("the video", _ref("VideoResult"))},
            parameters=[_IDEMPOTENCY],
        )
    },
    "/v1/async/images/generations": {"post": _submit("text to image, answered at once with the history_id")},
    "/v1/async/images/compositions": {"post": _submit("image to image, answered at once with the history_id")},
    "/v1/async/videos/generations": {"post": _submit("video, answered at once with the history_id")},
    "/v1/async/tasks/query": {
        "post": _op(
            f"one task (history_id) or up to {MAX_BATCH} (history_ids)",
            {
                "200": _answer(
                    "the task, or {data, not_found} for history_ids", {"oneOf": [_ref("Task"), _ref("Tasks")]}
                )
            },
        )
    },
    "/v1/async/tasks/{history_id}": {
        "get": _op(
            "one task; ?wait=S long-polls up to S seconds for a final status",
            {"200": _answer("the task", _ref("Task"))},
            parameters=[_HISTORY_ID],
        )
    },
    "/v1/async/tasks/{history_id}/deliveries": {
        "get": _op(
            "the task's webhook events and delivery attempts",
            {"200": _answer("events and attempts", _ref("Deliveries"))},
            parameters=[_HISTORY_ID],
        )
    },
    "/v1/async/tasks/{history_id}/deliveries/redeliver": {
        "post": _op(
            "send the task's latest webhook event again",
            {"202": _answer("queued", _ref("Redelivery"))},
            parameters=[_HISTORY_ID],
        )
    },
    "/v1/files/{file_id}": {
        "get": _op(
            "a result kept by the server ([results] keep = local): the signed link of a task answer, or the"
            " Authorization of the task's owner; Range requests supported",
            {
                "200": _answer("the file", _BINARY, media="*/*"),
                "206": _answer("the requested range", _BINARY, media="*/*"),
            },
            auth=False,
            parameters=[
                {"name": "file_id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 80}},
                {"name": "expires", "in": "query", "schema": {"type": "string"}},
                {"name": "sig", "in": "query", "schema": {"type": "string"}},
            ],
        )
    },
    "/token/check": {
        "post": _op(
            "is a session alive",
            {"200": _answer("liveness", _obj({"live": {"type": "boolean"}}, ("live",)))},
            auth=False,
        )
    },
    "/token/points": {"post": _op("balances of each token", {"200": _answer("balances", _ref("Points"))})},
    "/token/receive": {
        "post": _op("claim the daily credits of each token with none left", {"200": _answer("claims", _ref("Points"))})
    },
}

PATHS.update(
    {
        "/admin": {
            "get": _op(
                "the dashboard page" + _ADMIN_NOTE, {"200": _answer("page", _STR, media="text/html")}, auth=False
            )
        },
        "/admin/static/{filename}": {
            "get": _op(
                "the dashboard's script and style" + _ADMIN_NOTE,
                {"200": {"description": "the file"}, "404": {"description": "no such file (empty body)"}},
                auth=False,
                parameters=[{"name": "filename", "in": "path", "required": True, "schema": {"type": "string"}}],
            )
        },
        "/admin/api/accounts": {
            "get": _admin("the pool's accounts: health, credits, tasks in flight"),
            "post": _admin("add an account to the pool", "201"),
        },
        "/admin/api/accounts/{ref}": {
            "delete": _admin("remove an account (409 while it has tasks in flight)", ref=True)
        },
        "/admin/api/accounts/{ref}/check": {"post": _admin("read the account's balance now", ref=True)},
        "/admin/api/accounts/{ref}/enable": {"post": _admin("enable the account", ref=True)},
        "/admin/api/accounts/{ref}/disable": {"post": _admin("disable the account", ref=True)},
        "/admin/api/keys": {
            "get": _admin("the API keys (never their text)"),
            "post": _admin("create an API key; its text is answered this once", "201"),
        },
        "/admin/api/keys/{ref}/revoke": {"post": _admin("revoke an API key", ref=True)},
        "/admin/api/tasks": {"get": _admin("the latest tasks, newest first (?limit=)")},
    }
)

# Post-edits (api/postedits.py): upscale, outpaint, detail repair, frame interpolation.
_POSTEDIT_SUMMARIES = {
    "upscale": "upscale an image or a result of your task (mode hd: free, pro: about 1 credit)",
    "outpaint": "widen an image or a result of your task to a ratio or by side (4 images by default)",
    "repair": "detail repair of a result of your task (free; runs on the task's account)",
}
for _tool, _summary in _POSTEDIT_SUMMARIES.items():
    PATHS[f"/v1/images/{_tool}"] = {
        "post": _op(
            _summary + "; answers when the images are ready",
            {"200": _answer("the images", _ref("ImageResult"))},
            parameters=[_IDEMPOTENCY],
        )
    }
    PATHS[f"/v1/async/images/{_tool}"] = {"post": _submit(_summary + ", answered at once with the history_id")}
PATHS["/v1/videos/interpolate"] = {
    "post": _op(
        "frame interpolation of a video result of your task to 60 fps (free); answers when the clip is ready",
        {"200": _answer("the clip", _obj({"created": _INT, "data": {"type": "array"}}, ("created", "data")))},
        parameters=[_IDEMPOTENCY],
    )
}
PATHS["/v1/async/videos/interpolate"] = {
    "post": _submit("frame interpolation to 60 fps, answered at once with the history_id")
}

# The dashboard's read side (api/admin_insights.py), with answer examples (its answers are not typed here:
# openapi_examples.ADMIN_EXAMPLES).


def _admin_with(summary: str, example: Any, **kwargs: Any) -> Schema:
    operation = _admin(summary, **kwargs)
    operation["responses"]["200"]["content"][JSON]["example"] = example
    return operation


_TASK_DETAIL = _admin_with(
    "one stored task: parameters, status history, error, webhook attempts, result URLs", ADMIN_EXAMPLES["task"]
)
_TASK_DETAIL["parameters"] = [{"name": "history_id", "in": "path", "required": True, "schema": _STR}]
PATHS.update(
    {
        "/admin/api/stats": {
            "get": _admin_with(
                "totals and breakdowns of the latest ?limit= tasks and credits",
                ADMIN_EXAMPLES["stats"],
            )
        },
        "/admin/api/tasks/{history_id}": {"get": _TASK_DETAIL},
        "/admin/api/logs": {
            "get": _admin_with("the latest server log lines after ?after=SEQ, secrets masked", ADMIN_EXAMPLES["logs"])
        },
        "/admin/api/accounts/check": {"post": _admin("read every pool account's balance now, in parallel")},
    }
)

# Where agents, chat clients and gateways plug in (issue 22): model lookup, chat completions, event streams,
# the video shapes gateways speak.
_SSE_EVENT = _obj(
    {"event": _STR, "data": {"type": "string", "description": "JSON, or [DONE] at the end of a chat stream"}},
    ("data",),
    description="one Server-Sent Event",
)
_VIDEO_ID = {"name": "video_id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 128}}
PATHS.update(
    {
        "/v1/models/{model_id}": {
            "get": _op(
                "one model of /v1/models by id (aliases too); 404 MODEL_NOT_FOUND",
                {"200": _answer("the model", _obj({"id": _STR, "object": _STR, "type": _STR}, ("id", "object")))},
                auth=False,
                parameters=[{"name": "model_id", "in": "path", "required": True, "schema": _STR}],
            )
        },
        "/v1/chat/completions": {
            "post": _op(
                "image or video generation in the OpenAI chat format: the last user message's text is the prompt, "
                "its image_url parts the input images; `model` picks image or video; `stream: true` answers "
                "Server-Sent Events (chat.completion.chunk: submitted, queue, generating, links; then [DONE])",
                {
                    "200": {
                        "description": "the assistant message with Markdown links and `history_id`, or the stream",
                        "content": {
                            JSON: {"schema": _ref("ChatCompletion")},
                            "text/event-stream": {"schema": _SSE_EVENT},
                        },
                    }
                },
                parameters=[_IDEMPOTENCY],
            )
        },
        "/v1/async/tasks/{history_id}/events": {
            "get": _op(
                "the task's events as Server-Sent Events until it is final: `progress` (the task body without "
                "raw_data, on each visible change), `final` (the whole body), `error`; keep-alive comments between",
                {"200": _answer("the event stream", _SSE_EVENT, media="text/event-stream")},
                parameters=[_HISTORY_ID],
            )
        },
        "/v1/videos": {
            "post": _op(
                "OpenAI Videos create (the openai SDK's videos.create): an async video task; answers at once",
                {"200": _answer("the video object, status queued", _ref("OpenAIVideo"))},
                parameters=[_IDEMPOTENCY],
            ),
            "get": _op(
                "OpenAI Videos list: the caller's latest video tasks, newest first",
                {"200": _answer("a list page", _obj({"object": _STR, "data": {"type": "array"}}, ("object", "data")))},
            ),
        },
        "/v1/videos/{video_id}": {
            "get": _op(
                "OpenAI Videos retrieve: queued / in_progress / completed / failed, progress, error, url",
                {"200": _answer("the video object", _ref("OpenAIVideo"))},
                parameters=[_VIDEO_ID],
            )
        },
        "/v1/videos/{video_id}/content": {
            "get": _op(
                "OpenAI Videos download_content: the MP4, streamed; 409 VIDEO_NOT_READY while it runs",
                {"200": _answer("the video", _STR, media="video/mp4")},
                parameters=[_VIDEO_ID],
            )
        },
        "/v1/video/generations": {
            "post": _op(
                "new-api's unified video submit: an async video task; answers task_id at once",
                {"200": _answer("the task, status queued", _ref("GatewayVideoTask"))},
                parameters=[_IDEMPOTENCY],
            )
        },
        "/v1/video/generations/{task_id}": {
            "get": _op(
                "new-api's unified video query: status, url, error",
                {"200": _answer("the task", _ref("GatewayVideoTask"))},
                parameters=[{"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            )
        },
    }
)
_SCHEMAS.update(
    {
        "OpenAIVideo": _obj(
            {
                "id": _STR,
                "object": {"const": "video"},
                "model": _STR,
                "status": {"type": "string", "enum": ["queued", "in_progress", "completed", "failed"]},
                "progress": _INT,
                "created_at": _INT,
                "seconds": _NULLABLE_STR,
                "size": _NULLABLE_STR,
                "error": {"type": ["object", "null"]},
                "url": _NULLABLE_STR,
            },
            ("id", "object", "status", "progress", "created_at"),
        ),
        "GatewayVideoTask": _obj(
            {
                "task_id": _STR,
                "status": {"type": "string", "enum": ["queued", "in_progress", "completed", "failed"]},
                "url": _NULLABLE_STR,
                "format": _STR,
                "metadata": {"type": "object"},
                "error": {"type": ["object", "null"]},
            },
            ("task_id", "status"),
        ),
        "ChatCompletion": _obj(
            {
                "id": _STR,
                "object": {"const": "chat.completion"},
                "created": _INT,
                "model": _STR,
                "choices": {"type": "array"},
                "usage": {"type": "object"},
                "history_id": {"type": "string", "description": "the task (GET /v1/async/tasks/{history_id})"},
            },
            ("id", "object", "created", "model", "choices", "history_id"),
        ),
    }
)

# `"stream": true` on the sync endpoints: the task's Server-Sent Events instead of the JSON answer (issue 22).
for _path in ("/v1/images/generations", "/v1/images/compositions", "/v1/images/edits", "/v1/videos/generations"):
    _PATH_OK = PATHS[_path]["post"]["responses"]["200"]
    _PATH_OK["content"]["text/event-stream"] = {"schema": _SSE_EVENT}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "jimeng-server",
        "version": __version__,
        "description": "Jimeng / Dreamina AI image and video generation as an HTTP API, with async tasks and "
        "signed webhooks. Tokens: `Authorization: Bearer [proxy@][us-|hk-|jp-|sg-]sessionid[,...]`.",
    },
    "paths": PATHS,
    "components": {
        "schemas": _SCHEMAS,
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "an API key (jk_...), or one or more session ids, comma separated",
            },
            "admin": {"type": "http", "scheme": "bearer", "description": "the admin key ([admin] key)"},
        },
    },
}


def document(aliases: Mapping[str, str], *, strict_size: bool = False) -> dict[str, Any]:
    """The document for an app with these model aliases in force (and `[compat] strict_size`, which refuses
    `size`): `DOCUMENT` with every request body rendered from its declaration (`fields.REQUEST_BODIES`) and an
    example for every request and answer."""
    doc: dict[str, Any] = json.loads(_document_text(tuple(sorted(aliases.items())), strict_size, _catalogue()))
    return doc


def _catalogue() -> tuple[str, ...]:
    return (*catalog.IMAGE_MODELS, *catalog.VIDEO_MODELS)


@functools.lru_cache(maxsize=8)
def _document_text(aliases: tuple[tuple[str, str], ...], strict_size: bool, models: tuple[str, ...]) -> str:
    """`document` as JSON text, once per app setting and model catalogue (`models`: the cache key only)."""
    doc = copy.deepcopy(DOCUMENT)
    for path, route in REQUEST_BODIES.items():
        forms = {JSON: route.json, MULTIPART: route.form}
        content = {
            media: {"schema": body.schema(form=media == MULTIPART, model=route.model, aliases=dict(aliases))}
            for media, body in forms.items()
            if body is not None
        }
        if strict_size and route.model in ("image", "any"):  # the image parser refuses `size` then
            for media in content.values():
                media["schema"]["properties"].pop("size", None)
        doc["paths"][path]["post"]["requestBody"] = {"required": True, "content": content}
    for path, query in QUERY_PARAMETERS.items():
        get = doc["paths"][path]["get"]
        get["parameters"] = get.get("parameters", []) + query_parameters(query)
    add_examples(doc)  # a request and an answer example for every operation (api/openapi_examples.py)
    return json.dumps(doc)


_ASSETS = {"docs.js": "text/javascript", "docs.css": "text/css"}


@routes.get("/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document (with the app's model aliases)."""
    config = request.app[CONFIG]
    aliases = tuple(sorted(config.models.all_aliases.items()))
    text = _document_text(aliases, config.compat.strict_size, _catalogue())
    return web.Response(text=text, content_type="application/json")


@routes.get("/docs")
async def docs(request: web.Request) -> web.Response:
    """The document rendered in a browser (script and style served from the package)."""
    return web.Response(text=_asset("docs.html"), content_type="text/html")


@routes.get("/docs/{asset}")
async def docs_asset(request: web.Request) -> web.Response:
    """The /docs page's script and style."""
    name = request.match_info["asset"]
    if name not in _ASSETS:
        raise web.HTTPNotFound()
    return web.Response(text=_asset(name), content_type=_ASSETS[name])


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")
