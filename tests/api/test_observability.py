"""Operations over real HTTP: Prometheus metrics that move with the work, health and readiness, request ids
(answer header and log lines), JSON log lines, and CORS preflights."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from prometheus_client.parser import text_string_to_metric_families
from support import CN_TOKEN, bearer, drive, json_of

from jimeng_server.api.appkeys import STORE, WATCHER, WEBHOOKS
from jimeng_server.api.observability import AccessLogger
from jimeng_server.clock import ManualClock
from jimeng_server.config import ServerConfig
from jimeng_server.logs import REQUEST_ID, RequestIdFilter, setup_logging
from jimeng_server.simulator import Fault, FaultKind, Simulator

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
ServerFactory = Callable[..., Awaitable[TestServer]]
METRIC_NAMES = (
    "jimeng_http_requests_total",
    "jimeng_http_request_duration_seconds",
    "jimeng_upstream_calls_total",
    "jimeng_upstream_call_duration_seconds",
    "jimeng_tasks_watched",
    "jimeng_watcher_poll_duration_seconds",
    "jimeng_webhook_deliveries_total",
    "jimeng_webhook_delivery_duration_seconds",
    "jimeng_webhook_sends_in_flight",
    "jimeng_store_operation_duration_seconds",
    "jimeng_background_jobs",
)
APP_ORIGIN = "https://app.example.com"


async def scrape(client: TestClient[Any, Any]) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of `GET /metrics`: (name, labels) -> value."""
    return samples_of(await exposition(client))


async def exposition(client: TestClient[Any, Any]) -> str:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    return await resp.text()


