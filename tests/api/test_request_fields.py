"""One declaration per request field (api/fields.py): what the OpenAPI document says a body takes is what the
parsers read, aliases included, and a body valid by the served schema is accepted by the server (and a body
the server refuses for its model is invalid by the schema).

- documented == declared: each route's documented body properties are its declared names (with aliases);
- read ⊆ declared: each parser, run on bodies that walk its branches through a recording mapping, reads no
  name that is not declared (or declared as refused, like `width`);
- over real HTTP against the simulator: every documented field, with values the schema allows, sent one at a
  time to the async endpoints, validates against the served schema and is accepted (200); every documented
  model name is accepted, and a name the schema refuses is refused by the server too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator
from pool_support import ADMIN_KEY, POOL_SESSIONS, admin, seed_sim
from support import CN_TOKEN, AppFactory, bearer, drive, json_of

from jimeng_server.api import fields as declared
from jimeng_server.api.admin import account_fields, key_fields
from jimeng_server.api.chat_params import chat_ask
from jimeng_server.api.fields import REQUEST_BODIES, RouteBody
from jimeng_server.api.gateway_params import gateway_video_fields, openai_video_fields
from jimeng_server.api.image_inputs import composition_images
from jimeng_server.api.openai_compat import edit_images
from jimeng_server.api.params import image_params
from jimeng_server.api.postedits import outpaint_params, repair_params, upscale_params
from jimeng_server.api.video_params import video_params
from jimeng_server.clock import ManualClock
from jimeng_server.config import DEFAULT_MODEL_ALIASES, AdminConfig, CompatConfig, ModelsConfig
from jimeng_server.simulator import Simulator
from jimeng_server.simulator.media import png
from jimeng_server.upstream import catalog


class Recording(Mapping[str, Any]):
    """A body mapping that notes every name a parser looks up (`get`, `in`, `[]`)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data, self.read = data, set[str]()

    def __getitem__(self, name: str) -> Any:
        self.read.add(name)
        return self.data[name]

    def __contains__(self, name: object) -> bool:
        self.read.add(str(name))
        return name in self.data

    def get(self, name: str, default: Any = None) -> Any:
        self.read.add(name)
        return self.data.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def _allowed(route: RouteBody, *, form: bool = False) -> set[str]:
    body = route.form if form and route.form is not None else route.json
    return body.names(form=form) | set(body.refused)


def _reads(parse: Callable[[Mapping[str, Any]], Any], bodies: list[dict[str, Any]]) -> set[str]:
    read: set[str] = set()
    for body in bodies:
        recording = Recording(body)
        parse(recording)
        read |= recording.read
    return read


