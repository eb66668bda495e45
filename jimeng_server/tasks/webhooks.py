"""Webhooks: callback URL validation, event bodies, Standard Webhooks signing, the retry schedule, and the sender.

The pure parts come first. `WebhookSender` is the I/O edge: it claims due outbox events under a lease,
POSTs them through the SSRF-safe fetcher (redirects never followed) and records every attempt
(design.md §3). Delivery is at-least-once: the `webhook-id` is stable so receivers can de-duplicate.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import email.utils
import functools
import hashlib
import hmac
import json
import logging
import os
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import aiosqlite
from aiohttp.abc import AbstractResolver
from yarl import URL

from ..clock import Clock
from ..concurrency import uncancellable
from ..config import ConfigError, WebhookConfig
from ..errors import BadRequest
from ..net.safe_fetch import FetchError, FetchPolicy, SafeFetcher, UnsafeURLError, check_url, check_url_resolves_public
from . import outbox
from .bodies import ResultItem, TaskQueryBody, task_query_body, task_query_body_of, wire_fail_code
from .models import TaskStatus
from .outbox import EventState, Extra, OutboxEvent
from .store import TaskStore
from .watcher import Outcome, Reason

__all__ = [
    "EVENT_FAILED",
    "EVENT_SUCCEEDED",
    "SECRET_ENV",
    "ResultItem",
    "TaskQueryBody",
    "WebhookSecretError",
    "WebhookSender",
    "delivery_headers",
    "event_body",
    "failure_info",
    "final_event_writer",
    "new_event_id",
    "optional_callback_url",
    "parse_retry_after",
    "parse_secret",
    "retry_delay",
    "secret_key",
    "sign",
    "task_event_writer",
    "task_query_body",
    "task_query_body_of",
    "validate_callback_url",
    "wire_fail_code",
]

log = logging.getLogger(__name__)


EVENT_SUCCEEDED: Final = "task.succeeded"
EVENT_FAILED: Final = "task.failed"
SECRET_ENV: Final = "JIMENG_WEBHOOK_SECRET"
SECRET_PREFIX: Final = "whsec_"
MAX_CALLBACK_URL_LENGTH: Final = 2048
_ERROR_EXCERPT: Final = 200

# ---------------------------------------------------------------------------------------------------------
# Callback URL validation


async def validate_callback_url(value: object, policy: FetchPolicy, *, resolver: AbstractResolver | None = None) -> str:
    """Check a submitted `callback_url` and return it normalised; raise BadRequest (INVALID_CALLBACK_URL).

    Requires an http(s) URL with a host, at most 2048 characters, whose host is (or resolves only to)
    public addresses unless `policy.allow_private_networks`. DNS goes through `resolver` (default: the
    system resolver). Delivery re-checks every address at connect time, so a later DNS change is caught too.
    """
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(
            "callback_url must be an http(s) URL string, e.g. https://example.com/hooks/jimeng",
            code="INVALID_CALLBACK_URL",
        )
    text = value.strip()
    if len(text) > MAX_CALLBACK_URL_LENGTH:
        raise BadRequest(
            f"callback_url is {len(text)} characters long; the limit is {MAX_CALLBACK_URL_LENGTH}",
            code="INVALID_CALLBACK_URL",
        )
    try:
        parsed = check_url(text, policy, what="callback_url")
        await check_url_resolves_public(str(parsed), policy, resolver, what="callback_url")
    except UnsafeURLError as exc:
        raise BadRequest(str(exc), code="INVALID_CALLBACK_URL") from None
    except FetchError as exc:
        raise BadRequest(
            f"{exc.reason}; callback_url must name a host this server can reach", code="INVALID_CALLBACK_URL"
        ) from None
    return str(parsed)


async def optional_callback_url(
    value: object, policy: FetchPolicy, *, resolver: AbstractResolver | None = None
) -> str | None:
    """`validate_callback_url` for an optional field: None for an absent (None) or empty value."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return await validate_callback_url(value, policy, resolver=resolver)


# ---------------------------------------------------------------------------------------------------------
# Task query bodies and event bodies


