"""Issue 20, items 2-4: the simulator is a witness with facts of its own (simulator/facts.py), so a wrong entry in
the client's catalogue is refused with the upstream's real answer (ret 1000 "invalid parameter") instead of being
agreed with; Seedance 2.5 and its draft mode; the image counts of 2026 (blend 4, mj82 always 4, 5.0 Flash,
`[images] default_count`). Real HTTP against the simulator; what reached it is read from its journal."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from doctor_support import doctor
from support import CN_TOKEN, bearer, drive, json_of

from jimeng_server.clock import ManualClock
from jimeng_server.config import Config, ConfigError, ImagesConfig, parse_config
from jimeng_server.simulator import Simulator, facts
from jimeng_server.simulator.media import png
from jimeng_server.upstream import catalog

IMAGES = "/v1/images/generations"
COMPOSE = "/v1/images/compositions"
VIDEOS = "/v1/videos/generations"
GENERATE = "/aigc_draft/generate"

Client = TestClient[Any, Any]


async def post(client: Client, clock: ManualClock, url: str, body: Any) -> tuple[int, Any]:
    (resp,) = await drive(client.app, clock, client.post(url, json=body, headers=bearer(CN_TOKEN)))
    return resp.status, await json_of(resp)


def last_generate(sim: Simulator) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The last generate body, its decoded draft and metrics_extra."""
    body = sim.calls(GENERATE)[-1].body
    return body, json.loads(body["draft_content"]), json.loads(body["metrics_extra"])


def refused_with_1000(status: int, body: Any, sim: Simulator, needle: str) -> None:
    """What a caller sees when the witness refuses a body: 502 naming ret 1000, nothing made or charged."""
    assert (status, body["error"]["code"]) == (502, "UPSTREAM_PARAM_ERROR"), body
    assert "ret 1000" in body["error"]["message"] and needle in body["error"]["message"]
    assert [e.ret for e in sim.calls(GENERATE)] == ["1000"]
    assert sim.generate_count == 0 and sim.charges == []


# ------------------------------------------------------------------ a wrong client catalogue is refused


