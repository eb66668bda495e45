"""Fixtures for the simulator tests: a simulator on a manual clock and the signed caller of sim_helpers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sim_helpers import CN_SESSION, HK_SESSION, US_SESSION, Upstream

from jimeng_server.clock import ManualClock
from jimeng_server.simulator import SimSettings, Simulator
from jimeng_server.upstream.regions import Region


@pytest.fixture
def sim(clock: ManualClock) -> Simulator:
    s = Simulator(clock=clock, settings=SimSettings(), seed=1)
    s.add_account(CN_SESSION, region=Region.CN, vip=100)
    s.add_account(US_SESSION, region=Region.US, vip=100)
    s.add_account(HK_SESSION, region=Region.HK, vip=100)
    return s


@pytest.fixture
async def up(
    sim: Simulator,
    clock: ManualClock,
    aiohttp_client: Callable[[Any], Awaitable[TestClient[Any, Any]]],
) -> Upstream:
    client = await aiohttp_client(sim.create_app())
    return Upstream(client, sim, clock)
