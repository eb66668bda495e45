"""Webhook test helpers: a scripted loopback receiver, and tasks finished through the real finish path."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiohttp import web
from record_support import make_record

from jimeng_server.clock import Clock
from jimeng_server.services.settlement import TaskSettler
from jimeng_server.store.base import Store
from jimeng_server.tasks.records import Outcome, Reason, TaskKind, TaskRecord, TaskStatus
from jimeng_server.upstream.history import parse_record

SECRET = "whsec_" + base64.b64encode(b"jimeng-test-webhook-secret-32byt").decode()
OWNER_FP = "fp-owner-0001"
TASK_TOKEN = "task-owner-token-not-a-real-one"


def make_task(
    history_id: str,
    callback_url: str | None,
    *,
    created_at: float,
    kind: TaskKind = TaskKind.IMAGE,
    account_fp: str = OWNER_FP,
) -> TaskRecord:
    """A processing task as the async API would insert it (`record_support.make_record`, upstream status 20)."""
    return make_record(
        history_id,
        account_fp=account_fp,
        token=TASK_TOKEN,
        kind=kind,
        upstream_status=20,
        callback_url=callback_url,
        created_at=created_at,
        updated_at=created_at,
    )


def done_outcome(history_id: str, urls: Sequence[str], kind: TaskKind = TaskKind.IMAGE) -> Outcome:
    items = [{"image": {"large_images": [{"image_url": u}]}} for u in urls]
    return Outcome(history_id, kind, TaskStatus.DONE, Reason.DONE, parse_record({"status": 50, "item_list": items}))


def failed_outcome(history_id: str, reason: Reason, *, fail_code: str = "", detail: str = "") -> Outcome:
    record = parse_record({"status": 30, "fail_code": fail_code, "item_list": []}) if fail_code else None
    return Outcome(history_id, TaskKind.IMAGE, TaskStatus.FAILED, reason, record, detail)


async def add_done_task(store: Store, clock: Clock, history_id: str, callback_url: str | None) -> None:
    """Insert a task and settle it as done with two result URLs, through the production settler."""
    await store.insert(make_task(history_id, callback_url, created_at=clock.time()))
    urls = [f"https://cdn.example/{history_id}/{i}.webp" for i in (1, 2)]
    await TaskSettler(store, clock).settle([done_outcome(history_id, urls)])


@dataclass
class Reply:
    """One scripted answer: a status and headers; `hang` waits until the receiver is released."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A loopback webhook receiver. Each path answers from its script of Replies, then 200.

    Records every request (also ones that then hang), tracks concurrent requests and their peak.
    """

    def __init__(self) -> None:
        self.scripts: dict[str, list[Reply]] = {}
        self.requests: list[Received] = []
        self.acked: list[str] = []  # webhook-ids answered 2xx at once (not after a hang)
        self.active = 0
        self.peak = 0
        self.released = asyncio.Event()
        self._changed = asyncio.Condition()
        self.peers: set[object] = set()  # the client ends of the connections requests came on

    def script(self, path: str, *replies: Reply) -> None:
        self.scripts.setdefault(path, []).extend(replies)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    def on(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    def ids(self, path: str | None = None) -> list[str]:
        return [r.headers["webhook-id"] for r in self.requests if path is None or r.path == path]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(Received(request.path, dict(request.headers), body))
        if request.transport is not None:
            self.peers.add(request.transport.get_extra_info("peername"))
        script = self.scripts.get(request.path)
        reply = script.pop(0) if script else Reply()
        self.active += 1
        self.peak = max(self.peak, self.active)
        await self._notify()
        try:
            if reply.hang:
                await self.released.wait()
            elif reply.status < 300:
                self.acked.append(request.headers.get("webhook-id", ""))
            return web.Response(status=reply.status, headers=reply.headers, text="ok" if reply.status < 300 else "no")
        finally:
            self.active -= 1
            await self._notify()
