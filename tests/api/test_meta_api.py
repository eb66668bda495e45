"""Service info, ping, the model list and the JSON error shape of routing errors and oversized bodies."""

from __future__ import annotations

import io
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from support import CN_TOKEN, AppFactory, bearer, json_of

from jimeng_server.config import ServerConfig
from jimeng_server.simulator import Simulator


def assert_error_shape(body: Any, code: str) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "code"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


async def test_info_lists_endpoints(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/")
    assert resp.status == 200
    body = await resp.json()
    assert body["service"] == "jimeng-server"
    assert isinstance(body["version"], str) and body["version"]
    endpoints = body["endpoints"]
    values = set(endpoints.values())
    for expected in (
        "GET /ping",
        "GET /v1/models",
        "POST /v1/images/generations",
        "POST /v1/async/images/generations",
        "POST /v1/async/videos/generations",
        "POST /v1/async/tasks/query",
        "POST /token/check",
        "POST /token/points",
        "POST /token/receive",
    ):
        assert expected in values, expected
    assert any(v.startswith("GET /v1/async/tasks/") for v in values)


async def test_ping(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/ping")
    assert resp.status == 200
    assert await resp.text() == "pong"


async def test_models_lists_image_and_video_models_with_regions(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/v1/models")
    assert resp.status == 200
    body = await resp.json()
    assert body["object"] == "list"
    models = {m["id"]: m for m in body["data"]}
    assert all(m["object"] == "model" for m in body["data"])
    assert {m["type"] for m in body["data"]} == {"image", "video"}
    assert models["jimeng-4.5"]["type"] == "image"
    assert models["jimeng-4.5"]["regions"] == ["cn", "us", "hk", "jp", "sg"]
    assert models["jimeng-3.1"]["regions"] == ["cn"]
    assert models["jimeng-5.0"]["regions"] == ["cn", "hk", "jp", "sg"]
    for nano in ("nanobanana", "nanobananapro"):
        assert "cn" not in models[nano]["regions"]
        assert models[nano]["regions"] == ["us", "hk", "jp", "sg"]
    assert models["jimeng-video-veo3"]["type"] == "video"
    assert models["jimeng-video-veo3"]["regions"] == ["hk", "jp", "sg"]
    assert models["jimeng-video-seedance-2.0"]["regions"] == ["cn"]
    assert models["jimeng-video-3.5-pro"]["regions"] == ["cn", "us", "hk", "jp", "sg"]
    assert "jimeng-video-3.0-pro" in models and "us" not in models["jimeng-video-3.0-pro"]["regions"]


async def test_unknown_route_is_404_json(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/v1/nothing/here")
    assert resp.status == 404
    assert resp.content_type == "application/json"
    body = await json_of(resp)
    assert_error_shape(body, "NOT_FOUND")
    assert "/v1/nothing/here" in body["error"]["message"]


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/images/generations"), ("POST", "/ping"), ("PUT", "/")])
async def test_wrong_method_is_405_json(client: TestClient[Any, Any], method: str, path: str) -> None:
    resp = await client.request(method, path)
    assert resp.status == 405
    assert resp.content_type == "application/json"
    body = await json_of(resp)
    assert_error_shape(body, "METHOD_NOT_ALLOWED")
    assert method in body["error"]["message"] and path in body["error"]["message"]


async def test_body_over_limit_is_413_json(make_client: AppFactory, sim: Simulator) -> None:
    client = await make_client(server=ServerConfig(max_body_mb=1))
    big = b'{"prompt": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    resp = await client.post(
        "/v1/images/generations", data=io.BytesIO(big), headers={**bearer(CN_TOKEN), "Content-Type": "application/json"}
    )
    assert resp.status == 413
    body = await json_of(resp)
    assert_error_shape(body, "PAYLOAD_TOO_LARGE")
    assert "1 MB" in body["error"]["message"]
    assert str(1024 * 1024) in body["error"]["message"]
    assert sim.generate_count == 0
    assert sim.journal == []


async def test_body_under_limit_is_accepted(make_client: AppFactory) -> None:
    client = await make_client(server=ServerConfig(max_body_mb=1))
    resp = await client.post("/token/check", json={"token": "", "pad": "x" * 1000})
    # Not 413: the body was read and validated.
    assert resp.status == 400
    assert (await json_of(resp))["error"]["code"] == "MISSING_PARAMETER"
