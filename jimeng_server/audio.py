"""Reading an audio file's format and duration from its first bytes (omni reference audio, docs/protocol.md
§17.10: `.mp3` and `.wav`). Pure; stdlib only.

WAV: the RIFF `fmt ` chunk's byte rate and the `data` chunk's size (or the rest of the file). MP3: after an
optional ID3v2 tag, the first MPEG audio frame header's bitrate, the duration taken as constant-bitrate (size ×
8 / bitrate); a VBR file is estimated from its first frame, which is what a client needs (a rough length).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEAD_BYTES = 64 * 1024
"""How much of the file the readers look at."""

# kbit/s by bitrate index for Layer III: MPEG-1, and MPEG-2/2.5.
_MPEG1_L3 = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0)
_MPEG2_L3 = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 0)


@dataclass(frozen=True, slots=True)
class AudioFacts:
    """An audio file's format ("mp3" or "wav") and duration in seconds."""

    format: str
    duration: float


def _wav(head: bytes, size: int) -> AudioFacts | None:
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, byte_rate = 12, 0
    while pos + 8 <= len(head):
        chunk, length = head[pos : pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        if chunk == b"fmt " and pos + 16 <= len(head):
            byte_rate = struct.unpack_from("<I", head, pos + 16)[0]
        elif chunk == b"data":
            data = min(length, size - pos - 8)
            return AudioFacts("wav", data / byte_rate) if byte_rate else None
        pos += 8 + length + (length & 1)
    return None


def _mp3(head: bytes, size: int) -> AudioFacts | None:
    start = 0
    if head[:3] == b"ID3" and len(head) >= 10:
        tag = head[6:10]
        start = 10 + ((tag[0] & 0x7F) << 21 | (tag[1] & 0x7F) << 14 | (tag[2] & 0x7F) << 7 | (tag[3] & 0x7F))
    for pos in range(start, min(len(head) - 3, start + 4096)):
        if head[pos] != 0xFF or head[pos + 1] & 0xE0 != 0xE0:
            continue
        version, layer = (head[pos + 1] >> 3) & 3, (head[pos + 1] >> 1) & 3
        if layer != 1 or version == 1:  # Layer III only; version 1 is reserved
            continue
        table = _MPEG1_L3 if version == 3 else _MPEG2_L3
        kbps = table[head[pos + 2] >> 4]
        if kbps:
            return AudioFacts("mp3", (size - pos) * 8 / (kbps * 1000))
    return None


def audio_facts(head: bytes, size: int) -> AudioFacts | None:
    """The format and duration of an MP3 or WAV file whose first bytes are `head` and whole size `size`; None
    for anything else."""
    return _wav(head, size) or _mp3(head, size)
