"""Running `jimeng-server doctor` in a test: its polls on a manual clock, its loopback I/O to the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import pytest

from jimeng_server.cli import doctor_command
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
    """`doctor --simulate` (with the simulator's `drift` switches): its exit code and what it printed."""
    clock = ManualClock()
    code = await on_clock(clock, doctor_command(Config(), None, spend=spend, simulate=True, drift=drift, clock=clock))
    return code, capsys.readouterr().out