URL = "https://example.com/a.png"
OMNI = declared.OMNI_MODE
_PARSERS: list[tuple[str, Callable[[Mapping[str, Any]], Any], list[dict[str, Any]]]] = [
    ("/v1/images/generations", image_params, [{"prompt": "p"}, {"prompt": "p", "size": "1024x1024", "n": 2}]),
    (
        "/v1/videos/generations",
        video_params,
        [
            {"prompt": "p"},
            {"prompt": "p", "filePaths": [URL]},
            {
                "prompt": "p",
                "model": "jimeng-video-seedance-2.0",
                "functionMode": "omni_reference",
                "image_file_1": URL,
            },
        ],
    ),
    (
        "/v1/images/compositions",
        lambda data: (composition_images(data), image_params(data)),
        [{"prompt": "p", "images": [URL, {"url": URL}]}],
    ),
    (
        "/v1/images/edits",
        lambda data: (edit_images(data), image_params(data)),
        [{"prompt": "p", "image": URL, "image[]": [URL]}, {"prompt": "p", "images": [URL]}],
    ),
    ("/v1/images/upscale", upscale_params, [{"image": URL, "mode": "pro"}, {"history_id": "123", "index": 1}]),
    ("/v1/images/outpaint", outpaint_params, [{"image": URL, "ratio": "16:9"}, {"history_id": "1", "top": 0.5}]),
    ("/v1/images/repair", repair_params, [{"history_id": "123"}]),
    (
        "/v1/chat/completions",
        lambda data: chat_ask(data, DEFAULT_MODEL_ALIASES),
        [
            {"messages": [{"role": "user", "content": "a cat"}], "n": 2, "size": "1024x1024"},
            {"messages": [{"role": "user", "content": "waves"}], "model": "sora-2", "duration": 5, "stream": True},
        ],
    ),
    (
        "/admin/api/accounts",
        account_fields,
        [{"name": "a", "token": "t", "note": "n"}, {"name": "b", "cookies": "c", "region": "cn", "user_agent": "u"}],
    ),
    ("/admin/api/keys", key_fields, [{"name": "k", "accounts": ["a"], "rate_per_minute": 1, "max_in_flight": 1}]),
    (
        "/v1/videos",
        lambda data: openai_video_fields(data, DEFAULT_MODEL_ALIASES),
        [{"prompt": "p", "seconds": "8", "size": "1280x720", "input_reference": {"image_url": URL}}],
    ),
    (
        "/v1/video/generations",
        lambda data: gateway_video_fields(data, DEFAULT_MODEL_ALIASES),
        [
            {"prompt": "p", "duration": 5, "width": 1280, "height": 720, "image": URL},
            {"prompt": "p", "size": "720x1280", "ratio": "9:16", "resolution": "720p", "image_url": URL},
        ],
    ),
]


@pytest.mark.parametrize(("path", "parse", "bodies"), _PARSERS, ids=[p[0] for p in _PARSERS])
def test_every_field_a_parser_reads_is_declared(
    path: str, parse: Callable[[Mapping[str, Any]], Any], bodies: list[dict[str, Any]]
) -> None:
    read = _reads(parse, bodies)
    route = REQUEST_BODIES[path]
    undeclared = {n for n in read if n not in _allowed(route) | _allowed(route, form=True)}
    numbered = {n for n in undeclared if n.rsplit("_", 1)[0] in {f.name for f in declared.VIDEO_FILES.fields}}
    assert undeclared - numbered == set()


async def test_the_document_shows_exactly_the_declared_fields(client: TestClient[Any, Any]) -> None:
    doc = await json_of(await client.get("/openapi.json"))
    documented_bodies = {
        path: item["post"]["requestBody"]["content"]
        for path, item in doc["paths"].items()
        if "requestBody" in item.get("post", {})
    }
    for path, route in REQUEST_BODIES.items():
        content = documented_bodies[path]
        assert set(content["application/json"]["schema"]["properties"]) == route.json.names(), path
        if route.form is not None:
            assert set(content["multipart/form-data"]["schema"]["properties"]) == route.form.names(form=True), path
        else:
            assert "multipart/form-data" not in content, path
    assert set(documented_bodies) == set(REQUEST_BODIES)


async def test_the_document_follows_the_apps_settings(make_client: AppFactory) -> None:
    """`[models] aliases` (and `default_aliases = false`) change what `model` lists; `[compat] strict_size`
    removes `size`, which the server then refuses."""
    client = await make_client(
        models=ModelsConfig(aliases={"house-image": "jimeng-4.0"}, default_aliases=False),
        compat=CompatConfig(strict_size=True),
    )
    doc = await json_of(await client.get("/openapi.json"))
    path = "/v1/async/images/generations"
    schema = _schema(doc, path)
    names = schema["properties"]["model"]["anyOf"][0]["enum"]
    assert "house-image" in names and "dall-e-3" not in names
    assert "size" not in schema["properties"]
    status, answer = await _accepted(client, path, {"prompt": "a fox", "model": "house-image"})
    assert status == 200, answer
    for refused in ({"model": "dall-e-3"}, {"size": "1024x1024"}):
        status, answer = await _accepted(client, path, {"prompt": "a fox", **refused})
        assert status == 400, (refused, answer)


