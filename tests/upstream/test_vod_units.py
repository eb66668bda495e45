"""Pure parts of the omni/VOD path: MP4 facts from a file or a stream (`MovieScanner`), VOD credentials."""

from __future__ import annotations

import io
import struct

import pytest

from jimeng_server.mp4 import MovieFacts, MovieScanner, movie_facts, tiny_mp4
from jimeng_server.upstream import vod
from jimeng_server.upstream.errors import UpstreamBadResponse
from jimeng_server.upstream.regions import Region


def boxes(data: bytes) -> list[bytes]:
    """Split a tiny MP4 into its top-level boxes."""
    out, pos = [], 0
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        out.append(data[pos : pos + size])
        pos += size
    return out


def scan(data: bytes, step: int) -> MovieFacts | None:
    scanner = MovieScanner()
    for start in range(0, len(data), step):
        scanner.feed(data[start : start + step])
    return scanner.facts()


@pytest.mark.parametrize("step", [1, 5, 8, 13, 4096, 1 << 20])
def test_scanner_matches_the_file_reader_for_any_chunking(step: int) -> None:
    ftyp, moov, mdat = boxes(tiny_mp4(9875, tag=b"z" * 20_000, width=1280, height=720))
    for layout in (ftyp + moov + mdat, ftyp + mdat + moov):
        expected = MovieFacts(9.875, 1280, 720)
        assert movie_facts(io.BytesIO(layout)) == expected
        assert scan(layout, step) == expected


def test_scanner_handles_largesize_and_to_the_end_boxes() -> None:
    ftyp, moov, _ = boxes(tiny_mp4(2000))
    payload = b"m" * 100
    large_mdat = struct.pack(">I4sQ", 1, b"mdat", 16 + len(payload)) + payload
    assert scan(ftyp + large_mdat + moov, 7) == MovieFacts(2.0)
    to_end_moov = struct.pack(">I4s", 0, b"moov") + moov[8:]  # size 0: the box runs to the end
    assert scan(ftyp + large_mdat + to_end_moov, 3) == MovieFacts(2.0)
    to_end_mdat = struct.pack(">I4s", 0, b"mdat") + payload
    assert scan(ftyp + to_end_mdat, 3) is None, "an mdat up to the end hides no moov"


def test_scanner_refuses_garbage_and_oversized_moov() -> None:
    assert scan(b"not an mp4 at all, just text", 4) is None
    assert scan(struct.pack(">I4s", 4, b"bad!") + b"rest", 2) is None
    data = tiny_mp4(1000)
    small = MovieScanner(max_moov=16)
    small.feed(data)
    assert small.facts() is None
    assert movie_facts(io.BytesIO(b"")) is None


def test_vod_credentials_carry_the_space() -> None:
    data = {"access_key_id": "AK", "secret_access_key": "SK", "session_token": "T", "service_id": "imagexsvc"}
    creds = vod.parse_upload_token(data, Region.CN, now=10.0, default_ttl=100.0)
    assert creds.service_id == "dreamina" and creds.expires_at == 110.0
    us = vod.parse_upload_token({**data, "space_name": "vodspace"}, Region.US, now=0.0, default_ttl=1.0)
    assert us.service_id == "vodspace"
    with pytest.raises(UpstreamBadResponse):
        vod.parse_upload_token({"access_key_id": "AK"}, Region.CN, now=0.0, default_ttl=1.0)
    assert str(vod.VideoTooLong(16.5)) == "the video lasts 16.5 s; at most 15 s"
