"""`b64_json` answers of the sync image endpoints over real HTTP: streamed from spooled files, byte for byte the
simulator's images, the same JSON text as a whole answer; 413/502 before any byte of a 200; temporary files
deleted (also when the client goes away mid-stream); replays of a keyed answer. Plus the writer itself."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from support import CN_TOKEN, bearer, drive, leftovers

from jimeng_server.api.b64_answers import CHUNK_BYTES, B64Files
from jimeng_server.clock import ManualClock
from jimeng_server.config import SecurityConfig
from jimeng_server.errors import BadGateway
from jimeng_server.net.spool import Download, spool_chunks
from jimeng_server.services import results
from jimeng_server.simulator import Fault, FaultKind, Simulator
from jimeng_server.simulator.media import item_png, png
from jimeng_server.simulator.video import item_mp4

GENERATIONS = "/v1/images/generations"
BIG = 3 * CHUNK_BYTES + 1001  # several read chunks, a size that is not a multiple of 3


async def send(client: TestClient[Any, Any], clock: ManualClock, path: str, **kw: Any) -> tuple[Any, bytes]:
    headers = {**bearer(CN_TOKEN), **kw.pop("headers", {})}
    (resp,) = await drive(client.app, clock, client.post(path, headers=headers, **kw))
    return resp, await resp.read()


def parse(text: bytes) -> Any:
    """The body, checked to be exactly the text `json.dumps` gives for it (the answer's format before streaming:
    `web.json_response`), keys in order."""
    body = json.loads(text)
    assert json.dumps(body).encode() == text
    return body


def images_of(sim: Simulator, body: Any, *, total_bytes: int) -> None:
    """Each `b64_json` decodes to the simulator's image of that item, byte for byte."""
    (hid,) = sim.records
    for n, item in enumerate(body["data"]):
        assert list(item) == ["b64_json"]
        assert base64.b64decode(item["b64_json"], validate=True) == item_png(hid, n, total_bytes=total_bytes)


# ------------------------------------------------------------------------------------------ streamed answers


async def test_generation_streams_each_image(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, spool: Path
) -> None:
    sim.settings.item_image_bytes = BIG
    resp, text = await send(client, clock, GENERATIONS, json={"prompt": "big ones", "response_format": "b64_json"})
    assert resp.status == 200, text
    assert "Content-Length" not in resp.headers, "the body is streamed"
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    body = parse(text)
    assert list(body) == ["created", "data"] and isinstance(body["created"], int)
    assert len(body["data"]) == 4
    images_of(sim, body, total_bytes=BIG)
    assert len(sim.calls(".png", vhost="cdn")) == 4
    assert leftovers(spool) == [], "temporary files are deleted"


async def test_partial_results_keep_their_note(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, spool: Path
) -> None:
    resp, text = await send(
        client, clock, GENERATIONS, json={"prompt": "half [sim:partial]", "response_format": "b64_json"}
    )
    assert resp.status == 200, text
    body = parse(text)
    assert list(body) == ["created", "data", "note"] and "1001" in body["note"]
    assert len(body["data"]) == 1
    images_of(sim, body, total_bytes=0)
    assert leftovers(spool) == []


async def test_composition_streams_with_its_fields(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, spool: Path
) -> None:
    sim.settings.item_image_bytes = BIG
    uri = "data:image/png;base64," + base64.b64encode(png(16, 16, (9, 9, 9))).decode()
    fields = {"prompt": "blend", "images": [uri], "n": 2, "response_format": "b64_json"}
    resp, text = await send(client, clock, "/v1/images/compositions", json=fields)
    assert resp.status == 200, text
    assert "Content-Length" not in resp.headers
    body = parse(text)
    assert list(body) == ["created", "data", "input_images", "composition_type"]
    assert body["input_images"] == 1 and body["composition_type"] == "multi_image_synthesis"
    assert len(body["data"]) == 2
    images_of(sim, body, total_bytes=BIG)
    assert leftovers(spool) == []


