"""Simulator uploads: get_upload_token, exact SigV4 checks on ImageX apply/commit, the upload host (Auth, CRC-32,
size), real PluginResult sizes, algo_proxy and the blend validator (docs/protocol.md §10, §11, §14.13, §14.22–26).
"""

from __future__ import annotations

import json
import struct
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from sim_helpers import CN_SESSION, HK_SESSION, US_SESSION, SignedUploads, Upstream, image_body
from support import crc32_hex

from jimeng_server.simulator.media import png
from jimeng_server.upstream import content_check, imagex
from jimeng_server.upstream.regions import Region

TOKEN = "/mweb/v1/get_upload_token"
ALGO = "/mweb/v1/algo_proxy"
PNG = png(33, 21, (9, 9, 9))
Mutator = Callable[[dict[str, str]], None]


class Uploads(SignedUploads):
    """A correct ImageX client over the test client; each step can be broken by the caller."""

    sigv4_service = "imagex"
    scene = 2

    def __init__(self, up: Upstream, session: str = CN_SESSION, region: Region = Region.CN) -> None:
        super().__init__(up, session, region)
        self.vhost = {Region.CN: "cn-imagex", Region.US: "us-imagex"}.get(region, "sg-imagex")

    @property
    def service(self) -> str:
        return str(self.creds.get("service_id") or self.creds.get("space_name"))

    async def apply(
        self, size: int, *, mutate: Mutator | None = None, params: list[tuple[str, str]] | None = None, **over: Any
    ) -> tuple[int, Any]:
        q = params or imagex.apply_query(self.service, size, "abc123", self.region)
        headers = self.sign("GET", q, b"", **over)
        if mutate:
            mutate(headers)
        async with self.up.client.get(f"/{self.vhost}/?{urlencode(q)}", headers=headers) as resp:
            return resp.status, await resp.json()

    async def put(self, address: imagex.UploadAddress, data: bytes, **headers: str) -> tuple[int, Any]:
        _, _, prefix = address.upload_host.partition("/")
        hdrs = imagex.upload_headers(address.auth, crc32_hex(data))
        hdrs.update(headers)
        async with self.up.client.post(f"/{prefix}/upload/v1/{address.store_uri}", data=data, headers=hdrs) as resp:
            return resp.status, await resp.json()

    async def commit(
        self, session_key: str, *, body: bytes | None = None, mutate: Mutator | None = None
    ) -> tuple[int, Any]:
        q = imagex.commit_query(self.service)
        raw = body if body is not None else imagex.commit_body(session_key)
        headers = {**self.sign("POST", q, raw), "Content-Type": "application/json"}
        if mutate:
            mutate(headers)
        async with self.up.client.post(f"/{self.vhost}/?{urlencode(q)}", data=raw, headers=headers) as resp:
            return resp.status, await resp.json()

    async def upload(self, data: bytes) -> imagex.CommittedImage:
        if not self.creds:
            await self.token()
        status, payload = await self.apply(len(data))
        assert status == 200, payload
        address = imagex.parse_apply(payload)
        status, answer = await self.put(address, data)
        assert status == 200 and answer["code"] == 2000, answer
        status, payload = await self.commit(address.session_key)
        assert status == 200, payload
        return imagex.parse_commit(payload)


@pytest.fixture
def uploads(up: Upstream) -> Uploads:
    return Uploads(up)


def error_code(payload: Any) -> str:
    return str(payload["ResponseMetadata"]["Error"]["Code"])


# ------------------------------------------------------------------------------------------ token


async def test_upload_token_per_region(up: Upstream) -> None:
    cn = await Uploads(up).token()
    assert cn["service_id"] == "tb4s082cfz" and "space_name" not in cn
    assert cn["expired_time"] == int(up.clock.time() + up.sim.settings.upload_token_ttl)
    us = await Uploads(up, US_SESSION, Region.US).token()
    assert us["space_name"] == "wopfjsm1ax" and "service_id" not in us
    assert cn["access_key_id"] != us["access_key_id"]
    bad = await up.call(TOKEN, {"scene": 3})
    assert bad.ret == "4002"