def _schema(doc: dict[str, Any], path: str) -> dict[str, Any]:
    schema: dict[str, Any] = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return schema


def _values(prop: dict[str, Any]) -> list[Any]:
    """Values a documented property allows: each choice, else its bounds, else one value of its type."""
    if "enum" in prop:
        return list(prop["enum"])
    kind = prop.get("type")
    if kind == "boolean":
        return [True, False]
    if kind in ("integer", "number") and "minimum" in prop:
        return [prop["minimum"], prop["maximum"]]
    if kind == "string":
        return ["a quiet lake", "b" * prop["maxLength"]] if "maxLength" in prop else ["a quiet lake"]
    return []


async def _accepted(client: TestClient[Any, Any], path: str, body: dict[str, Any]) -> tuple[int, Any]:
    resp = await client.post(path, json=body, headers=bearer(CN_TOKEN))
    return resp.status, await json_of(resp)


@pytest.fixture
async def image_host(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    """A web server holding one input image at /frame.png."""
    picture = png(32, 32, (200, 30, 30))

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=picture, content_type="image/png")

    app = web.Application()
    app.router.add_get("/frame.png", serve)
    return await aiohttp_server(app)


_BASES: dict[str, dict[str, Any]] = {
    "/v1/async/images/generations": {"prompt": "a cat in the snow"},
    "/v1/async/images/compositions": {"prompt": "the cat, in oils", "images": ["FRAME"]},
    "/v1/async/videos/generations": {"prompt": "waves at dusk"},
    "/v1/async/images/upscale": {"image": "FRAME"},
    "/v1/async/images/outpaint": {"image": "FRAME", "left": 0.25},
    "/v1/video/generations": {"prompt": "waves at dusk"},
    "/v1/videos": {"prompt": "waves at dusk"},
}
"""A minimal accepted body per route ("FRAME": the image host's picture)."""
_TRIES: dict[str, list[dict[str, Any]]] = {
    "images": [{"images": ["FRAME", {"url": "FRAME"}]}],
    "image": [{"image": "FRAME"}],
    "image_url": [{"image_url": "FRAME"}, {"image_url": ["FRAME", "FRAME"]}],
    "file_paths": [{"file_paths": ["FRAME"]}],
    "filePaths": [{"filePaths": ["FRAME", "FRAME"]}],
    "input_reference": [{"input_reference": "FRAME"}, {"input_reference": {"image_url": "FRAME"}}],
    "seconds": [{"seconds": "4"}, {"seconds": "12"}, {"seconds": 1}, {"seconds": str(declared.MAX_SHAPE_SECONDS)}],
    "size": [{"size": "1024x1024"}, {"size": "720x1280"}],
    "size@/v1/video/generations": [{"size": "1280x720"}, {"size": "99999 × 1"}],
    "width": [{"width": 1280, "height": 720}, {"width": 1, "height": declared.MAX_PIXELS}],
    "height": [{"width": 720, "height": 1280}],
    "duration@/v1/video/generations": [{"duration": 1}, {"duration": 7.6}, {"duration": "600"}],
    "n": [{"n": 1}, {"n": 4}],
    "multi_image": [{"multi_image": True}, {"multi_image": False}],
    "left": [{"left": 3.0}],
    "ratio@/v1/async/images/outpaint": [{"ratio": "16:9", "left": None}],
}
"""Values for fields whose documented schema names no choice or bound (or that need a partner field: `None`
drops a base field)."""
_ELSEWHERE = {
    "callback_url": "tests/webhooks/test_webhooks_api.py (a URL the SSRF guard takes)",
    "model": "test_every_documented_model_is_accepted_and_others_refused",
    "resolution": "test_dependent_*_fields_over_http (each with a model that offers it)",
    "duration": "test_dependent_video_fields_over_http (each model's longest)",
    "function_mode": "test_dependent_video_fields_over_http (omni_reference needs seedance and materials)",
    "functionMode": "test_dependent_video_fields_over_http",
    "history_id": "tests/media/test_postedit_api.py (one of the caller's finished tasks)",
    "index": "tests/media/test_postedit_api.py",
}
"""Fields whose accepted values depend on another field or on a finished task: tried where named."""


