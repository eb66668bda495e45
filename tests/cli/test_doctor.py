"""`jimeng-server doctor` against the simulator: all ok on a healthy upstream (exit 0), and a drifted one
(newer version required, a new model listed, risk control) named with the key or remedy (exit 1 on a failure)."""

from __future__ import annotations

import pytest
from doctor_support import doctor

from jimeng_server.cli import main


async def test_healthy_simulator_is_all_ok(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = await doctor(capsys)
    assert code == 0, out
    names = [line.split("]")[1].split(":")[0].strip() for line in out.splitlines() if line.startswith("[")]
    assert names == ["session", "version", "credits", "models", "uploads", "generate"]
    assert all(line.startswith("[ok]") for line in out.splitlines() if line.startswith("[")), out
    assert "jimeng-4.7 made 1 image" in out and "nothing failed" in out
    assert "simdemo" not in out.replace("simd...", ""), "the token is shown masked only"


async def test_required_newer_version_names_da_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = await doctor(capsys, "version")
    assert code == 1
    assert "[fail] version" in out and "raise [upstream] da_version (now 3.3.28)" in out and "3.3.28" in out


async def test_new_and_withdrawn_models_are_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = await doctor(capsys, "model", spend=False)
    assert code == 0, out
    assert "[warn] models" in out and "high_aes_general_v60 (图片 6.0)" in out
    assert "not listed any more: jimeng-video-3.0-pro" in out and "catalog.py" in out


async def test_risk_control_fails_the_spend_check_with_its_remedy(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = await doctor(capsys, "risk")
    assert code == 1
    assert "[fail] generate: RISK_CONTROL_REJECTED" in out and "browser cookie jar" in out
    assert '[upstream] transport = "impersonate"' in out


def test_no_token_is_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("JIMENG_TOKEN", raising=False)
    monkeypatch.delenv("JIMENG_CONFIG", raising=False)
    with pytest.raises(SystemExit) as info:
        main(["doctor"])
    assert info.value.code == 2 and "--token" in capsys.readouterr().out