# ------------------------------------------------------------------------------------------ full flow, PluginResult


def jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof + b"\xff\xd9"


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00;"


def webp_vp8x(width: int, height: int) -> bytes:
    payload = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    chunk = b"VP8X" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (PNG, (33, 21, "png")),
        (jpeg(640, 480), (640, 480, "jpeg")),
        (gif(12, 7), (12, 7, "gif")),
        (webp_vp8x(1000, 3000), (1000, 3000, "webp")),
        (b"not an image at all", (0, 0, "")),
    ],
)
async def test_commit_reports_real_size(uploads: Uploads, data: bytes, expected: tuple[int, int, str]) -> None:
    image = await uploads.upload(data)
    assert (image.width, image.height, image.format) == expected
    assert image.uri.startswith("tos-cn-i-tb4s082cfz/")
    assert uploads.up.sim.uploads.committed_by(image.uri, CN_SESSION)
    assert not uploads.up.sim.uploads.committed_by(image.uri, US_SESSION)


async def test_international_flow_on_sg_imagex(up: Upstream) -> None:
    image = await Uploads(up, HK_SESSION, Region.HK).upload(PNG)
    assert image.uri.startswith("tos-va-i-wopfjsm1ax/")
    assert {e.vhost for e in up.sim.journal if e.vhost.endswith("imagex")} == {"sg-imagex"}


# ------------------------------------------------------------------------------------------ SigV4 refusals


def drop(name: str) -> Mutator:
    return lambda h: h.pop(name)


def set_header(name: str, value: str) -> Mutator:
    return lambda h: h.__setitem__(name, value)


@pytest.mark.parametrize(
    ("mutate", "over", "needle"),
    [
        (None, {"secret_key": "wrong"}, "signature does not match"),
        (None, {"region": "us-east-1"}, "credential scope"),
        (None, {"service": "vod"}, "credential scope"),
        (None, {"session_token": None}, "SignedHeaders"),
        (set_header("x-amz-security-token", "forged"), {}, "session token"),
        (drop("authorization"), {}, "AWS4-HMAC-SHA256"),
        (None, {"amz_date": "20250101T000000Z"}, "too far"),
        (None, {"access_key": "AKUNKNOWN"}, "not issued"),
    ],
)
async def test_apply_signature_refusals(
    uploads: Uploads, mutate: Mutator | None, over: dict[str, Any], needle: str
) -> None:
    await uploads.token()
    status, payload = await uploads.apply(10, mutate=mutate, **over)
    assert status == 403
    assert error_code(payload) == "SignatureDoesNotMatch" and needle in payload["ResponseMetadata"]["Error"]["Message"]
    assert uploads.up.sim.uploads.slots == {}


async def test_apply_checks_service_size_and_expiry(uploads: Uploads) -> None:
    await uploads.token()
    wrong_service = imagex.apply_query("otherservice", 10, "abc", Region.CN)
    status, payload = await uploads.apply(10, params=wrong_service)
    assert status == 400 and error_code(payload) == "InvalidParameter"
    status, payload = await uploads.apply(0)
    assert status == 400
    intl_on_cn = imagex.apply_query(uploads.service, 10, "abc", Region.US)  # device_platform=web on CN
    status, payload = await uploads.apply(10, params=intl_on_cn)
    assert status == 400
    await uploads.up.clock.advance(uploads.up.sim.settings.upload_token_ttl + 1)
    status, payload = await uploads.apply(10)
    assert status == 403 and "expired" in payload["ResponseMetadata"]["Error"]["Message"]


async def test_credentials_of_one_region_refused_on_another_host(up: Upstream) -> None:
    us = Uploads(up, US_SESSION, Region.US)
    await us.token()
    us.vhost = "cn-imagex"
    status, payload = await us.apply(10, region="cn-north-1")
    assert status == 403 and error_code(payload) == "AccessDenied"