def _tries(path: str, name: str, prop: dict[str, Any]) -> list[dict[str, Any]]:
    if f"{name}@{path}" in _TRIES:
        return _TRIES[f"{name}@{path}"]
    if name in _TRIES:
        return _TRIES[name]
    return [{name: value} for value in _values(prop)]


def _framed(value: Any, frame: str) -> Any:
    if value == "FRAME":
        return frame
    if isinstance(value, list):
        return [_framed(v, frame) for v in value]
    if isinstance(value, dict):
        return {k: _framed(v, frame) for k, v in value.items()}
    return value


@pytest.mark.parametrize("path", list(_BASES))
async def test_every_documented_field_is_accepted_over_http(
    client: TestClient[Any, Any], image_host: TestServer, sim: Simulator, path: str
) -> None:
    sim.account(CN_TOKEN).vip_credit = 100_000
    doc = await json_of(await client.get("/openapi.json"))
    schema = _schema(doc, path)
    validator = Draft202012Validator(schema)
    frame = str(image_host.make_url("/frame.png"))
    for name, prop in schema["properties"].items():
        here = f"{name}@{path}" in _TRIES
        if not here and (name in _ELSEWHERE or (path == "/v1/video/generations" and name == "resolution")):
            continue
        tries = _tries(path, name, prop)
        assert tries, f"{path}: no value tried for the documented field {name!r}"
        for extra in tries:
            body = {k: v for k, v in _framed({**_BASES[path], **extra}, frame).items() if v is not None}
            validator.validate(body)
            status, answer = await _accepted(client, path, body)
            assert status == 200, (body, answer)


async def test_dependent_image_fields_over_http(client: TestClient[Any, Any]) -> None:
    doc = await json_of(await client.get("/openapi.json"))
    validator = Draft202012Validator(_schema(doc, "/v1/async/images/generations"))
    bodies: list[dict[str, Any]] = [
        {"size": "1024x1024"},
        {"size": "auto"},
        {"n": 1},
        {"n": 4},
        {"n": catalog.MAX_IMAGE_COUNT},
        {"multi_image": False, "n": 2},
        {"multi_image": True},
        {"resolution": "4k", "model": "jimeng-4.5"},
    ]
    for extra in bodies:
        body = {"prompt": "a red fox", **extra}
        validator.validate(body)
        status, answer = await _accepted(client, "/v1/async/images/generations", body)
        assert status == 200, (body, answer)


async def test_dependent_video_fields_over_http(
    client: TestClient[Any, Any], image_host: TestServer, sim: Simulator
) -> None:
    sim.account(CN_TOKEN).vip_credit = 100_000  # one video of each model at its longest
    doc = await json_of(await client.get("/openapi.json"))
    path = "/v1/async/videos/generations"
    schema = _schema(doc, path)
    validator = Draft202012Validator(schema)
    frame = str(image_host.make_url("/frame.png"))
    omni = {"model": "jimeng-video-seedance-2.0", "image_file_1": frame, "prompt": "@image_file_1 walks"}
    bodies: list[dict[str, Any]] = [
        {"function_mode": "first_last_frames"},
        {"functionMode": "omni_reference", **omni},
        {"function_mode": "omni_reference", **omni},
    ]
    for resolution in schema["properties"]["resolution"]["enum"]:  # each with a model that offers it
        model = next(m for m in catalog.VIDEO_MODELS if resolution in catalog.video_resolutions(m))
        bodies.append({"model": model, "resolution": resolution})
    for model in catalog.VIDEO_MODELS:
        bodies.append({"model": model, "duration": catalog.allowed_durations(model)[-1]})
    accepted = 0
    for extra in bodies:
        body = {"prompt": "waves at dusk", **extra}
        validator.validate(body)
        status, answer = await _accepted(client, path, body)
        if status == 400 and answer["error"]["code"] == "UNSUPPORTED_MODEL":
            continue  # a model the token's region lacks: said so, whatever the fields
        assert status == 200, (body, answer)
        accepted += 1
    assert accepted >= len(bodies) // 2


