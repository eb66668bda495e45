"""Just enough ISO-BMFF (MP4) for this server: read a movie's duration from `moov/mvhd` (and its picture size
from the first `trak/tkhd` that has one) without loading the file, or from a stream fed chunk by chunk
(`MovieScanner`, which keeps only box headers and the `moov` box), and write a tiny structurally valid MP4
(`ftyp` + `moov/mvhd[/trak/tkhd]` + `mdat`) for the simulator's CDN and for tests.
"""

from __future__ import annotations

import io
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


@dataclass(frozen=True, slots=True)
class MovieFacts:
    """What the `moov` box says: duration in seconds, the picture size (0 x 0 when no track gives one) and the
    frame rate of the first track with a constant one (`mdhd` timescale over the `stts` delta; 0 when unknown)."""

    duration: float
    width: int = 0
    height: int = 0
    fps: float = 0.0


def movie_facts(f: BinaryIO) -> MovieFacts | None:
    """Duration and size from the file's `moov` box, or None when it is not a readable MP4/MOV (no `moov/mvhd`,
    a zero timescale, or a `moov` too large to trust). Reads box headers and the `moov` only."""
    f.seek(0, 2)
    end = f.tell()
    for box in iter_boxes(f, 0, end):
        if box.kind != b"moov":
            continue
        if box.size > _MAX_MOOV_BYTES:
            return None
        return _moov_facts(f, box.offset, box.offset + box.size)
    return None


def _moov_facts(f: BinaryIO, start: int, end: int) -> MovieFacts | None:
    duration: float | None = None
    width = height = 0
    fps = 0.0
    for inner in iter_boxes(f, start, end):
        if inner.kind == b"mvhd":
            f.seek(inner.offset)
            duration = _mvhd_duration(f.read(min(inner.size, 120)))
        elif inner.kind == b"trak" and not width:
            for part in iter_boxes(f, inner.offset, inner.offset + inner.size):
                if part.kind == b"tkhd":
                    f.seek(part.offset)
                    width, height = _tkhd_size(f.read(min(part.size, 96)))
                    break
        if inner.kind == b"trak" and not fps:
            fps = _track_fps(f, inner.offset, inner.offset + inner.size)
    return MovieFacts(duration, width, height, fps) if duration is not None else None


def _child(f: BinaryIO, start: int, end: int, kind: bytes) -> Box | None:
    return next((box for box in iter_boxes(f, start, end) if box.kind == kind), None)


def _track_fps(f: BinaryIO, start: int, end: int) -> float:
    """A track's constant frame rate: `mdia/mdhd` timescale over the first `mdia/minf/stbl/stts` delta (0.0 when
    either is missing)."""
    mdia = _child(f, start, end, b"mdia")
    if mdia is None:
        return 0.0
    mdhd = _child(f, mdia.offset, mdia.offset + mdia.size, b"mdhd")
    minf = _child(f, mdia.offset, mdia.offset + mdia.size, b"minf")
    stbl = _child(f, minf.offset, minf.offset + minf.size, b"stbl") if minf is not None else None
    stts = _child(f, stbl.offset, stbl.offset + stbl.size, b"stts") if stbl is not None else None
    if mdhd is None or stts is None:
        return 0.0
    f.seek(mdhd.offset)
    head = f.read(min(mdhd.size, 32))
    f.seek(stts.offset)
    table = f.read(min(stts.size, 16))
    try:
        timescale = struct.unpack_from(">I", head, 20 if head[:1] == b"\x01" else 12)[0]
        entries, _count, delta = struct.unpack_from(">III", table, 4)
    except struct.error:
        return 0.0
    return timescale / delta if entries and delta and timescale else 0.0


def _tkhd_size(payload: bytes) -> tuple[int, int]:
    """Width and height (16.16 fixed point, integer part) of a `tkhd`; (0, 0) when it is too short."""
    offset = 88 if payload[:1] == b"\x01" else 76
    try:
        width, height = struct.unpack_from(">II", payload, offset)
    except struct.error:
        return 0, 0
    return width >> 16, height >> 16


