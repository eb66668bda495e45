"""Examples for the OpenAPI document (issue 24): every request body and every answer gets an `example` made from
its schema, so `/docs` shows (and can send) a request and an answer for each operation, also for routes added
later without hand-written examples.

An example is built from the schema alone: a schema's own `examples`/`example`, else `const`, `default`, the
first `enum` value, else a value of its type (a field name picks a telling one: a prompt, a URL, a history id).
Request bodies hold their required fields (and `model`, `prompt`; the first field when none is required);
answers hold every field. `$ref`s are followed through
`components.schemas` (a schema met again on the same branch ends the branch). Pure functions; no I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

Schema = Mapping[str, Any]

NAMED: dict[str, Any] = {
    "prompt": "a cat in the snow",
    "negative_prompt": "blurry",
    "history_id": "4825718293746",
    "history_ids": ["4825718293746"],
    "url": "https://example.com/cat.png",
    "callback_url": "https://hooks.example.com/jimeng",
    "token": "YOUR_SESSIONID",
    "name": "team-a",
    "size": "1024x1024",
    "message": "what happened, in words",
    "code": "INVALID_PARAMETER",
}
"""Telling values for fields of these names (when their schema allows a value of that type)."""

REQUEST_EXTRAS = ("model", "prompt")
"""Optional request fields shown anyway (the first thing a caller changes)."""

_COUNTS = {"tasks": 3, "done": 2, "failed": 1, "processing": 0}
_STATS = {
    "window": {"limit": 1000, "tasks": 3, "since": 1764979200.0},
    "totals": {**_COUNTS, "items": 8, "credits_spent": 12, "credits_left": 768, "accounts": 3, "keys_active": 1},
    "per_day": [{"name": "2026-12-06", **_COUNTS}],
    "per_model": [{"name": "jimeng-4.5", **_COUNTS}],
    "per_key": [{"name": "team-a", **_COUNTS}],
    "per_account": [{"name": "alice-cn", **_COUNTS}],
    "failure_codes": [{"code": "CONTENT_REJECTED", "tasks": 1}],
    "credits": {
        "per_key": [{"name": "team-a", "credits_spent": 12}],
        "per_account": [{"name": "alice-cn", "credits": 768, "credits_at": 1764979260.0}],
    },
}
_TASK = {
    "history_id": "4825718293746",
    "type": "image",
    "status": 30,
    "status_name": "failed",
    "parameters": {"model": "jimeng-4.5", "type": "image", "input_images": None, "callback_url": None},
    "owner": "key team-a",
    "key": "team-a",
    "account": "alice-cn",
    "status_history": [
        {"at": 1764979200.0, "status": "submitted", "note": "image task"},
        {"at": 1764979212.0, "status": "failed", "note": "CONTENT_REJECTED"},
    ],
    "error": {"code": "CONTENT_REJECTED", "message": "the upstream's content review blocked the task"},
    "fail_code": 2038,
    "results": [],
    "webhook": {"history_id": "4825718293746", "callback_url": None, "events": [], "deliveries": []},
}
_LOGS = {
    "data": [{"seq": 41, "at": 1764979212.5, "level": "WARNING", "line": "... Authorization: Bearer *** refused"}],
    "last": 41,
}
ADMIN_EXAMPLES: dict[str, Any] = {"stats": _STATS, "task": _TASK, "logs": _LOGS}
"""Answer examples of the dashboard's read side (`/admin/api/stats`, `/admin/api/tasks/{id}`, `/admin/api/logs`),
whose answers the document does not type."""

TEXT_EXAMPLES = {"text/html": "<!doctype html>…"}
MAX_DEPTH = 8


def _resolve(
    schema: Schema, components: Mapping[str, Schema], seen: frozenset[str]
) -> tuple[Schema | None, frozenset[str]]:
    """The schema a `$ref` chain ends at (None when it loops back or names no component)."""
    while isinstance(schema.get("$ref"), str):
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        if name in seen or name not in components:
            return None, seen
        seen = seen | {name}
        schema = components[name]
    return schema, seen


def _fits(value: Any, kind: str) -> bool:
    checks = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }
    return checks.get(kind, lambda v: True)(value)


def example(
    schema: Schema,
    components: Mapping[str, Schema],
    *,
    name: str = "",
    request: bool = False,
    seen: frozenset[str] = frozenset(),
    depth: int = 0,
) -> Any:
    """An example value of `schema` (a field called `name`); `request` keeps objects to their required fields
    (and `model`)."""
    resolved, seen = _resolve(schema, components, seen)
    if resolved is None or depth > MAX_DEPTH:
        return {}  # a branch that loops back (or runs too deep) ends in an empty object
    schema = resolved
    for key in ("examples", "example"):
        if key in schema:
            found = schema[key]
            return copy.deepcopy(found[0] if key == "examples" and isinstance(found, list) and found else found)
    if "const" in schema:
        return schema["const"]
    if "default" in schema:
        return copy.deepcopy(schema["default"])
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("oneOf", "anyOf"):
        if schema.get(key):
            options = [s for s in schema[key] if (_resolve(s, components, seen)[0] or {}).get("type") != "null"]
            first = (options or schema[key])[0]
            return example(first, components, name=name, request=request, seen=seen, depth=depth + 1)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = example(part, components, name=name, request=request, seen=seen, depth=depth + 1)
            if isinstance(value, dict):
                merged.update(value)
        return merged
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if name in NAMED and _fits(NAMED[name], kind):
        return copy.deepcopy(NAMED[name])
    if kind == "object":
        properties: Mapping[str, Schema] = schema.get("properties", {})
        required = set(schema.get("required", ()))
        keep = [p for p in properties if not request or p in required or p in REQUEST_EXTRAS]
        if request and not required and properties:  # all optional (e.g. one of two): show the first
            keep = keep or [next(iter(properties))]
        return {
            p: example(properties[p], components, name=p, request=request, seen=seen, depth=depth + 1) for p in keep
        }
    if kind == "array":
        items = schema.get("items", {})
        count = max(1, int(schema.get("minItems", 1)))
        return [example(items, components, name=name, request=request, seen=seen, depth=depth + 1)] * count
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return schema.get("minimum", 0.5)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    if schema.get("format") == "binary":
        return "(file contents)"
    if schema.get("format") == "uri":
        return NAMED["url"]
    return "string"


def add_examples(document: dict[str, Any]) -> None:
    """Give every request body and answer media of `document` (an OpenAPI 3.1 dict, changed in place) an
    `example` when it has neither `example` nor `examples`."""
    components = document.get("components", {}).get("schemas", {})
    for item in document.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
                _fill(media, media_type, components, request=True)
            for answer in operation.get("responses", {}).values():
                for media_type, media in answer.get("content", {}).items():
                    _fill(media, media_type, components, request=False)


def _fill(media: dict[str, Any], media_type: str, components: Mapping[str, Schema], *, request: bool) -> None:
    if "example" in media or "examples" in media:
        return
    if media_type in TEXT_EXAMPLES:
        media["example"] = TEXT_EXAMPLES[media_type]
        return
    media["example"] = example(media.get("schema", {}), components, request=request)