async def test_every_documented_model_is_accepted_and_others_refused(client: TestClient[Any, Any]) -> None:
    doc = await json_of(await client.get("/openapi.json"))
    for path, kind in (("/v1/async/images/generations", "image"), ("/v1/async/videos/generations", "video")):
        schema = _schema(doc, path)
        validator = Draft202012Validator(schema)
        names = schema["properties"]["model"]["anyOf"][0]["enum"]
        aliases = [a for a, target in DEFAULT_MODEL_ALIASES.items() if a in names]
        assert aliases, f"{path}: the default OpenAI aliases are documented"
        for model in names:
            body = {"prompt": "a red fox", "model": model}
            validator.validate(body)
            status, answer = await _accepted(client, path, body)
            assert status != 400 or answer["error"]["code"] not in ("UNKNOWN_MODEL", "WRONG_ENDPOINT"), (model, answer)
        other = "jimeng-video-3.5-pro" if kind == "image" else "jimeng-4.5"
        for wrong in ("no-such-model", other):
            body = {"prompt": "a red fox", "model": wrong}
            assert not validator.is_valid(body), wrong
            status, answer = await _accepted(client, path, body)
            assert status == 400 and answer["error"]["code"] in ("UNKNOWN_MODEL", "WRONG_ENDPOINT"), (wrong, answer)
    raw = {"prompt": "a red fox", "model": "high_aes_general_v60"}
    image_schema = _schema(doc, "/v1/async/images/generations")
    assert Draft202012Validator(image_schema).is_valid(raw)
    # A video key is documented (taken when live discovery lists it as a video model); this one it does not.
    assert Draft202012Validator(_schema(doc, "/v1/async/videos/generations")).is_valid(raw)
    status, answer = await _accepted(client, "/v1/async/videos/generations", raw)
    assert status == 400 and answer["error"]["code"] == "UNKNOWN_MODEL"
    assert catalog.looks_like_key(raw["model"])


async def test_documented_admin_bodies_are_accepted_over_http(make_client: AppFactory, sim: Simulator) -> None:
    """Every documented field of the admin API's two bodies, schema-valid, is taken (201): an account by session
    id and one by cookie jar (the two ways the body's description names), keys with the limits' bounds."""
    seed_sim(sim)
    client = await make_client(admin=AdminConfig(key=ADMIN_KEY))
    doc = await json_of(await client.get("/openapi.json"))
    account = {
        "name": "pa",
        "token": POOL_SESSIONS["pa"],
        "proxy": "socks5://10.0.0.1:1080",
        "transport": "aiohttp",
        "note": "n" * declared.NOTE_MAX,
    }
    agent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0"
    jarred = {
        "name": "pb",
        "cookies": sim.issue_jar(POOL_SESSIONS["pb"], chrome=142),
        "region": "cn",
        "user_agent": agent + " Safari/537.36",
    }
    top = declared.ADMIN_KEY["rate_per_minute"].high
    keys = [
        {"name": "team-a", "accounts": ["pa"], "rate_per_minute": 30, "max_in_flight": 2},
        {"name": "team-b", "rate_per_minute": top, "max_in_flight": top},
        {"name": "team-c", "rate_per_minute": 1, "max_in_flight": 1},
    ]
    bodies = [("/admin/api/accounts", account), ("/admin/api/accounts", jarred)]
    bodies += [("/admin/api/keys", k) for k in keys]
    for path, body in bodies:
        Draft202012Validator(_schema(doc, path)).validate(body)
        resp = await client.post(path, json=body, headers=admin())
        assert resp.status == 201, (path, await resp.text())
    for path in ("/admin/api/accounts", "/admin/api/keys"):
        assert {k for p, b in bodies if p == path for k in b} == set(_schema(doc, path)["properties"]), path
    for path, body in (
        ("/admin/api/accounts", {"name": "pc", "token": POOL_SESSIONS["pc"], "note": "n" * (declared.NOTE_MAX + 1)}),
        ("/admin/api/accounts", {"name": "pc", "token": POOL_SESSIONS["pc"], "transport": "telepathy"}),
        ("/admin/api/accounts", {"name": "pc", "cookies": jarred["cookies"], "region": "mars"}),
        ("/admin/api/keys", {"name": "team-d", "rate_per_minute": top + 1}),
        ("/admin/api/keys", {"name": "team-d", "max_in_flight": 0}),
    ):
        assert not Draft202012Validator(_schema(doc, path)).is_valid(body), body
        resp = await client.post(path, json=body, headers=admin())
        assert resp.status == 400, (path, await resp.text())


