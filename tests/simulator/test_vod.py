"""Simulator VOD uploads: ApplyUploadInner / CommitUploadInner with exact SigV4 checks (service `vod`, the
region of the account the credentials belong to), the shared upload vhost, real MP4 durations in `VideoMeta`,
and committed vids registered per account (docs/protocol.md §11.3, §11.4, §14.22–25)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from sim_helpers import CN_SESSION, HK_SESSION, US_SESSION, SignedUploads, Upstream
from support import crc32_hex

from jimeng_server.mp4 import tiny_mp4
from jimeng_server.upstream import vod
from jimeng_server.upstream.regions import Region

TOKEN = "/mweb/v1/get_upload_token"
CLIP = tiny_mp4(7250, tag=b"frames" * 500, width=1920, height=1080)


class VodUploads(SignedUploads):
    """A correct VOD client over the test client; each step can be broken by the caller."""

    sigv4_service = "vod"
    scene = 1

    async def apply(
        self, size: int, *, params: list[tuple[str, str]] | None = None, **over: Any
    ) -> tuple[int, Any]:
        q = params or vod.apply_query(self.creds.get("space_name", ""), size, "abc123")
        async with self.up.client.get(f"/vod/?{urlencode(q)}", headers=self.sign("GET", q, b"", **over)) as resp:
            return resp.status, await resp.json()

    async def put(self, address: vod.VodAddress, data: bytes) -> tuple[int, Any]:
        _, _, prefix = address.upload_host.partition("/")
        headers = vod.upload_headers(address.auth, crc32_hex(data))
        async with self.up.client.post(f"/{prefix}/upload/v1/{address.store_uri}", data=data, headers=headers) as resp:
            return resp.status, await resp.json()

    async def commit(self, session_key: str, *, body: bytes | None = None) -> tuple[int, Any]:
        q = vod.commit_query(self.creds["space_name"])
        raw = body if body is not None else vod.commit_body(session_key)
        headers = {**self.sign("POST", q, raw), "Content-Type": "application/json"}
        async with self.up.client.post(f"/vod/?{urlencode(q)}", data=raw, headers=headers) as resp:
            return resp.status, await resp.json()

    async def upload(self, data: bytes) -> vod.CommittedVideo:
        if not self.creds:
            await self.token()
        status, payload = await self.apply(len(data))
        assert status == 200, payload
        address = vod.parse_apply(payload)
        status, answer = await self.put(address, data)
        assert status == 200, answer
        vod.check_upload_answer(json.dumps(answer).encode())
        status, payload = await self.commit(address.session_key)
        assert status == 200, payload
        return vod.parse_commit(payload)


def error(payload: Any) -> tuple[str, str]:
    err = payload["ResponseMetadata"]["Error"]
    return str(err["Code"]), str(err["Message"])


async def test_full_flow_reports_the_real_duration_and_size(up: Upstream) -> None:
    uploads = VodUploads(up)
    creds = await uploads.token()
    assert creds["space_name"] == "dreamina"
    video = await uploads.upload(CLIP)
    assert (video.duration, video.width, video.height) == (7.25, 1920, 1080)
    assert up.sim.uploads.committed_by(video.vid, CN_SESSION)
    assert not up.sim.uploads.committed_by(video.vid, US_SESSION)
    (put,) = [e for e in up.sim.journal if e.vhost == "upload"]
    assert put.body_size == len(CLIP)


async def test_moov_after_mdat_is_read_while_streaming(up: Upstream) -> None:
    data = tiny_mp4(3500, tag=b"x" * 600_000)  # ftyp, moov, mdat -> reorder to ftyp, mdat, moov
    ftyp_size = int.from_bytes(data[:4], "big")
    moov_size = int.from_bytes(data[ftyp_size : ftyp_size + 4], "big")
    ftyp, moov, mdat = data[:ftyp_size], data[ftyp_size : ftyp_size + moov_size], data[ftyp_size + moov_size :]
    video = await VodUploads(up).upload(ftyp + mdat + moov)
    assert video.duration == 3.5 and (video.width, video.height) == (0, 0)


async def test_international_account_signs_with_its_own_region(up: Upstream) -> None:
    video = await VodUploads(up, US_SESSION, Region.US).upload(CLIP)
    assert up.sim.uploads.committed_by(video.vid, US_SESSION)
    hk = VodUploads(up, HK_SESSION, Region.HK)
    await hk.token()
    status, payload = await hk.apply(len(CLIP), region="cn-north-1")  # the host is shared, the region is not
    assert status == 403 and "credential scope" in error(payload)[1]


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({"secret_key": "wrong"}, "signature does not match"),
        ({"service": "imagex"}, "credential scope"),
        ({"region": "us-east-1"}, "credential scope"),
        ({"session_token": "forged"}, "session token"),
        ({"amz_date": "20250101T000000Z"}, "too far"),
    ],
)
async def test_apply_signature_refusals(up: Upstream, over: dict[str, Any], needle: str) -> None:
    uploads = VodUploads(up)
    await uploads.token()
    status, payload = await uploads.apply(10, **over)
    assert status == 403 and error(payload)[0] == "SignatureDoesNotMatch" and needle in error(payload)[1]
    assert up.sim.uploads.slots == {}


async def test_apply_checks_credentials_and_parameters(up: Upstream) -> None:
    uploads = VodUploads(up)
    await uploads.token(scene=2)  # ImageX credentials
    uploads.creds["space_name"] = "dreamina"
    status, payload = await uploads.apply(10)
    assert status == 403 and error(payload)[0] == "AccessDenied"
    await uploads.token()
    for params in (
        vod.apply_query("otherspace", 10, "abc"),
        [(k, "image" if k == "FileType" else v) for k, v in vod.apply_query("dreamina", 10, "abc")],
        vod.apply_query("dreamina", 0, "abc"),
        [(k, v) for k, v in vod.apply_query("dreamina", 10, "abc") if k != "s"],
    ):
        status, payload = await uploads.apply(10, params=params)
        assert status == 400 and error(payload)[0] == "InvalidParameter", params
    assert up.sim.uploads.slots == {}


async def test_commit_checks_body_upload_and_media(up: Upstream) -> None:
    uploads = VodUploads(up)
    await uploads.token()
    status, payload = await uploads.apply(len(CLIP))
    address = vod.parse_apply(payload)
    status, payload = await uploads.commit(address.session_key)
    assert status == 400 and "not finished" in error(payload)[1]
    assert (await uploads.put(address, CLIP))[0] == 200
    for body in (
        json.dumps({"SessionKey": address.session_key}).encode(),
        json.dumps({"SessionKey": address.session_key, "Functions": []}).encode(),  # not compact
        vod.commit_body("unknown"),
    ):
        status, payload = await uploads.commit(address.session_key, body=body)
        assert status == 400 and error(payload)[0] == "InvalidParameter"
    assert not up.sim.uploads.committed_by(address.vid, CN_SESSION)
    other = VodUploads(up, US_SESSION, Region.US)
    await other.token()
    status, payload = await other.commit(address.session_key)
    assert status == 400, "another account's SessionKey is unknown"
    status, payload = await uploads.commit(address.session_key)
    assert status == 200 and vod.parse_commit(payload).vid == address.vid

    garbage = b"not a video" * 10
    status, payload = await uploads.apply(len(garbage))
    address = vod.parse_apply(payload)
    assert (await uploads.put(address, garbage))[0] == 200
    status, payload = await uploads.commit(address.session_key)
    assert status == 400 and error(payload)[0] == "InvalidMedia"
    assert not up.sim.uploads.committed_by(address.vid, CN_SESSION)