async def test_openai_edit_streams(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, spool: Path
) -> None:
    sim.settings.item_image_bytes = BIG
    form = aiohttp.FormData()
    form.add_field("prompt", "make it night")
    form.add_field("response_format", "b64_json")
    form.add_field("image", png(16, 16, (1, 2, 3)), filename="a.png", content_type="image/png")
    resp, text = await send(client, clock, "/v1/images/edits", data=form)
    assert resp.status == 200, text
    assert "Content-Length" not in resp.headers
    body = parse(text)
    assert list(body) == ["created", "data"]
    images_of(sim, body, total_bytes=BIG)
    assert leftovers(spool) == []


async def test_video_b64_leaves_no_file(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, spool: Path
) -> None:
    resp, text = await send(
        client, clock, "/v1/videos/generations", json={"prompt": "a wave", "response_format": "b64_json"}
    )
    assert resp.status == 200, text
    (item,) = json.loads(text)["data"]
    (record,) = sim.records.values()
    assert base64.b64decode(item["b64_json"], validate=True) == item_mp4(record, 0, hq=True)
    assert leftovers(spool) == []


# ------------------------------------------------------------------------------------------ errors before the 200


async def test_too_large_image_is_413_before_any_byte(
    make_client: Any, clock: ManualClock, sim: Simulator, spool: Path
) -> None:
    client = await make_client(security=SecurityConfig(allow_private_networks=True, max_download_mb=1))
    sim.settings.item_image_bytes = 1024 * 1024 + 1  # one byte over max_download_mb
    resp, text = await send(client, clock, GENERATIONS, json={"prompt": "huge", "response_format": "b64_json"})
    assert resp.status == 413
    assert resp.headers["Content-Type"].startswith("application/json")
    error = json.loads(text)["error"]  # the whole body is the error: nothing of a 200 went out
    assert error["code"] == "PAYLOAD_TOO_LARGE" and "response_format=url" in error["message"]
    assert leftovers(spool) == []


async def test_failed_download_is_502_and_nothing_is_left(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, spool: Path
) -> None:
    sim.settings.item_image_bytes = BIG
    sim.inject("/2.png", Fault(FaultKind.HTTP_500))
    resp, text = await send(client, clock, GENERATIONS, json={"prompt": "one fails", "response_format": "b64_json"})
    assert resp.status == 502
    assert json.loads(text)["error"]["code"] == "RESULT_FETCH_FAILED"
    assert leftovers(spool) == [], "the images already spooled are deleted too"


