"""Issue 26, finding 7b: a key's `max_in_flight` is exact under bursts: of 50 concurrent submits with a cap of 3,
exactly 3 are accepted (the others 429 TOO_MANY_IN_FLIGHT), on SQLite and PostgreSQL, burst after burst."""

from __future__ import annotations

import asyncio
import dataclasses

from pool_support import ADMIN_KEY, add_accounts, create_key, key_auth, seed_sim
from support import AppFactory, json_of

from jimeng_server.config import AdminConfig, Config
from jimeng_server.simulator import Simulator


async def test_bursts_of_50_never_pass_the_cap(
    make_client: AppFactory, sim: Simulator, config: Config, store_url: str
) -> None:
    seed_sim(sim, credits=100_000)
    client = await make_client(admin=AdminConfig(key=ADMIN_KEY), store=dataclasses.replace(config.store, url=store_url))
    await add_accounts(client)
    for burst in range(3):
        key = await create_key(client, f"burst{burst}", max_in_flight=3)

        async def one(i: int, key: str = key, burst: int = burst) -> tuple[int, str]:
            resp = await client.post(
                "/v1/async/images/generations", json={"prompt": f"cat {burst}-{i}"}, headers=key_auth(key)
            )
            body = await json_of(resp)
            return resp.status, "" if resp.status == 200 else body["error"]["code"]

        results = await asyncio.gather(*(one(i) for i in range(50)))
        accepted = [r for r in results if r[0] == 200]
        assert len(accepted) == 3, results
        assert {r for r in results if r[0] != 200} == {(429, "TOO_MANY_IN_FLIGHT")}
    assert len(sim.charges) == 9
