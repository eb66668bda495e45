"""One declaration per request field: name, type, default, bounds or choices, aliases and doc.

The parsers (`params.py`, `video_params.py`, `postedits.py`, `chat_params.py`, `gateway_params.py`, the admin
bodies) read a field with `Field.read`, which walks its declaration (the value readers below keep one message
and code per kind of mistake), or at least by its declared name, and `openapi.py` renders the same declarations
as JSON Schema (`Body.schema`). `REQUEST_BODIES` names the body of every route that takes one and
`QUERY_PARAMETERS` the query of every GET route that takes one, so the document and the parsers cannot drift
apart (tests/api/test_request_fields.py walks both). Limits other layers own (input images per request, ids per
query, the note of an account, a key's limits) are imported from there, not repeated.

A field whose value depends on other fields (`model`, a video `resolution` or `duration`) is declared here
for its name, type and doc; its parser applies the rule. `model` is rendered per app (`model_schema`): the
catalogue's names and the aliases in force, plus, for images, the raw upstream key shape.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..config import TRANSPORTS
from ..errors import BadRequest
from ..integers import MAX_DIGITS, NumberError, parse_int
from ..services.account_registry import NOTE_MAX
from ..services.apikeys import DEFAULT_MAX_IN_FLIGHT, DEFAULT_RATE_PER_MINUTE, MAX_LIMIT
from ..services.compositions import MAX_INPUT_IMAGES
from ..services.task_queries import MAX_BATCH, MAX_WAIT
from ..upstream import catalog
from ..upstream.regions import Region

Schema = dict[str, Any]
Kind = Literal["string", "boolean", "number", "integer", "array", "file", "any"]
Where = Literal["both", "json", "form"]

RESPONSE_FORMATS = ("url", "b64_json")
MAX_PROMPT_CHARS = 8000
VIDEO_RATIOS = ("1:1", "4:3", "3:4", "16:9", "9:16", "21:9")
VIDEO_RESOLUTIONS = tuple(dict.fromkeys(r for name in catalog.VIDEO_MODELS for r in catalog.video_resolutions(name)))
"""Every video resolution some model takes (each model's own list: `catalog.video_resolutions`)."""
FRAME_MODE = "first_last_frames"
OMNI_MODE = "omni_reference"
MAX_INDEX = 99
MAX_OUTPAINT = 4
SIDES = ("top", "bottom", "left", "right")
MAX_FRAMES = 2
"""Frame images of a (non-omni) video: the first, and the last."""


def _bad(name: str, message: str) -> BadRequest:
    return BadRequest(f"'{name}' {message}", code="INVALID_PARAMETER")


# --- value readers: JSON values or multipart strings; one message per kind of mistake -------------------------


def get_str(data: Mapping[str, Any], name: str, default: str | None = None, *, required: bool = False) -> str | None:
    """A string field; numbers are refused rather than silently converted."""
    value = data.get(name)
    if value is None or (isinstance(value, str) and not value.strip() and not required):
        if required:
            raise BadRequest(f"'{name}' is required", code="MISSING_PARAMETER")
        return default
    if not isinstance(value, str):
        raise _bad(name, f"must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise BadRequest(f"'{name}' must not be empty", code="MISSING_PARAMETER")
    return value


def get_bool(data: Mapping[str, Any], name: str, default: bool) -> bool:
    """A boolean field; multipart strings "true"/"false"/"1"/"0" are accepted."""
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "false", "0"):
        return value.strip().lower() in ("true", "1")
    raise _bad(name, f"must be true or false, got {value!r}")


def get_float(data: Mapping[str, Any], name: str, default: float, *, low: float, high: float) -> float:
    """A finite number field within [low, high]; multipart strings are parsed as floats."""
    value = data.get(name)
    if value is None:
        return default
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | str)
        or (isinstance(value, str) and not value.isascii())
    ):
        raise _bad(name, "must be a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise _bad(name, f"must be a number between {low:g} and {high:g}") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise _bad(name, f"must be a number between {low:g} and {high:g}")
    return number


def get_int(data: Mapping[str, Any], name: str, *, low: int, high: int) -> int:
    """A whole number field in [low, high] (`integers.parse_int`: JSON integers and integral floats, multipart
    strings of ASCII digits); 400 INVALID_PARAMETER naming the field otherwise."""
    try:
        return parse_int(data.get(name), name, low=low, high=high, floats=True)
    except NumberError as exc:
        raise BadRequest(str(exc), code="INVALID_PARAMETER") from None


def get_count(data: Mapping[str, Any], name: str, *, high: int) -> int | None:
    """A whole number in [1, high], or None when absent (see `get_int`)."""
    value = data.get(name)
    if value is None or value == "":
        return None
    return get_int(data, name, low=1, high=high)


_SIDE = r"((?=[0-9]{1,5}(?![0-9]))0*[1-9][0-9]*)"  # 1 to 5 ASCII digits, not all 0 (\d takes any script)
SIZE_PATTERN = rf"^\s*{_SIDE}\s*[xX×*]\s*{_SIDE}\s*$"
"""A size "WIDTHxHEIGHT" in pixels (`x`, `X`, `×` or `*` between); what `get_pixels` takes and the documented
`pattern` of the fields it reads."""
_SIZE = re.compile(SIZE_PATTERN)
IMAGE_SIZE_PATTERN = rf"^\s*(?:[aA][uU][tT][oO]|{_SIDE}\s*[xX×*]\s*{_SIDE})?\s*$"
"""An image `size`: WIDTHxHEIGHT, or "auto" (or blank) for none (`openai_compat.size_shape`)."""


def get_pixels(value: Any, name: str, hint: str) -> tuple[int, int]:
    """(width, height) of a size "WIDTHxHEIGHT" (`SIZE_PATTERN`); 400 naming the field and `hint` (what else it
    takes, an example) otherwise."""
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise _bad(name, f"must be WIDTHxHEIGHT in pixels ({hint}), got {value!r}")
    return int(match.group(1)), int(match.group(2))


HTTP_URL_PATTERN = "^\\s*[hH][tT][tT][pP][sS]?://"
"""What `is_http_url` takes, as documented (`pattern`)."""


def is_http_url(value: Any) -> bool:
    """Whether `value` is a string naming an http(s) URL (case and surrounding blanks aside); where a URL input
    must be fetched rather than decoded (video frames), the parsers refuse anything else naming their field."""
    return isinstance(value, str) and value.strip().lower().startswith(("http://", "https://"))


def get_choice(data: Mapping[str, Any], name: str, default: str, choices: tuple[str, ...]) -> str:
    """A string field among `choices` (`default` when absent or blank)."""
    value = get_str(data, name, default)
    assert value is not None
    if value not in choices:
        raise _bad(name, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


# --- declarations -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """One request field. `read` parses it from a body mapping (the first of `name`, `aliases` present wins);
    `schema` renders it. `extra` adds schema keywords the kind cannot say (items, format, oneOf); `numbered`
    also accepts `name_1`, `name_2`, ... (rendered as a pattern); `where` limits it to JSON or multipart."""

    name: str
    kind: Kind
    doc: str = ""
    default: Any = None
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    aliases: tuple[str, ...] = ()
    required: bool = False
    max_length: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    numbered: bool = False
    where: Where = "both"

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    def given(self, data: Mapping[str, Any]) -> str:
        """The name the body uses for this field: the first of `names` present (`name` when none is)."""
        if not self.aliases:
            return self.name
        return next((n for n in self.names if self._present(data, n)), self.name)

    def sent(self, data: Mapping[str, Any]) -> bool:
        """Whether the body carries this field (under any of its names) with a value: absent, null and "" are
        not sent (the declared default applies)."""
        return any(self._present(data, n) for n in self.names)

    @staticmethod
    def _present(data: Mapping[str, Any], name: str) -> bool:
        return data.get(name) not in (None, "")

    def read(self, data: Mapping[str, Any], *, default: Any = None) -> Any:
        """The field's value (`default`, else the declared default, when absent); 400 naming the field as sent
        when it is invalid."""
        fallback = self.default if default is None else default
        name = self.given(data)
        if self.kind == "boolean":
            return fallback if data.get(name) is None else get_bool(data, name, bool(fallback))
        if self.kind == "number":
            assert self.low is not None and self.high is not None
            return get_float(data, name, fallback, low=self.low, high=self.high)
        if self.kind == "integer":
            if data.get(name) in (None, ""):
                return fallback
            assert self.low is not None and self.high is not None
            return get_int(data, name, low=int(self.low), high=int(self.high))
        if self.kind != "string":
            return data.get(name)
        if self.choices:
            if fallback is None and get_str(data, name) is None:
                return None
            return get_choice(data, name, fallback, self.choices)
        value = get_str(data, name, fallback, required=self.required)
        if value is not None and self.max_length is not None and len(value) > self.max_length:
            raise _bad(name, f"is too long ({len(value)} characters; at most {self.max_length})")
        return value

    def schema(self) -> Schema:
        """The field's value as JSON Schema."""
        kinds: dict[str, Schema] = {
            "array": {"type": "array"},
            "file": {"type": "string", "format": "binary"},
            "any": {},
        }
        schema: Schema = dict(kinds.get(self.kind, {"type": self.kind}))
        for key, value in (
            ("enum", list(self.choices) or None),
            ("default", self.default),
            ("minimum", self.low),
            ("maximum", self.high),
            ("minLength", 1 if self.required and self.kind == "string" else None),
            ("maxLength", self.max_length),
            ("description", self.doc or None),
        ):
            if value is not None:
                schema[key] = value
        return schema | dict(self.extra)


@dataclass(frozen=True, slots=True)
class Body:
    """The fields of one request body, in order. `refused` names fields a parser reads only to refuse them
    with a hint (e.g. `width`); `description` is the body's note."""

    fields: tuple[Field, ...]
    refused: tuple[str, ...] = ()
    description: str = ""

    def __add__(self, other: Body | Field) -> Body:
        more = other.fields if isinstance(other, Body) else (other,)
        refused = self.refused + (other.refused if isinstance(other, Body) else ())
        added = {f.name for f in more}
        kept = tuple(f for f in self.fields if f.name not in added)  # a later declaration replaces an earlier one
        return Body(kept + more, refused, self.description or (other.description if isinstance(other, Body) else ""))

    def __getitem__(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    def only(self, names: Iterable[str]) -> Body:
        wanted = tuple(names)
        return Body(tuple(f for f in self.fields if f.name in wanted))

    def names(self, *, form: bool = False) -> set[str]:
        """Every name a body of this shape may carry (aliases included; numbered fields by their base name)."""
        return {n for f in self._of(form) for n in f.names}

    def _of(self, form: bool) -> list[Field]:
        return [f for f in self.fields if f.where == "both" or f.where == ("form" if form else "json")]

    def schema(
        self, *, form: bool = False, model: str | None = None, aliases: Mapping[str, str] | None = None
    ) -> Schema:
        """The body as a JSON Schema object; with `model` (a kind for `model_schema`) the `model` field lists
        what the parsers accept under `aliases`."""
        properties: Schema = {}
        patterns: Schema = {}
        for f in self._of(form):
            rendered = f.schema()
            if f.name == "model" and model is not None:
                rendered = model_schema(model, aliases or {}, f.default)
            properties[f.name] = rendered
            for alias in f.aliases:
                properties[alias] = rendered | {"description": f"the same as `{f.name}`"}
            if f.numbered:
                patterns[f"^{re.escape(f.name)}_[1-9][0-9]{{0,2}}$"] = rendered
        schema: Schema = {"type": "object", "properties": properties}
        if patterns:
            schema["patternProperties"] = patterns
        required = [f.name for f in self._of(form) if f.required]
        if required:
            schema["required"] = required
        if self.description:
            schema["description"] = self.description
        return schema


def model_schema(kind: str, aliases: Mapping[str, str], default: str) -> Schema:
    """The `model` field of an image ("image"), video ("video") or chat ("any") body: a catalogue name of that
    kind, an alias in force that maps to one, or a raw upstream model key (videos: taken when live discovery
    lists it); exactly what the parsers accept."""
    names = {
        "image": list(catalog.IMAGE_MODELS),
        "video": list(catalog.VIDEO_MODELS),
        "any": [*catalog.IMAGE_MODELS, *catalog.VIDEO_MODELS],
    }[kind]
    accepted = names + sorted(a for a, target in aliases.items() if target in names and a not in names)
    choices: list[Schema] = [{"enum": accepted}]
    doc = "a catalogue model (GET /v1/models) or an alias of one ([models] aliases)"
    if kind != "video":
        choices.append({"pattern": f"^(?:{catalog.KEY_PATTERN})$", "description": "a raw upstream model key"})
        doc += ", or a raw upstream model key such as high_aes_general_v60"
    else:  # taken when the caller's region's live discovery lists it (else 400 UNKNOWN_MODEL)
        choices.append({"pattern": f"^(?:{catalog.KEY_PATTERN})$", "description": "a key live discovery lists"})
        doc += ", or a video model key live discovery lists (GET /v1/models, source discovery)"
    return {"type": "string", "default": default, "description": doc, "anyOf": choices}


_IMAGE_INPUT: Schema = {
    "oneOf": [
        {"type": "string", "description": "an http(s) URL or a data:image/...;base64 URI"},
        {"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]},
    ]
}
_FILES: Schema = {"items": {"type": "string", "format": "binary"}}
_URI = {"format": "uri"}

MAX_CALLBACK_URL_LENGTH = 2048
CALLBACK = Field(
    "callback_url",
    "string",
    "async only: the task's final event is POSTed here (signed, Standard Webhooks)",
    max_length=MAX_CALLBACK_URL_LENGTH,
    extra={"format": "uri"},
)
"""Read by `callbacks.py` (its own checks and message: an http(s) URL the address guard takes)."""
STREAM = Field("stream", "boolean", "true: answer the task's events (text/event-stream)", default=False)
"""Read by `task_stream.wants_stream` (sync submits)."""
RESPONSE_FORMAT = Field("response_format", "string", default="url", choices=RESPONSE_FORMATS)

IMAGE = Body(
    (
        Field("model", "string", default=catalog.DEFAULT_IMAGE_MODEL),
        Field("prompt", "string", required=True, max_length=MAX_PROMPT_CHARS),
        Field("negative_prompt", "string", default="", max_length=MAX_PROMPT_CHARS),
        Field("ratio", "string", default=catalog.DEFAULT_RATIO, choices=catalog.RATIOS),
        Field(
            "resolution",
            "string",
            "one the model offers; without it, the tier `size` asks for (or the default) or the model's next one",
            default=catalog.DEFAULT_RESOLUTION,
            choices=catalog.RESOLUTIONS,
        ),
        Field("intelligent_ratio", "boolean", default=False),
        Field("sample_strength", "number", default=0.5, low=0.0, high=1.0),
        RESPONSE_FORMAT,
        Field("multi_image", "boolean", "the upstream makes as many images as the prompt asks for (e.g. '4张')"),
        Field("n", "integer", "images to make", low=1, high=catalog.MAX_IMAGE_COUNT),
        Field(
            "size",
            "string",
            "OpenAI-style WxH (e.g. 1024x1024) or auto, mapped to ratio/resolution",
            extra={"pattern": IMAGE_SIZE_PATTERN},
        ),
    ),
    refused=("width", "height"),
)
IMAGES = Body(
    (
        Field(
            "images",
            "array",
            required=True,
            extra={"items": _IMAGE_INPUT, "minItems": 1, "maxItems": MAX_INPUT_IMAGES},
            where="json",
        ),
        Field(
            "images",
            "array",
            required=True,
            extra={**_FILES, "minItems": 1, "maxItems": MAX_INPUT_IMAGES},
            where="form",
        ),
    )
)
_ONE_OR_MORE: Schema = {
    "anyOf": [_IMAGE_INPUT, {"type": "array", "items": _IMAGE_INPUT, "maxItems": MAX_INPUT_IMAGES}]
}
EDIT = Body(
    (
        Field("image", "any", "the image(s) to edit: URLs, data URIs or {url}", extra=_ONE_OR_MORE, where="json"),
        Field("image[]", "any", "the openai SDK's list of images", extra=_ONE_OR_MORE, where="json"),
        Field(
            "images",
            "array",
            "as in compositions",
            extra={"items": _IMAGE_INPUT, "maxItems": MAX_INPUT_IMAGES},
            where="json",
        ),
        Field(
            "image",
            "array",
            "the images to edit (one file, or repeated)",
            extra={**_FILES, "maxItems": MAX_INPUT_IMAGES},
            where="form",
        ),
        Field(
            "image[]",
            "array",
            "the openai SDK's list of images",
            extra={**_FILES, "maxItems": MAX_INPUT_IMAGES},
            where="form",
        ),
    ),
    refused=("mask",),
    description="OpenAI's image edit form; `mask` is refused",
)

VIDEO = Body(
    (
        Field("model", "string", default=catalog.DEFAULT_VIDEO_MODEL),
        Field("prompt", "string", "required for text-to-video", default="", max_length=MAX_PROMPT_CHARS),
        Field("ratio", "string", default="1:1", choices=VIDEO_RATIOS),
        Field(
            "resolution",
            "string",
            "one the model offers (GET /v1/models lists each model's); its first by default",
            choices=VIDEO_RESOLUTIONS,
        ),
        Field("duration", "integer", "seconds, one the model allows (GET /v1/models); its default when absent"),
        Field(
            "function_mode", "string", default=FRAME_MODE, choices=(FRAME_MODE, OMNI_MODE), aliases=("functionMode",)
        ),
        RESPONSE_FORMAT,
        Field(
            "file_paths",
            "array",
            "first/last frame image URLs (omni_reference: image URLs)",
            aliases=("filePaths",),
            extra={"items": {"type": "string", "pattern": HTTP_URL_PATTERN, **_URI}},
        ),
    )
)
VIDEO_FILES = Body(
    (
        Field(
            "image_file", "array", "frame images, or omni_reference images", extra=_FILES, numbered=True, where="form"
        ),
        Field("video_file", "array", "omni_reference videos", extra=_FILES, numbered=True, where="form"),
        Field("audio_file", "array", "omni_reference audio (.mp3, .wav)", extra=_FILES, numbered=True, where="form"),
    )
)

SOURCE_INDEX = Field("index", "integer", "which result of the task (from 0)", default=0, low=0, high=MAX_INDEX)
_SOURCE = Body(
    (
        Field("history_id", "string", "one of your own finished tasks"),
        SOURCE_INDEX,
    )
)
_IMAGE_SOURCE = (
    Body(
        (
            Field(
                "image",
                "any",
                "instead of history_id: a URL, a data:image/...;base64 URI or {url}",
                extra={"oneOf": [{"type": "string"}, {"type": "object"}]},
                where="json",
            ),
            Field(
                "image",
                "any",
                "instead of history_id: a file, a URL or a data:image/...;base64 URI",
                extra={"oneOf": [{"type": "string"}, {"type": "string", "format": "binary"}]},
                where="form",
            ),
        )
    )
    + _SOURCE
)
UPSCALE = _IMAGE_SOURCE + Field("mode", "string", "hd: free, pro: about 1 credit", default="hd", choices=("hd", "pro"))
OUTPAINT = _IMAGE_SOURCE + Body(
    (
        Field("ratio", "string", "the ratio to widen to (instead of the sides)", choices=catalog.RATIOS),
        *(Field(side, "number", "fraction of the side to add", low=0.0, high=3.0) for side in SIDES),
        Field("n", "integer", "images to make (default 4)", low=1, high=MAX_OUTPAINT),
    )
)
_TASK_SOURCE = _SOURCE + Body(
    (Field("history_id", "string", "one of your own finished tasks", required=True),),
    refused=("image",),  # the upstream needs the picture in the task's account
)
REPAIR = _TASK_SOURCE
INTERPOLATE = _TASK_SOURCE + Body(
    (
        Field("fps", "integer", "the one rate the upstream offers", choices=(60,)),
        Field("response_format", "string", default="url", choices=("url",)),
    )
)

_CONTENT_PART: Schema = {
    "anyOf": [
        {
            "type": "object",
            "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
            "required": ["type", "text"],
        },
        {
            "type": "object",
            "properties": {
                "type": {"const": "image_url"},
                "image_url": {"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]},
            },
            "required": ["type", "image_url"],
        },
    ]
}
_MESSAGE: Schema = {
    "type": "object",
    "properties": {
        "role": {"type": "string", "enum": ["system", "user", "assistant"]},
        "content": {"anyOf": [{"type": "string", "minLength": 1}, {"type": "array", "items": _CONTENT_PART}]},
    },
    "required": ["role", "content"],
}
CHAT_IMAGE_OPTIONS = ("n", "size", "ratio", "resolution", "sample_strength", "negative_prompt", "intelligent_ratio")
"""The chat body's keys passed on to the image parser (`params.image_params`), which validates them."""
CHAT_VIDEO_OPTIONS = ("duration", "ratio", "resolution")
"""The chat body's keys passed on to the video parser (`video_params.video_params`), which validates them."""
CHAT_STREAM_OPTIONS = ("stream", "stream_options")
"""The chat body's streaming switches: left out of the Idempotency-Key's request hash (a retry may switch
between streamed and whole answers)."""
CHAT = (
    Body(
        (
            Field("model", "string", "an image or video model or alias", default=catalog.DEFAULT_IMAGE_MODEL),
            Field(
                "messages",
                "array",
                "the last user message's text is the prompt",
                required=True,
                extra={"minItems": 1, "items": _MESSAGE},
            ),
            Field("stream", "boolean", "true: chat.completion.chunk events, then [DONE]", default=False),
            Field("stream_options", "any", "accepted and ignored", extra={"type": "object"}),
        )
    )
    + IMAGE.only(CHAT_IMAGE_OPTIONS)
    + VIDEO.only(("duration",))
    + Body(
        (
            Field(
                "ratio",
                "string",
                "an image ratio, or a video ratio for a video model",
                choices=tuple(dict.fromkeys(catalog.RATIOS + VIDEO_RATIOS)),
            ),
            Field(
                "resolution",
                "string",
                "an image tier, or a video resolution for a video model",
                choices=tuple(dict.fromkeys(catalog.RESOLUTIONS + VIDEO_RESOLUTIONS)),
            ),
            CALLBACK,
        )
    )
)
MAX_SHAPE_SECONDS = 600
MAX_PIXELS = 99_999
_SECONDS: Schema = {
    "type": ["number", "string"],
    "pattern": r"^\s*(?:(?:[1-9][0-9]?|[1-5][0-9]{2})(?:\.[0-9]+)?|600(?:\.0+)?)\s*$",
}
"""Seconds as a number or a decimal string from 1 to `MAX_SHAPE_SECONDS` (the `openai` SDK sends "8")."""
_WXH: Schema = {"pattern": SIZE_PATTERN}
_HTTP_URL: Schema = {"type": "string", "pattern": HTTP_URL_PATTERN}
_FRAME_URLS: Schema = {
    "anyOf": [_HTTP_URL, {"type": "array", "items": _HTTP_URL, "minItems": 1, "maxItems": MAX_FRAMES}]
}
"""The first frame's http(s) URL, or the first and last frame's."""
OPENAI_VIDEO = Body(
    (
        Field("prompt", "string", "the video to make", required=True, max_length=MAX_PROMPT_CHARS),
        Field("model", "string", "a video model or alias", default="sora-2"),
        Field(
            "seconds",
            "number",
            "mapped to the model's nearest allowed duration",
            low=1,
            high=MAX_SHAPE_SECONDS,
            extra=_SECONDS,
        ),
        Field("size", "string", "WxH in pixels: the nearest ratio and covering resolution", extra=_WXH),
        Field(
            "input_reference",
            "any",
            "the first frame: an http(s) URL or {image_url}",
            extra={"anyOf": [_HTTP_URL, {"type": "object", "properties": {"image_url": _HTTP_URL, "url": _HTTP_URL}}]},
            where="json",
        ),
        Field(
            "input_reference",
            "any",
            "the first frame: an uploaded image or an http(s) URL",
            extra={"anyOf": [_HTTP_URL, {"type": "string", "format": "binary"}]},
            where="form",
        ),
        CALLBACK,
    )
)
GATEWAY_VIDEO = Body(
    (
        Field("model", "string", "a video model or alias", default=catalog.DEFAULT_VIDEO_MODEL),
        Field("prompt", "string", "required without an image", max_length=MAX_PROMPT_CHARS),
        Field(
            "duration",
            "number",
            "seconds: the model's nearest allowed duration",
            low=1,
            high=MAX_SHAPE_SECONDS,
            extra=_SECONDS,
        ),
        Field("width", "integer", "pixels (with height): the nearest ratio and covering size", low=1, high=MAX_PIXELS),
        Field("height", "integer", "pixels (with width)", low=1, high=MAX_PIXELS),
        Field("size", "string", "WxH in pixels, instead of width and height", extra=_WXH),
        Field("ratio", "string", "overrides the ratio from the size", choices=VIDEO_RATIOS),
        Field("resolution", "string", "overrides the resolution from the size", choices=VIDEO_RESOLUTIONS),
        Field("image", "any", "the first frame (or the first and last)", aliases=("image_url",), extra=_FRAME_URLS),
        CALLBACK,
    )
)
TOKEN_CHECK = Body((Field("token", "string", required=True),))
MAX_HISTORY_ID_LENGTH = 128
_HISTORY_ID: Schema = {
    "type": ["string", "integer"],
    "minimum": 0,
    "pattern": rf"^\s*[!-~]{{1,{MAX_HISTORY_ID_LENGTH}}}\s*$",
}
"""A history id: a whole number, or up to `MAX_HISTORY_ID_LENGTH` printable ASCII characters without spaces."""
TASK_QUERY = Body(
    (
        Field("history_id", "any", "one task", extra=_HISTORY_ID),
        Field(
            "history_ids",
            "array",
            "several tasks (duplicates collapse)",
            extra={"items": _HISTORY_ID, "minItems": 1, "maxItems": MAX_BATCH},
        ),
    ),
    description=f"exactly one of history_id (one task) or history_ids (up to {MAX_BATCH})",
)
_ADMIN_NAME = "1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit), not only digits"
ADMIN_ACCOUNT = Body(
    (
        Field("name", "string", _ADMIN_NAME, required=True),
        Field("token", "string", "a session id (`[proxy@][us-]sessionid`); or `cookies`"),
        Field(
            "cookies",
            "string",
            "instead of `token`: a browser cookie jar (a Cookie header, Netscape cookies.txt or an extension's JSON "
            "export)",
        ),
        Field("region", "string", "the cookie jar's site (default cn)", choices=tuple(Region)),
        Field("user_agent", "string", "the User-Agent of the browser the cookie jar comes from"),
        Field("transport", "string", "how this account's calls are sent ([upstream] transport)", choices=TRANSPORTS),
        Field("proxy", "string", "this account's proxy (http(s):// or socks5://)"),
        Field("note", "string", default="", extra={"maxLength": NOTE_MAX}),
    ),
    description="exactly one of token (a session id) or cookies (a browser cookie jar)",
)
ADMIN_KEY = Body(
    (
        Field("name", "string", _ADMIN_NAME, required=True),
        Field(
            "accounts",
            "array",
            "the pool accounts (names or ids) the key may use; all when absent",
            extra={"items": {"type": ["string", "integer"]}},
        ),
        Field("rate_per_minute", "integer", default=DEFAULT_RATE_PER_MINUTE, low=1, high=MAX_LIMIT),
        Field("max_in_flight", "integer", default=DEFAULT_MAX_IN_FLIGHT, low=1, high=MAX_LIMIT),
    )
)


TASK_WAIT = Body(
    (Field("wait", "number", "seconds to long-poll for a final status", default=0.0, low=0.0, high=MAX_WAIT),)
)
VIDEO_LIST = Body(
    (
        Field("limit", "integer", "how many of the latest video tasks", default=20, low=1, high=100),
        Field("order", "string", "asc: the same page, oldest first", default="desc", choices=("asc", "desc")),
    )
)
VIDEO_CONTENT = Body((Field("variant", "string", "only the video itself", default="video", choices=("video",)),))
ADMIN_TASKS = Body((Field("limit", "integer", "how many of the latest tasks", default=50, low=1, high=200),))
ADMIN_STATS = Body((Field("limit", "integer", "how many of the latest tasks", default=1000, low=1, high=5000),))
ADMIN_LOGS = Body(
    (Field("after", "integer", "the last line seen (0: all)", default=0, low=0, high=10**MAX_DIGITS - 1),)
)

QUERY_PARAMETERS: dict[str, Body] = {
    "/v1/async/tasks/{history_id}": TASK_WAIT,
    "/v1/videos": VIDEO_LIST,
    "/v1/videos/{video_id}/content": VIDEO_CONTENT,
    "/admin/api/tasks": ADMIN_TASKS,
    "/admin/api/stats": ADMIN_STATS,
    "/admin/api/logs": ADMIN_LOGS,
}
"""The query parameters of every GET route that takes some, by path: read by their handlers with `Field.read`
(the request's query as the mapping) and rendered by `openapi.py`."""


def query_parameters(body: Body) -> list[Schema]:
    """`body`'s fields as OpenAPI query parameters."""
    return [{"name": f.name, "in": "query", "required": False, "schema": f.schema()} for f in body.fields]


@dataclass(frozen=True, slots=True)
class RouteBody:
    """What one route reads: its JSON body, its multipart body (None: JSON only) and the kind of its `model`
    ("image", "video", "any"; None: no model field)."""

    json: Body
    form: Body | None = None
    model: str | None = None


def _twins(path: str, body: Body, form: Body | None, model: str | None, *, stream: bool = True) -> dict[str, RouteBody]:
    """A sync route (which refuses callback_url and may stream) and its async twin (which takes callback_url)."""
    sync = body + STREAM if stream else body
    async_path = path.replace("/v1/", "/v1/async/", 1)
    sync_form = None if form is None else (form + STREAM if stream else form)
    return {
        path: RouteBody(sync, sync_form, model),
        async_path: RouteBody(body + CALLBACK, None if form is None else form + CALLBACK, model),
    }


REQUEST_BODIES: dict[str, RouteBody] = {
    **_twins("/v1/images/generations", IMAGE, None, "image"),
    **_twins("/v1/images/compositions", IMAGE + IMAGES, IMAGE + IMAGES, "image"),
    "/v1/images/edits": RouteBody(IMAGE + EDIT + STREAM, IMAGE + EDIT + STREAM, "image"),
    **_twins("/v1/videos/generations", VIDEO, VIDEO + VIDEO_FILES, "video"),
    **_twins("/v1/images/upscale", UPSCALE + RESPONSE_FORMAT, UPSCALE + RESPONSE_FORMAT, None, stream=False),
    **_twins("/v1/images/outpaint", OUTPAINT + RESPONSE_FORMAT, OUTPAINT + RESPONSE_FORMAT, None, stream=False),
    **_twins("/v1/images/repair", REPAIR + RESPONSE_FORMAT, REPAIR + RESPONSE_FORMAT, None, stream=False),
    **_twins("/v1/videos/interpolate", INTERPOLATE, None, None, stream=False),
    "/v1/chat/completions": RouteBody(CHAT, None, "any"),
    "/v1/videos": RouteBody(OPENAI_VIDEO, OPENAI_VIDEO, "video"),
    "/v1/video/generations": RouteBody(GATEWAY_VIDEO, None, "video"),
    "/v1/async/tasks/query": RouteBody(TASK_QUERY),
    "/token/check": RouteBody(TOKEN_CHECK),
    "/admin/api/accounts": RouteBody(ADMIN_ACCOUNT),
    "/admin/api/keys": RouteBody(ADMIN_KEY),
}
"""Every route's request body, by path (each path takes one body-carrying method)."""
