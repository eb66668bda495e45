"""Answers of final tasks from memory (services/answers.py): the same bytes and headers as from the store,
ownership still checked, nothing served once retention may have purged the task, bounded by bytes."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from support import CN_TOKEN, CN_TOKEN_2, US_TOKEN, bearer, json_of

from jimeng_server.api.appkeys import QUERIES, RETENTION, STORE, WATCHER
from jimeng_server.clock import ManualClock
from jimeng_server.config import Config, ResultsConfig
from jimeng_server.services.answers import CLOCK_MARGIN, ENTRY_OVERHEAD, AnswerCache, encode_batch, encode_json
from jimeng_server.simulator import Simulator
from jimeng_server.tasks.answer import body_of_row

SUBMIT = "/v1/async/images/generations"
QUERY = "/v1/async/tasks/query"


async def submit(client: TestClient[Any, Any], prompt: str, token: str = CN_TOKEN) -> str:
    resp = await client.post(SUBMIT, json={"prompt": prompt}, headers=bearer(token))
    assert resp.status == 200, await resp.text()
    return str((await json_of(resp))["history_id"])


async def finish(app: web.Application, clock: ManualClock, seconds: int = 10) -> None:
    for _ in range(seconds):
        await clock.advance(1.0)
        await app[WATCHER].run_once()


class StoreReads:
    """Counts the store's task reads (`get_many`) of one app."""

    def __init__(self, app: web.Application, monkeypatch: pytest.MonkeyPatch) -> None:
        store = app[STORE]
        original = store.get_many
        self.count = 0

        async def counted(ids: Any) -> Any:
            self.count += 1
            return await original(ids)

        monkeypatch.setattr(store, "get_many", counted)


def today(body: Any) -> web.Response:
    """The answer as the handlers built it before the cache (web.json_response, non-ASCII kept)."""
    return web.json_response(body, dumps=lambda v: json.dumps(v, ensure_ascii=False))


