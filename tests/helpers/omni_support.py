"""Omni-reference video requests in tests: the model, sample media, the multipart form, the submit over the
watcher's clock, and what the simulator's journal says was generated and uploaded."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from support import CN_TOKEN, bearer, drive, json_of

from jimeng_server.clock import ManualClock
from jimeng_server.mp4 import tiny_mp4
from jimeng_server.simulator import Simulator
from jimeng_server.simulator.media import png

URL = "/v1/videos/generations"
SEEDANCE = "jimeng-video-seedance-2.0"
RED = png(32, 24, (200, 0, 0))
CLIP = tiny_mp4(4960, tag=b"clip" * 1000, width=1280, height=720)


def form(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> aiohttp.FormData:
    """A multipart body: `fields`, then `files` as (field, filename, content) (.mp4 as video, else PNG)."""
    data = aiohttp.FormData()
    for key, value in fields.items():
        data.add_field(key, value)
    for field, filename, content in files:
        kind = "video/mp4" if filename.endswith(".mp4") else "image/png"
        data.add_field(field, content, filename=filename, content_type=kind)
    return data


async def post(
    client: TestClient[Any, Any], clock: ManualClock, *, token: str = CN_TOKEN, path: str = URL, **kwargs: Any
) -> tuple[int, Any]:
    """POST to `path` (the sync video endpoint) while the watcher runs on `clock`: the status and JSON body."""
    (resp,) = await drive(client.app, clock, client.post(path, headers=bearer(token), **kwargs))
    return resp.status, await json_of(resp)


def unified_input(sim: Simulator) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(body, metrics, video_gen_inputs[0]) of the one generate."""
    (gen,) = sim.calls("/aigc_draft/generate")
    draft = json.loads(gen.body["draft_content"])
    params = draft["component_list"][0]["abilities"]["gen_video"]["text_to_video_params"]
    return gen.body, json.loads(gen.body["metrics_extra"]), params["video_gen_inputs"][0]


def vod_calls(sim: Simulator, action: str) -> list[Any]:
    """The journal's VOD calls of one `Action`."""
    return [e for e in sim.journal if e.vhost == "vod" and e.query.get("Action") == action]


def upload_tokens(sim: Simulator) -> list[int]:
    """The `scene` of every upload token asked for, in order."""
    return [e.body["scene"] for e in sim.calls("/get_upload_token")]


def nothing_uploaded(sim: Simulator) -> None:
    """Nothing was uploaded, generated or charged."""
    assert not sim.calls("/get_upload_token") and not [e for e in sim.journal if e.vhost in ("vod", "upload")]
    assert sim.generate_count == 0 and not sim.charges
