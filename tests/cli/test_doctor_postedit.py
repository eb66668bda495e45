"""`jimeng-server doctor --post-edit`: the free upscale runs once (on the spend check's image, else on an uploaded
picture), and a drifted upstream (refused, not doubled, charged) is named."""

from __future__ import annotations

import pytest
from doctor_support import on_clock
from support import CN_TOKEN, US_TOKEN

from jimeng_server.cli import doctor_command
from jimeng_server.clock import ManualClock
from jimeng_server.config import Config
from jimeng_server.doctor import run_doctor
from jimeng_server.simulator import Simulator
from jimeng_server.simulator import postedit as sim_postedit
from jimeng_server.upstream.tokens import parse_token


async def test_post_edit_on_the_spend_image_is_ok(capsys: pytest.CaptureFixture[str]) -> None:
    clock = ManualClock()
    code = await on_clock(clock, doctor_command(Config(), None, spend=True, post_edit=True, simulate=True, clock=clock))
    out = capsys.readouterr().out
    assert code == 0, out
    (line,) = [x for x in out.splitlines() if "post-edit" in x]
    assert line.startswith("[ok]") and "normal_hd made 4096x4096 for free" in line


async def test_post_edit_without_spend_uploads_a_picture(config: Config, clock: ManualClock, sim: Simulator) -> None:
    checks = await on_clock(clock, run_doctor(config, parse_token(CN_TOKEN), clock, post_edit=True))
    check = checks[-1]
    assert (check.name, check.status) == ("post-edit", "ok"), check
    assert "512x512" in check.detail
    draft = sim.calls("/aigc_draft/generate")[-1].body["draft_content"]
    assert '"origin_image"' in draft and '"normal_hd"' in draft


async def test_post_edit_drift_is_named(
    config: Config, clock: ManualClock, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sim_postedit.TOOLS, "normal_hd", sim_postedit.ToolFact(13, 13, 3))
    checks = await on_clock(clock, run_doctor(config, parse_token(CN_TOKEN), clock, post_edit=True))
    check = checks[-1]
    assert check.status == "warn" and "charged 3 credit(s)" in check.detail, check


async def test_post_edit_outside_cn_is_a_warning(config: Config, clock: ManualClock, sim: Simulator) -> None:
    checks = await on_clock(clock, run_doctor(config, parse_token(US_TOKEN), clock, post_edit=True))
    check = checks[-1]
    assert (check.name, check.status) == ("post-edit", "warn") and "region" in check.detail
    assert not sim.calls("/aigc_draft/generate")