async def test_commit_checks_body_hash_and_shape(uploads: Uploads) -> None:
    await uploads.token()
    status, payload = await uploads.apply(len(PNG))
    address = imagex.parse_apply(payload)
    status, _ = await uploads.put(address, PNG)
    assert status == 200
    status, payload = await uploads.commit(address.session_key, mutate=set_header("x-amz-content-sha256", "0" * 64))
    assert status == 403 and "SHA-256" in payload["ResponseMetadata"]["Error"]["Message"]
    spaced = json.dumps({"SessionKey": address.session_key}).encode()  # not compact
    status, payload = await uploads.commit(address.session_key, body=spaced)
    assert status == 400
    status, payload = await uploads.commit("unknown-key")
    assert status == 400 and "SessionKey" in payload["ResponseMetadata"]["Error"]["Message"]
    status, payload = await uploads.commit(address.session_key)
    assert status == 200 and imagex.parse_commit(payload).uri == address.store_uri


async def test_commit_before_upload_and_by_another_account(up: Upstream) -> None:
    cn = Uploads(up)
    await cn.token()
    status, payload = await cn.apply(len(PNG))
    address = imagex.parse_apply(payload)
    status, payload = await cn.commit(address.session_key)
    assert status == 400 and "not finished" in payload["ResponseMetadata"]["Error"]["Message"]
    await cn.put(address, PNG)
    up.sim.add_account("sess-cn-0002", region=Region.CN)
    other = Uploads(up, "sess-cn-0002", Region.CN)
    await other.token()
    status, _ = await other.commit(address.session_key)
    assert status == 400


# ------------------------------------------------------------------------------------------ upload host


async def test_upload_host_checks_auth_crc_and_size(uploads: Uploads) -> None:
    await uploads.token()
    _, payload = await uploads.apply(len(PNG))
    address = imagex.parse_apply(payload)
    assert address.upload_host.endswith("/upload")
    status, answer = await uploads.put(address, PNG, Authorization="SpaceKey/forged")
    assert status == 401
    status, answer = await uploads.put(address, PNG, **{"Content-CRC32": "deadbeef"})
    assert status == 400 and "CRC32" in answer["message"]
    status, answer = await uploads.put(address, PNG, **{"Content-CRC32": crc32_hex(PNG).upper()})
    assert status == 400
    status, answer = await uploads.put(address, PNG + b"x")
    assert status == 400 and "FileSize" in answer["message"]
    status, answer = await uploads.put(address, PNG)
    assert status == 200 and answer["data"]["crc32"] == crc32_hex(PNG)
    sizes = [e.body_size for e in uploads.up.sim.journal if e.vhost == "upload"]
    assert sizes == [0, len(PNG), 0, len(PNG) + 1, len(PNG)]  # refused on headers: body not read


# ------------------------------------------------------------------------------------------ algo_proxy


async def algo(up: Upstream, uri: str, *, babi: str | None = None, body: dict[str, Any] | None = None) -> Any:
    extra = [("babi_param", content_check.babi_param() if babi is None else babi)]
    return await up.call(ALGO, body or content_check.check_body(uri), extra_query=extra)


async def test_algo_proxy_verdicts(uploads: Uploads) -> None:
    up = uploads.up
    clean = await uploads.upload(PNG)
    risky = await uploads.upload(png(4, 4, (0, 0, 0)) + b"trailer SIM:RISK")
    assert (await algo(up, clean.uri)).ret == "0"
    reply = await algo(up, risky.uri)
    assert (reply.ret, reply.json["errmsg"]) == ("2003", "risk not pass")
    up.sim.mark_risky(clean.uri)
    assert (await algo(up, clean.uri)).ret == "2003"


async def test_algo_proxy_request_checks(uploads: Uploads) -> None:
    up = uploads.up
    image = await uploads.upload(PNG)
    assert (await algo(up, image.uri, babi="not json")).ret == "4002"
    assert (await algo(up, image.uri, babi="{}")).ret == "4002"
    assert (await algo(up, image.uri, body={**content_check.check_body(image.uri), "scene": "x"})).ret == "4002"
    assert (await algo(up, "tos-cn-i-tb4s082cfz/not-uploaded")).ret == "4002"
    us = await up.call(ALGO, content_check.check_body(image.uri), session=US_SESSION, region=Region.US)
    assert us.ret == "4002"


