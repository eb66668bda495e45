"""Issue 23, item 3: one submit loop over an account source. Every scenario runs twice, once with the caller's
own tokens (`Authorization: Bearer a,b`) and once with an API key over the pool's accounts, and must give the
same answers, the same fail-over and the same rests: what reached the upstream (the simulator's journal) and
what was spent are compared, over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pool_support import ADMIN_KEY, POOL_SESSIONS, add_accounts, create_key, key_auth, seed_sim
from support import CN_TOKEN, CN_TOKEN_2, AppFactory, bearer, json_of

from jimeng_server.clock import ManualClock
from jimeng_server.config import AdminConfig, Config
from jimeng_server.simulator import Simulator

IMAGES = "/v1/async/images/generations"
VIDEOS = "/v1/async/videos/generations"
GENERATE = "/aigc_draft/generate"
PAID_VIDEO = {"prompt": "a fox", "model": "jimeng-video-seedance-2.0-vip", "duration": 4}
IMAGE = {"prompt": "a cat"}


@dataclasses.dataclass
class Side:
    """A client and how it calls: `headers` reach the accounts `first` and `second` (simulator sessions), tried
    in that order when both are fresh."""

    client: TestClient[Any, Any]
    headers: dict[str, str]
    first: str
    second: str

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        resp = await self.client.post(path, json=body, headers=self.headers)
        return resp.status, await json_of(resp)


@pytest.fixture(params=["tokens", "pool"])
async def side(
    request: pytest.FixtureRequest, make_client: AppFactory, sim: Simulator, config: Config, store_url: str
) -> Side:
    store = dataclasses.replace(config.store, url=store_url)
    if request.param == "tokens":
        client = await make_client(store=store)
        return Side(client, bearer(CN_TOKEN, CN_TOKEN_2), CN_TOKEN, CN_TOKEN_2)
    seed_sim(sim)
    client = await make_client(admin=AdminConfig(key=ADMIN_KEY), store=store)
    await add_accounts(client, "pa", "pb")  # pa has the lower id: first among equally busy accounts
    key = await create_key(client, accounts=["pa", "pb"])
    return Side(client, key_auth(key), POOL_SESSIONS["pa"], POOL_SESSIONS["pb"])


def generates(sim: Simulator, since: int = 0) -> list[str]:
    """The sessions of the generate calls that reached the upstream, from the `since`-th on."""
    return [c.sessionid for c in sim.calls(GENERATE)][since:]


async def test_a_model_refusal_fails_over_and_rests_only_that_model_on_that_account(side: Side, sim: Simulator) -> None:
    sim.account(side.first).free = True  # 4013 for the paid model on the first account
    spent_before = sim.account(side.first).total
    status, body = await side.post(VIDEOS, PAID_VIDEO)
    assert status == 200, body
    assert generates(sim) == [side.first, side.second]  # refused (nothing spent), then accepted
    assert sim.account(side.first).total == spent_before
    # The same model again: the resting account is not asked first.
    status, body = await side.post(VIDEOS, PAID_VIDEO)
    assert status == 200, body
    assert generates(sim, 2) == [side.second]
    # Another model: the first account serves it (it rests for the refused model only).
    status, body = await side.post(IMAGES, IMAGE)
    assert status == 200, body
    assert generates(sim, 3) == [side.first]


async def test_a_model_every_account_refuses_ends_with_the_upstream_reason_and_spends_nothing(
    side: Side, sim: Simulator
) -> None:
    for session in (side.first, side.second):
        sim.account(session).free = True
    totals = [sim.account(s).total for s in (side.first, side.second)]
    status, body = await side.post(VIDEOS, PAID_VIDEO)
    assert status == 502 and body["error"]["code"] == "RISK_CONTROL_REJECTED", body
    assert sorted(generates(sim)) == sorted([side.first, side.second])  # each account asked once
    assert [sim.account(s).total for s in (side.first, side.second)] == totals
    status, body = await side.post(IMAGES, IMAGE)  # nobody is benched for other models
    assert status == 200, body


async def test_an_expired_session_fails_over_and_rests_the_whole_account_until_its_cool_down_ends(
    side: Side, sim: Simulator, clock: ManualClock
) -> None:
    sim.account(side.first).expired = True
    status, body = await side.post(IMAGES, IMAGE)
    assert status == 200, body
    assert generates(sim) == [side.second]  # the balance read refused the first account: no generate sent
    sim.account(side.first).expired = False  # the session works again, but the account still rests
    status, body = await side.post(IMAGES, IMAGE)
    assert status == 200, body
    assert generates(sim, 1) == [side.second]
    await clock.advance(3600.0 + 1)  # past both cool-downs and the stored tasks' in-flight window
    status, body = await side.post(IMAGES, IMAGE)
    assert status == 200, body
    assert generates(sim, 2) == [side.first]
