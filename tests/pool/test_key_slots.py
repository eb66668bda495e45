"""An API key's in-flight slots free when the upstream finishes (issue 24), under the default
`[watcher] watch = "callbacks"`: a key's task holds a slot until its record is final, so it is watched in the
background whatever the mode, and fire-and-forget callers (no callback, no query) are not walled off."""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp.test_utils import TestClient
from pool_support import ADMIN_KEY, add_accounts, create_key, key_auth, seed_sim
from support import CN_TOKEN, AppFactory, bearer, json_of

from jimeng_server.api.appkeys import ACCOUNT_POOL, WATCHER
from jimeng_server.clock import ManualClock
from jimeng_server.config import AdminConfig, Config, WatcherConfig
from jimeng_server.simulator import Simulator

Client = TestClient[Any, Any]
IMAGES = "/v1/async/images/generations"


async def callbacks_mode_client(make_client: AppFactory, config: Config, store_url: str) -> Client:
    """The app in the default watch mode ("callbacks") with an admin key, on each store backend."""
    return await make_client(
        admin=AdminConfig(key=ADMIN_KEY),
        watcher=WatcherConfig(watch="callbacks"),
        store=dataclasses.replace(config.store, url=store_url),
    )


async def submit(client: Client, key: str) -> tuple[int, dict[str, Any]]:
    resp = await client.post(IMAGES, json={"prompt": "a cat"}, headers=key_auth(key))
    return resp.status, await json_of(resp)


async def tick_until_idle(client: Client, clock: ManualClock, limit: int = 120) -> None:
    """Advance the clock and run the watcher until it watches nothing (no caller queries meanwhile)."""
    for _ in range(limit):
        if not client.app[WATCHER].pending:
            return
        await clock.advance(1.0)
        await client.app[WATCHER].run_once()
    raise AssertionError("the watched tasks did not finish")


async def test_a_keys_slots_free_when_its_tasks_finish_upstream_without_a_query(
    make_client: AppFactory, sim: Simulator, config: Config, clock: ManualClock, store_url: str
) -> None:
    seed_sim(sim)
    client = await callbacks_mode_client(make_client, config, store_url)
    await add_accounts(client)
    key = await create_key(client, max_in_flight=2)
    first, second = await submit(client, key), await submit(client, key)
    assert first[0] == 200 and second[0] == 200
    status, body = await submit(client, key)
    assert status == 429 and body["error"]["code"] == "TOO_MANY_IN_FLIGHT"
    # Neither task has a callback_url, and nobody asks about them: the watcher polls them anyway.
    assert client.app[WATCHER].is_watching(first[1]["history_id"])
    assert client.app[WATCHER].is_watching(second[1]["history_id"])
    await tick_until_idle(client, clock)
    status, body = await submit(client, key)
    assert status == 200, body
    assert len(sim.charges) == 3


async def test_a_keys_unfinished_task_is_watched_again_after_a_restart(
    make_client: AppFactory, sim: Simulator, config: Config, clock: ManualClock, store_url: str
) -> None:
    seed_sim(sim)
    first = await callbacks_mode_client(make_client, config, store_url)
    await add_accounts(first, "pa")
    key = await create_key(first, max_in_flight=1)
    status, body = await submit(first, key)
    assert status == 200
    await first.close()
    second = await callbacks_mode_client(make_client, config, store_url)
    assert second.app[WATCHER].is_watching(body["history_id"])
    assert second.app[ACCOUNT_POOL].in_flight(1) == 1
    await tick_until_idle(second, clock)
    status, body = await submit(second, key)
    assert status == 200, body


async def test_a_raw_token_task_without_a_callback_is_still_left_to_the_caller(
    make_client: AppFactory, config: Config
) -> None:
    """The spec's default is unchanged for raw session tokens: no callback, no background polling."""
    client = await make_client(watcher=WatcherConfig(watch="callbacks"))
    resp = await client.post(IMAGES, json={"prompt": "a cat"}, headers=bearer(CN_TOKEN))
    body = await json_of(resp)
    assert resp.status == 200, body
    assert not client.app[WATCHER].is_watching(body["history_id"])
