"""GET /openapi.json documents every route of the app and is a valid OpenAPI 3.1 document; /docs renders it
from assets shipped in the package."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate
from support import AppFactory

from jimeng_server.config import AdminConfig


def _app_routes(client: TestClient[Any, Any]) -> set[tuple[str, str]]:
    routes = set()
    for route in client.app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if "directory" in info:  # a static directory: one file parameter
            path = info["prefix"].rstrip("/") + "/{filename}"
        assert path, route
        routes.add((route.method.lower(), re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", path)))
    return routes


async def test_every_route_is_documented_and_the_document_validates(make_client: AppFactory) -> None:
    client = await make_client(admin=AdminConfig(key="test-admin-key"))  # with the admin API's routes too
    resp = await client.get("/openapi.json")
    assert resp.status == 200 and resp.content_type == "application/json"
    doc = await resp.json()
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    documented = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert _app_routes(client) == documented
    for item in doc["paths"].values():
        for op in item.values():
            assert op["responses"]["default"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }


async def test_multipart_bodies_are_documented(client: TestClient[Any, Any]) -> None:
    doc = await (await client.get("/openapi.json")).json()
    for path in ("/v1/images/compositions", "/v1/videos/generations", "/v1/async/videos/generations"):
        content = doc["paths"][path]["post"]["requestBody"]["content"]
        assert set(content) == {"application/json", "multipart/form-data"}


async def test_the_docs_page_renders_from_packaged_assets(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/docs")
    page = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/html"
    assert "/openapi.json" in page and "https://" not in page and "http://" not in page  # no CDN
    for asset in re.findall(r'(?:src|href)="(/docs/[^"]+)"', page):
        got = await client.get(asset)
        assert got.status == 200, asset
        assert "http" not in (await got.text())  # nothing loaded from elsewhere
    script = await (await client.get("/docs/docs.js")).text()
    assert 'fetch("/openapi.json")' in script
    assert (await client.get("/docs/secret.txt")).status == 404
