"""`jimeng-server doctor` against the simulator: all ok on a healthy upstream (exit 0), and a drifted one
(newer version required, a new model listed, risk control) named with the key or remedy (exit 1 on a failure)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import pytest

from jimeng_server.cli import doctor_command, main
from jimeng_server.clock import ManualClock
from jimeng_server.config import Config

T = TypeVar("T")


async def on_clock(clock: ManualClock, aw: Awaitable[T], *, wall_timeout: float = 60.0) -> T:
    """Run `aw`, moving virtual time whenever it waits on the clock (the doctor's polls); otherwise its loopback
    I/O to the simulator runs (the loop is yielded, never slept on)."""
    task = asyncio.ensure_future(aw)
    loop = asyncio.get_running_loop()
    end = loop.time() + wall_timeout
    try:
        while not task.done():
            if loop.time() > end:
                raise AssertionError("on_clock(): the doctor did not finish")
            if clock.sleepers:
                await clock.advance(1.0)
            else:
                await asyncio.sleep(0)
    finally:
        if not task.done():
            task.cancel()
    return task.result()


async def doctor(capsys: pytest.CaptureFixture[str], *drift: str, spend: bool = True) -> tuple[int, str]:
    clock = ManualClock()
    code = await on_clock(clock, doctor_command(Config(), None, spend=spend, simulate=True, drift=drift, clock=clock))
    return code, capsys.readouterr().out


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
