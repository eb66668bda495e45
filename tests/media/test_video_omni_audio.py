"""Omni reference audio (`audio_file_1..N`, §17.10) over real HTTP against the simulator: uploaded through VOD,
sent as `audio` materials with `materialTypes` 3, and refused before any upload when audio comes alone, is not
MP3/WAV, or there are too many."""

from __future__ import annotations

import io
import json
import wave
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from omni_support import CLIP, RED, SEEDANCE, form, nothing_uploaded, post, unified_input, upload_tokens, vod_calls
from support import CN_TOKEN

from jimeng_server.audio import audio_facts
from jimeng_server.clock import ManualClock
from jimeng_server.simulator import Simulator


def wav(seconds: float, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\0\0" * int(rate * seconds))
    return buf.getvalue()


def mp3(seconds: float) -> bytes:
    """An ID3 tag and MPEG-1 Layer III 128 kbit/s frames (417 bytes each) lasting about `seconds`."""
    frame = b"\xff\xfb\x90\x00" + b"\0" * 413
    return b"ID3\x03\x00\x00\x00\x00\x00\x0a" + b"\0" * 10 + frame * round(seconds * 128000 / 8 / 417)


def test_audio_readers() -> None:
    facts = audio_facts(wav(3.0), len(wav(3.0)))
    assert facts is not None and (facts.format, facts.duration) == ("wav", 3.0)
    song = mp3(2.0)
    facts = audio_facts(song, len(song))
    assert facts is not None and facts.format == "mp3" and facts.duration == pytest.approx(2.0, abs=0.05)
    assert audio_facts(CLIP[:4096], len(CLIP)) is None and audio_facts(RED, len(RED)) is None


async def test_image_and_two_audios(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    fields = {"model": SEEDANCE, "functionMode": "omni_reference", "prompt": "@image_file_1 sings @voice.wav"}
    files = [
        ("image_file_1", "cat.png", RED),
        ("audio_file_1", "voice.wav", wav(3.0)),
        ("audio_file_2", "b.mp3", mp3(2)),
    ]
    status, body = await post(client, clock, data=form(fields, files))
    assert status == 200, body
    _, metrics, gen_input = unified_input(sim)
    unified = gen_input["unified_edit_input"]
    materials = unified["material_list"]
    assert [m["material_type"] for m in materials] == ["image", "audio", "audio"]
    first, second = materials[1]["audio_info"], materials[2]["audio_info"]
    assert (first["type"], first["source_from"], first["duration"], first["name"]) == (
        "audio",
        "upload",
        3000,
        "voice.wav",
    )
    assert abs(second["duration"] - 2000) < 50 and "width" not in first and "fps" not in first
    assert sim.uploads.committed_by(first["vid"], CN_TOKEN)
    assert unified["meta_list"][2] == {"meta_type": "audio", "text": "", "material_ref": {"material_idx": 1}}
    scene = json.loads(metrics["sceneOptions"])[0]
    assert scene["materialTypes"] == [1, 3, 3]
    assert sorted(upload_tokens(sim)) == [1, 2]  # VOD for the audios, ImageX for the image
    assert [e.query["FileType"] for e in vod_calls(sim, "ApplyUploadInner")] == ["video", "video"]


@pytest.mark.parametrize(
    ("files", "code"),
    [
        ([("audio_file_1", "a.wav", wav(1.0))], "MISSING_MATERIALS"),
        ([("image_file_1", "cat.png", RED), ("audio_file_1", "a.wav", b"not audio at all" * 10)], "INVALID_AUDIO"),
        (
            [("image_file_1", "cat.png", RED)] + [(f"audio_file_{n}", f"{n}.wav", wav(0.5)) for n in range(1, 5)],
            "TOO_MANY_AUDIOS",
        ),
    ],
)
async def test_audio_limits_before_any_upload(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, files: list[tuple[str, str, bytes]], code: str
) -> None:
    fields = {"model": SEEDANCE, "functionMode": "omni_reference", "prompt": "x"}
    status, body = await post(client, clock, data=form(fields, files))
    assert status == 400 and body["error"]["code"] == code, body
    nothing_uploaded(sim)


async def test_audio_field_in_frame_mode_is_refused(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    status, body = await post(
        client, clock, data=form({"model": SEEDANCE, "prompt": "x"}, [("audio_file_1", "a.wav", wav(1))])
    )
    assert status == 400 and "omni_reference" in body["error"]["message"]
    nothing_uploaded(sim)
