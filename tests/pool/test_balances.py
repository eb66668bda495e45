"""No balance call per submit (services/balances.py): a reading is reused for `credit_cache_seconds`, less the
known charges; concurrent submits of one account share one lookup; a refusal for credits drops the reading."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pool_support import ADMIN_KEY, POOL_SESSIONS, add_accounts, admin, create_key, key_auth
from support import CN_TOKEN, CN_TOKEN_2, bearer, json_of

from jimeng_server.clock import ManualClock
from jimeng_server.config import AdminConfig, Config
from jimeng_server.services.balances import Balances, deduct
from jimeng_server.simulator import Simulator
from jimeng_server.upstream.client import Credits
from jimeng_server.upstream.regions import Region
from jimeng_server.upstream.tokens import Account

SUBMIT = "/v1/async/images/generations"


async def submit(client: TestClient[Any, Any], token: str = CN_TOKEN, prompt: str = "a cat") -> tuple[int, Any]:
    resp = await client.post(SUBMIT, json={"prompt": prompt}, headers=bearer(token))
    return resp.status, await json_of(resp)


def balance_calls(sim: Simulator, session: str = CN_TOKEN) -> int:
    return len([c for c in sim.calls("/user_credit") if c.sessionid == session])


async def test_sequential_submits_of_one_account_read_the_balance_once_per_cache_window(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, config: Config
) -> None:
    for i in range(5):
        status, body = await submit(client, prompt=f"cat {i}")
        assert status == 200, body
        await clock.advance(1)
    assert sim.generate_count == 5
    assert balance_calls(sim) == 1
    await clock.advance(config.upstream.credit_cache_seconds)  # the reading is now older than the cache age
    assert (await submit(client))[0] == 200
    assert balance_calls(sim) == 2
    assert (await submit(client))[0] == 200
    assert balance_calls(sim) == 2 and sim.generate_count == 7


async def test_concurrent_submits_of_one_account_share_one_lookup(
    client: TestClient[Any, Any], sim: Simulator
) -> None:
    answers = await asyncio.gather(*(submit(client, prompt=f"together {i}") for i in range(8)))
    assert [status for status, _ in answers] == [200] * 8
    assert sim.generate_count == 8
    assert balance_calls(sim) == 1
    # Another account's lookup is its own.
    assert (await submit(client, CN_TOKEN_2))[0] == 200
    assert balance_calls(sim, CN_TOKEN_2) == 1


async def test_a_refusal_for_credits_drops_the_reading_and_the_next_submit_reads_again(
    client: TestClient[Any, Any], sim: Simulator
) -> None:
    assert (await submit(client))[0] == 200
    account = sim.account(CN_TOKEN)
    account.vip_credit, account.gift_credit, account.purchase_credit = 1, 0, 0  # spent elsewhere meanwhile
    status, body = await submit(client)
    assert status == 402 and body["error"]["code"] == "INSUFFICIENT_CREDITS"  # refused upstream (5000)
    assert balance_calls(sim) == 1  # the submit trusted the fresh reading
    account.vip_credit = 1000  # topped up
    assert (await submit(client))[0] == 200
    assert balance_calls(sim) == 2  # read again after the refusal
    assert (await submit(client))[0] == 200
    assert balance_calls(sim) == 2


async def test_a_known_cost_is_taken_off_the_reading_until_the_account_is_used_up(
    make_client: Any, sim: Simulator
) -> None:
    """A cost measured by a pooled submit (4 per image here) is charged to a raw account's reading: once it
    would be used up, the account is read again (then claimed, at zero) instead of failing upstream."""
    sim.add_account(POOL_SESSIONS["pa"], region=Region.CN, vip=1000)
    client = await make_client(admin=AdminConfig(key=ADMIN_KEY))
    await add_accounts(client, "pa")
    key = await create_key(client)
    resp = await client.post(SUBMIT, json={"prompt": "measure"}, headers=key_auth(key))
    assert resp.status == 200, await resp.text()
    cost = 4 * sim.settings.image_cost
    account = sim.account(CN_TOKEN)
    account.vip_credit, account.gift_credit, account.purchase_credit = 2 * cost, 0, 0
    for _ in range(2):
        assert (await submit(client))[0] == 200
    assert balance_calls(sim) == 1  # read once: 2 costs; each accepted submit took one off
    assert account.total == 0 and not sim.calls("/credit_receive")
    status, body = await submit(client)  # known to be used up: read again, 0, so the daily claim
    assert status == 200, body
    assert balance_calls(sim) >= 2 and len(sim.calls("/credit_receive")) == 1
    rejected = [c for c in sim.calls("/aigc_draft/generate") if c.ret != "0"]
    assert not rejected  # never sent to be refused


async def test_pooled_submits_still_measure_the_spend_with_one_reading_after_each(
    make_client: Any, sim: Simulator
) -> None:
    sim.add_account(POOL_SESSIONS["pa"], region=Region.CN, vip=1000)
    client = await make_client(admin=AdminConfig(key=ADMIN_KEY))
    await add_accounts(client, "pa")
    key = await create_key(client)
    for i in range(3):
        resp = await client.post(SUBMIT, json={"prompt": f"pooled {i}"}, headers=key_auth(key))
        assert resp.status == 200, await resp.text()
    # One reading before the first submit, then one after each (the spend); none before the later ones: the
    # reading after the previous submit is fresh.
    assert balance_calls(sim, POOL_SESSIONS["pa"]) == 1 + 3
    keys = await json_of(await client.get("/admin/api/keys", headers=admin()))
    usage = keys["data"][0]["usage"]
    assert usage["submits"] == 3 and usage["credits_spent"] == 3 * 4 * sim.settings.image_cost


async def test_the_token_points_endpoint_always_reads(client: TestClient[Any, Any], sim: Simulator) -> None:
    assert (await submit(client))[0] == 200
    resp = await client.post("/token/points", headers=bearer(CN_TOKEN))
    assert resp.status == 200
    assert balance_calls(sim) == 2
    assert (await json_of(resp))[0]["points"]["totalCredit"] == sim.account(CN_TOKEN).total
    assert (await submit(client))[0] == 200
    assert balance_calls(sim) == 2  # that reading serves the next submit


# ---------------------------------------------------------------------------------------------- units

ACCOUNT = Account(sessionid="sess0unit0aaaabbbbccccddddeeeeff", region=Region.CN)


class FakeUpstream:
    """`get_credits` whose answers the test releases one by one."""

    def __init__(self) -> None:
        self.calls = 0
        self.answers: asyncio.Queue[Credits | Exception] = asyncio.Queue()

    async def get_credits(self, account: Account) -> Credits:
        self.calls += 1
        answer = await self.answers.get()
        if isinstance(answer, Exception):
            raise answer
        return answer


async def settle() -> None:
    """Let the tasks just started run up to their next wait."""
    for _ in range(5):
        await asyncio.sleep(0)


def credits(total: int) -> Credits:
    return Credits(gift=0, purchase=0, vip=total)


def test_a_charge_takes_vip_then_gift_then_purchase() -> None:
    start = Credits(gift=5, purchase=7, vip=3)
    assert deduct(start, 4) == Credits(gift=4, purchase=7, vip=0)
    assert deduct(start, 10) == Credits(gift=0, purchase=5, vip=0)
    assert deduct(start, 99) == Credits(gift=0, purchase=0, vip=0)


async def test_waiters_share_one_call_and_a_forget_starts_another() -> None:
    clock, up = ManualClock(), FakeUpstream()
    balances = Balances(up.get_credits, clock, max_age=60)
    first = [asyncio.ensure_future(balances.get(ACCOUNT)) for _ in range(5)]
    await settle()
    assert up.calls == 1
    balances.forget(ACCOUNT)  # e.g. a refusal meanwhile: the call in flight no longer counts as the reading
    later = asyncio.ensure_future(balances.get(ACCOUNT))
    await settle()
    assert up.calls == 2
    up.answers.put_nowait(credits(100))
    up.answers.put_nowait(credits(40))
    assert {(await f).total for f in first} == {100} and (await later).total == 40
    assert (await balances.get(ACCOUNT)).total == 40 and up.calls == 2  # the newer call's answer is the reading


async def test_a_failed_lookup_reaches_every_waiter_and_is_not_kept() -> None:
    clock, up = ManualClock(), FakeUpstream()
    balances = Balances(up.get_credits, clock, max_age=60)
    waiters = [asyncio.ensure_future(balances.get(ACCOUNT)) for _ in range(3)]
    await settle()
    up.answers.put_nowait(RuntimeError("upstream down"))
    for waiter in waiters:
        with pytest.raises(RuntimeError):
            await waiter
    up.answers.put_nowait(credits(9))
    assert (await balances.get(ACCOUNT)).total == 9 and up.calls == 2


async def test_a_waiter_going_away_does_not_cancel_the_shared_call() -> None:
    clock, up = ManualClock(), FakeUpstream()
    balances = Balances(up.get_credits, clock, max_age=60)
    leaving = asyncio.ensure_future(balances.get(ACCOUNT))
    staying = asyncio.ensure_future(balances.get(ACCOUNT))
    await settle()
    leaving.cancel()
    up.answers.put_nowait(credits(5))
    assert (await staying).total == 5 and up.calls == 1
    balances.charge(ACCOUNT, 2)
    assert (await balances.get(ACCOUNT)).total == 3
    balances.charge(ACCOUNT, 3)  # would use it up: dropped, the next lookup reads
    pending = asyncio.ensure_future(balances.get(ACCOUNT))
    await settle()
    assert up.calls == 2
    await balances.close()
    with pytest.raises(asyncio.CancelledError):
        await pending
    assert balances.lookups_in_flight() == 0