async def test_client_gone_mid_stream_deletes_the_files(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.settings.item_image_bytes = 4 * 1024 * 1024  # ~22 MB of base64: more than loopback buffers hold
    cleaned: list[Path] = []
    all_cleaned = asyncio.Event()
    original = Download.cleanup

    def cleanup(download: Download) -> None:
        original(download)
        cleaned.append(download.path)
        if len(cleaned) == 4:
            all_cleaned.set()

    monkeypatch.setattr(Download, "cleanup", cleanup)
    (resp,) = await drive(
        client.app,
        clock,
        client.post(GENERATIONS, json={"prompt": "leave", "response_format": "b64_json"}, headers=bearer(CN_TOKEN)),
    )
    assert resp.status == 200
    assert (await resp.content.readexactly(12)) == b'{"created": '
    assert len(leftovers(spool)) == 4, "the files are open while the answer streams"
    resp.close()  # the client goes away mid-stream
    await asyncio.wait_for(all_cleaned.wait(), timeout=10)  # the handler ends on the broken connection
    assert leftovers(spool) == []


# ------------------------------------------------------------------------------------------ Idempotency-Key


async def test_keyed_b64_answer_is_replayed_byte_for_byte(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, spool: Path
) -> None:
    sim.settings.item_image_bytes = BIG
    fields = {"prompt": "keep me", "response_format": "b64_json"}
    first, text = await send(client, clock, GENERATIONS, json=fields, headers={"Idempotency-Key": "b64-1"})
    assert first.status == 200, text
    body = parse(text)
    images_of(sim, body, total_bytes=BIG)
    again, replayed = await send(client, clock, GENERATIONS, json=fields, headers={"Idempotency-Key": "b64-1"})
    assert again.status == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert replayed == text
    assert sim.generate_count == 1 and len(sim.charges) == 1
    assert len(sim.calls(".png", vhost="cdn")) == 4, "a replay downloads nothing"
    assert leftovers(spool) == []


async def test_keyed_failed_download_is_replayed_as_the_same_502(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, spool: Path
) -> None:
    sim.inject("/0.png", Fault(FaultKind.HTTP_500))
    fields = {"prompt": "spent", "response_format": "b64_json"}
    first, text = await send(client, clock, GENERATIONS, json=fields, headers={"Idempotency-Key": "b64-2"})
    assert first.status == 502
    again, replayed = await send(client, clock, GENERATIONS, json=fields, headers={"Idempotency-Key": "b64-2"})
    assert again.status == 502 and again.headers["Idempotent-Replayed"] == "true"
    assert json.loads(replayed) == json.loads(text) and sim.generate_count == 1
    assert leftovers(spool) == []


# ------------------------------------------------------------------------------------------ spooling: all or nothing


NOWHERE: Any = None  # the pool and account a faked `spool_result` never uses
NOBODY: Any = None


async def spool_with_one_bad(monkeypatch: pytest.MonkeyPatch, bad: str) -> asyncio.Task[list[Download]]:
    """`spool_results` of three good URLs and `bad`, which is fetched only once the three are spooled:
    "fail" then raises a 502, "hang" never answers."""
    others_done = asyncio.Event()
    good: list[Download] = []

    async def fake(pool: Any, account: Any, url: str, *, max_bytes: int, seconds: float) -> Download:
        if url == bad:
            await others_done.wait()
            if bad == "hang":
                await asyncio.Event().wait()
            raise BadGateway("the result file could not be fetched (HTTP 500)", code="RESULT_FETCH_FAILED")
        download = await spooled(url.encode())
        good.append(download)
        if len(good) == 3:
            others_done.set()
        return download

    monkeypatch.setattr(results, "spool_result", fake)
    task = asyncio.ensure_future(results.spool_results(NOWHERE, NOBODY, ["a", "b", bad, "c"], max_bytes=9, seconds=1))
    await asyncio.wait_for(others_done.wait(), timeout=10)
    return task


async def test_spool_results_deletes_the_others_when_one_fails(spool: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    task = await spool_with_one_bad(monkeypatch, "fail")
    with pytest.raises(BadGateway):
        await task
    assert leftovers(spool) == []


async def test_spool_results_deletes_everything_when_cancelled(spool: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    task = await spool_with_one_bad(monkeypatch, "hang")
    assert len(leftovers(spool)) == 3
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert leftovers(spool) == []


# ------------------------------------------------------------------------------------------ the writer


async def spooled(data: bytes) -> Download:
    async def chunks() -> AsyncIterator[bytes]:
        yield data

    return await spool_chunks(chunks(), max_bytes=len(data) + 1)


SIZES = [0, 1, 2, 3, 4, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 2 * CHUNK_BYTES + 2]


async def test_writer_encodes_every_size_exactly(spool: Path) -> None:
    blobs = [bytes(range(256)) * (size // 256) + bytes(size % 256) for size in SIZES]
    files = B64Files([await spooled(blob) for blob in blobs])
    prompt = 'a quote ", a backslash \\, "b64_json": "x", ünïcode'
    body = {"created": 7, "data": [{"revised_prompt": prompt, "b64_json": slot} for slot in files.slots]}
    for dumps in (json.dumps, lambda v: json.dumps(v, ensure_ascii=False), lambda v: json.dumps(v, indent=2)):
        text = (await files.render(body, dumps=dumps)).body
        assert isinstance(text, bytes)
        data = [{"revised_prompt": prompt, "b64_json": base64.b64encode(blob).decode()} for blob in blobs]
        expected = {**body, "data": data}
        assert text == dumps(expected).encode()
    for download in files.files:
        download.cleanup()
    assert leftovers(spool) == []


async def test_writer_refuses_a_body_without_every_file(spool: Path) -> None:
    files = B64Files([await spooled(b"a"), await spooled(b"b")])
    for body in ({"data": [{"b64_json": files.slots[0]}]}, {"data": [files.slots[0], files.slots[0], files.slots[1]]}):
        with pytest.raises(RuntimeError, match="exactly once"):
            await files.render(body)
    for download in files.files:
        download.cleanup()
