"""Just enough ISO-BMFF (MP4) for this server: read a movie's duration from `moov/mvhd` without loading the
file, and write a tiny structurally valid MP4 (`ftyp` + `moov/mvhd` + `mdat`) for the simulator's CDN.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

_HEADER = struct.Struct(">I4s")
_MAX_MOOV_BYTES = 64 * 1024 * 1024  # a moov larger than this is not read (it would sit in memory)


@dataclass(frozen=True, slots=True)
class Box:
    """One box: its type, where its payload starts and how long the payload is."""

    kind: bytes
    offset: int  # absolute offset of the payload
    size: int  # payload bytes (header excluded)


def iter_boxes(f: BinaryIO, start: int, end: int) -> Iterator[Box]:
    """The boxes laid out in `f` between `start` and `end` (absolute offsets); stops at a malformed header."""
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        header = f.read(8)
        if len(header) < 8:
            return
        size, kind = _HEADER.unpack(header)
        head = 8
        if size == 1:  # 64-bit largesize follows
            large = f.read(8)
            if len(large) < 8:
                return
            size = struct.unpack(">Q", large)[0]
            head = 16
        elif size == 0:  # the box runs to the end
            size = end - pos
        if size < head or pos + size > end:
            return
        yield Box(kind, pos + head, size - head)
        pos += size


def duration_seconds(f: BinaryIO) -> float | None:
    """The movie duration from `moov/mvhd` (seconds), or None when the file is not a readable MP4/MOV."""
    f.seek(0, 2)
    end = f.tell()
    for box in iter_boxes(f, 0, end):
        if box.kind != b"moov":
            continue
        if box.size > _MAX_MOOV_BYTES:
            return None
        for inner in iter_boxes(f, box.offset, box.offset + box.size):
            if inner.kind == b"mvhd":
                f.seek(inner.offset)
                return _mvhd_duration(f.read(min(inner.size, 120)))
        return None
    return None


def _mvhd_duration(payload: bytes) -> float | None:
    if not payload:
        return None
    version = payload[0]
    try:
        if version == 1:
            timescale, duration = struct.unpack_from(">IQ", payload, 4 + 16)
        else:
            timescale, duration = struct.unpack_from(">II", payload, 4 + 8)
    except struct.error:
        return None
    if timescale == 0:
        return None
    return int(duration) / int(timescale)


def _box(kind: bytes, payload: bytes) -> bytes:
    return _HEADER.pack(8 + len(payload), kind) + payload


def tiny_mp4(duration_ms: int, *, tag: bytes = b"") -> bytes:
    """A minimal valid MP4: `ftyp`, `moov` holding a version-0 `mvhd` (timescale 1000), and an `mdat` with `tag`."""
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2mp41")
    matrix = struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)
    mvhd = _box(
        b"mvhd",
        struct.pack(">B3xIIII", 0, 0, 0, 1000, duration_ms)  # version, flags, ctime, mtime, timescale, duration
        + struct.pack(">IH2x8x", 0x00010000, 0x0100)  # rate 1.0, volume 1.0, reserved
        + matrix
        + bytes(24)  # pre_defined
        + struct.pack(">I", 2),  # next_track_ID
    )
    return ftyp + _box(b"moov", mvhd) + _box(b"mdat", tag)