_FAILURES: Final[dict[Reason, tuple[str, str]]] = {
    Reason.UPSTREAM_FAILED: ("UPSTREAM_FAILED", "the upstream reported the generation as failed"),
    Reason.TIMEOUT: ("TIMEOUT", "the task did not finish before its deadline"),
    Reason.NOT_FOUND: ("TASK_NOT_FOUND", "the upstream never showed the task"),
    Reason.SESSION_EXPIRED: ("TOKEN_EXPIRED", "the upstream refused the session; sign in again"),
}


def failure_info(reason: Reason | None, *, fail_code: str = "", detail: str = "") -> dict[str, str]:
    """Why a task failed, as `{"code", "message"}`. `code` is UPPER_SNAKE: UPSTREAM_FAILED (the default;
    the message names `fail_code`), TIMEOUT, TASK_NOT_FOUND, TOKEN_EXPIRED."""
    chosen = reason if reason is not None and reason is not Reason.DONE else Reason.UPSTREAM_FAILED
    code, message = _FAILURES.get(chosen, ("FAILED", "the task failed"))
    if chosen is Reason.UPSTREAM_FAILED and fail_code:
        message += f" (fail_code {fail_code})"
    elif detail:
        message += f" ({detail})"
    return {"code": code, "message": message}


def failure_of(outcome: Outcome) -> dict[str, str] | None:
    """`failure_info` of a watcher outcome; None for a success."""
    if outcome.status is not TaskStatus.FAILED:
        return None
    return failure_info(outcome.reason, fail_code=outcome.fail_code, detail=outcome.detail)


def event_type_of(status: TaskStatus) -> str:
    """`task.succeeded` for DONE, `task.failed` for FAILED; ValueError for a status that is not final."""
    if status is TaskStatus.DONE:
        return EVENT_SUCCEEDED
    if status is TaskStatus.FAILED:
        return EVENT_FAILED
    raise ValueError(f"no webhook event for a task that is not final ({status!r})")


