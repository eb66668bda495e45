"""Sync image-to-image (`POST /v1/images/compositions`) over real HTTP against the simulator.

Input images come from a loopback aiohttp server (the shared config allows private networks); the SSRF tests
build the app with the guard ON. Assertions are on what a user sees and on the simulator's journal.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from proxies import ConnectProxy
from support import CN_TOKEN, US_TOKEN, FakeResolver, bearer, crc32_hex, drive, json_of, leftovers

from jimeng_server.app import create_app
from jimeng_server.clock import ManualClock
from jimeng_server.config import Config, SecurityConfig
from jimeng_server.net.fetcher import SafeFetcher
from jimeng_server.net.policy import FetchPolicy, IPAddress, is_public_address
from jimeng_server.simulator import Fault, FaultKind, Simulator
from jimeng_server.simulator.media import png
from jimeng_server.upstream import imagex, uploader
from jimeng_server.upstream.sigv4 import parse_authorization

URL = "/v1/images/compositions"
ServerFactory = Callable[..., Awaitable[TestServer]]
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]

PNG_A = png(40, 30, (200, 10, 10))
RISKY_PNG = png(8, 8, (1, 2, 3)) + b"SIM:RISK"


def image_app() -> web.Application:
    """Serves input images: /img/{n}.png (n-th colour), /risky.png, /text.txt, /big.png (2 MiB), /to/{target}."""
    app = web.Application()

    async def img(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        return web.Response(body=png(16 + n, 16, (n * 20 % 256, 50, 90)), content_type="image/png")

    async def risky(request: web.Request) -> web.Response:
        return web.Response(body=RISKY_PNG, content_type="image/png")

    async def text(request: web.Request) -> web.Response:
        return web.Response(text="hello, not an image")

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=PNG_A + b"\0" * (2 * 1024 * 1024), content_type="image/png")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["url"])

    app.router.add_get("/img/{n}.png", img)
    app.router.add_get("/risky.png", risky)
    app.router.add_get("/text.txt", text)
    app.router.add_get("/big.png", big)
    app.router.add_get("/to", redirect)
    return app


@pytest.fixture
async def images(aiohttp_server: ServerFactory) -> TestServer:
    return await aiohttp_server(image_app())


def img_url(server: TestServer, n: int) -> str:
    return str(server.make_url(f"/img/{n}.png"))


async def post(
    client: TestClient[Any, Any], clock: ManualClock, *, token: str = CN_TOKEN, **kw: Any
) -> tuple[int, Any]:
    (resp,) = await drive(client.app, clock, client.post(URL, headers=bearer(token), **kw))
    return resp.status, await json_of(resp)


def generate_draft(sim: Simulator) -> dict[str, Any]:
    (gen,) = sim.calls("/aigc_draft/generate")
    draft: dict[str, Any] = json.loads(gen.body["draft_content"])
    return draft


def upload_entries(sim: Simulator) -> list[Any]:
    return [e for e in sim.journal if e.vhost == "upload"]


def nothing_spent(sim: Simulator) -> None:
    assert sim.calls("/get_upload_token") == []
    assert upload_entries(sim) == []
    assert sim.generate_count == 0 and sim.charges == []


# --------------------------------------------------------------------------------------------- success


@pytest.mark.parametrize("count", [1, 2, 10])
async def test_urls_blend_and_answer(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, images: TestServer, count: int, spool: Path
) -> None:
    urls = [img_url(images, n) for n in range(count)]
    status, body = await post(client, clock, json={"prompt": "mix them", "images": urls})
    assert status == 200, body
    assert body["input_images"] == count
    assert body["composition_type"] == "multi_image_synthesis"
    assert isinstance(body["created"], int)
    # No `n`: the upstream's own default for a blend, 4 images (§19.6, measured), made and billed.
    assert len(body["data"]) == 4 and body["data"][0]["url"].startswith("http")
    async with client.session.get(body["data"][0]["url"]) as resp:
        assert resp.status == 200 and (await resp.read()).startswith(b"\x89PNG")
    # One set of credentials for every image; apply, upload and commit once per image.
    assert len(sim.calls("/get_upload_token")) == 1
    applies = [e for e in sim.journal if e.vhost == "cn-imagex" and e.query.get("Action") == "ApplyImageUpload"]
    commits = [e for e in sim.journal if e.vhost == "cn-imagex" and e.query.get("Action") == "CommitImageUpload"]
    assert len(applies) == len(commits) == len(upload_entries(sim)) == count
    assert all(e.status == 200 for e in applies + commits + upload_entries(sim))
    assert len(sim.calls("/algo_proxy")) == count
    # The blend body references exactly the committed URIs, in input order.
    draft = generate_draft(sim)
    blend = draft["component_list"][0]["abilities"]["blend"]
    assert blend["core_param"]["prompt"] == "#" * (2 * count) + "mix them"
    uris = [a["image_uri_list"][0] for a in blend["ability_list"]]
    slots = {s.store_uri: s for s in sim.uploads.slots.values()}
    assert set(uris) == set(slots) and all(slots[u].committed for u in uris)
    widths = [slots[u].info.width for u in uris if slots[u].info]
    assert widths == [16 + n for n in range(count)], "inputs keep their order"
    # The blend carries the size and format ImageX read at commit (the reference sends 0/0/"").
    sent = [a["image_list"][0] for a in blend["ability_list"]]
    assert [(i["width"], i["format"]) for i in sent] == [(16 + n, "png") for n in range(count)]
    assert leftovers(spool) == [], "temporary files are deleted"


async def test_upload_values_checked_by_simulator_are_the_clients(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, images: TestServer
) -> None:
    status, _ = await post(client, clock, json={"prompt": "p", "images": [img_url(images, 3)]})
    assert status == 200
    (apply,) = [e for e in sim.journal if e.query.get("Action") == "ApplyImageUpload"]
    auth = parse_authorization(apply.headers["authorization"])
    assert (auth.region, auth.service) == ("cn-north-1", "imagex")
    assert auth.signed_headers == ("x-amz-date", "x-amz-security-token")
    (commit,) = [e for e in sim.journal if e.query.get("Action") == "CommitImageUpload"]
    assert parse_authorization(commit.headers["authorization"]).signed_headers == (
        "x-amz-content-sha256",
        "x-amz-date",
        "x-amz-security-token",
    )
    (upload,) = upload_entries(sim)
    data = png(19, 16, (60, 50, 90))
    assert upload.headers["content-crc32"] == crc32_hex(data) and upload.body_size == len(data)
    assert upload.path.startswith("/upload/v1/tos-cn-i-")
    assert upload.headers["content-disposition"] == 'attachment; filename="undefined"'


async def test_data_uri(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    uri = "data:image/png;base64," + base64.b64encode(PNG_A).decode()
    status, body = await post(client, clock, json={"prompt": "inline", "images": [{"url": uri}, uri]})
    assert status == 200, body
    assert body["input_images"] == 2
    (upload, _) = upload_entries(sim)
    assert upload.body_size == len(PNG_A)
    assert {s.info.width for s in sim.uploads.slots.values() if s.info} == {40}


async def test_multipart_files_and_text_fields(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, spool: Path
) -> None:
    form = aiohttp.FormData()
    form.add_field("prompt", "from files")
    form.add_field("sample_strength", "0.7")
    form.add_field("intelligent_ratio", "true")
    form.add_field("model", "jimeng-4.5")
    form.add_field("images", PNG_A, filename="a.png", content_type="image/png")
    form.add_field("images", png(5, 7, (0, 0, 0)), filename="b.png", content_type="image/png")
    status, body = await post(client, clock, data=form)
    assert status == 200, body
    assert body["input_images"] == 2
    blend = generate_draft(sim)["component_list"][0]["abilities"]["blend"]
    assert blend["core_param"]["sample_strength"] == 0.7
    assert blend["core_param"]["intelligent_ratio"] is True
    assert [a["strength"] for a in blend["ability_list"]] == [0.7, 0.7]
    assert leftovers(spool) == []


async def test_b64_json(client: TestClient[Any, Any], clock: ManualClock, images: TestServer) -> None:
    status, body = await post(
        client, clock, json={"prompt": "b64", "images": [img_url(images, 1)], "response_format": "b64_json"}
    )
    assert status == 200
    assert base64.b64decode(body["data"][0]["b64_json"]).startswith(b"\x89PNG")


async def test_uploads_run_concurrently(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, images: TestServer
) -> None:
    sim.settings.upload_gate = 3  # each byte upload waits until 3 were in flight at once
    status, body = await post(client, clock, json={"prompt": "p", "images": [img_url(images, n) for n in range(3)]})
    assert status == 200, body
    assert sim.uploads.peak_in_flight >= 3


async def test_credentials_reused_until_expiry(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, images: TestServer
) -> None:
    for _ in range(2):
        status, _ = await post(client, clock, json={"prompt": "p", "images": [img_url(images, 1)]})
        assert status == 200
    assert len(sim.calls("/get_upload_token")) == 1
    await clock.advance(sim.settings.upload_token_ttl)
    status, _ = await post(client, clock, json={"prompt": "p", "images": [img_url(images, 1)]})
    assert status == 200
    assert len(sim.calls("/get_upload_token")) == 2


async def test_refused_cached_credentials_are_replaced(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, images: TestServer
) -> None:
    status, _ = await post(client, clock, json={"prompt": "p", "images": [img_url(images, 1)]})
    assert status == 200
    sim.uploads.credentials.clear()  # the upstream forgot them (rotated)
    status, body = await post(client, clock, json={"prompt": "p", "images": [img_url(images, 2)]})
    assert status == 200, body
    assert len(sim.calls("/get_upload_token")) == 2


async def test_us_token_uses_us_imagex_and_no_content_check(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, images: TestServer
) -> None:
    status, body = await post(
        client, clock, token=US_TOKEN, json={"prompt": "p", "model": "jimeng-4.0", "images": [img_url(images, 1)]}
    )
    assert status == 200, body
    assert sim.calls("/algo_proxy") == []
    imagex_hosts = {e.vhost for e in sim.journal if e.vhost.endswith("imagex")}
    assert imagex_hosts == {"us-imagex"}
    (apply,) = [e for e in sim.journal if e.query.get("Action") == "ApplyImageUpload"]
    assert apply.query["device_platform"] == "web"
    assert parse_authorization(apply.headers["authorization"]).region == "us-east-1"
    (upload,) = upload_entries(sim)
    assert upload.path.startswith("/upload/v1/tos-va-i-wopfjsm1ax/")


# --------------------------------------------------------------------------------------------- content check


async def test_risky_image_is_422_and_nothing_generated(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, images: TestServer
) -> None:
    urls = [img_url(images, 1), str(images.make_url("/risky.png"))]
    status, body = await post(client, clock, json={"prompt": "p", "images": urls})
    assert status == 422, body
    assert body["error"]["code"] == "CONTENT_REJECTED" and "image 2" in body["error"]["message"]
    assert sim.calls("/aigc_draft/generate") == [] and sim.charges == []


async def test_marked_risky_uri_is_422(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, images: TestServer, monkeypatch: Any
) -> None:
    original = sim.uploads.committed_by

    def mark_on_commit(uri: str, sessionid: str) -> bool:
        sim.mark_risky(uri)
        return original(uri, sessionid)

    monkeypatch.setattr(sim.uploads, "committed_by", mark_on_commit)
    status, body = await post(client, clock, json={"prompt": "p", "images": [img_url(images, 1)]})
    assert status == 422 and body["error"]["code"] == "CONTENT_REJECTED"
    assert sim.generate_count == 0


async def test_content_check_outage_does_not_block(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, images: TestServer
) -> None:
    sim.inject("/algo_proxy", Fault(FaultKind.HTTP_500), times=10)
    status, body = await post(client, clock, json={"prompt": "p", "images": [img_url(images, 1)]})
    assert status == 200, body
    assert [e.status for e in sim.calls("/algo_proxy")] == [500, 500, 500]
    assert sim.generate_count == 1


async def test_content_check_unrelated_ret_does_not_block(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, images: TestServer
) -> None:
    sim.inject("/algo_proxy", Fault(FaultKind.RET, ret="1019", errmsg="shark not pass"))
    status, _ = await post(client, clock, json={"prompt": "p", "images": [img_url(images, 1)]})
    assert status == 200 and sim.generate_count == 1


# --------------------------------------------------------------------------------------------- tampering


async def test_tampered_signature_caught_by_simulator(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, images: TestServer, monkeypatch: Any
) -> None:
    sent: list[str] = []
    real = uploader.sign_headers

    def wrong_secret(*args: Any, **kw: Any) -> dict[str, str]:
        headers = real(*args, **{**kw, "secret_key": kw["secret_key"] + "x"})
        sent.append(headers["authorization"])
        return headers

    monkeypatch.setattr(uploader, "sign_headers", wrong_secret)
    status, body = await post(client, clock, json={"prompt": "p", "images": [img_url(images, 1)]})
    assert status == 502, body
    assert "SignatureDoesNotMatch" in body["error"]["message"]
    applies = [e for e in sim.journal if e.query.get("Action") == "ApplyImageUpload"]
    assert applies and all(e.status == 403 for e in applies)
    assert [e.headers["authorization"] for e in applies] == sent  # the values checked are the client's
    assert upload_entries(sim) == [] and sim.generate_count == 0


async def test_tampered_crc_caught_by_simulator(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, images: TestServer, monkeypatch: Any
) -> None:
    real = imagex.upload_headers
    monkeypatch.setattr(imagex, "upload_headers", lambda auth, crc: real(auth, "0badc0de"))
    status, body = await post(client, clock, json={"prompt": "p", "images": [img_url(images, 1)]})
    assert status == 502, body
    (upload,) = upload_entries(sim)
    assert upload.status == 400 and upload.headers["content-crc32"] == "0badc0de"
    assert sim.calls("/aigc_draft/generate") == []


# --------------------------------------------------------------------------------------------- bad input


async def test_eleven_images_refused(client: TestClient[Any, Any], sim: Simulator, images: TestServer) -> None:
    resp = await client.post(
        URL, json={"prompt": "p", "images": [img_url(images, n) for n in range(11)]}, headers=bearer(CN_TOKEN)
    )
    body = await json_of(resp)
    assert resp.status == 400 and body["error"]["code"] == "INVALID_IMAGE_COUNT" and "11" in body["error"]["message"]
    nothing_spent(sim)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"prompt": "p", "images": []}, "INVALID_IMAGE_COUNT"),
        ({"prompt": "p"}, "MISSING_PARAMETER"),
        ({"prompt": "p", "images": [42]}, "INVALID_PARAMETER"),
        ({"prompt": "p", "images": [{"link": "x"}]}, "INVALID_PARAMETER"),
        ({"prompt": "p", "images": ["data:image/png;base64,@@@@"]}, "INVALID_DATA_URI"),
        ({"prompt": "p", "images": ["data:text/plain,hello"]}, "INVALID_DATA_URI"),
        ({"images": ["http://127.0.0.1/a.png"]}, "MISSING_PARAMETER"),
        ({"prompt": "p", "images": ["ftp://example.com/a.png"]}, "UNSAFE_URL"),
        ({"prompt": "p", "model": "nope", "images": ["http://127.0.0.1/a.png"]}, "UNKNOWN_MODEL"),
    ],
)
async def test_bad_input_is_400(
    client: TestClient[Any, Any], sim: Simulator, payload: dict[str, Any], code: str
) -> None:
    resp = await client.post(URL, json=payload, headers=bearer(CN_TOKEN))
    body = await json_of(resp)
    assert resp.status == 400, body
    assert body["error"]["code"] == code
    nothing_spent(sim)


async def test_unreachable_url(client: TestClient[Any, Any], sim: Simulator) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    resp = await client.post(
        URL, json={"prompt": "p", "images": [f"http://127.0.0.1:{port}/a.png"]}, headers=bearer(CN_TOKEN)
    )
    body = await json_of(resp)
    assert resp.status == 400 and body["error"]["code"] == "IMAGE_FETCH_FAILED"
    assert "image 1" in body["error"]["message"] and "connect" in body["error"]["message"]
    nothing_spent(sim)


async def test_url_answering_404(client: TestClient[Any, Any], sim: Simulator, images: TestServer) -> None:
    resp = await client.post(
        URL, json={"prompt": "p", "images": [str(images.make_url("/missing.png"))]}, headers=bearer(CN_TOKEN)
    )
    body = await json_of(resp)
    assert resp.status == 400 and body["error"]["code"] == "IMAGE_FETCH_FAILED" and "404" in body["error"]["message"]
    nothing_spent(sim)


async def test_non_image_file(client: TestClient[Any, Any], sim: Simulator, images: TestServer, spool: Path) -> None:
    urls = [img_url(images, 1), str(images.make_url("/text.txt"))]
    resp = await client.post(URL, json={"prompt": "p", "images": urls}, headers=bearer(CN_TOKEN))
    body = await json_of(resp)
    assert resp.status == 400 and body["error"]["code"] == "NOT_AN_IMAGE" and "image 2" in body["error"]["message"]
    nothing_spent(sim)
    assert leftovers(spool) == []


async def test_non_image_multipart_file(client: TestClient[Any, Any], sim: Simulator) -> None:
    form = aiohttp.FormData()
    form.add_field("prompt", "p")
    form.add_field("images", b"just text", filename="a.txt", content_type="text/plain")
    resp = await client.post(URL, data=form, headers=bearer(CN_TOKEN))
    body = await json_of(resp)
    assert resp.status == 400 and body["error"]["code"] == "NOT_AN_IMAGE"
    nothing_spent(sim)


async def test_oversize_download_is_413(
    make_client: ClientFactory, config: Config, sim: Simulator, images: TestServer, spool: Path
) -> None:
    client = await make_client(security=dataclasses.replace(config.security, max_download_mb=1))
    resp = await client.post(
        URL, json={"prompt": "p", "images": [str(images.make_url("/big.png"))]}, headers=bearer(CN_TOKEN)
    )
    body = await json_of(resp)
    assert resp.status == 413 and body["error"]["code"] == "FILE_TOO_LARGE"
    nothing_spent(sim)
    assert leftovers(spool) == []


async def test_oversize_multipart_is_413(make_client: ClientFactory, config: Config, sim: Simulator) -> None:
    client = await make_client(server=dataclasses.replace(config.server, max_body_mb=1))
    form = aiohttp.FormData()
    form.add_field("prompt", "p")
    big = io.BytesIO(PNG_A + b"\0" * (2 * 1024 * 1024))
    form.add_field("images", big, filename="a.png", content_type="image/png")
    resp = await client.post(URL, data=form, headers=bearer(CN_TOKEN))
    body = await json_of(resp)
    assert resp.status == 413, body
    assert "1 MB" in body["error"]["message"] or str(1024 * 1024) in body["error"]["message"]
    nothing_spent(sim)


async def test_oversize_streamed_multipart_without_length_is_413(
    make_client: ClientFactory, config: Config, sim: Simulator
) -> None:
    client = await make_client(server=dataclasses.replace(config.server, max_body_mb=1))
    boundary = "b0undary"

    async def body() -> AsyncIterator[bytes]:  # chunked: no Content-Length to check up front
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="prompt"\r\n\r\np\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        yield PNG_A
        for _ in range(40):
            yield b"\0" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    resp = await client.post(
        URL,
        data=body(),
        headers={**bearer(CN_TOKEN), "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    body_json = await json_of(resp)
    assert resp.status == 413, body_json
    nothing_spent(sim)


async def test_declared_length_over_limit_is_413_before_reading(
    make_client: ClientFactory, config: Config, sim: Simulator
) -> None:
    client = await make_client(server=dataclasses.replace(config.server, max_body_mb=1))
    resp = await client.post(
        URL,
        data=io.BytesIO(b"{" + b" " * (1024 * 1024 + 10) + b"}"),
        headers={**bearer(CN_TOKEN), "Content-Type": "application/json"},
    )
    body = await json_of(resp)
    assert resp.status == 413 and "1 MB" in body["error"]["message"]
    nothing_spent(sim)


# --------------------------------------------------------------------------------------------- SSRF guard ON


@pytest.fixture
async def guarded_client(aiohttp_client: ClientFactory, config: Config, clock: ManualClock) -> TestClient[Any, Any]:
    """The server with allow_private_networks=False; `public.example` resolves to the loopback image server
    (admitted by the address predicate as the one fixture exception), `intranet.example` to 10.0.0.5."""
    cfg = dataclasses.replace(config, security=SecurityConfig(allow_private_networks=False))
    fixture_ip = "127.0.0.1"

    def fixture_or_public(ip: IPAddress) -> bool:
        return str(ip) == fixture_ip or is_public_address(ip)

    fetcher = SafeFetcher(
        FetchPolicy(allow_private_networks=False),
        resolver=FakeResolver({"public.example": fixture_ip, "intranet.example": "10.0.0.5"}),
        allow_address=fixture_or_public,
    )
    app = create_app(cfg, clock=clock, background=False, identity_salt=b"test-salt", fetcher=fetcher)
    return await aiohttp_client(app)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.png",
        "http://10.1.2.3/a.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/a.png",
        "http://localhost/a.png",
        "http://intranet.example/a.png",
    ],
)
async def test_guard_refuses_private_targets(guarded_client: TestClient[Any, Any], sim: Simulator, url: str) -> None:
    resp = await guarded_client.post(URL, json={"prompt": "p", "images": [url]}, headers=bearer(CN_TOKEN))
    body = await json_of(resp)
    assert resp.status == 400, body
    assert body["error"]["code"] == "UNSAFE_URL" and "allow_private_networks" in body["error"]["message"]
    nothing_spent(sim)


async def test_guard_refuses_redirect_to_private(
    guarded_client: TestClient[Any, Any], sim: Simulator, images: TestServer, clock: ManualClock
) -> None:
    port = images.port
    ok = f"http://public.example:{port}/img/1.png"
    # The loopback image server is reachable as public.example (the fixture exception) ...
    status, body = await post(guarded_client, clock, json={"prompt": "p", "images": [ok]})
    assert status == 200, body
    sim.journal.clear()
    # ... but its redirect to a private address is refused before anything is uploaded.
    bad = f"http://public.example:{port}/to?url=http://10.0.0.9/x.png"
    resp = await guarded_client.post(URL, json={"prompt": "p", "images": [ok, bad]}, headers=bearer(CN_TOKEN))
    body = await json_of(resp)
    assert resp.status == 400 and body["error"]["code"] == "UNSAFE_URL" and "redirect" in body["error"]["message"]
    assert sim.calls("/get_upload_token") == [] and upload_entries(sim) == []


# --------------------------------------------------------------------------------------------- proxy


async def test_every_hop_goes_through_the_accounts_proxy(
    client: TestClient[Any, Any],
    clock: ManualClock,
    sim: Simulator,
    images: TestServer,
    http_proxy: ConnectProxy,
) -> None:
    p, port = http_proxy, http_proxy.port
    token = f"http://127.0.0.1:{port}@{CN_TOKEN}"
    status, body = await post(client, clock, token=token, json={"prompt": "p", "images": [img_url(images, 1)]})
    assert status == 200, body
    upstream = [e for e in sim.journal if e.vhost != "cdn"]
    assert {e.vhost for e in upstream} >= {"cn-web", "cn-imagex", "upload"}
    assert all(e.peer in p.outbound for e in upstream), "every upstream call, uploads included, used the proxy"
    assert any(r.startswith("GET http://") and "/img/1.png" in r for r in p.requests), "the download used it too"
