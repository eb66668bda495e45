"""`[webhooks] processes` (issue 27 item 3): the webhook sender runs in child processes of the server on the same
store. Real child processes, a real loopback receiver, both store backends: a settle in the API process wakes a
child (its fallback poll is far too slow to explain the delivery), the webhook arrives signed and is recorded, the
API process sends none (its metrics count what the child reports; the delivery's log line carries the child's
tag), a child killed with SIGKILL mid-send is started again and delivers the event (at-least-once, the same
webhook-id), two children deliver every event exactly once, and SIGTERM to the server stops the children too."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from simulate_proc import free_port, start_simulate
from standardwebhooks.webhooks import Webhook
from store_backends import open_store
from support import until
from webhook_support import SECRET, Receiver, Reply, add_done_task, done_outcome, make_task

from jimeng_server.api.appkeys import SENDERS, SETTLER, STORE, WEBHOOKS
from jimeng_server.app import create_app
from jimeng_server.clock import SystemClock
from jimeng_server.config import Config, ConfigError, WebhookConfig, load_config
from jimeng_server.logs import JsonFormatter, ProcessTagFilter, TextFormatter
from jimeng_server.metrics import WEBHOOK_DELIVERIES
from jimeng_server.store.outbox import EventState
from jimeng_server.store.sqlite import SqliteStore
from jimeng_server.webhooks.processes import BACKOFF_MAX, restart_delay

pytestmark = pytest.mark.wall_clock  # real processes on the real clock; signatures checked against it

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
ServerFactory = Callable[..., Awaitable[TestServer]]
SLOW_POLL = 600.0  # the children's fallback poll: a delivery within the receiver's wait came from a wake-up


def delivered_count() -> float:
    """This process's `jimeng_webhook_deliveries_total{outcome="delivered"}`."""
    return float(WEBHOOK_DELIVERIES.labels("delivered")._value.get())


def hooks(store_url: str, **overrides: Any) -> WebhookConfig:
    """One child; on PostgreSQL a short lease (a dead child's claims expire, other replicas may hold theirs)."""
    pg = store_url.startswith("postgresql")
    base: dict[str, Any] = {
        "secret": SECRET,
        "jitter": 0.0,
        "processes": 1,
        "poll_interval": SLOW_POLL,
        "timeout": 6.0 if pg else 20.0,
        "lease_seconds": 7.0 if pg else 30.0,
    }
    return WebhookConfig(**{**base, **overrides})


async def start_api(
    aiohttp_client: ClientFactory, config: Config, store_url: str, webhooks: WebhookConfig
) -> TestClient[Any, Any]:
    """The server app in this process with its background loops on and its sender children started and ready."""
    cfg = dataclasses.replace(config, store=dataclasses.replace(config.store, url=store_url), webhooks=webhooks)
    client = await aiohttp_client(create_app(cfg, clock=SystemClock()))
    async with asyncio.timeout(60):
        await client.app[SENDERS].wait_ready()
    return client


async def finish_task(client: TestClient[Any, Any], history_id: str, callback_url: str) -> None:
    """Store a processing task and settle it as done through the API process's own settler (which wakes the
    senders, as the watcher's settles do)."""
    app = client.app
    await app[STORE].insert(make_task(history_id, callback_url, created_at=SystemClock().time()))
    await app[SETTLER].settle([done_outcome(history_id, [f"https://cdn.example/{history_id}.webp"])])


