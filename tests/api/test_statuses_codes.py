"""Issue 20, item 1: the final statuses 40 and 100 (and 10 without items) with reasons of their own, the disputed
statuses as `[upstream]` config, and the code table of docs/protocol.md §19.3 deciding what a caller sees and
whether the next account is tried. Everything over real HTTP against the simulator."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pool_support import ADMIN_KEY, add_accounts, admin, create_key, key_auth, seed_sim
from support import CN_TOKEN, CN_TOKEN_2, bearer, drive, json_of
from webhook_support import SECRET, Receiver

from jimeng_server.api.appkeys import STORE, WATCHER, WEBHOOKS
from jimeng_server.clock import ManualClock
from jimeng_server.config import AdminConfig, Config, ConfigError, WebhookConfig, parse_config
from jimeng_server.simulator import Fault, FaultKind, Script, Simulator, Step
from jimeng_server.upstream import codes

SUBMIT = "/v1/async/images/generations"
SYNC = "/v1/images/generations"
GENERATE = "/aigc_draft/generate"

Client = TestClient[Any, Any]


async def sync_post(client: Client, clock: ManualClock, prompt: str, *tokens: str) -> tuple[int, Any]:
    call = client.post(SYNC, json={"prompt": prompt}, headers=bearer(*(tokens or (CN_TOKEN,))))
    (resp,) = await drive(client.app, clock, call)
    return resp.status, await json_of(resp)


async def finish(client: Client, clock: ManualClock, hid: str) -> dict[str, Any]:
    store = client.app[STORE]
    for _ in range(120):
        row = await store.get(hid)
        if row is not None and row.final:
            break
        await clock.advance(1.0)
        await client.app[WATCHER].run_once()
    resp = await client.get(f"/v1/async/tasks/{hid}", headers=bearer(CN_TOKEN))
    assert resp.status == 200
    return dict(await json_of(resp))


@pytest.mark.parametrize(
    ("marker", "upstream_status", "http", "code"),
    [
        ("[sim:postcheck]", 40, 422, "REJECTED_AFTER_GENERATION"),
        ("[sim:deleted]", 100, 502, "DELETED_UPSTREAM"),
        ("[sim:precheck]", 10, 422, "PRE_CHECK_REJECTED"),
    ],
)
async def test_final_failure_statuses_end_the_task_with_their_own_reason(
    client: Client, clock: ManualClock, sim: Simulator, marker: str, upstream_status: int, http: int, code: str
) -> None:
    status, body = await sync_post(client, clock, f"a cat {marker}")
    assert (status, body["error"]["code"]) == (http, code)
    assert f"status {upstream_status}" in body["error"]["message"]

    resp = await client.post(SUBMIT, json={"prompt": f"a dog {marker}"}, headers=bearer(CN_TOKEN))
    hid = (await json_of(resp))["history_id"]
    polls_before = len(sim.calls("/get_history_by_ids"))
    task = await finish(client, clock, hid)
    assert (task["status"], task["results"], task["error"]["code"]) == (30, None, code)
    assert task["raw_data"]["status"] == upstream_status
    # Final at once: not polled on until a timeout (the watcher stops after the first final answer).
    assert len(sim.calls("/get_history_by_ids")) - polls_before <= 4


async def test_status_40_reaches_the_webhook_as_the_query_says(
    make_client: Any, clock: ManualClock, aiohttp_server: Any
) -> None:
    rec = Receiver()
    server: TestServer = await aiohttp_server(rec.app())
    client = await make_client(webhooks=WebhookConfig(secret=SECRET, jitter=0.0))
    hook = str(server.make_url("/hook"))
    resp = await client.post(
        SUBMIT, json={"prompt": "late no [sim:postcheck]", "callback_url": hook}, headers=bearer(CN_TOKEN)
    )
    hid = (await json_of(resp))["history_id"]
    task = await finish(client, clock, hid)
    assert await client.app[WEBHOOKS].drain() == 1
    (got,) = rec.on("/hook")
    event = json.loads(got.body)
    assert event["type"] == "task.failed"
    assert event["data"] == {k: v for k, v in task.items() if k != "raw_data"}
    assert event["data"]["error"]["code"] == "REJECTED_AFTER_GENERATION"


async def test_status_10_without_items_is_done_when_configured(
    make_client: Any, config: Config, clock: ManualClock
) -> None:
    client = await make_client(upstream=dataclasses.replace(config.upstream, status_10="done"))
    status, body = await sync_post(client, clock, "a cat [sim:precheck]")
    assert (status, body["error"]["code"]) == (502, "EMPTY_RESULT")  # "done", but with nothing in it


async def test_status_45_final_when_configured(
    make_client: Any, config: Config, clock: ManualClock, sim: Simulator
) -> None:
    sim.next_script = Script([Step(20, 0), Step(45, 2)], "partial-45")
    client = await make_client(upstream=dataclasses.replace(config.upstream, status_45="done"))
    status, body = await sync_post(client, clock, "two of four")
    assert status == 200 and len(body["data"]) == 2

    sim.next_script = Script([Step(20, 0), Step(45, 2)], "partial-45")
    running = await make_client()  # the default: 45 is still running (§18.2)
    resp = await running.post(SUBMIT, json={"prompt": "two of four"}, headers=bearer(CN_TOKEN))
    hid = (await json_of(resp))["history_id"]
    for _ in range(10):
        await clock.advance(1.0)
        await running.app[WATCHER].run_once()
    row = await running.app[STORE].get(hid)
    assert row is not None and not row.final


# ------------------------------------------------------------------------------------------ codes


def generates_by(sim: Simulator) -> list[str | None]:
    return [e.sessionid for e in sim.calls(GENERATE)]


@pytest.mark.parametrize(
    ("ret", "errmsg"),
    [("1010", "concurrency_limit"), ("2020", "rate_limit"), ("1021", "commercial_shark_block"), ("5001", "busy")],
)
async def test_account_refusals_move_on_to_the_next_token(
    client: Client, clock: ManualClock, sim: Simulator, ret: str, errmsg: str
) -> None:
    sim.inject(GENERATE, Fault(FaultKind.RET, ret=ret, errmsg=errmsg))
    status, body = await sync_post(client, clock, "a cat", CN_TOKEN, CN_TOKEN_2)
    assert status == 200 and len(body["data"]) == 4
    assert generates_by(sim) == [CN_TOKEN, CN_TOKEN_2]
    assert sim.generate_count == 1  # one task made, one paid for


async def test_rate_limit_on_the_only_token_is_a_429(client: Client, clock: ManualClock, sim: Simulator) -> None:
    sim.inject(GENERATE, Fault(FaultKind.RET, ret="1057", errmsg="rate_limit"))
    status, body = await sync_post(client, clock, "a cat")
    assert (status, body["error"]["code"]) == (429, "UPSTREAM_RATE_LIMITED")
    assert "ret 1057" in body["error"]["message"]


@pytest.mark.parametrize("ret", ["2038", "2048", "1159", "2047"])
async def test_content_codes_are_422_and_do_not_move_on(
    client: Client, clock: ManualClock, sim: Simulator, ret: str
) -> None:
    sim.inject(GENERATE, Fault(FaultKind.RET, ret=ret, errmsg="blocked"), times=2)
    status, body = await sync_post(client, clock, "a cat", CN_TOKEN, CN_TOKEN_2)
    assert (status, body["error"]["code"]) == (422, "CONTENT_REJECTED")
    assert generates_by(sim) == [CN_TOKEN]  # another account would refuse the same content


async def test_ret_4001_follows_the_config(
    make_client: Any, config: Config, clock: ManualClock, sim: Simulator
) -> None:
    quota = await make_client()
    sim.inject(GENERATE, Fault(FaultKind.RET, ret="4001", errmsg="external no credits"))
    status, _ = await sync_post(quota, clock, "a cat", CN_TOKEN, CN_TOKEN_2)
    assert status == 200 and generates_by(sim) == [CN_TOKEN, CN_TOKEN_2]  # quota: the next account

    content = await make_client(upstream=dataclasses.replace(config.upstream, ret_4001="content"))
    sim.inject(GENERATE, Fault(FaultKind.RET, ret="4001", errmsg="content filtered"))
    status, body = await sync_post(content, clock, "a cat", CN_TOKEN, CN_TOKEN_2)
    assert (status, body["error"]["code"]) == (422, "CONTENT_REJECTED")
    assert generates_by(sim)[2:] == [CN_TOKEN]


async def test_content_fail_code_2047_on_a_record_is_a_content_rejection(
    client: Client, clock: ManualClock, sim: Simulator
) -> None:
    sim.next_script = Script([Step(20, 0), Step(30, 0, "2047")], "fail-2047")
    status, body = await sync_post(client, clock, "a fast clip")
    assert (status, body["error"]["code"]) == (422, "CONTENT_REJECTED")
    assert "2047" in body["error"]["message"]


def test_config_refuses_unknown_meanings() -> None:
    for key, bad in (("status_10", "success"), ("status_45", "final"), ("ret_4001", "risk")):
        with pytest.raises(ConfigError, match=f"upstream.{key}: must be one of"):
            parse_config({"upstream": {key: bad}})


def test_every_configurable_meaning_is_one_the_code_table_applies() -> None:
    """Each choice config accepts (and names in its error) decides the disputed status or code as named, and the
    defaults of the config and of the code table are the same."""
    for choice in codes.STATUS_10_CHOICES:
        config = parse_config({"upstream": {"status_10": choice}}).upstream
        policy = codes.StatusPolicy(config.status_10, config.status_45)
        done_with_items = codes.meaning_of(10, 1, policy)
        assert done_with_items is (codes.StatusMeaning.DONE if choice == "auto" else codes.StatusMeaning(choice))
    for choice in codes.STATUS_45_CHOICES:
        config = parse_config({"upstream": {"status_45": choice}}).upstream
        assert codes.meaning_of(45, 0, codes.StatusPolicy(config.status_10, config.status_45)) == choice
    for choice in codes.RET_4001_CHOICES:
        config = parse_config({"upstream": {"ret_4001": choice}}).upstream
        assert codes.classify("4001", codes.ret_overrides(config.ret_4001)) == choice
    defaults = parse_config({}).upstream
    assert codes.StatusPolicy(defaults.status_10, defaults.status_45) == codes.DEFAULT_STATUSES
    assert codes.classify("4001", codes.ret_overrides(defaults.ret_4001)) is codes.classify("4001")
    with pytest.raises(ConfigError, match=r"upstream\.ret_4001: must be one of quota, content, got .risk.$"):
        parse_config({"upstream": {"ret_4001": "risk"}})


def test_every_code_row_names_a_source() -> None:
    assert all(f.source.strip() and f.name.strip() for f in codes.CODES.values())
    assert all(f.source.strip() for f in codes.STATUSES.values())


# ------------------------------------------------------------------------------------------ the pool


@pytest.fixture
async def pool_client(make_client: Any, sim: Simulator, config: Config, store_url: str) -> Client:
    seed_sim(sim)
    client = await make_client(admin=AdminConfig(key=ADMIN_KEY), store=dataclasses.replace(config.store, url=store_url))
    await add_accounts(client)
    return client


async def pool_health(client: Client) -> dict[str, dict[str, Any]]:
    accounts = (await json_of(await client.get("/admin/api/accounts", headers=admin())))["data"]
    return {a["name"]: a["health"] for a in accounts}


async def test_pool_moves_on_from_a_rate_limited_account_and_cools_it_down(pool_client: Client, sim: Simulator) -> None:
    key = await create_key(pool_client)
    sim.inject(GENERATE, Fault(FaultKind.RET, ret="1310", errmsg="exceed_model_parallel_max"))
    resp = await pool_client.post(SUBMIT, json={"prompt": "a cat"}, headers=key_auth(key))
    assert resp.status == 200, await json_of(resp)
    assert len(sim.calls(GENERATE)) == 2 and len(sim.charges) == 1
    cooled = [h for h in (await pool_health(pool_client)).values() if h["last_error_code"]]
    assert [(h["state"], h["last_error_code"]) for h in cooled] == [("cooling_down", "UPSTREAM_RATE_LIMITED")]


async def test_pool_does_not_move_on_from_a_content_refusal(pool_client: Client, sim: Simulator) -> None:
    key = await create_key(pool_client)
    sim.inject(GENERATE, Fault(FaultKind.RET, ret="2050", errmsg="text_copyright_block"), times=3)
    resp = await pool_client.post(SUBMIT, json={"prompt": "a cat"}, headers=key_auth(key))
    body = await json_of(resp)
    assert (resp.status, body["error"]["code"]) == (422, "CONTENT_REJECTED")
    assert len(sim.calls(GENERATE)) == 1  # no other account is asked, none is cooled down
    assert not [h for h in (await pool_health(pool_client)).values() if h["state"] == "cooling_down"]
