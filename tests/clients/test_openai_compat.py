"""OpenAI-compatible images: the `openai` package itself against the server and the simulator over real
HTTP, the JSON bodies gateways and workflow tools send, `size` mapping, model aliases and `/v1/images/edits`."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestClient
from support import CN_TOKEN, bearer, drive, json_of

from jimeng_server.api.openai_compat import shape_for_size
from jimeng_server.app import create_app
from jimeng_server.clock import ManualClock
from jimeng_server.config import CompatConfig, Config, ConfigError, ModelsConfig
from jimeng_server.simulator import Simulator
from jimeng_server.simulator.media import png

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
ALIASES = ModelsConfig(
    aliases={
        "dall-e-3": "jimeng-4.5",
        "dall-e-2": "jimeng-4.0",
        "gpt-image-1": "jimeng-4.5",
        "sora-2": "jimeng-video-3.0",
    }
)
PNG = png(40, 30, (200, 10, 10))


def core_param(sim: Simulator) -> dict[str, Any]:
    """The `core_param` of the one generate call (text-to-image or blend)."""
    (gen,) = sim.calls("/aigc_draft/generate")
    abilities = json.loads(gen.body["draft_content"])["component_list"][0]["abilities"]
    core: dict[str, Any] = (abilities.get("generate") or abilities["blend"])["core_param"]
    return core


def shape_sent(sim: Simulator) -> tuple[int, int, int, str]:
    """(width, height, image_ratio code, resolution_type) of the one generate call."""
    core = core_param(sim)
    info = core["large_image_info"]
    return info["width"], info["height"], core["image_ratio"], info["resolution_type"]


@pytest.fixture
async def app_client(make_client: ClientFactory) -> TestClient[Any, Any]:
    return await make_client(models=ALIASES)


@pytest.fixture
async def sdk(app_client: TestClient[Any, Any]) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official client, pointed at the test server (no retries, no proxies from the environment)."""
    http = openai.DefaultAsyncHttpxClient(trust_env=False)
    client = openai.AsyncOpenAI(
        api_key=CN_TOKEN, base_url=str(app_client.make_url("/v1")), max_retries=0, http_client=http
    )
    yield client
    await client.close()


# ---------------------------------------------------------------- size mapping


@pytest.mark.parametrize(
    ("width", "height", "ratio", "resolution"),
    [
        (1024, 1024, "1:1", "1k"),
        (1792, 1024, "16:9", "2k"),
        (1024, 1792, "9:16", "2k"),
        (1536, 1024, "3:2", "2k"),
        (1024, 1536, "2:3", "2k"),
        (512, 512, "1:1", "1k"),
        (256, 256, "1:1", "1k"),
        (1024, 768, "4:3", "1k"),  # the 1k 4:3 entry is 768x1024 (swapped upstream): its sides still cover
        (2560, 1440, "16:9", "2k"),
        (2561, 1440, "16:9", "4k"),
        (3000, 1300, "21:9", "4k"),
        (9000, 9000, "1:1", "4k"),  # nothing covers it: the largest tier
    ],
)
def test_size_maps_to_nearest_ratio_and_smallest_covering_tier(
    width: int, height: int, ratio: str, resolution: str
) -> None:
    assert shape_for_size(width, height) == (ratio, resolution)


# ---------------------------------------------------------------- the openai package


