"""Pure parts of the compositions path: image headers, ImageX protocol helpers, content verdicts, data URIs,
and the all-or-nothing runner."""

from __future__ import annotations

import asyncio
import base64
import struct
from pathlib import Path
from typing import Any

import pytest
from support import crc32_hex, leftovers

from jimeng_server.concurrency import all_or_nothing
from jimeng_server.imageinfo import ImageInfo, read_info, sniff_format
from jimeng_server.net.errors import TooLargeError
from jimeng_server.services.inputs import decode_data_uri
from jimeng_server.simulator.media import png
from jimeng_server.upstream import content_check, imagex
from jimeng_server.upstream.errors import UpstreamBadResponse
from jimeng_server.upstream.regions import Region

# ------------------------------------------------------------------------------------------ image headers


def vp8(width: int, height: int) -> bytes:
    frame = b"\x00\x00\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height)
    chunk = b"VP8 " + struct.pack("<I", len(frame)) + frame
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def vp8l(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    data = b"\x2f" + bits.to_bytes(4, "little")
    chunk = b"VP8L" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def progressive_jpeg_with_exif(width: int, height: int) -> bytes:
    exif = b"\xff\xe1" + struct.pack(">H", 2 + 100) + b"\x00" * 100
    sof2 = b"\xff\xc2" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + exif + b"\xff\xff" + sof2


@pytest.mark.parametrize(
    ("data", "info"),
    [
        (png(7, 3, (1, 2, 3)), ImageInfo("png", 7, 3)),
        (b"GIF87a" + struct.pack("<HH", 300, 200), ImageInfo("gif", 300, 200)),
        (vp8(640, 360), ImageInfo("webp", 640, 360)),
        (vp8l(16383, 2), ImageInfo("webp", 16383, 2)),
        (progressive_jpeg_with_exif(4000, 3000), ImageInfo("jpeg", 4000, 3000)),
    ],
)
def test_read_info(data: bytes, info: ImageInfo) -> None:
    assert read_info(data) == info
    assert sniff_format(data[:12]) == info.format


@pytest.mark.parametrize("data", [b"", b"hello world!", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xda", b"RIFF\0\0\0\0WAVE"])
def test_unknown_or_truncated(data: bytes) -> None:
    assert read_info(data) is None


# ------------------------------------------------------------------------------------------ ImageX helpers


def test_parse_upload_token_service_and_expiry() -> None:
    data = {"access_key_id": "AK", "secret_access_key": "SK", "session_token": "T", "service_id": "svc"}
    cn = imagex.parse_upload_token(data, Region.CN, now=100.0, default_ttl=50.0)
    assert (cn.service_id, cn.expires_at) == ("svc", 150.0)
    us = imagex.parse_upload_token(
        {**data, "expired_time": "2026-01-01T00:10:00+00:00"}, Region.US, now=0, default_ttl=1
    )
    assert us.service_id == "wopfjsm1ax"  # space_name missing -> the region default
    assert us.expires_at == 1767226200.0
    assert imagex.parse_upload_token({**data, "expired_time": 1234}, Region.CN, now=0, default_ttl=1).expires_at == 1234
    assert not cn.valid_at(now=100.0, margin=50.0) and cn.valid_at(now=99.0, margin=50.0)
    with pytest.raises(UpstreamBadResponse, match="session_token"):
        imagex.parse_upload_token({"access_key_id": "AK", "secret_access_key": "SK"}, Region.CN, now=0, default_ttl=1)


def test_queries_and_urls() -> None:
    assert imagex.apply_query("sid", 5, "abc", Region.CN) == [
        ("Action", "ApplyImageUpload"),
        ("Version", "2018-08-01"),
        ("ServiceId", "sid"),
        ("FileSize", "5"),
        ("s", "abc"),
    ]
    assert imagex.apply_query("sid", 5, "abc", Region.SG)[-1] == ("device_platform", "web")
    assert imagex.commit_body("sk1") == b'{"SessionKey":"sk1"}'
    assert imagex.upload_url("https://img-api.example.com", "tos-d.example.com", "tos-cn-i-x/abc") == (
        "https://tos-d.example.com/upload/v1/tos-cn-i-x/abc"
    )
    assert imagex.upload_url("http://127.0.0.1:81/cn-imagex", "127.0.0.1:81/upload", "u/1") == (
        "http://127.0.0.1:81/upload/upload/v1/u/1"
    )
    assert imagex.api_url("http://127.0.0.1:81/cn-imagex/") == "http://127.0.0.1:81/cn-imagex/"
    assert len(imagex.random_nonce()) == 10 and imagex.random_nonce().isalnum()
    assert imagex.upload_headers("auth", crc32_hex(b"hello"))["Content-CRC32"] == "3610a686"


def apply_payload(**address: Any) -> dict[str, Any]:
    base = {"StoreInfos": [{"StoreUri": "u/1", "Auth": "A"}], "UploadHosts": ["h.example"], "SessionKey": "k"}
    return {"ResponseMetadata": {}, "Result": {"UploadAddress": {**base, **address}}}


def test_parse_apply() -> None:
    assert imagex.parse_apply(apply_payload()) == imagex.UploadAddress("u/1", "A", "h.example", "k")
    for bad in (
        apply_payload(StoreInfos=[]),
        apply_payload(UploadHosts=[]),
        apply_payload(UploadHosts=["https://h.example"]),
        apply_payload(SessionKey=""),
        {"ResponseMetadata": {"Error": {"Code": "AccessDenied", "Message": "no"}}},
    ):
        with pytest.raises(UpstreamBadResponse):
            imagex.parse_apply(bad)


def test_parse_commit() -> None:
    ok = {
        "Result": {
            "Results": [{"Uri": "u/1", "UriStatus": 2000}],
            "PluginResult": [{"ImageWidth": 4, "ImageHeight": 5, "ImageFormat": "png"}],
        }
    }
    assert imagex.parse_commit(ok) == imagex.CommittedImage("u/1", 4, 5, "png")
    no_plugin = {"Result": {"Results": [{"Uri": "u/1", "UriStatus": 2000}]}}
    assert imagex.parse_commit(no_plugin) == imagex.CommittedImage("u/1", 0, 0, "")
    with pytest.raises(UpstreamBadResponse, match="UriStatus"):
        imagex.parse_commit({"Result": {"Results": [{"Uri": "u/1", "UriStatus": "2000"}]}})


def test_response_error() -> None:
    assert imagex.response_error({"ResponseMetadata": {"Error": {"Code": "X", "Message": "m"}}}) == "X: m"
    assert imagex.response_error({"ResponseMetadata": {"Error": None}}) is None
    assert imagex.response_error("nope") is None


# ------------------------------------------------------------------------------------------ content check


@pytest.mark.parametrize(
    ("ret", "errmsg", "risk"),
    [
        ("2003", "", True),
        ("1", "image detected risk", True),
        ("1", "Risk Not Pass", True),
        ("1019", "shark not pass", False),
        ("5000", "server busy", False),
    ],
)
def test_is_risk(ret: str, errmsg: str, risk: bool) -> None:
    assert content_check.is_risk(ret, errmsg) is risk


def test_check_body_shape() -> None:
    body = content_check.check_body("u/1")
    assert body["file_list"] == [{"file_uri": "u/1"}] and body["options"] == {"ip_check": True}
    assert '"feature_key":"aigc_to_image"' in content_check.babi_param()


# ------------------------------------------------------------------------------------------ data URIs


def read(path: Path) -> bytes:
    return path.read_bytes()


async def test_decode_data_uri_in_chunks(tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000  # 1.28 MB: several decode steps
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    with await decode_data_uri(uri, max_bytes=len(data), directory=str(tmp_path)) as download:
        assert download.size == len(data) and download.crc32 == crc32_hex(data)
        assert download.content_type == "image/png"
        assert read(download.path) == data
    assert leftovers(tmp_path) == []


async def test_decode_data_uri_refusals(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="data:image/png;base64"):
        await decode_data_uri("data:image/png,raw", max_bytes=10, directory=str(tmp_path))
    with pytest.raises(ValueError, match="invalid base64"):
        await decode_data_uri("data:image/png;base64,@@@@", max_bytes=10, directory=str(tmp_path))
    with pytest.raises(TooLargeError):
        await decode_data_uri("data:;base64," + "A" * 400, max_bytes=100, directory=str(tmp_path))
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------ all_or_nothing


async def test_all_or_nothing_cancels_the_rest() -> None:
    started = asyncio.Event()
    cancelled: list[bool] = []

    async def slow() -> int:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return 1

    async def failing() -> int:
        await started.wait()
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await all_or_nothing([slow(), failing()])
    assert cancelled == [True]
    assert await all_or_nothing([asyncio.sleep(0, result=n) for n in range(3)]) == [0, 1, 2]
