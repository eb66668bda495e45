"""Prometheus metrics: every metric the server exports, and the one-line hooks the layers call.

A base module (it imports nothing from the project), so any layer may record into it; the hooks take plain
strings and seconds and never raise. Metrics live in the process-wide default registry (with the
client's process and Python collectors); `render()` gives the exposition text that `GET /metrics` serves.

Labels are bounded: HTTP routes are route templates (`/v1/async/tasks/{history_id}`, never an id),
upstream endpoints are paths of the fixed upstream API, outcomes are short fixed words.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Concatenate, ParamSpec, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.context_managers import Timer

_P = ParamSpec("_P")
_R = TypeVar("_R")
_Self = TypeVar("_Self")
_Account = TypeVar("_Account")

disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` twin of every series: scrapers do not need it

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The `Content-Type` of `render()`'s text."""

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)

HTTP_REQUESTS = Counter(
    "jimeng_http_requests_total",
    "HTTP requests answered, by method, route template and status",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "jimeng_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template",
    ["route"],
    buckets=_LATENCY_BUCKETS,
)
UPSTREAM_CALLS = Counter(
    "jimeng_upstream_calls_total", "Upstream web-API calls, by endpoint path and outcome", ["endpoint", "outcome"]
)
UPSTREAM_SECONDS = Histogram(
    "jimeng_upstream_call_duration_seconds",
    "Upstream web-API call time (retries included), by endpoint path",
    ["endpoint"],
    buckets=_LATENCY_BUCKETS,
)
TASKS_WATCHED = Gauge("jimeng_tasks_watched", "Tasks the watcher is polling now")
POLL_SECONDS = Histogram(
    "jimeng_watcher_poll_duration_seconds",
    "Time of one batched status poll (one upstream call per account)",
    buckets=_LATENCY_BUCKETS,
)
WEBHOOK_DELIVERIES = Counter(
    "jimeng_webhook_deliveries_total",
    "Webhook delivery attempts, by outcome (delivered, retrying, stopped, exhausted)",
    ["outcome"],
)
WEBHOOK_SECONDS = Histogram(
    "jimeng_webhook_delivery_duration_seconds", "Time of one webhook delivery attempt", buckets=_LATENCY_BUCKETS
)
WEBHOOKS_IN_FLIGHT = Gauge("jimeng_webhook_sends_in_flight", "Webhook sends running now")
BACKGROUND_JOBS = Gauge(
    "jimeng_background_jobs",
    "Background jobs running now (loops, polls, saves, sends, lookups), by owner (app/<component>)",
    ["owner"],
)
STORE_SECONDS = Histogram(
    "jimeng_store_operation_duration_seconds",
    "Time of one task-store operation (lock wait included), by kind (read, write)",
    ["kind"],
    buckets=_STORE_BUCKETS,
)

RESULT_RESIGNS = Counter(
    "jimeng_result_resigns_total",
    "Re-signs of expiring result links, by outcome (ok, failed, skipped: no account or no ref to re-sign from)",
    ["outcome"],
)

RESULTS_KEPT = Counter("jimeng_results_kept_total", "Results kept (downloaded and stored) by [results] keep = local")
RESULTS_KEPT_BYTES = Counter("jimeng_results_kept_bytes_total", "Bytes of the results kept")
KEEP_FAILURES = Counter(
    "jimeng_keep_failures_total",
    "Failed attempts to keep a result, by what followed (retry, gave_up)",
    ["outcome"],
)

KEPT_FILES_REMOVED = Counter("jimeng_kept_files_removed_total", "Kept files removed by retention (keep_days, quota)")


def kept_files_removed(count: int) -> None:
    """`count` kept files removed by retention."""
    KEPT_FILES_REMOVED.inc(count)


def result_kept(size: int) -> None:
    """One result kept, `size` bytes."""
    RESULTS_KEPT.inc()
    RESULTS_KEPT_BYTES.inc(size)


def keep_failure(gave_up: bool) -> None:
    """One failed attempt to keep a result; `gave_up` when no attempt follows."""
    KEEP_FAILURES.labels("gave_up" if gave_up else "retry").inc()