async def test_a_child_sends_signed_webhooks_and_the_api_process_sends_none(
    store_url: str,
    aiohttp_client: ClientFactory,
    config: Config,
    receiver: tuple[Receiver, TestServer],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    rec, server = receiver
    before = delivered_count()
    client = await start_api(aiohttp_client, config, store_url, hooks(store_url))
    senders = client.app[SENDERS]
    assert senders.count == 1 and senders.pids[0] not in (None, os.getpid())
    resp = await client.get("/readyz")
    assert resp.status == 200 and (await resp.json())["checks"]["webhook_sender"] == "ok"

    with caplog.at_level(logging.INFO):
        await finish_task(client, "h-proc-1", str(server.make_url("/hook")))
        await rec.wait_for(lambda: len(rec.acked) == 1, timeout=30)
        await client.close()  # SIGTERM to the child: it records its attempt, reports it and exits

    (got,) = rec.requests
    event = Webhook(SECRET).verify(got.body, got.headers)
    assert event["type"] == "task.succeeded" and event["data"]["history_id"] == "h-proc-1"
    store = await open_store(store_url, SystemClock())
    try:
        (stored,) = await store.events_of("h-proc-1")
        (attempt,) = await store.attempts_of("h-proc-1")
    finally:
        await store.close()
    assert stored.state is EventState.DELIVERED and stored.event_id == got.headers["webhook-id"]
    assert attempt.status == 200
    # The API process sent nothing itself, yet its metrics count the child's delivery (reported over the pipe).
    assert not [r for r in caplog.records if r.name == "jimeng_server.webhooks.sender"]
    assert delivered_count() - before == 1
    err = capfd.readouterr().err
    assert "sender-1:jimeng_server.webhooks.sender" in err and "h-proc-1" in err and "delivered on attempt 1" in err


async def test_a_child_killed_mid_send_is_restarted_and_the_event_is_delivered(
    store_url: str,
    aiohttp_client: ClientFactory,
    config: Config,
    receiver: tuple[Receiver, TestServer],
) -> None:
    rec, server = receiver
    rec.script("/hook", Reply(hang=True))  # the first send hangs: the child dies holding the claim
    # The restarted child finds the event by its fallback poll on PostgreSQL (once the dead child's lease ended).
    client = await start_api(aiohttp_client, config, store_url, hooks(store_url, poll_interval=0.2))
    senders = client.app[SENDERS]
    first = senders.pids[0]
    assert first is not None
    await finish_task(client, "h-proc-kill", str(server.make_url("/hook")))
    await rec.wait_for(lambda: len(rec.requests) == 1, timeout=30)
    await until(lambda: senders.in_flight == 1, what="the child's report of its send in flight")
    metrics = await (await client.get("/metrics")).text()
    assert "jimeng_webhook_sends_in_flight 1.0" in metrics.splitlines()  # the server's gauge counts the child's
    os.kill(first, signal.SIGKILL)

    await rec.wait_for(lambda: len(rec.acked) == 1, timeout=60)
    assert senders.restarts == 1 and senders.pids[0] not in (None, first)
    await client.close()

    hung, again = rec.requests
    assert hung.headers["webhook-id"] == again.headers["webhook-id"]  # the same event, delivered at least once
    Webhook(SECRET).verify(again.body, again.headers)
    store = await open_store(store_url, SystemClock())
    try:
        (stored,) = await store.events_of("h-proc-kill")
        attempts = await store.attempts_of("h-proc-kill")
    finally:
        await store.close()
    assert stored.state is EventState.DELIVERED
    assert [a.status for a in attempts] == [200]  # the killed attempt was never recorded; nothing lost


async def test_two_children_deliver_every_event_exactly_once(
    store_url: str,
    aiohttp_client: ClientFactory,
    config: Config,
    receiver: tuple[Receiver, TestServer],
) -> None:
    """Two senders on one store, as two sender processes of a server (or two replicas on PostgreSQL, whose
    senders claim the same way): every event is delivered once."""
    rec, server = receiver
    client = await start_api(aiohttp_client, config, store_url, hooks(store_url, processes=2))
    assert len({pid for pid in client.app[SENDERS].pids}) == 2
    ids = [f"h-two-{i:02d}" for i in range(30)]
    for hid in ids:
        await finish_task(client, hid, str(server.make_url(f"/hook/{hid}")))
    await rec.wait_for(lambda: len(rec.acked) >= len(ids), timeout=60)
    await client.close()
    assert sorted(r.path.rsplit("/", 1)[1] for r in rec.requests) == ids  # each once, none twice
    assert len(set(rec.ids())) == len(ids)


async def start_server(tmp_path: Path, processes: int) -> tuple[asyncio.subprocess.Process, list[int], list[str]]:
    """`python -m jimeng_server` with `processes` sender processes: the server, their pids (from its log) and the
    log lines read up to "listening"."""
    conf = tmp_path / "config.toml"
    conf.write_text(
        f'[store]\npath = "{tmp_path / "tasks.db"}"\n[webhooks]\nprocesses = {processes}\nsecret = "{SECRET}"\n',
        encoding="utf-8",
    )
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "jimeng_server", "--config", str(conf)),
        *("--host", "127.0.0.1", "--port", str(free_port())),
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    pids: list[int] = []
    async with asyncio.timeout(60):
        while len(pids) < processes or not any("listening" in x for x in lines):
            line = (await proc.stderr.readline()).decode()
            assert line, "".join(lines)
            lines.append(line)
            if "webhook sender process" in line and "started (pid" in line:
                pids.append(int(line.rsplit("pid ", 1)[1].rstrip(")\n")))
    return proc, pids, lines