class MovieScanner:
    """Reads `MovieFacts` from an MP4 arriving in chunks: only box headers and the `moov` box are kept (at most
    `max_moov` bytes); every other box is skipped as it streams past. Call `feed()` per chunk, then `facts()`."""

    def __init__(self, max_moov: int = _MAX_MOOV_BYTES) -> None:
        self.max_moov = max_moov
        self._header = bytearray()  # a box header being assembled
        self._skip = 0  # bytes of the current box still to skip
        self._moov: bytearray | None = None  # the moov payload being collected
        self._moov_left = 0  # moov bytes still to come (-1: up to the end)
        self._to_end = False  # inside a box that runs to the end of the file
        self._found: bytes | None = None
        self._broken = False

    def feed(self, chunk: bytes) -> None:
        """Consume the next bytes of the file."""
        view = memoryview(chunk)
        while view and not (self._broken or self._found is not None or self._to_end):
            if self._skip:
                n = min(self._skip, len(view))
                self._skip -= n
                view = view[n:]
            elif self._moov is not None:
                n = len(view) if self._moov_left < 0 else min(self._moov_left, len(view))
                self._moov += view[:n]
                view = view[n:]
                if len(self._moov) > self.max_moov:
                    self._broken, self._moov = True, None
                elif self._moov_left > 0:
                    self._moov_left -= n
                    if self._moov_left == 0:
                        self._found, self._moov = bytes(self._moov), None
            else:
                view = self._read_header(view)

    def _read_header(self, view: memoryview) -> memoryview:
        need = 16 if len(self._header) >= 8 and _HEADER.unpack_from(self._header)[0] == 1 else 8
        take = min(need - len(self._header), len(view))
        self._header += view[:take]
        view = view[take:]
        if len(self._header) < 8:
            return view
        size, kind = _HEADER.unpack_from(self._header)
        if size == 1 and len(self._header) < 16:
            return view
        head = 16 if size == 1 else 8
        if size == 1:
            size = struct.unpack_from(">Q", self._header, 8)[0]
        self._header.clear()
        if size != 0 and size < head:
            self._broken = True
            return view
        payload = -1 if size == 0 else size - head
        if kind == b"moov":
            self._moov, self._moov_left = bytearray(), payload
            if payload == 0:
                self._found, self._moov = b"", None
        elif payload < 0:
            self._to_end = True  # a box up to the end of the file that is not the moov: nothing more to see
        else:
            self._skip = payload
        return view

    def facts(self) -> MovieFacts | None:
        """The movie's facts once the whole file was fed (None when it had no readable `moov/mvhd`)."""
        moov = self._found
        if moov is None and self._moov is not None and self._moov_left < 0:
            moov = bytes(self._moov)  # a moov that ran to the end of the file
        if moov is None:
            return None
        return _moov_facts(io.BytesIO(moov), 0, len(moov))


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


def tiny_mp4(duration_ms: int, *, tag: bytes = b"", width: int = 0, height: int = 0, fps: int = 0) -> bytes:
    """A minimal valid MP4: `ftyp`, `moov` holding a version-0 `mvhd` (timescale 1000) and, when a size is
    given, a `trak` with a version-0 `tkhd` of that width and height (and with `fps`, a `mdia` whose `mdhd`
    timescale and `stts` table say that frame rate), and an `mdat` with `tag`."""
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
    trak = b""
    if width or height:
        tkhd = _box(
            b"tkhd",
            struct.pack(">B3xIIIII", 0, 0, 0, 1, 0, duration_ms)  # version, flags, ctime, mtime, track, 0, duration
            + bytes(8)  # reserved
            + struct.pack(">hhH2x", 0, 0, 0)  # layer, alternate group, volume, reserved
            + matrix
            + struct.pack(">II", width << 16, height << 16),
        )
        trak = _box(b"trak", tkhd + (_media(duration_ms, fps) if fps > 0 else b""))
    return ftyp + _box(b"moov", mvhd + trak) + _box(b"mdat", tag)


def _media(duration_ms: int, fps: int) -> bytes:
    """A `mdia` box: `mdhd` with timescale `fps` x 1000 and an `stts` of one entry (every frame 1000 ticks)."""
    frames = max(1, duration_ms * fps // 1000)
    timescale = fps * 1000
    mdhd = _box(b"mdhd", struct.pack(">B3xIIIIHH", 0, 0, 0, timescale, frames * 1000, 0x55C4, 0))
    stts = _box(b"stts", struct.pack(">B3xIII", 0, 1, frames, 1000))
    return _box(b"mdia", mdhd + _box(b"minf", _box(b"stbl", stts)))
