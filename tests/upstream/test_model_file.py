"""Issue 20, item 2: the operator's model file (`[models] file`) adds to or replaces entries of the built-in table
without a release, validated at start with errors that name the line; the built-in table is back once the app
is closed."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from support import CN_TOKEN, bearer, drive, json_of

from jimeng_server.app import create_app
from jimeng_server.clock import ManualClock
from jimeng_server.config import Config, ConfigError, ModelsConfig
from jimeng_server.simulator import Simulator
from jimeng_server.upstream import catalog
from jimeng_server.upstream.model_file import parse_model_file

FILE = """
["house-style"]          # a new name for an upstream key, with the operator's own count rule
based_on = "jimeng-4.7"
counts = [1, 2]
default_count = 2
evidence = "our account's live config, 2026-10"

["jimeng-video-seedance-2.5"]
durations = [4, 5, 6]
"""


async def test_file_models_are_served_and_the_table_comes_back(
    make_client: Any, config: Config, clock: ManualClock, sim: Simulator, tmp_path: Path
) -> None:
    path = tmp_path / "models.toml"
    path.write_text(FILE, encoding="utf-8")
    models = ModelsConfig(file=str(path), aliases={"my-style": "house-style"})
    client = await make_client(models=models)

    async def post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
        (resp,) = await drive(client.app, clock, client.post(url, json=body, headers=bearer(CN_TOKEN)))
        return resp.status, await json_of(resp)

    status, body = await post("/v1/images/generations", {"prompt": "a fox", "model": "my-style", "n": 2})
    assert status == 200 and len(body["data"]) == 2, body
    assert sim.calls("/aigc_draft/generate")[-1].body["extend"]["root_model"] == "high_aes_general_v43"
    status, body = await post("/v1/images/generations", {"prompt": "a fox", "model": "house-style", "n": 3})
    assert status == 400 and "from 1 to 2 for house-style" in body["error"]["message"]
    status, body = await post(
        "/v1/videos/generations", {"prompt": "x", "model": "jimeng-video-seedance-2.5", "duration": 7}
    )
    assert status == 400 and "4, 5, 6" in body["error"]["message"]
    listed = await json_of(await client.get("/v1/models", headers=bearer(CN_TOKEN)))
    entry = next(m for m in listed["data"] if m["id"] == "house-style")
    assert entry["counts"] == [1, 2] and entry["evidence"] == "our account's live config, 2026-10"

    await client.close()
    assert "house-style" not in catalog.IMAGE_SPECS
    assert catalog.allowed_durations("jimeng-video-seedance-2.5") == tuple(range(4, 31))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '\n\n["x"]\nkind = "image"\nkeys = { cn = "k_x" }\nresolutions = ["2k"]\ncolour = 1\n',
            "models.toml:3: model 'x': unknown field colour",
        ),
        ('["x"]\nkind = "image"\nresolutions = ["2k"]\n', "models.toml:1: model 'x': keys is required"),
        ('["jimeng-4.7"]\nresolutions = ["8k"]\n', "models.toml:1: model 'jimeng-4.7': resolutions must be among"),
        (
            '\n["y"]\nbased_on = "jimeng-4.7"\ncounts = [1, 9]\n',
            "models.toml:2: model 'y': counts must hold whole numbers from 1 to 8",
        ),
        ('["v"]\nbased_on = "jimeng-video-3.0"\nbenefit = "x_{resolution}"\n', "benefit may hold only {res}"),
        ('["v"]\nkind = "video"\nbased_on = "jimeng-4.7"\n', "kind 'video' differs"),
        ("[x\n", "models.toml: invalid TOML"),
    ],
)
def test_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_model_file(text, "models.toml", {**catalog.IMAGE_SPECS, **catalog.VIDEO_SPECS})
    assert message in str(info.value)


def test_a_missing_file_stops_the_start(config: Config, tmp_path: Path) -> None:
    missing = dataclasses.replace(config, models=ModelsConfig(file=str(tmp_path / "nope.toml")))
    with pytest.raises(ConfigError, match=r"models\.file: cannot read"):
        create_app(missing, background=False)