async def test_documented_chat_task_query_and_token_bodies_are_accepted_over_http(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    """The chat body with every documented option (an image and a video request), the task query with each of
    its two shapes, and the token check: schema-valid, taken (200)."""
    sim.account(CN_TOKEN).vip_credit = 100_000
    doc = await json_of(await client.get("/openapi.json"))
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "a lighthouse"}]
    image_options = {
        "n": 2,
        "size": "1024x1024",
        "ratio": "16:9",
        "resolution": "2k",
        "sample_strength": 0.7,
        "negative_prompt": "fog",
        "intelligent_ratio": False,
        "stream": False,
        "stream_options": {"include_usage": True},
    }
    chats = [
        {"model": "jimeng-4.5", "messages": messages, **image_options},
        {
            "model": "jimeng-video-3.0",
            "messages": messages,
            "duration": catalog.default_duration("jimeng-video-3.0"),
            "ratio": "9:16",
            "resolution": catalog.video_resolutions("jimeng-video-3.0")[-1],
        },
    ]
    documented = set(_schema(doc, "/v1/chat/completions")["properties"])
    assert documented - {k for c in chats for k in c} == {"callback_url"}  # async only: tested with webhooks
    for chat_body in chats:
        Draft202012Validator(_schema(doc, "/v1/chat/completions")).validate(chat_body)
        (resp,) = await drive(
            client.app, clock, client.post("/v1/chat/completions", json=chat_body, headers=bearer(CN_TOKEN))
        )
        answer = await json_of(resp)
        assert resp.status == 200, (chat_body, answer)
    history_id = answer["history_id"]
    for path, body in (
        ("/v1/async/tasks/query", {"history_id": history_id}),
        ("/v1/async/tasks/query", {"history_ids": [history_id, int(history_id)]}),
        ("/v1/async/tasks/query", {"history_ids": [history_id] + [str(n) for n in range(1, declared.MAX_BATCH)]}),
        ("/token/check", {"token": CN_TOKEN}),
    ):
        Draft202012Validator(_schema(doc, path)).validate(body)
        status, answer = await _accepted(client, path, body)
        assert status == 200, (path, body, answer)


_REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("/v1/videos", {"seconds": "0"}, "seconds"),
    ("/v1/videos", {"seconds": declared.MAX_SHAPE_SECONDS + 1}, "seconds"),
    ("/v1/videos", {"seconds": "forever"}, "seconds"),
    ("/v1/videos", {"size": "big"}, "size"),
    ("/v1/videos", {"size": "0x512"}, "size"),
    ("/v1/videos", {"size": "1280 by 720"}, "size"),
    ("/v1/videos", {"prompt": None}, "prompt"),
    ("/v1/videos", {"prompt": "p" * (declared.MAX_PROMPT_CHARS + 1)}, "prompt"),
    ("/v1/videos", {"model": 5}, "model"),
    ("/v1/videos", {"input_reference": "ftp://example.com/a.png"}, "input_reference"),
    ("/v1/videos", {"input_reference": {"image_url": "data:image/png;base64,AAAA"}}, "input_reference"),
    ("/v1/video/generations", {"duration": 0}, "duration"),
    ("/v1/video/generations", {"duration": "601"}, "duration"),
    ("/v1/video/generations", {"width": 0, "height": 720}, "width"),
    ("/v1/video/generations", {"width": 1280, "height": declared.MAX_PIXELS + 1}, "height"),
    ("/v1/video/generations", {"width": 1280.5, "height": 720}, "width"),
    ("/v1/video/generations", {"size": "wide"}, "size"),
    ("/v1/video/generations", {"ratio": "5:4"}, "ratio"),
    ("/v1/video/generations", {"resolution": "8k"}, "resolution"),
    ("/v1/video/generations", {"image": "ftp://example.com/a.png"}, "image"),
    ("/v1/video/generations", {"image_url": ["https://example.com/a.png", 7]}, "image_url"),
    ("/v1/video/generations", {"prompt": 7}, "prompt"),
    ("/v1/async/images/generations", {"size": "big"}, "size"),
    ("/v1/async/images/generations", {"size": "0x512"}, "size"),
    ("/v1/async/videos/generations", {"file_paths": ["ftp://example.com/a.png"]}, "file_paths[0]"),
    ("/v1/async/tasks/query", {"history_ids": [str(n) for n in range(1, declared.MAX_BATCH + 2)]}, "history_ids"),
    ("/v1/async/tasks/query", {"history_ids": ["1", "two words"]}, "history_ids[1]"),
    ("/v1/async/tasks/query", {"history_id": -1}, "history_id"),
    ("/v1/async/tasks/query", {"history_id": "7" * (declared.MAX_HISTORY_ID_LENGTH + 1)}, "history_id"),
    ("/v1/async/images/compositions", {"images": [URL] * (declared.MAX_INPUT_IMAGES + 1)}, "images"),
    ("/v1/video/generations", {"image_url": [URL] * (declared.MAX_FRAMES + 1)}, "frame images"),
    ("/v1/chat/completions", {"stream": "perhaps"}, "stream"),
    ("/v1/chat/completions", {"model": ["jimeng-4.5"]}, "model"),
    ("/v1/chat/completions", {"messages": []}, "messages"),
    ("/v1/chat/completions", {"messages": None}, "messages"),
]
"""A value the documented schema refuses, per route, and the field the server's 400 must name (or, for a count
of files, what it counts)."""
_REFUSED_BASES: dict[str, dict[str, Any]] = {
    "/v1/async/images/compositions": {"prompt": "the cat, in oils"},
    "/v1/async/tasks/query": {},
    "/v1/async/images/generations": {"prompt": "a cat in the snow"},
    "/v1/async/videos/generations": {"prompt": "waves at dusk"},
    "/v1/videos": {"prompt": "waves at dusk"},
    "/v1/video/generations": {"prompt": "waves at dusk"},
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "a lighthouse"}]},
}


@pytest.mark.parametrize(("path", "extra", "name"), _REFUSED, ids=[f"{p} {n}" for p, _, n in _REFUSED])
async def test_a_value_the_document_refuses_is_refused_naming_the_field(
    client: TestClient[Any, Any], sim: Simulator, path: str, extra: dict[str, Any], name: str
) -> None:
    """The gateway shapes, chat and the image and video sizes and URLs read their fields through the
    declarations: a bound, choice, pattern or type the served schema refuses is a 400 naming the field as sent,
    before anything is spent."""
    doc = await json_of(await client.get("/openapi.json"))
    body = {k: v for k, v in {**_REFUSED_BASES[path], **extra}.items() if v is not None}
    assert not Draft202012Validator(_schema(doc, path)).is_valid(body), body
    status, answer = await _accepted(client, path, body)
    assert status == 400, (body, answer)
    codes = ("INVALID_PARAMETER", "MISSING_PARAMETER", "INVALID_IMAGE_COUNT", "TOO_MANY_IMAGES")
    assert answer["error"]["code"] in codes, answer
    assert (f"'{name}'" if " " not in name else name) in answer["error"]["message"], answer
    assert sim.generate_count == 0