def samples_of(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sum of `name` over the samples whose labels include `labels` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


@pytest.fixture
async def hook_url(aiohttp_server: ServerFactory) -> str:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", ok)
    server = await aiohttp_server(app)
    return str(server.make_url("/hook"))


# ---------------------------------------------------------------- metrics


async def test_metrics_names_present_and_moving(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, hook_url: str
) -> None:
    text = await exposition(client)
    declared = {f.name for f in text_string_to_metric_families(text)}
    for name in METRIC_NAMES:
        assert name.removesuffix("_total") in declared, f"{name} missing from /metrics"
    before = samples_of(text)

    call = client.post("/v1/images/generations", json={"prompt": "a cat"}, headers=bearer(CN_TOKEN))
    (resp,) = await drive(client.app, clock, call)
    assert resp.status == 200
    resp = await client.post(
        "/v1/async/images/generations", json={"prompt": "a dog", "callback_url": hook_url}, headers=bearer(CN_TOKEN)
    )
    hid = (await json_of(resp))["history_id"]
    watching = await scrape(client)
    assert value(watching, "jimeng_tasks_watched") == client.app[WATCHER].pending == 1
    for _ in range(60):
        row = await client.app[STORE].get(hid)
        if row is not None and row.final:
            break
        await clock.advance(1.0)
        await client.app[WATCHER].run_once()
    assert await client.app[WEBHOOKS].drain() == 1
    after = await scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("jimeng_http_requests_total", route="/v1/images/generations", status="200", method="POST") == 1
    assert moved("jimeng_http_requests_total", route="/v1/async/images/generations", status="200") == 1
    assert moved("jimeng_http_request_duration_seconds_count", route="/v1/images/generations") == 1
    generate = [ls for n, ls in after if n == "jimeng_upstream_calls_total" and ("outcome", "ok") in ls]
    endpoints = {dict(ls)["endpoint"] for ls in generate}
    assert any(e.endswith("/aigc_draft/generate") for e in endpoints), endpoints
    assert sum(moved("jimeng_upstream_calls_total", endpoint=e, outcome="ok") for e in endpoints) >= 4
    assert moved("jimeng_watcher_poll_duration_seconds_count") >= 2
    assert moved("jimeng_webhook_deliveries_total", outcome="delivered") == 1
    assert moved("jimeng_webhook_delivery_duration_seconds_count") == 1
    assert moved("jimeng_store_operation_duration_seconds_count", kind="write") >= 2
    assert moved("jimeng_store_operation_duration_seconds_count", kind="read") >= 1
    assert value(after, "jimeng_tasks_watched") == 0


async def test_background_jobs_are_counted_by_owner(client: TestClient[Any, Any]) -> None:
    watcher = client.app[WATCHER]
    assert value(await scrape(client), "jimeng_background_jobs", owner="app/watcher") == 0  # loops off here
    await watcher.start()
    running = await scrape(client)
    assert value(running, "jimeng_background_jobs", owner="app/watcher") == 1  # its loop, idle
    assert value(running, "jimeng_background_jobs", owner="app/webhooks") == 0
    await watcher.stop()
    assert value(await scrape(client), "jimeng_background_jobs", owner="app/watcher") == 0


async def test_upstream_failures_are_counted_by_outcome(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    before = await scrape(client)
    sim.inject("/user_credit", Fault(FaultKind.HTTP_500), times=10)
    call = client.post("/v1/images/generations", json={"prompt": "x"}, headers=bearer(CN_TOKEN))
    (resp,) = await drive(client.app, clock, call)
    assert resp.status == 502
    after = await scrape(client)
    endpoint = next(
        dict(ls)["endpoint"] for n, ls in after if n == "jimeng_upstream_calls_total" and "user_credit" in str(ls)
    )
    assert (
        value(after, "jimeng_upstream_calls_total", endpoint=endpoint, outcome="http_error")
        - value(before, "jimeng_upstream_calls_total", endpoint=endpoint, outcome="http_error")
        == 1
    )
    assert (
        value(after, "jimeng_http_requests_total", route="/v1/images/generations", status="502")
        - value(before, "jimeng_http_requests_total", route="/v1/images/generations", status="502")
        == 1
    )


async def test_unknown_paths_share_one_route_label(client: TestClient[Any, Any]) -> None:
    await client.get("/no/such/path/123")
    resp = await client.get("/v1/async/tasks/98765", headers=bearer(CN_TOKEN))
    assert resp.status == 404
    after = await scrape(client)
    routes = {dict(ls)["route"] for n, ls in after if n == "jimeng_http_requests_total"}
    assert "unmatched" in routes and "/v1/async/tasks/{history_id}" in routes
    assert not any("98765" in r or "/no/such" in r for r in routes)


# ---------------------------------------------------------------- health


async def test_healthz_and_readyz(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200 and await resp.json() == {"status": "ok"}
    # The test app starts no background loops: not ready, and the answer says why.
    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 503 and body["status"] == "not ready"
    assert body["checks"] == {
        "store": "ok",
        "watcher": "the task watcher is not running",
        "webhook_sender": "the webhook sender is not running",
    }
    app = client.app
    await app[WATCHER].start()
    await app[WEBHOOKS].start()
    try:
        resp = await client.get("/readyz")
        assert resp.status == 200 and (await resp.json())["status"] == "ready"
        await app[STORE].close()
        resp = await client.get("/readyz")
        body = await resp.json()
        assert resp.status == 503 and body["checks"]["store"].startswith("the task store cannot be reached")
        assert body["checks"]["watcher"] == "ok"
    finally:
        await app[WEBHOOKS].stop()
        await app[WATCHER].stop()


# ---------------------------------------------------------------- request ids and logs


async def test_request_id_is_echoed_or_generated(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/ping", headers={"X-Request-Id": "req-42.a:b"})
    assert resp.headers["X-Request-Id"] == "req-42.a:b"
    resp = await client.get("/ping")
    generated = resp.headers["X-Request-Id"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    # An id that could forge log lines (spaces, too long) is replaced, and errors carry one too.
    for unsafe in ("a b", "x" * 200, "id\tinjected"):
        resp = await client.get("/no/such", headers={"X-Request-Id": unsafe})
        assert resp.status == 404 and resp.headers["X-Request-Id"] not in (unsafe, generated)


async def test_every_log_line_of_a_request_carries_its_id(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(RequestIdFilter())
    sim.inject("/user_credit", Fault(FaultKind.HTTP_500), times=10)  # makes the request log a warning
    call = client.post(
        "/v1/images/generations", json={"prompt": "x"}, headers={**bearer(CN_TOKEN), "X-Request-Id": "trace-77"}
    )
    (resp,) = await drive(client.app, clock, call)
    assert resp.status == 502 and resp.headers["X-Request-Id"] == "trace-77"
    ours = [r for r in caplog.records if r.name.startswith("jimeng_server") and r.levelno >= logging.WARNING]
    assert ours, "the failing request logs a warning"
    assert {getattr(r, "request_id", None) for r in ours} == {"trace-77"}
    logging.getLogger("jimeng_server.test").warning("after the request")
    assert caplog.records[-1].request_id == "-"  # type: ignore[attr-defined]
    assert CN_TOKEN not in caplog.text


def test_access_log_line_carries_the_request_id(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(RequestIdFilter())
    request = make_mocked_request("GET", "/v1/models?secret=abc")
    response = web.Response(text="x", headers={"X-Request-Id": "acc-1"})
    AccessLogger(logging.getLogger("aiohttp.access"), "").log(request, response, 0.0123)
    (record,) = [r for r in caplog.records if r.name == "aiohttp.access"]
    assert record.request_id == "acc-1"  # type: ignore[attr-defined]
    assert '"GET /v1/models" 200' in record.getMessage() and "secret" not in record.getMessage()


@pytest.fixture
def restore_root_logging() -> Any:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root_logging")
@pytest.mark.parametrize("fmt", ["json", "text"])
def test_log_formats_carry_request_id_and_redact(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info", fmt)
    log = logging.getLogger("jimeng_server.test")
    token = REQUEST_ID.set("rid-9")
    try:
        log.warning("sent Bearer %s", "abc123secret")
    finally:
        REQUEST_ID.reset(token)
    log.info("outside")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "abc123secret" not in lines[0]
    if fmt == "json":
        first, second = (json.loads(line) for line in lines)
        assert first["request_id"] == "rid-9" and first["level"] == "WARNING" and first["message"] == "sent Bearer ***"
        assert first["logger"] == "jimeng_server.test" and first["time"].endswith("Z")
        assert second["request_id"] == "-"
    else:
        assert "[rid-9]: sent Bearer ***" in lines[0] and "[-]: outside" in lines[1]


# ---------------------------------------------------------------- CORS


async def test_cors_preflight_for_allowed_origin_only(make_client: ClientFactory, sim: Simulator) -> None:
    client = await make_client(server=ServerConfig(cors_origins=(APP_ORIGIN,)))
    preflight = {
        "Origin": APP_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, x-stainless-lang",
    }
    resp = await client.options("/v1/images/generations", headers=preflight)
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    assert resp.headers["Access-Control-Allow-Headers"] == "authorization, content-type, x-stainless-lang"
    assert "Access-Control-Allow-Credentials" not in resp.headers

    resp = await client.options("/v1/images/generations", headers={**preflight, "Origin": "https://evil.example"})
    body = await json_of(resp)
    assert resp.status == 403 and body["error"]["code"] == "CORS_ORIGIN_NOT_ALLOWED"
    assert "cors_origins" in body["error"]["message"]
    assert "Access-Control-Allow-Origin" not in resp.headers

    # Real answers (errors included) carry the header for the allowed origin only.
    resp = await client.post("/v1/images/generations", json={}, headers={"Origin": APP_ORIGIN})
    assert resp.status == 401 and resp.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert resp.headers["Access-Control-Expose-Headers"] == "X-Request-Id"
    resp = await client.get("/v1/models", headers={"Origin": "https://evil.example"})
    assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers
    assert sim.generate_count == 0


async def test_cors_off_by_default_and_wildcard(make_client: ClientFactory) -> None:
    preflight = {"Origin": APP_ORIGIN, "Access-Control-Request-Method": "GET"}
    client = await make_client()
    resp = await client.options("/v1/models", headers=preflight)
    assert resp.status == 403
    resp = await client.get("/v1/models", headers={"Origin": APP_ORIGIN})
    assert "Access-Control-Allow-Origin" not in resp.headers
    # A plain OPTIONS (not a preflight) is still a 405.
    resp = await client.options("/v1/models")
    assert resp.status == 405

    client = await make_client(server=ServerConfig(cors_origins=("*",)))
    resp = await client.options("/v1/models", headers=preflight)
    assert resp.status == 204 and resp.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