# ------------------------------------------------------------------------------------------ blend validation


def blend_body(
    uris: list[str], *, prompt: str | None = None, tweak: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """A blend body from the real builder, optionally broken by `tweak` on the draft."""
    from jimeng_server.upstream.catalog import image_size
    from jimeng_server.upstream.payloads import DraftVersions, ImageJob, ImageRef, build_image_generate

    job = ImageJob(
        model_key="high_aes_general_v40l",
        prompt="mix" if prompt is None else prompt,
        size=image_size("1:1", "2k", model="jimeng-4.5", region=Region.CN),
        images=tuple(ImageRef(u) for u in uris),
    )
    body = build_image_generate(job, region=Region.CN, versions=DraftVersions(), now_ms=0, seed=0)
    if tweak is not None:
        draft = json.loads(body["draft_content"])
        tweak(draft)
        body["draft_content"] = json.dumps(draft)
    if prompt is not None and prompt.startswith("#"):  # the builder adds the hashes; replace the whole prompt
        draft = json.loads(body["draft_content"])
        draft["component_list"][0]["abilities"]["blend"]["core_param"]["prompt"] = prompt
        body["draft_content"] = json.dumps(draft)
    return body


def blend_of(draft: dict[str, Any]) -> dict[str, Any]:
    blend: dict[str, Any] = draft["component_list"][0]["abilities"]["blend"]
    return blend


async def test_blend_accepted_with_committed_uris_and_makes_four_images(uploads: Uploads) -> None:
    up = uploads.up
    uris = [(await uploads.upload(PNG)).uri for _ in range(3)]
    reply = await up.generate(blend_body(uris))
    assert reply.ret == "0", reply.text
    (record,) = up.sim.records.values()
    assert record.script.max_items == 4  # no gen_option: 4 made and billed (§19.6, measured)


@pytest.mark.parametrize(
    ("count", "prompt", "tweak", "needle"),
    [
        (2, "###mix", None, "exactly 4 '#'"),
        (2, "#####mix", None, "exactly 4 '#'"),
        (2, None, lambda d: blend_of(d).pop("min_version"), "min_version"),
        (1, None, lambda d: blend_of(d).__setitem__("min_version", "3.2.9"), "min_version"),
        (2, None, lambda d: d.__setitem__("min_version", "3.0.2"), "3.2.9"),
        (2, None, lambda d: blend_of(d)["prompt_placeholder_info_list"][1].__setitem__("ability_index", 0), "0..1"),
        (2, None, lambda d: (blend_of(d)["ability_list"].pop(), blend_of(d).pop("min_version")), "0..0"),
        (1, None, lambda d: blend_of(d)["core_param"].__setitem__("seed", 1), "seed"),
        (1, None, lambda d: blend_of(d)["core_param"].pop("image_ratio"), "image_ratio"),
        (1, None, lambda d: blend_of(d).__setitem__("gen_option", {}), "sibling"),
    ],
)
async def test_blend_structure_refusals(
    uploads: Uploads, count: int, prompt: str | None, tweak: Callable[[dict[str, Any]], None] | None, needle: str
) -> None:
    uris = [(await uploads.upload(PNG)).uri for _ in range(count)]
    reply = await uploads.up.generate(blend_body(uris, prompt=prompt, tweak=tweak))
    assert reply.ret == "4002" and needle in reply.json["errmsg"], reply.text
    assert uploads.up.sim.generate_count == 0


async def test_blend_refuses_foreign_or_uncommitted_uris(up: Upstream) -> None:
    us_image = await Uploads(up, US_SESSION, Region.US).upload(PNG)
    reply = await up.generate(blend_body([us_image.uri]))
    assert reply.ret == "4002" and "not uploaded and committed by this account" in reply.json["errmsg"]
    reply = await up.generate(blend_body([f"tos-cn-i-tb4s082cfz/{uuid.uuid4().hex}"]))
    assert reply.ret == "4002"
    assert up.sim.generate_count == 0


async def test_text_to_image_still_valid(up: Upstream) -> None:
    assert (await up.generate(image_body())).ret == "0"