def test_the_seconds_pattern_says_the_declared_bounds() -> None:
    """`seconds` and `duration` as strings: the documented pattern takes exactly 1 to MAX_SHAPE_SECONDS."""
    validator = Draft202012Validator(declared.OPENAI_VIDEO["seconds"].schema())
    top = declared.MAX_SHAPE_SECONDS
    for taken in ("1", "8", "12.5", "99", str(top - 1), f"{top - 1}.9", str(top), f"{top}.0", 1, top):
        assert validator.is_valid(taken), taken
    for refused in ("0", "0.5", f"{top}.5", str(top + 1), "1000", "", "eight", 0, top + 1):
        assert not validator.is_valid(refused), refused


async def test_documented_query_parameters_are_the_declared_ones_and_their_bounds_hold(
    make_client: AppFactory, sim: Simulator, clock: ManualClock
) -> None:
    """Every GET route's query parameters (`fields.QUERY_PARAMETERS`) are documented as declared; each bound and
    choice the document allows is taken (200), a value beyond it is refused (400 naming the parameter) and
    invalid by the documented schema."""
    seed_sim(sim)
    client = await make_client(admin=AdminConfig(key=ADMIN_KEY))
    doc = await json_of(await client.get("/openapi.json"))
    for path, query in declared.QUERY_PARAMETERS.items():
        documented = [p for p in doc["paths"][path]["get"]["parameters"] if p["in"] == "query"]
        assert [p["name"] for p in documented] == [f.name for f in query.fields], path
    resp = await client.post("/v1/async/videos/generations", json={"prompt": "waves"}, headers=bearer(CN_TOKEN))
    history_id = (await json_of(resp))["history_id"]
    routes = {
        "/v1/async/tasks/{history_id}": (f"/v1/async/tasks/{history_id}", bearer(CN_TOKEN)),
        "/v1/videos": ("/v1/videos", bearer(CN_TOKEN)),
        "/v1/videos/{video_id}/content": (f"/v1/videos/{history_id}/content", bearer(CN_TOKEN)),
        "/admin/api/tasks": ("/admin/api/tasks", admin()),
        "/admin/api/stats": ("/admin/api/stats", admin()),
        "/admin/api/logs": ("/admin/api/logs", admin()),
    }
    assert set(routes) == set(declared.QUERY_PARAMETERS)
    for path, query in declared.QUERY_PARAMETERS.items():
        url, headers = routes[path]
        for param in [p for p in doc["paths"][path]["get"]["parameters"] if p["in"] == "query"]:
            schema = Draft202012Validator(param["schema"])
            field = query[param["name"]]
            taken = list(field.choices) or [field.low, field.high]
            refused = ["none-such"] if field.choices else [field.high + 1, field.low - 1, "ten"]
            if path.endswith("/content"):
                taken = []  # the only variant is the video itself: tested once the video is done (test_video_gateways)
            for value in taken:
                text = f"{value:g}" if isinstance(value, float) else str(value)
                assert schema.is_valid(value), (path, param["name"], value)
                (resp,) = await drive(client.app, clock, client.get(url, params={param["name"]: text}, headers=headers))
                assert resp.status == 200, (path, param["name"], text, await resp.text())
            for value in refused:
                assert not schema.is_valid(value), (path, param["name"], value)
                resp = await client.get(url, params={param["name"]: str(value)}, headers=headers)
                answer = await json_of(resp)
                assert resp.status == 400 and f"'{param['name']}'" in answer["error"]["message"], (path, value, answer)