async def test_wrong_benefit_type_in_the_client_table_is_refused(
    client: Client, clock: ManualClock, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "jimeng-video-seedance-2.0-mini"
    wrong = dataclasses.replace(catalog.VIDEO_SPECS[name], benefit="seedance_20_mini_{res}_outputs")
    monkeypatch.setitem(catalog.VIDEO_SPECS, name, wrong)
    status, body = await post(client, clock, VIDEOS, {"prompt": "a wave", "model": "jimeng-video-seedance-2.0-mini"})
    refused_with_1000(status, body, sim, "benefit_type")


@pytest.mark.parametrize(
    ("model", "change", "needle"),
    [
        ("jimeng-video-seedance-2.5-draft", {"draft_mode": False}, "is_draft_mode"),
        ("jimeng-video-seedance-2.5-draft", {"min_features": ()}, "min_features"),
        ("jimeng-video-seedance-2.5", {"min_features": ()}, "AIGC_Video_Seedance25ResultAction"),
        ("jimeng-video-seedance-2.5", {"durations": tuple(range(4, 41))}, "duration_ms"),
    ],
)
async def test_wrong_draft_facts_in_the_client_table_are_refused(
    client: Client,
    clock: ManualClock,
    sim: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    model: str,
    change: dict[str, Any],
    needle: str,
) -> None:
    monkeypatch.setitem(catalog.VIDEO_SPECS, model, dataclasses.replace(catalog.VIDEO_SPECS[model], **change))
    fields: dict[str, Any] = {"prompt": "a wave", "model": model}
    if "durations" in change:
        fields["duration"] = 40
    status, body = await post(client, clock, VIDEOS, fields)
    refused_with_1000(status, body, sim, needle)


async def test_old_da_version_in_a_draft_is_refused(
    make_client: Any, config: Config, clock: ManualClock, sim: Simulator
) -> None:
    client = await make_client(upstream=dataclasses.replace(config.upstream, da_version="3.3.20"))
    status, body = await post(client, clock, VIDEOS, {"prompt": "a wave", "model": "jimeng-video-seedance-2.5-draft"})
    refused_with_1000(status, body, sim, "min_version")


async def test_wrong_count_rule_in_the_client_table_is_refused(
    client: Client, clock: ManualClock, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "jimeng-5.0-pro"  # 1-4 on the site (§19.6)
    monkeypatch.setitem(
        catalog.IMAGE_SPECS, name, dataclasses.replace(catalog.IMAGE_SPECS[name], counts=(1, 2, 3, 4, 5, 6))
    )
    status, body = await post(client, clock, IMAGES, {"prompt": "a fox", "model": name, "n": 6})
    refused_with_1000(status, body, sim, "gen_count")


def test_the_simulator_does_not_import_the_client_catalog() -> None:
    root = Path(__file__).resolve().parents[2] / "jimeng_server" / "simulator"
    client_facts = re.compile(
        r"^\s*(from|import) [.\w]*upstream(\.| import )(catalog|payloads|video_payloads|discovery)\b", re.M
    )
    offenders = [p.name for p in root.glob("*.py") if client_facts.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_every_fact_row_names_its_source() -> None:
    rows: list[Any] = [*facts.IMAGE_FACTS, *facts.VIDEO_FACTS]
    assert all(r.source.strip() for r in rows)
    assert len({r.key for r in facts.IMAGE_FACTS}) == len(facts.IMAGE_FACTS)
    assert len({r.key for r in facts.VIDEO_FACTS}) == len(facts.VIDEO_FACTS)


# ------------------------------------------------------------------ Seedance 2.5


async def test_seedance_25_draft_sends_the_fields_of_the_page(
    client: Client, clock: ManualClock, sim: Simulator
) -> None:
    status, body = await post(
        client, clock, VIDEOS, {"prompt": "a wave", "model": "jimeng-video-seedance-2.5-draft", "duration": 5}
    )
    assert status == 200, body
    outer, draft, metrics = last_generate(sim)
    video_input = draft["component_list"][0]["abilities"]["gen_video"]["text_to_video_params"]["video_gen_inputs"][0]
    assert draft["min_version"] == video_input["min_version"] == "3.3.28"
    assert draft["min_features"] == ["AIGC_Video_Seedance25ResultAction"]
    assert video_input["is_draft_mode"] is True and video_input["resolution"] == "480p"
    assert metrics["videoStage"] == "draft"
    info = outer["extend"]["m_video_commerce_info"]
    assert info == outer["extend"]["m_video_commerce_info_list"][0]
    assert info["amount"] == 5 and info["benefit_type"] == "seedance_25_draft_480p_no_input_video_output"
    assert sim.calls(GENERATE)[-1].query["da_version"] == "3.3.28"


@pytest.mark.parametrize(("resolution", "seconds"), [("480p", 4), ("1080p", 30), (None, 12)])
async def test_seedance_25_resolutions_and_durations(
    client: Client, clock: ManualClock, sim: Simulator, resolution: str | None, seconds: int
) -> None:
    fields: dict[str, Any] = {"prompt": "a wave", "model": "jimeng-video-seedance-2.5", "duration": seconds}
    if resolution:
        fields["resolution"] = resolution
    status, body = await post(client, clock, VIDEOS, fields)
    assert status == 200, body
    outer, draft, metrics = last_generate(sim)
    video_input = draft["component_list"][0]["abilities"]["gen_video"]["text_to_video_params"]["video_gen_inputs"][0]
    res = resolution or "720p"
    assert video_input["resolution"] == res and "is_draft_mode" not in video_input and "videoStage" not in metrics
    assert draft["min_features"] == ["AIGC_Video_Seedance25ResultAction"]
    info = outer["extend"]["m_video_commerce_info"]
    assert (info["benefit_type"], info["amount"]) == (f"seedance_25_{res}_output", seconds)


async def test_seedance_25_long_video_is_a_clear_400(client: Client, clock: ManualClock, sim: Simulator) -> None:
    status, body = await post(
        client, clock, VIDEOS, {"prompt": "a wave", "model": "jimeng-video-seedance-2.5", "duration": 90}
    )
    assert (status, body["error"]["code"]) == (400, "INVALID_PARAMETER")
    assert "4 to 30" in body["error"]["message"] and "30-180 s" in body["error"]["message"]
    assert sim.calls(GENERATE) == []


async def test_benefit_type_variant_is_config(
    make_client: Any, config: Config, clock: ManualClock, sim: Simulator
) -> None:
    variant = {"dreamina_seedance_45_pro_draft": "seedance_25_draft_{res}_output"}
    client = await make_client(upstream=dataclasses.replace(config.upstream, video_benefits=variant))
    status, body = await post(client, clock, VIDEOS, {"prompt": "a wave", "model": "jimeng-video-seedance-2.5-draft"})
    assert status == 200, body  # SB's name: nobody reports a refusal of either (§19.13 conflict 4)
    assert last_generate(sim)[0]["extend"]["m_video_commerce_info"]["benefit_type"] == "seedance_25_draft_480p_output"


def test_benefit_template_must_be_usable() -> None:
    with pytest.raises(ConfigError, match=r"upstream.video_benefits.k: must be a benefit type"):
        parse_config({"upstream": {"video_benefits": {"k": "x_{resolution}"}}})


# ------------------------------------------------------------------ counts


async def test_blend_without_n_makes_and_bills_four(
    client: Client, clock: ManualClock, sim: Simulator, aiohttp_server: Any
) -> None:
    from aiohttp import web

    app = web.Application()

    async def image(_: web.Request) -> web.Response:
        return web.Response(body=png(64, 64, (9, 9, 9)), content_type="image/png")

    app.router.add_get("/a.png", image)
    server: TestServer = await aiohttp_server(app)
    before = sim.account(CN_TOKEN).total
    status, body = await post(client, clock, COMPOSE, {"prompt": "mix", "images": [str(server.make_url("/a.png"))]})
    assert status == 200 and len(body["data"]) == 4, body
    assert before - sim.account(CN_TOKEN).total == 4 * sim.settings.image_cost
    draft = last_generate(sim)[1]
    option = draft["component_list"][0]["abilities"].get("gen_option", {})
    assert "gen_count" not in option  # no count sent: the upstream's own default


async def test_default_count_config_sends_n(
    make_client: Any, config: Config, clock: ManualClock, sim: Simulator
) -> None:
    client = await make_client(images=ImagesConfig(default_count="1"))
    before = sim.account(CN_TOKEN).total
    status, body = await post(client, clock, IMAGES, {"prompt": "a fox", "model": "jimeng-4.7"})
    assert status == 200 and len(body["data"]) == 1, body
    assert before - sim.account(CN_TOKEN).total == sim.settings.image_cost
    assert last_generate(sim)[1]["component_list"][0]["abilities"]["gen_option"]["gen_count"] == 1


def test_default_count_reads_numbers_and_model() -> None:
    assert parse_config({"images": {"default_count": 2}}).images.default_count == "2"
    assert parse_config({"images": {"default_count": "model"}}).images.default_count == "model"
    with pytest.raises(ConfigError, match=r"images\.default_count"):
        parse_config({"images": {"default_count": 5}})


async def test_mj82_always_makes_four(client: Client, clock: ManualClock, sim: Simulator) -> None:
    status, body = await post(client, clock, IMAGES, {"prompt": "a fox", "model": "jimeng-mj82", "n": 1})
    assert (status, body["error"]["code"]) == (400, "INVALID_PARAMETER")
    assert "always makes (and bills) 4" in body["error"]["message"] and sim.calls(GENERATE) == []
    status, body = await post(client, clock, IMAGES, {"prompt": "a fox", "model": "jimeng-mj82", "resolution": "1k"})
    assert status == 200 and len(body["data"]) == 4, body


async def test_mj82_fewer_when_the_operator_allows_makes_four_anyway(
    make_client: Any, clock: ManualClock, sim: Simulator
) -> None:
    client = await make_client(images=ImagesConfig(allow_fewer_than_forced=True))
    before = sim.account(CN_TOKEN).total
    status, body = await post(client, clock, IMAGES, {"prompt": "a fox", "model": "jimeng-mj82", "n": 2})
    assert status == 200 and len(body["data"]) == 4, body  # the upstream raises 2 to 4 (§19.6, measured)
    assert before - sim.account(CN_TOKEN).total == 4 * sim.settings.image_cost


async def test_flash_model(client: Client, clock: ManualClock, sim: Simulator) -> None:
    status, body = await post(
        client, clock, IMAGES, {"prompt": "a fox", "model": "jimeng-5.0-flash", "resolution": "1.5k", "n": 2}
    )
    assert status == 200 and len(body["data"]) == 2, body
    assert last_generate(sim)[0]["extend"]["root_model"] == "high_aes_general_v50_flash"


def _short_forms(name: str) -> set[str]:
    """How a grouped README row names a model: in full, or by its tail (`-2.0-fast`, `4.5`)."""
    forms = {name}
    for prefix in ("jimeng-video-seedance", "jimeng-video", "jimeng"):
        if name.startswith(prefix + "-"):
            tail = name[len(prefix) :]
            forms |= {tail, tail.lstrip("-")}
    return forms


@pytest.mark.parametrize(("readme", "heading"), [("README.md", "## Models"), ("README.zh.md", "## 模型")])
def test_readme_model_tables_match_the_catalog(readme: str, heading: str) -> None:
    text = (Path(__file__).resolve().parents[2] / readme).read_text(encoding="utf-8")
    section = text.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| `")]
    named = {m for row in rows for m in re.findall(r"`([^`]+)`", row[0])}
    for name, spec in {**catalog.IMAGE_SPECS, **catalog.VIDEO_SPECS}.items():
        assert _short_forms(name) & named, f"{readme}: no table row names {name}"
        single = [row for row in rows if row[0] == f"| `{name}`"]
        if single:  # a row of its own: its key and resolutions are the catalogue's
            (row,) = single
            key = row[1].strip("`")
            assert any(k == key or (key.startswith("…") and k.endswith(key[1:])) for k in spec.keys.values())
            listed = {r.split("（")[0].split(" (")[0].strip() for r in row[3].split(", ")}
            assert listed == (set(spec.resolutions) or {"—"}), (readme, name, row[3])


async def test_doctor_names_table_facts_the_upstream_lists_otherwise(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = dataclasses.replace(catalog.IMAGE_SPECS["jimeng-4.7"], counts=(1, 2, 3, 4))
    monkeypatch.setitem(catalog.IMAGE_SPECS, "jimeng-4.7", wrong)
    short = dataclasses.replace(catalog.VIDEO_SPECS["jimeng-video-seedance-2.5"], durations=tuple(range(4, 16)))
    monkeypatch.setitem(catalog.VIDEO_SPECS, "jimeng-video-seedance-2.5", short)
    code, out = await doctor(capsys, spend=False)
    assert code == 0, out
    line = next(x for x in out.splitlines() if x.startswith("[warn] models"))
    assert "jimeng-4.7: n 1-4 in the table, 1-8 upstream" in line
    assert "jimeng-video-seedance-2.5: 4-15 s in the table, 4-30 s upstream" in line