async def ended(pid: int) -> None:
    """Return once process `pid` (not a child of this one) has ended: its pidfd becomes readable then."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(fd, lambda: done.done() or done.set_result(None))
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def test_sigterm_stops_the_server_and_its_sender_processes(tmp_path: Path) -> None:
    proc, pids, lines = await start_server(tmp_path, 2)
    assert len(pids) == 2
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(60):
        _, err = await proc.communicate()
        for pid in pids:
            await ended(pid)
    text = "".join(lines) + err.decode()
    assert proc.returncode == 0, text[-3000:]
    assert "Traceback" not in text and "exited" not in text  # no child died or was restarted on the way


async def test_a_killed_server_leaves_no_sender_process_behind(tmp_path: Path) -> None:
    """kill -9 of the server: its sender processes see the pipe close and stop by themselves."""
    proc, pids, _ = await start_server(tmp_path, 1)
    proc.kill()
    async with asyncio.timeout(60):
        await proc.communicate()
        for pid in pids:
            await ended(pid)


async def test_simulate_mode_with_a_sender_process_delivers_kept_results(
    tmp_path: Path, receiver: tuple[Receiver, TestServer]
) -> None:
    """The README's `--simulate` run with `processes = 1`: an async submit's webhook comes from the sender process,
    signed, and its result links (kept results, re-signed by the sender process) serve the images."""
    rec, server = receiver
    config = tmp_path / "config.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "tasks.db"}"\n'
        "[watcher.image]\nfirst_poll = 0.5\ninterval = 0.5\ndeadline = 60.0\n"
        '[server]\nlog_level = "WARNING"\n[security]\nallow_private_networks = true\n'
        f'[webhooks]\nprocesses = 1\nsecret = "{SECRET}"\n',
        encoding="utf-8",
    )
    proc = await start_simulate(config, until="Bearer", seconds=60)
    try:
        token = re.search(r"Bearer ([A-Za-z0-9_-]+)", proc.banner)
        assert token is not None
        async with aiohttp.ClientSession() as http, asyncio.timeout(60):
            async with http.post(
                f"{proc.url}/v1/async/images/generations",
                json={"prompt": "a cat in the snow", "callback_url": str(server.make_url("/hook"))},
                headers={"Authorization": f"Bearer {token.group(1)}"},
            ) as resp:
                body = await resp.json()
                assert resp.status == 200, body
            await rec.wait_for(lambda: len(rec.acked) == 1, timeout=60)
            event = Webhook(SECRET).verify(rec.requests[0].body, rec.requests[0].headers)
            assert event["type"] == "task.succeeded" and event["data"]["history_id"] == body["history_id"]
            urls = [r["url"] for r in event["data"]["results"]]
            assert urls and all("/v1/files/" in url for url in urls)  # kept: served by the server itself
            async with http.get(urls[0]) as img:
                assert img.status == 200 and (await img.read())[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        await proc.stop(seconds=60)


def test_processes_is_validated_with_its_key_path(tmp_path: Path) -> None:
    for value in (-1, 33):
        conf = tmp_path / "bad.toml"
        conf.write_text(f"[webhooks]\nprocesses = {value}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=r"webhooks\.processes"):
            load_config(str(conf))
    conf.write_text("[webhooks]\nprocesses = 2\n", encoding="utf-8")
    assert load_config(str(conf)).webhooks.processes == 2
    conf.write_text('[store]\npath = ":memory:"\n[webhooks]\nprocesses = 1\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"webhooks\.processes: .*not an in-memory database"):
        load_config(str(conf))


def test_restarts_back_off_up_to_a_cap() -> None:
    delays = [restart_delay(n) for n in range(1, 12)]
    assert delays[0] == 0.25 and delays[1] == 0.5
    assert delays == sorted(delays) and delays[-1] == BACKOFF_MAX


async def test_without_processes_the_api_process_sends(aiohttp_client: ClientFactory, config: Config) -> None:
    client = await aiohttp_client(create_app(config, clock=SystemClock()))
    assert SENDERS not in client.app and client.app[WEBHOOKS].running


async def test_sqlite_claims_from_two_processes_never_overlap(tmp_path: Path) -> None:
    """Two processes claim from one SQLite file at once (each claim is one statement under the file's write lock,
    waiting out the other's through the busy timeout): every due event is claimed once, none twice. A sender
    process's store (`shared`) releases only expired leases at start-up; the server's own releases every one."""
    db = tmp_path / "race.db"
    clock = SystemClock()
    store = await SqliteStore.open(db, clock=clock)
    try:
        ids = [f"h-race-{i:03d}" for i in range(60)]
        for hid in ids:
            await add_done_task(store, clock, hid, "https://hooks.example/cb")
        events = sorted([e.event_id for hid in ids for e in await store.events_of(hid)])

        now = clock.time()
        (held,) = await store.claim_due_events(now=now, limit=1, lease_until=now + 600)
        shared = await SqliteStore.open(db, clock=clock, shared=True)
        try:
            assert await shared.release_event_leases(now=now) == 0  # another sender may be sending it
        finally:
            await shared.close()
        assert await store.release_event_leases(now=now) == 1  # no sender process alive: queued again
        assert held.event_id in events

        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                str(HELPERS / "claim_proc.py"),
                str(db),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            for _ in range(2)
        ]
        async with asyncio.timeout(60):
            for proc in procs:
                assert proc.stdout is not None
                assert (await proc.stdout.readline()).strip() == b"ready"
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write(b"go\n")
                await proc.stdin.drain()
            outputs = [(await proc.communicate())[0].decode().split() for proc in procs]
        assert all(proc.returncode == 0 and out[-1] == "done" for proc, out in zip(procs, outputs, strict=True))
        claimed = [line for out in outputs for line in out[:-1]]
        assert sorted(claimed) == events  # each once, none twice
    finally:
        await store.close()


def test_a_child_log_line_names_its_process_in_both_formats() -> None:
    record = logging.LogRecord("jimeng_server.webhooks.sender", logging.INFO, __file__, 1, "delivered", None, None)
    record.request_id = "-"
    assert ProcessTagFilter("sender-2").filter(record)
    assert ProcessTagFilter("sender-2").filter(record)  # tagged once
    assert json.loads(JsonFormatter().format(record))["logger"] == "sender-2:jimeng_server.webhooks.sender"
    assert " sender-2:jimeng_server.webhooks.sender [-]: delivered" in TextFormatter().format(record)
