"""Hostile input never earns a 500: each input kind an adversarial run found gets a 4xx with the JSON error
shape, over real HTTP against the simulator, and no upstream call is made for it."""

from __future__ import annotations

import gzip
import json
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from support import CN_TOKEN, bearer, error_of

from jimeng_server.api.params import image_params
from jimeng_server.errors import ApiError, BadRequest, render_error
from jimeng_server.simulator import Simulator

JSON_ENDPOINTS = (
    "/token/check",
    "/v1/images/generations",
    "/v1/images/compositions",
    "/v1/videos/generations",
    "/v1/async/images/generations",
    "/v1/async/images/compositions",
    "/v1/async/videos/generations",
    "/v1/async/tasks/query",
)
HUGE_INT = "9" * 4400


def no_upstream_calls(sim: Simulator) -> None:
    assert sim.journal == [], "hostile input reached the upstream"


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
@pytest.mark.parametrize(
    "body",
    [
        '{"prompt": "a cat", "n": ' + HUGE_INT + "}",
        '{"prompt": "a cat", "x": [' + HUGE_INT + "]}",
        '{"token": ' + HUGE_INT + "}",
        '{"prompt": "a cat", "x": ' + "[" * 5000 + "]" * 5000 + "}",
        "[" * 100_000,
        '{"prompt": "a cat", "x": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}",
        '{"prompt": "a cat", "sample_strength": NaN}',
        '{"prompt": "a cat", "sample_strength": Infinity}',
        '{"prompt": "a cat", "\\udc00": 1}',
    ],
    ids=[
        "huge-int",
        "huge-int-in-list",
        "huge-int-token",
        "deep-lists",
        "open-lists",
        "deep-objects",
        "nan",
        "inf",
        "surrogate-key",
    ],
)
async def test_malformed_json_is_a_400(client: TestClient[Any, Any], sim: Simulator, path: str, body: str) -> None:
    resp = await client.post(path, data=body, headers={**bearer(CN_TOKEN), "Content-Type": "application/json"})
    err = await error_of(resp)
    assert err["code"] in ("INVALID_JSON", "INVALID_PARAMETER"), err
    no_upstream_calls(sim)


@pytest.mark.parametrize("path", ["/v1/images/generations", "/v1/async/images/generations"])
@pytest.mark.parametrize("field", ["prompt", "negative_prompt", "model"])
async def test_lone_surrogates_are_a_400(client: TestClient[Any, Any], sim: Simulator, path: str, field: str) -> None:
    body = '{"prompt": "a cat", "' + field + '": "x\\ud800y"}'
    resp = await client.post(path, data=body, headers={**bearer(CN_TOKEN), "Content-Type": "application/json"})
    err = await error_of(resp)
    assert err["code"] == "INVALID_JSON" and "surrogate" in err["message"], err
    no_upstream_calls(sim)


def test_the_error_renderer_cannot_fail_on_echoed_input() -> None:
    for message in ("unknown model 'x\ud800y'", "\x00\udfff" * 3, "ok"):
        resp = render_error(ApiError(message, code="INVALID\ud800", status=400))
        assert resp.status == 400 and resp.content_type == "application/json"
        assert resp.body is not None
        body = json.loads(bytes(resp.body).decode("utf-8"))  # strict UTF-8: no surrogate made it through
        assert set(body["error"]) == {"message", "type", "code"}


async def test_huge_integer_strength_is_a_400(client: TestClient[Any, Any], sim: Simulator) -> None:
    body = '{"prompt": "a cat", "sample_strength": 1' + "0" * 400 + "}"
    resp = await client.post(
        "/v1/images/generations", data=body, headers={**bearer(CN_TOKEN), "Content-Type": "application/json"}
    )
    err = await error_of(resp)
    assert err["code"] == "INVALID_JSON" and "digits" in err["message"]
    resp = await client.post(
        "/v1/images/generations",
        data='{"prompt": "a cat", "sample_strength": 1e400}',
        headers={**bearer(CN_TOKEN), "Content-Type": "application/json"},
    )
    err = await error_of(resp)
    assert err["code"] == "INVALID_JSON" and "too large" in err["message"]
    no_upstream_calls(sim)