async def test_sdk_generate_dalle3_1024_is_one_to_one_1k(
    sdk: openai.AsyncOpenAI, app_client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    call = sdk.images.generate(
        model="dall-e-3", prompt="a red fox", n=1, size="1024x1024", quality="hd", style="vivid", user="u-1"
    )
    (result,) = await drive(app_client.app, clock, call)
    assert isinstance(result.created, int) and result.data
    assert all(item.url and item.url.startswith("http") for item in result.data)
    assert shape_sent(sim) == (1024, 1024, 1, "1k")
    (gen,) = sim.calls("/aigc_draft/generate")
    assert "high_aes_general_v40l" in json.dumps(gen.body)  # dall-e-3 -> jimeng-4.5's upstream key


async def test_sdk_generate_wide_b64_json(
    sdk: openai.AsyncOpenAI, app_client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    call = sdk.images.generate(model="dall-e-3", prompt="a wide sea", size="1792x1024", response_format="b64_json")
    (result,) = await drive(app_client.app, clock, call)
    assert result.data and all(base64.b64decode(item.b64_json or "")[:4] == b"\x89PNG" for item in result.data)
    assert shape_sent(sim) == (2560, 1440, 3, "2k")


async def test_sdk_unknown_model_is_a_400_naming_aliases(
    sdk: openai.AsyncOpenAI, app_client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        await drive(app_client.app, clock, sdk.images.generate(model="midjourney", prompt="x"))
    assert err.value.status_code == 400
    message = err.value.body["message"]  # type: ignore[index]
    assert "midjourney" in message and "[models] aliases" in message
    assert sim.generate_count == 0


async def test_sdk_edit_single_file(
    sdk: openai.AsyncOpenAI, app_client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    call = sdk.images.edit(
        model="dall-e-2", image=("photo.png", PNG, "image/png"), prompt="make it blue", n=1, size="1024x1024"
    )
    (result,) = await drive(app_client.app, clock, call)
    assert result.data and result.data[0].url
    assert shape_sent(sim)[2:] == (1, "1k")
    assert len(sim.uploads.slots) == 1


async def test_sdk_edit_image_list(
    sdk: openai.AsyncOpenAI, app_client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    images = [("a.png", PNG, "image/png"), ("b.png", png(8, 8, (0, 0, 0)), "image/png")]
    call = sdk.images.edit(model="gpt-image-1", image=images, prompt="merge them", size="1536x1024")
    (result,) = await drive(app_client.app, clock, call)
    assert result.data
    assert len(sim.uploads.slots) == 2
    assert shape_sent(sim)[2:] == (7, "2k")


async def test_sdk_edit_with_mask_is_refused_before_any_upload(
    sdk: openai.AsyncOpenAI, app_client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    call = sdk.images.edit(image=("a.png", PNG, "image/png"), mask=("m.png", PNG, "image/png"), prompt="x")
    with pytest.raises(openai.BadRequestError) as err:
        await drive(app_client.app, clock, call)
    assert err.value.code == "UNSUPPORTED_PARAMETER"
    assert "mask" in err.value.message
    assert not sim.uploads.slots and sim.generate_count == 0


# ---------------------------------------------------------------- bodies sent by gateways and workflow tools

GATEWAY_BODIES = {
    # one-api relays the OpenAI image request as is, `n` and `size` always set.
    "one-api": {"model": "dall-e-3", "prompt": "a cat", "n": 1, "size": "1024x1024", "quality": "standard"},
    # new-api adds its own optional fields and asks for a URL explicitly.
    "new-api": {
        "model": "dall-e-3",
        "prompt": "a cat",
        "n": 1,
        "size": "1792x1024",
        "quality": "hd",
        "style": "natural",
        "response_format": "url",
        "user": "relay-7",
    },
    # n8n's OpenAI node (image: generate) asks for base64 to build a binary item.
    "n8n": {"model": "dall-e-3", "prompt": "a cat", "size": "1024x1792", "response_format": "b64_json"},
    # Dify's DALL-E tool: quality and style from the tool form, base64 back.
    "dify": {
        "model": "dall-e-3",
        "prompt": "a cat",
        "size": "1024x1024",
        "n": 1,
        "quality": "standard",
        "style": "vivid",
        "response_format": "b64_json",
    },
}
EXPECTED_SHAPE = {
    "one-api": (1024, 1024, 1, "1k"),
    "new-api": (2560, 1440, 3, "2k"),
    "n8n": (1440, 2560, 5, "2k"),
    "dify": (1024, 1024, 1, "1k"),
}


@pytest.mark.parametrize("gateway", sorted(GATEWAY_BODIES))
async def test_gateway_bodies(
    gateway: str, app_client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    body = GATEWAY_BODIES[gateway]
    call = app_client.post("/v1/images/generations", json=body, headers=bearer(CN_TOKEN))
    (resp,) = await drive(app_client.app, clock, call)
    answer = await json_of(resp)
    assert resp.status == 200, answer
    assert isinstance(answer["created"], int) and answer["data"]
    key = "b64_json" if body.get("response_format") == "b64_json" else "url"
    assert all(set(item) == {key} for item in answer["data"])
    assert shape_sent(sim) == EXPECTED_SHAPE[gateway]


async def test_explicit_ratio_and_resolution_win_over_size(
    app_client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    body = {"prompt": "x", "size": "1792x1024", "ratio": "1:1"}
    (resp,) = await drive(
        app_client.app, clock, app_client.post("/v1/images/generations", json=body, headers=bearer(CN_TOKEN))
    )
    assert resp.status == 200
    assert shape_sent(sim) == (2048, 2048, 1, "2k")  # ratio from the field, tier from size


async def test_explicit_resolution_wins_over_size(
    app_client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    body = {"prompt": "x", "size": "1024x1024", "resolution": "4k"}
    (resp,) = await drive(
        app_client.app, clock, app_client.post("/v1/images/generations", json=body, headers=bearer(CN_TOKEN))
    )
    assert resp.status == 200
    assert shape_sent(sim)[2:] == (101, "4k")


async def test_size_auto_keeps_the_defaults(
    app_client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    body = {"prompt": "x", "size": "auto"}
    (resp,) = await drive(
        app_client.app, clock, app_client.post("/v1/images/generations", json=body, headers=bearer(CN_TOKEN))
    )
    assert resp.status == 200
    assert shape_sent(sim) == (2048, 2048, 1, "2k")


async def test_strict_size_restores_the_refusal(make_client: ClientFactory, sim: Simulator) -> None:
    client = await make_client(compat=CompatConfig(strict_size=True))
    for url in ("/v1/images/generations", "/v1/async/images/generations"):
        resp = await client.post(url, json={"prompt": "x", "size": "1024x1024"}, headers=bearer(CN_TOKEN))
        body = await json_of(resp)
        assert resp.status == 400 and body["error"]["code"] == "UNSUPPORTED_PARAMETER"
        assert "'ratio'" in body["error"]["message"]
    assert sim.generate_count == 0


async def test_edits_json_and_form_without_image(app_client: TestClient[Any, Any], sim: Simulator) -> None:
    resp = await app_client.post("/v1/images/edits", json={"prompt": "x"}, headers=bearer(CN_TOKEN))
    body = await json_of(resp)
    assert resp.status == 400 and body["error"]["code"] == "MISSING_PARAMETER"
    assert "'image'" in body["error"]["message"]
    form = aiohttp.FormData()
    form.add_field("prompt", "x")
    form.add_field("image", "not a url at all ")
    form.add_field("mask", "")
    resp = await app_client.post("/v1/images/edits", data=form, headers=bearer(CN_TOKEN))
    assert resp.status == 400  # an unusable image, refused before any upload
    assert sim.generate_count == 0


async def test_edit_answer_is_openai_shaped(
    app_client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    form = aiohttp.FormData()
    form.add_field("prompt", "x")
    form.add_field("n", "1")
    form.add_field("image", PNG, filename="a.png", content_type="image/png")
    (resp,) = await drive(
        app_client.app, clock, app_client.post("/v1/images/edits", data=form, headers=bearer(CN_TOKEN))
    )
    body = await json_of(resp)
    assert resp.status == 200, body
    assert set(body) <= {"created", "data", "note"} and all(set(d) == {"url"} for d in body["data"])


def test_alias_config_is_checked_at_start(config: Config) -> None:
    for aliases, needle in (
        ({"dall-e-3": "jimeng-9"}, "unknown model 'jimeng-9'"),
        ({"jimeng-4.0": "jimeng-4.5"}, "already"),
    ):
        with pytest.raises(ConfigError, match=needle):
            create_app(dataclasses.replace(config, models=ModelsConfig(aliases=aliases)))


async def test_video_model_alias(app_client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    body = {"model": "sora-2", "prompt": "waves", "duration": 5}
    (resp,) = await drive(
        app_client.app, clock, app_client.post("/v1/videos/generations", json=body, headers=bearer(CN_TOKEN))
    )
    answer = await json_of(resp)
    assert resp.status == 200, answer
    (gen,) = sim.calls("/aigc_draft/generate")
    assert "dreamina_ic_generate_video_model_vgfm_3.0" in json.dumps(gen.body)
    resp = await app_client.post(
        "/v1/videos/generations", json={"model": "veo-9", "prompt": "x"}, headers=bearer(CN_TOKEN)
    )
    assert resp.status == 400 and "[models] aliases" in (await json_of(resp))["error"]["message"]


async def test_models_list_shows_aliases(sdk: openai.AsyncOpenAI) -> None:
    listed = {m.id: m for m in (await sdk.models.list()).data}
    assert "jimeng-4.5" in listed and "dall-e-3" in listed
    alias = listed["dall-e-3"].model_dump()
    assert alias["alias_of"] == "jimeng-4.5" and alias["type"] == "image"
    assert alias["regions"] == listed["jimeng-4.5"].model_dump()["regions"]
    assert listed["sora-2"].model_dump()["type"] == "video"


async def test_default_aliases_serve_openai_names(
    make_client: ClientFactory, clock: ManualClock, sim: Simulator
) -> None:
    """Without any configured alias the OpenAI names work: dall-e-2/-3 and gpt-image-1 reach the upstream as their
    catalogue models; the models list and `models.retrieve` show them."""
    app_client = await make_client()
    http = openai.DefaultAsyncHttpxClient(trust_env=False)
    async with openai.AsyncOpenAI(
        api_key=CN_TOKEN, base_url=str(app_client.make_url("/v1")), max_retries=0, http_client=http
    ) as sdk:
        for name, key in (
            ("dall-e-2", "high_aes_general_v40"),
            ("dall-e-3", "high_aes_general_v40l"),
            ("gpt-image-1", "high_aes_general_v40l"),
        ):
            (result,) = await drive(app_client.app, clock, sdk.images.generate(model=name, prompt="x"))
            assert result.data and result.data[0].url
            assert core_param(sim)["model"] == key
            sim.journal.clear()
        listed = {m.id for m in (await sdk.models.list()).data}
        assert {"dall-e-2", "dall-e-3", "gpt-image-1", "sora-2"} <= listed
        sora = (await sdk.models.retrieve("sora-2")).model_dump()
        assert sora["alias_of"] == "jimeng-video-3.5-pro" and sora["type"] == "video"
        assert (await sdk.models.retrieve("jimeng-4.0")).id == "jimeng-4.0"
        with pytest.raises(openai.NotFoundError) as err:
            await sdk.models.retrieve("dall-e-9")
        assert err.value.code == "MODEL_NOT_FOUND" and "dall-e-3" in str(err.value.body)


async def test_configured_alias_overrides_default_and_defaults_can_be_off(
    make_client: ClientFactory, clock: ManualClock, sim: Simulator
) -> None:
    app_client = await make_client(models=ModelsConfig(aliases={"dall-e-3": "jimeng-4.1"}))
    resp = await app_client.get("/v1/models/dall-e-3")
    assert resp.status == 200 and (await json_of(resp))["alias_of"] == "jimeng-4.1"
    off = await make_client(models=ModelsConfig(default_aliases=False))
    resp = await off.post("/v1/images/generations", json={"prompt": "x", "model": "dall-e-3"}, headers=bearer(CN_TOKEN))
    assert resp.status == 400 and (await json_of(resp))["error"]["code"] == "UNKNOWN_MODEL"
    resp = await off.get("/v1/models/dall-e-3")
    assert resp.status == 404 and (await json_of(resp))["error"]["code"] == "MODEL_NOT_FOUND"
    assert sim.generate_count == 0
