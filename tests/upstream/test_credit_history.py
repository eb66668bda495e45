"""Spending records (`user_credit_history`, upstream-protocol §19.10): the pure parser on the documented shape,
and the client against the simulator over real HTTP, where every charge is a record carrying the generate's
submit_id and records settle `spend_settle_seconds` after the task finished."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from support import CN_TOKEN, CN_TOKEN_2, bearer, drive, json_of

from jimeng_server.api.appkeys import CLIENT
from jimeng_server.clock import ManualClock
from jimeng_server.simulator import Simulator
from jimeng_server.upstream.client import GENERATE_PATH, JimengClient
from jimeng_server.upstream.errors import UpstreamBadResponse
from jimeng_server.upstream.regions import Region
from jimeng_server.upstream.spending import (
    CREDIT_HISTORY_PATH,
    SpendRecord,
    credit_history_body,
    parse_credit_history,
)
from jimeng_server.upstream.tokens import Account

DOCUMENTED = {
    "total_credit": 431,
    "records": [
        {"amount": 3, "create_time": 1758355200, "title": "图片生成", "submit_id": "a1b2", "status": 1},
        {"amount": "70", "create_time": "1758351600", "title": "视频生成720P 5秒", "submit_id": "c3d4", "status": "2"},
        {"amount": 12, "create_time": 1758300000, "title": "积分到期清零"},
    ],
    "new_cursor": "1758300000",
    "has_more": True,
}


def test_the_documented_answer_parses_into_records_a_balance_and_a_cursor() -> None:
    page = parse_credit_history(DOCUMENTED)
    assert page.total_credit == 431 and page.has_more and page.next_cursor == "1758300000"
    assert page.records == (
        SpendRecord(3, 1758355200, "图片生成", "a1b2", "1"),
        SpendRecord(70, 1758351600, "视频生成720P 5秒", "c3d4", "2"),
        SpendRecord(12, 1758300000, "积分到期清零", "", ""),
    )
    assert page.by_submit_id("c3d4") == page.records[1]
    assert page.by_submit_id("missing") is None and page.by_submit_id("") is None  # an expiry names no task


def test_an_empty_last_page_is_not_an_error() -> None:
    page = parse_credit_history({"records": []})
    assert page.records == () and not page.has_more and page.total_credit == 0


@pytest.mark.parametrize(
    ("data", "names"),
    [
        (None, "data is not an object"),
        ({"total_credit": 3}, "no records list"),
        ({"records": ["x"]}, "records[0] is not an object"),
        ({"records": [{"amount": "lots", "create_time": 1}]}, "records[0].amount"),
        ({"records": [{"amount": 1}]}, "records[0].create_time"),
        ({"records": [{"amount": True, "create_time": 1}]}, "records[0].amount"),
        ({"records": [], "total_credit": "n/a"}, "total_credit"),
    ],
)
def test_a_drifted_answer_is_a_bad_response_naming_the_field(data: Any, names: str) -> None:
    with pytest.raises(UpstreamBadResponse) as caught:
        parse_credit_history(data)
    assert names in caught.value.reason and CREDIT_HISTORY_PATH in caught.value.reason


def test_the_request_body_is_the_web_pages() -> None:
    assert credit_history_body() == {"count": 20, "cursor": "0", "history_type": 2}


# ------------------------------------------------------------------ over HTTP against the simulator


async def make_image(client: TestClient[Any, Any], clock: ManualClock, prompt: str, token: str = CN_TOKEN) -> None:
    (resp,) = await drive(
        client.app, clock, client.post("/v1/images/generations", json={"prompt": prompt}, headers=bearer(token))
    )
    assert resp.status == 200, await json_of(resp)


def sent_submit_ids(sim: Simulator, token: str = CN_TOKEN) -> list[str]:
    """The submit_ids of the generates that reached the simulator for `token`, in order."""
    return [e.body["submit_id"] for e in sim.calls(GENERATE_PATH) if e.sessionid == token and e.ret == "0"]


async def test_a_finished_tasks_charge_settles_late_with_the_generates_submit_id(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    sim.settings.spend_settle_seconds = 60.0
    api: JimengClient = client.app[CLIENT]
    account = Account(sessionid=CN_TOKEN, region=Region.CN)
    await make_image(client, clock, "a cat")
    (submit_id,) = sent_submit_ids(sim)
    early = await api.get_credit_history(account)
    assert early.records == () and early.by_submit_id(submit_id) is None  # finished, not settled yet
    assert early.total_credit == sim.account(CN_TOKEN).total
    await clock.advance(60)
    page = await api.get_credit_history(account)
    record = page.by_submit_id(submit_id)
    charged = next(iter(sim.records.values())).charged
    assert record is not None and record.amount == charged > 0 and record.title == "图片生成"
    assert page.total_credit == 1000 - charged == sim.account(CN_TOKEN).total
    # What reached the upstream: the documented body, on the commerce path.
    (call,) = [e for e in sim.calls(CREDIT_HISTORY_PATH) if e.body["cursor"] == "0"][-1:]
    assert call.body == {"count": 20, "cursor": "0", "history_type": 2} and call.ret == "0"


async def test_records_are_per_account_newest_first_and_page_by_cursor(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    api: JimengClient = client.app[CLIENT]
    for i in range(23):
        await make_image(client, clock, f"cat {i}")
        await clock.advance(1)
    await make_image(client, clock, "another account's dog", CN_TOKEN_2)
    ours = sent_submit_ids(sim)
    first = await api.get_credit_history(Account(sessionid=CN_TOKEN, region=Region.CN))
    assert first.has_more and len(first.records) == 20
    second = await api.get_credit_history(Account(sessionid=CN_TOKEN, region=Region.CN), first.next_cursor)
    assert not second.has_more
    listed = [r.submit_id for r in first.records + second.records]
    assert listed == list(reversed(ours))  # each charge once, newest first, none of the other account's
    times = [r.created_at for r in first.records + second.records]
    assert times == sorted(times, reverse=True)
    (theirs,) = (await api.get_credit_history(Account(sessionid=CN_TOKEN_2, region=Region.CN))).records
    assert [theirs.submit_id] == sent_submit_ids(sim, CN_TOKEN_2)


async def test_a_refunded_failure_has_no_spending_record(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    sim.settings.refund_on_failure = True
    (resp,) = await drive(
        client.app,
        clock,
        client.post("/v1/images/generations", json={"prompt": "x [sim:fail]"}, headers=bearer(CN_TOKEN)),
    )
    assert resp.status >= 400
    page = await client.app[CLIENT].get_credit_history(Account(sessionid=CN_TOKEN, region=Region.CN))
    assert page.records == () and page.total_credit == 1000