@pytest.mark.parametrize("value", ["1e400", "-1e400", "nan", "1" + "0" * 400])
def test_a_strength_beyond_float_range_names_the_field(value: str) -> None:
    with pytest.raises(BadRequest, match="'sample_strength' must be a number between 0 and 1"):
        image_params({"prompt": "a cat", "sample_strength": value})
    with pytest.raises(BadRequest, match="'sample_strength' must be a number between 0 and 1"):
        image_params({"prompt": "a cat", "sample_strength": 10**400})


async def test_huge_multipart_duration_is_a_400(client: TestClient[Any, Any], sim: Simulator) -> None:
    form = aiohttp.FormData()
    form.add_field("prompt", "a cat walks")
    form.add_field("duration", "9" * 5000)
    resp = await client.post("/v1/videos/generations", data=form, headers=bearer(CN_TOKEN))
    err = await error_of(resp)
    assert "duration" in err["message"]
    no_upstream_calls(sim)


@pytest.mark.parametrize("token", ["sess\x00ion0aaaabbbbcccc", "abc\x7fdef0aaaabbbbcccc", "\x00"])
async def test_control_characters_in_a_checked_token_are_a_400(
    client: TestClient[Any, Any], sim: Simulator, token: str
) -> None:
    resp = await client.post("/token/check", json={"token": token})
    err = await error_of(resp)
    assert err["code"] == "INVALID_TOKEN"
    no_upstream_calls(sim)


@pytest.mark.parametrize(
    "proxy",
    ["http://999.999.999.999:99999", "http://", "http://a b", "socks5://host:0", "http://host:port", "http://[::1"],
)
async def test_malformed_proxy_prefixes_are_a_401(client: TestClient[Any, Any], sim: Simulator, proxy: str) -> None:
    token = f"{proxy}@{CN_TOKEN}"
    resp = await client.post("/token/points", headers={"Authorization": f"Bearer {token}"})
    err = await error_of(resp, 401)
    assert err["code"] == "INVALID_TOKEN" and CN_TOKEN not in err["message"]
    resp = await client.post("/token/check", json={"token": token})
    err = await error_of(resp, 400)
    assert CN_TOKEN not in err["message"]
    no_upstream_calls(sim)


@pytest.mark.parametrize("path", ["/token/check", "/v1/images/generations", "/v1/videos/generations"])
async def test_a_body_that_is_not_what_its_content_encoding_says_is_a_400(
    client: TestClient[Any, Any], sim: Simulator, path: str
) -> None:
    headers = {**bearer(CN_TOKEN), "Content-Type": "application/json", "Content-Encoding": "gzip"}
    resp = await client.post(path, data=b'{"prompt": "a cat"}', headers=headers)
    err = await error_of(resp)
    assert "Content-Encoding" in err["message"]
    no_upstream_calls(sim)


async def test_a_real_gzip_body_still_works(client: TestClient[Any, Any]) -> None:
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    resp = await client.post("/token/check", data=gzip.compress(b'{"token": ""}'), headers=headers)
    err = await error_of(resp)
    assert err["code"] == "MISSING_PARAMETER"


async def test_a_multipart_part_with_unreadable_headers_is_a_400(client: TestClient[Any, Any], sim: Simulator) -> None:
    body = (
        b'--B\r\nContent-Disposition: form-data; name="prompt"\r\n\r\na cat\r\n'
        b'--B\r\nContent-Disposition: form-data; name="\xf0\xa7\xaf\xb6\x12\x0e+"\r\n\r\nx\r\n--B--\r\n'
    )
    headers = {**bearer(CN_TOKEN), "Content-Type": "multipart/form-data; boundary=B"}
    for path in ("/v1/videos/generations", "/v1/async/images/compositions"):
        err = await error_of(await client.post(path, data=body, headers=headers))
        assert err["code"] == "INVALID_MULTIPART", err
    no_upstream_calls(sim)


@pytest.mark.parametrize("field", ["image_file_" + "9" * 5000, "video_file_" + "1" * 5000])
async def test_a_huge_numbered_material_field_is_a_400(
    client: TestClient[Any, Any], sim: Simulator, field: str
) -> None:
    form = aiohttp.FormData()
    form.add_field("prompt", "a cat walks")
    form.add_field("function_mode", "omni_reference")
    form.add_field("model", "jimeng-video-seedance-2.0")
    form.add_field(field, "https://example.com/a.png")
    await error_of(await client.post("/v1/videos/generations", data=form, headers=bearer(CN_TOKEN)))
    no_upstream_calls(sim)