def result_resign(outcome: str) -> None:
    """One re-sign of a task's expiring result links (services/result_links.py) and how it ended."""
    RESULT_RESIGNS.labels(outcome).inc()


_LABELLED = 4096
"""How many labelled series each per-request hook keeps at hand (`labels()` takes a lock and builds a key)."""


@functools.lru_cache(maxsize=_LABELLED)
def _http_series(method: str, route: str, status: int) -> tuple[Counter, Histogram]:
    return HTTP_REQUESTS.labels(method, route, str(status)), HTTP_SECONDS.labels(route)


@functools.lru_cache(maxsize=_LABELLED)
def _upstream_series(endpoint: str, outcome: str) -> tuple[Counter, Histogram]:
    return UPSTREAM_CALLS.labels(endpoint, outcome), UPSTREAM_SECONDS.labels(endpoint)


def http_request(method: str, route: str, status: int, seconds: float) -> None:
    """One answered HTTP request."""
    count, timing = _http_series(method, route, status)
    count.inc()
    timing.observe(seconds)


def upstream_outcome(exc: BaseException | None) -> str:
    """The outcome label of an upstream call: "ok", or the error's class name in snake case without its
    `Upstream` prefix (UpstreamRetError -> "ret_error", UpstreamTimeout -> "timeout"), "cancelled"."""
    if exc is None:
        return "ok"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    name = type(exc).__name__.removeprefix("Upstream")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def instrument_upstream(
    call: Callable[Concatenate[_Self, _Account, str, _P], Awaitable[_R]],
) -> Callable[Concatenate[_Self, _Account, str, _P], Awaitable[_R]]:
    """Decorates an upstream client's `call(self, account, path, ...)`: counts each call by `path` and
    outcome and times it (all attempts and back-off included). The exception, if any, propagates."""

    @functools.wraps(call)
    async def wrapper(self: _Self, account: _Account, path: str, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            return await call(self, account, path, *args, **kwargs)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            count, timing = _upstream_series(path, upstream_outcome(failure))
            count.inc()
            timing.observe(time.perf_counter() - started)

    return wrapper


_delivery_tap: Callable[[str, float], None] | None = None


def tap_webhook_deliveries(tap: Callable[[str, float], None] | None) -> None:
    """Also pass every `webhook_delivery` to `tap` (None: stop): a sender process reports its attempts to the
    server, whose metrics count them (webhooks/processes.py)."""
    global _delivery_tap
    _delivery_tap = tap


@functools.lru_cache(maxsize=_LABELLED)
def _delivery_series(outcome: str) -> Counter:
    return WEBHOOK_DELIVERIES.labels(outcome)


def webhook_delivery(outcome: str, seconds: float) -> None:
    """One webhook delivery attempt and what it led to."""
    _delivery_series(outcome).inc()
    WEBHOOK_SECONDS.observe(seconds)
    if _delivery_tap is not None:
        _delivery_tap(outcome, seconds)


def timed_poll() -> Timer:
    """A context manager timing its block as one watcher poll."""
    return POLL_SECONDS.time()


@functools.lru_cache(maxsize=_LABELLED)
def _store_series(kind: str) -> Histogram:
    return STORE_SECONDS.labels(kind)


def timed_store(kind: str) -> Timer:
    """A context manager timing its block as one task-store operation of `kind`."""
    return _store_series(kind).time()


def set_gauges(
    *, tasks_watched: int, webhooks_in_flight: int, background_jobs: Mapping[str, int] | None = None
) -> None:
    """Sample the gauges (called when metrics are scraped); `background_jobs`: live jobs by owner name."""
    TASKS_WATCHED.set(tasks_watched)
    WEBHOOKS_IN_FLIGHT.set(webhooks_in_flight)
    for owner, live in (background_jobs or {}).items():
        BACKGROUND_JOBS.labels(owner).set(live)


def render() -> bytes:
    """The Prometheus text exposition of every metric."""
    return generate_latest(REGISTRY)