def rfc3339(ts: float) -> str:
    """`2026-01-01T00:00:00.000Z` for unix seconds `ts`."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_body(event_type: str, data: Mapping[str, Any], now: float) -> str:
    """The JSON text of an event: `{"type", "timestamp" (RFC 3339), "data"}`, compact, UTF-8."""
    return json.dumps(
        {"type": event_type, "timestamp": rfc3339(now), "data": dict(data)},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def new_event_id() -> str:
    """A fresh, unique event id (the `webhook-id`): `msg_` + 32 hex digits."""
    return f"msg_{uuid.uuid4().hex}"


def task_event_writer(
    history_id: str,
    *,
    now: float,
    reason: Reason | None = None,
    detail: str = "",
    event_id: str | None = None,
) -> Extra:
    """An `extra=` for the store write that ends a task's watch (`TaskStore.finish`, `drop_token`).

    Inside that transaction it reads the task row and, if the task has a callback URL, writes one event
    whose data is the task query body (`task_query_body`), plus `error` (`failure_info`) for failures:
    - row DONE: `task.succeeded`;
    - row FAILED: `task.failed` (reason default UPSTREAM_FAILED, with the row's fail_code);
    - row still processing and `reason` given (a watch given up: TIMEOUT, NOT_FOUND, SESSION_EXPIRED):
      `task.failed` with `status` 30 in the data;
    - otherwise (unknown task, no callback URL, processing without a reason): nothing.
    Deliveries do not need the owner's session token. Call `WebhookSender.wake()` after the write.
    """
    chosen_id = event_id or new_event_id()

    async def write(conn: aiosqlite.Connection) -> None:
        task = await outbox.task_fields(conn, history_id)
        if task is None or not task.callback_url:
            return
        status = TaskStatus(task.status)
        if status is TaskStatus.PROCESSING:
            if reason is None or reason is Reason.DONE:
                return
            status = TaskStatus.FAILED
        data: dict[str, Any] = dict(
            task_query_body(
                history_id=task.history_id,
                task_type=task.kind,
                status=int(status),
                fail_code=task.fail_code,
                item_count=task.item_count,
                results=task.results,
            )
        )
        if status is TaskStatus.FAILED:
            data["error"] = failure_info(reason, fail_code=task.fail_code, detail=detail)
        event_type = event_type_of(status)
        await outbox.insert_event(
            conn,
            event_id=chosen_id,
            history_id=task.history_id,
            type=event_type,
            body=event_body(event_type, data, now),
            now=now,
        )

    return write


def final_event_writer(outcome: Outcome, *, now: float, event_id: str | None = None) -> Extra:
    """`task_event_writer` for a watcher outcome (its reason and detail explain a failure). Safe to pass
    for every task: tasks without a callback URL get no event."""
    failed = outcome.status is TaskStatus.FAILED
    return task_event_writer(
        outcome.history_id,
        now=now,
        reason=outcome.reason if failed else None,
        detail=outcome.detail,
        event_id=event_id,
    )


# ---------------------------------------------------------------------------------------------------------
# Signing (Standard Webhooks)


class WebhookSecretError(ConfigError):
    """The configured webhook secret is not `whsec_<base64>`; the message never contains the secret."""


def parse_secret(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret (the prefix is optional). Raises WebhookSecretError."""
    text = secret.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookSecretError(
            "the webhook secret must be whsec_ followed by base64, e.g. whsec_"
            + base64.b64encode(b"32 random bytes, not this text!!").decode()
        ) from None
    if not key:
        raise WebhookSecretError("the webhook secret is empty after whsec_")
    return key


def secret_key(config: WebhookConfig, environ: Mapping[str, str] | None = None) -> bytes | None:
    """The HMAC key in force: env JIMENG_WEBHOOK_SECRET if set and non-empty, else `[webhooks] secret`;
    None when neither is set (deliveries go unsigned). Raises WebhookSecretError for a malformed secret."""
    env = os.environ if environ is None else environ
    from_env = env.get(SECRET_ENV, "").strip()
    chosen = from_env or config.secret.strip()
    if not chosen:
        return None
    try:
        return parse_secret(chosen)
    except WebhookSecretError as exc:
        source = SECRET_ENV if from_env else "webhooks.secret"
        raise WebhookSecretError(f"{source}: {exc}") from None


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "msg_id.timestamp.body">` (a `webhook-signature` entry)."""
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def delivery_headers(event_id: str, timestamp: int, body: bytes, key: bytes | None) -> dict[str, str]:
    """The headers of one delivery attempt; `webhook-signature` only when a key is configured."""
    headers = {
        "Content-Type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
    }
    if key is not None:
        headers["webhook-signature"] = sign(key, event_id, timestamp, body)
    return headers


# ---------------------------------------------------------------------------------------------------------
# Retry schedule


def retry_delay(schedule: Sequence[float], attempts_made: int, *, jitter: float, rng: random.Random) -> float | None:
    """Seconds to wait after the `attempts_made`-th failed attempt of a round (1-based), jittered by
    +/- `jitter`; None when the schedule is used up (the event is exhausted)."""
    if attempts_made >= len(schedule):
        return None
    base = float(schedule[attempts_made])
    if base <= 0 or jitter <= 0:
        return max(base, 0.0)
    return base * (1.0 + rng.uniform(-jitter, jitter))


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or an HTTP date, relative to `now`);
    None when absent or unparseable. Never negative."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _describe_status(status: int, excerpt: str) -> str | None:
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return f"the receiver answered HTTP {status} (a redirect, which is never followed; use the final URL)"
    if status == 410:
        return "the receiver answered HTTP 410 Gone; no further attempts"
    shown = " ".join(excerpt.split())[:_ERROR_EXCERPT]
    return f"the receiver answered HTTP {status}" + (f": {shown}" if shown else "")


def _host_of(url: str) -> str:
    """The host of a callback URL, for log lines (paths and queries may carry the receiver's secrets)."""
    try:
        return URL(url).host or "?"
    except ValueError:
        return "?"


# ---------------------------------------------------------------------------------------------------------
# The sender


class WebhookSender:
    """Delivers outbox events: one loop claims due events under a lease, one task per event sends it.

    At most `config.max_concurrency` sends are in flight; a slow receiver holds one slot only. A task's
    events go out in order (the claim query holds back later ones). Results: 2xx delivered; 410 stopped;
    any other answer (3xx included, never followed), a network error or a timeout is retried per
    `config.schedule` (a longer `Retry-After`, capped at `max_retry_after`, wins), then exhausted.

    `start()` returns leftover `delivering` events to `pending` (a crash left them: at-least-once; assumes
    one sender per database file) and starts the loop; `stop()` cancels and awaits every task it owns and
    gives unfinished sends back. Tests can skip the loop and drive `run_once()` / `drain()` with a manual
    clock. `store` may be a callable returning the store (an app opens it at start-up). `fetcher` defaults
    to a SafeFetcher under `policy`, owned (and closed) by the sender.
    """

    def __init__(
        self,
        store: TaskStore | Callable[[], TaskStore],
        config: WebhookConfig,
        clock: Clock,
        *,
        policy: FetchPolicy,
        secret: bytes | None,
        fetcher: SafeFetcher | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self.config = config
        self.clock = clock
        self._key = secret
        self._policy = policy
        self._fetcher = fetcher
        self._owns_fetcher = fetcher is None
        self._rng = rng or random.Random()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._semaphore = asyncio.Semaphore(config.max_concurrency)
        self._wakeup = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._next_due: float | None = None
        self.attempts_made = 0

    # ------------------------------------------------------------------ public API

    @property
    def store(self) -> TaskStore:
        """The task store (given directly, or resolved through the callable given, e.g. once it is open)."""
        return self._store if isinstance(self._store, TaskStore) else self._store()

    @property
    def signed(self) -> bool:
        """True when deliveries carry a `webhook-signature`."""
        return self._key is not None

    @property
    def in_flight(self) -> int:
        """How many sends are running now."""
        return len(self._inflight)

    def wake(self) -> None:
        """Look for due events now (call after writing an event, e.g. after `finish(extra=...)`)."""
        self._wakeup.set()

    async def start(self) -> None:
        """Release stale leases, then start the loop (idempotent). Logs a warning when unsigned."""
        if self._loop_task is not None:
            return
        if self._key is None:
            log.warning(
                "no webhook secret configured ([webhooks] secret or %s): webhook deliveries are NOT signed",
                SECRET_ENV,
            )
        async with self.store.transaction() as conn:
            released = await outbox.release_leases(conn, now=self.clock.time())
        if released:
            log.info("webhook sender: %d interrupted delivery(ies) queued again", released)
        self._loop_task = asyncio.create_task(self._run(), name="jimeng-webhook-sender")

    async def stop(self) -> None:
        """Stop the loop, cancel and await every send, queue interrupted sends again, close the fetcher."""
        task, self._loop_task = self._loop_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        sends = dict(self._inflight)
        for send in sends.values():
            send.cancel()
        if sends:
            await asyncio.gather(*sends.values(), return_exceptions=True)
            try:
                await uncancellable(self._unclaim(list(sends)))
            except Exception:
                log.exception("webhook sender: could not queue %d interrupted delivery(ies) again", len(sends))
        if self._owns_fetcher and self._fetcher is not None:
            fetcher, self._fetcher = self._fetcher, None
            await fetcher.close()

    async def run_once(self) -> int:
        """Claim the due events that fit in the free slots and start sending them; returns how many."""
        free = self.config.max_concurrency - len(self._inflight)
        now = self.clock.time()
        async with self.store.transaction() as conn:
            events = await outbox.claim_due(
                conn,
                now=now,
                limit=free,
                lease_until=now + self.config.lease_seconds,
                exclude=list(self._inflight),
            )
            self._next_due = await outbox.next_due_after(conn, now)
        for event in events:
            send = asyncio.create_task(self._deliver(event), name=f"webhook-{event.event_id}")
            self._inflight[event.event_id] = send
            send.add_done_callback(functools.partial(self._done, event.event_id))
        return len(events)

    async def drain(self) -> int:
        """Send everything due now and wait for the results, until nothing due is left (tests and tools).

        Returns how many attempts were made. Does not advance any clock: retries scheduled later stay queued.
        """
        made = 0
        while True:
            made += await self.run_once()
            if not self._inflight:
                return made
            await asyncio.wait(set(self._inflight.values()), return_when=asyncio.FIRST_COMPLETED)

    # ------------------------------------------------------------------ internals

    def _done(self, event_id: str, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(event_id, None)
        self._wakeup.set()

    def _get_fetcher(self) -> SafeFetcher:
        if self._fetcher is None:
            self._fetcher = SafeFetcher(self._policy)
        return self._fetcher

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("webhook sender tick failed")
            # Due events left unclaimed wait for a running send to finish, which wakes the loop.
            pause = self.config.poll_interval
            if self._next_due is not None:
                pause = max(0.0, min(pause, self._next_due - self.clock.time()))
            await self._wait(pause)

    async def _wait(self, seconds: float) -> None:
        """Sleep `seconds` on the clock, or less if `wake()` is called."""
        if not self._wakeup.is_set():
            sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
            waiter = asyncio.ensure_future(self._wakeup.wait())
            try:
                await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for fut in (sleeper, waiter):
                    fut.cancel()
                await asyncio.gather(sleeper, waiter, return_exceptions=True)
        self._wakeup.clear()

    async def _deliver(self, event: OutboxEvent) -> None:
        async with self._semaphore:
            attempt = event.attempts + 1
            body = event.body.encode("utf-8")
            at = self.clock.time()
            headers = delivery_headers(event.event_id, int(at), body, self._key)
            status: int | None = None
            retry_after: float | None = None
            started = time.monotonic()
            try:
                result = await self._get_fetcher().post(
                    event.callback_url, body=body, headers=headers, timeout=self.config.timeout
                )
            except (FetchError, UnsafeURLError) as exc:
                error: str | None = str(exc)
            except Exception as exc:  # a bug must not leave the event claimed until the lease runs out
                log.exception("webhook %s: unexpected error while sending", event.event_id)
                error = f"internal error ({type(exc).__name__})"
            else:
                status = result.status
                error = _describe_status(status, result.body_excerpt)
                if error is not None:
                    retry_after = parse_retry_after(result.headers.get("Retry-After"), self.clock.time())
            latency_ms = round((time.monotonic() - started) * 1000)
            self.attempts_made += 1
            now = self.clock.time()
            state, next_at = self._plan(event, status, retry_after, now)
            await uncancellable(self._record(event, attempt, at, status, error, latency_ms, state, next_at))
            self._log(event, attempt, error, state, next_at, now)

    def _plan(
        self, event: OutboxEvent, status: int | None, retry_after: float | None, now: float
    ) -> tuple[EventState, float | None]:
        if status is not None and 200 <= status < 300:
            return EventState.DELIVERED, None
        if status == 410:
            return EventState.STOPPED, None
        delay = retry_delay(self.config.schedule, event.round_attempts + 1, jitter=self.config.jitter, rng=self._rng)
        if delay is None:
            return EventState.EXHAUSTED, None
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.config.max_retry_after))
        return EventState.PENDING, now + delay

    async def _record(
        self,
        event: OutboxEvent,
        attempt: int,
        at: float,
        status: int | None,
        error: str | None,
        latency_ms: int,
        state: EventState,
        next_at: float | None,
    ) -> None:
        async with self.store.transaction() as conn:
            await outbox.complete_attempt(
                conn,
                event_id=event.event_id,
                attempt=attempt,
                at=at,
                status=status,
                error=error,
                latency_ms=latency_ms,
                state=state,
                next_attempt_at=next_at,
            )

    async def _unclaim(self, event_ids: list[str]) -> None:
        async with self.store.transaction() as conn:
            await outbox.unclaim(conn, event_ids, now=self.clock.time())

    def _log(
        self, event: OutboxEvent, attempt: int, error: str | None, state: EventState, next_at: float | None, now: float
    ) -> None:
        where = f"webhook {event.event_id} (task {event.history_id}) to {_host_of(event.callback_url)}"
        if state is EventState.DELIVERED:
            log.info("%s delivered on attempt %d", where, attempt)
        elif state is EventState.PENDING and next_at is not None:
            log.info("%s: attempt %d failed (%s); next in %.0f s", where, attempt, error, next_at - now)
        else:
            log.warning("%s: attempt %d failed (%s); %s", where, attempt, error, state.value)