async def test_a_final_task_is_answered_from_memory_with_the_same_bytes_and_headers(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    hid = await submit(client, "refused [sim:fail]")  # its failure text is Chinese
    await finish(client.app, clock)
    row = await client.app[STORE].get(hid)
    assert row is not None and row.final
    expected = today(body_of_row(row))
    reads = StoreReads(client.app, monkeypatch)
    answers = []
    for _ in range(3):
        for resp in (
            await client.get(f"/v1/async/tasks/{hid}", headers=bearer(CN_TOKEN)),
            await client.post(QUERY, json={"history_id": hid}, headers=bearer(CN_TOKEN)),
            await client.get(f"/v1/async/tasks/{hid}?wait=30", headers=bearer(CN_TOKEN)),
        ):
            assert resp.status == 200
            assert resp.headers["Content-Type"] == expected.headers["Content-Type"] == "application/json; charset=utf-8"
            answers.append(await resp.read())
    assert set(answers) == {expected.body}
    assert "不符合平台规则".encode() in answers[0]  # non-ASCII kept, not \\u-escaped
    assert reads.count == 1  # the first query read the store; every later one came from memory
    assert len(client.app[QUERIES].answers) == 1


async def test_a_cached_task_of_another_account_stays_not_found(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    hid = await submit(client, "mine")
    await finish(client.app, clock)
    assert (await client.get(f"/v1/async/tasks/{hid}", headers=bearer(CN_TOKEN))).status == 200
    assert client.app[QUERIES].answers.get(hid) is not None
    calls = len(sim.journal)
    for tokens in ((CN_TOKEN_2,), (US_TOKEN,)):
        resp = await client.get(f"/v1/async/tasks/{hid}", headers=bearer(*tokens))
        body = await json_of(resp)
        assert resp.status == 404 and body["error"]["code"] == "TASK_NOT_FOUND" and "raw_data" not in body
        resp = await client.post(QUERY, json={"history_ids": [hid]}, headers=bearer(*tokens))
        assert await json_of(resp) == {"data": [], "not_found": [hid]}
    assert len(sim.journal) == calls  # no upstream look-up either, as for a stored task of another account
    resp = await client.get(f"/v1/async/tasks/{hid}", headers=bearer(CN_TOKEN_2, CN_TOKEN))
    assert resp.status == 200  # the owner's token anywhere in the header


async def test_a_batch_mixes_cached_and_other_answers_into_one_exact_body(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    cached = await submit(client, "cached «one»")
    fresh = await submit(client, "fresh")
    foreign = await submit(client, "someone else's", CN_TOKEN_2)
    await finish(client.app, clock)
    running = await submit(client, "still running [sim:stuck0]")
    for hid, token in ((cached, CN_TOKEN), (foreign, CN_TOKEN_2)):
        assert (await client.get(f"/v1/async/tasks/{hid}", headers=bearer(token))).status == 200
    assert client.app[QUERIES].answers.get(fresh) is None
    ids = [running, cached, "7000000000001", fresh, foreign, cached]
    resp = await client.post(QUERY, json={"history_ids": ids}, headers=bearer(CN_TOKEN))
    raw = await resp.read()
    answer = json.loads(raw)
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert [b["history_id"] for b in answer["data"]] == [running, cached, fresh]
    assert answer["not_found"] == ["7000000000001", foreign]
    assert [b["status"] for b in answer["data"]] == [20, 10, 10]
    assert raw == encode_json(answer)  # exactly what encoding the whole answer at once gives
    rows = await client.app[STORE].get_many([cached, fresh])
    assert answer["data"][1:] == [body_of_row(rows[cached]), body_of_row(rows[fresh])]
    assert client.app[QUERIES].answers.get(fresh) is not None  # now kept too; the running task is not
    assert client.app[QUERIES].answers.get(running) is None


async def test_a_purged_task_is_never_answered_from_memory(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, config: Config
) -> None:
    hid = await submit(client, "forever [sim:stuck]")
    await finish(client.app, clock, 10)
    await clock.advance(client.app[WATCHER].config.settle_after)
    await client.app[WATCHER].run_once()  # settled by the watcher: TIMEOUT, while the upstream still says 20
    resp = await client.get(f"/v1/async/tasks/{hid}", headers=bearer(CN_TOKEN))
    settled = await json_of(resp)
    assert settled["status"] == 30 and settled["error"]["code"] == "TIMEOUT"
    keep = config.store.retention_days * 86400
    await clock.advance(keep - CLOCK_MARGIN - 10)  # not yet near the horizon: still from memory
    polls = len(sim.calls("/get_history_by_ids"))
    assert await json_of(await client.get(f"/v1/async/tasks/{hid}", headers=bearer(CN_TOKEN))) == settled
    assert len(sim.calls("/get_history_by_ids")) == polls
    await clock.advance(CLOCK_MARGIN + 20)  # past the horizon: any replica may purge it now
    assert (await client.app[RETENTION].purge())[0] == 1
    assert len(client.app[QUERIES].answers) == 0
    resp = await client.get(f"/v1/async/tasks/{hid}", headers=bearer(CN_TOKEN))
    body = await json_of(resp)
    # No longer stored: an id this server does not know, looked up upstream like any other.
    assert resp.status == 200 and body["status"] == 20 and "error" not in body
    (probe,) = sim.calls("/get_history_by_ids")[polls:]
    assert probe.body["history_ids"] == [hid]


async def test_an_entry_past_the_horizon_is_not_served_even_before_the_purge(
    make_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    clock: ManualClock,
    config: Config,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = await make_client(results=ResultsConfig(keep="none"))  # days later its links would be re-signed
    hid = await submit(client, "old")
    await finish(client.app, clock)
    first = await (await client.get(f"/v1/async/tasks/{hid}", headers=bearer(CN_TOKEN))).read()
    await clock.advance(config.store.retention_days * 86400 - CLOCK_MARGIN)
    reads = StoreReads(client.app, monkeypatch)
    again = await (await client.get(f"/v1/async/tasks/{hid}", headers=bearer(CN_TOKEN))).read()
    assert again == first and reads.count == 1  # from the store (another replica may purge it any moment)
    assert client.app[QUERIES].answers.get(hid) is None  # and not kept again


async def test_cache_off_answers_the_same(
    make_client: Any, config: Config, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await make_client(store=dataclasses.replace(config.store, answer_cache_mb=0))
    hid = await submit(client, "no cache")
    await finish(client.app, clock)
    reads = StoreReads(client.app, monkeypatch)
    bodies = {await (await client.get(f"/v1/async/tasks/{hid}", headers=bearer(CN_TOKEN))).read() for _ in range(3)}
    row = await client.app[STORE].get(hid)
    assert row is not None and bodies == {today(body_of_row(row)).body}
    assert reads.count == 3 and len(client.app[QUERIES].answers) == 0


# ---------------------------------------------------------------------------------------------- units


def test_batch_encoding_equals_encoding_the_whole() -> None:
    bodies: list[Any] = [{"a": "é ü 猫", "b": [1, 2.5, None], "c": {"d": "\u2028\\\""}}, {"x": []}, {}]
    for parts, missing in ((bodies, ["1", "ü"]), ([], ["2"]), (bodies[:1], [])):
        spliced = encode_batch([encode_json(b) for b in parts], missing)
        assert spliced == encode_json({"data": parts, "not_found": missing})


def test_entries_are_dropped_least_recently_used_by_bytes() -> None:
    clock = ManualClock()
    size = 100 + ENTRY_OVERHEAD
    cache = AnswerCache(3 * size, clock, retention_seconds=86400)
    for hid in "abc":
        cache.put(hid, "fp", clock.time(), b"x" * 100)
    assert len(cache) == 3 and cache.used == 3 * size
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("d", "fp", clock.time(), b"y" * 100)
    assert [h for h in "abcd" if cache.get(h) is not None] == ["a", "c", "d"]
    cache.put("e", "fp", clock.time(), b"z" * 250)  # needs two entries' room: the two least recently used go
    assert [h for h in "acde" if cache.get(h) is not None] == ["d", "e"]
    assert cache.used == size + 250 + ENTRY_OVERHEAD <= cache.max_bytes
    cache.put("d", "fp", clock.time(), b"w" * 10)  # replaced, counted once
    assert cache.used == 10 + ENTRY_OVERHEAD + 250 + ENTRY_OVERHEAD
    cache.put("huge", "fp", clock.time(), b"h" * (3 * size))  # larger than the whole cache: not kept
    assert cache.get("huge") is None and len(cache) == 2
    off = AnswerCache(0, clock, retention_seconds=86400)
    off.put("a", "fp", clock.time(), b"")
    assert len(off) == 0 and off.get("a") is None


async def test_entries_expire_before_the_retention_horizon() -> None:
    clock = ManualClock()
    cache = AnswerCache(10_000, clock, retention_seconds=7200)
    cache.put("old", "fp", clock.time() - 7200 + CLOCK_MARGIN, b"1")  # already past: not kept
    assert cache.get("old") is None
    cache.put("a", "fp", clock.time(), b"1")
    cache.put("never", "fp", None, b"2")  # no finish time: retention never purges it
    await clock.advance(7200 - CLOCK_MARGIN - 1)
    assert cache.expire() == 0 and cache.get("a") is not None
    await clock.advance(1)
    assert cache.expire() == 1 and cache.get("a") is None and cache.get("never") is not None
    assert cache.used == 1 + ENTRY_OVERHEAD
    short = AnswerCache(10_000, clock, retention_seconds=CLOCK_MARGIN)  # retention within the margin: nothing kept
    short.put("a", "fp", clock.time(), b"1")
    assert short.get("a") is None
