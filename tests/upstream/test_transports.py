"""Browser-grade upstream sessions over real HTTP(S) against the simulator in shark mode (Seedance 2.0 needs a
browser): the 1019 refusal and its remedies, the browser transport (a real headless Chromium runs the simulator
page's script), cookie-jar accounts, the 4013 identity checks, the relay contract, and the impersonating
transport's journal, which must equal aiohttp's, directly and through HTTP and SOCKS5 proxies over TLS."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from proxies import ConnectProxy, Socks5Proxy
from simulate_proc import free_port
from support import CN_TOKEN, CN_TOKEN_2, AppFactory, bearer, drive, json_of
from tls_support import make_test_ca
from yarl import URL

from jimeng_server.api.appkeys import CLIENT
from jimeng_server.cli import with_simulator_hosts
from jimeng_server.clock import ManualClock
from jimeng_server.config import BrowserConfig, Config, ConfigError, UpstreamConfig
from jimeng_server.errors import from_upstream
from jimeng_server.simulator import Simulator, simulator_hosts
from jimeng_server.simulator.shark import SCRIPT_PATH
from jimeng_server.simulator.state import SEEDANCE_20_KEYS, JournalEntry
from jimeng_server.upstream.browser import BrowserTransport
from jimeng_server.upstream.client import GENERATE_PATH, JimengClient
from jimeng_server.upstream.cookies import load_jar
from jimeng_server.upstream.errors import UpstreamRetError
from jimeng_server.upstream.regions import Region
from jimeng_server.upstream.signing import parse_cookie
from jimeng_server.upstream.tokens import Account
from jimeng_server.upstream.transport import SessionPool
from jimeng_server.upstream.transports import Transports

VIDEO_URL = "/v1/videos/generations"
IMAGE_URL = "/v1/images/generations"
SEEDANCE = "jimeng-video-seedance-2.0"
CHROMIUM = "/usr/bin/chromium"
CHROME_120 = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
CHROME_142 = CHROME_120.replace("120.0", "142.0")


@pytest.fixture
def chromium() -> str:
    """Debian's Chromium, which the browser transport drives: required in CI (`.ci/run` installs it), else the
    test is skipped with the reason, so the README's test command also works on a machine without it."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        assert not os.environ.get("CI"), "install Debian's chromium (apt-get install -y chromium), as .ci/run does"
        pytest.skip("no /usr/bin/chromium: install Debian's chromium (apt-get install -y chromium) to run this test")
    return CHROMIUM


needs_chromium = pytest.mark.usefixtures("chromium")


@pytest.fixture
def shark(sim: Simulator) -> Simulator:
    """The simulator with its default shark mode: Seedance 2.0 generate needs a_bogus or a full jar."""
    sim.settings.shark_models = SEEDANCE_20_KEYS
    return sim


def with_upstream(config: Config, **changes: Any) -> Config:
    return dataclasses.replace(config, upstream=dataclasses.replace(config.upstream, **changes))


async def video(client: TestClient[Any, Any], clock: ManualClock, token: str = CN_TOKEN) -> tuple[int, Any]:
    body = {"prompt": "a cat surfing", "model": SEEDANCE, "duration": 5}
    (resp,) = await drive(client.app, clock, client.post(VIDEO_URL, json=body, headers=bearer(token)))
    return resp.status, await json_of(resp)


def generates(sim: Simulator) -> list[JournalEntry]:
    return sim.calls(GENERATE_PATH)


# ---------------------------------------------------------------- 1019 and its remedies, through the server


async def test_seedance_on_a_session_id_account_over_aiohttp_is_refused_1019_naming_the_remedies(
    client: TestClient[Any, Any], clock: ManualClock, shark: Simulator
) -> None:
    before = shark.account(CN_TOKEN).total
    status, body = await video(client, clock)
    assert status == 502, body
    error = body["error"]
    assert error["code"] == "UPSTREAM_RISK_CONTROL"
    for remedy in ("1019", "cookie jar", "impersonate", '"browser"', "relay_url"):
        assert remedy in error["message"]
    assert [e.ret for e in generates(shark)] == ["1019"]  # sent once, never again
    assert shark.generate_count == 0 and shark.account(CN_TOKEN).total == before


@needs_chromium
async def test_seedance_through_the_browser_transport_succeeds(
    make_client: AppFactory, config: Config, clock: ManualClock, shark: Simulator
) -> None:
    client = await make_client(upstream=dataclasses.replace(config.upstream, transport="browser"))
    status, body = await video(client, clock)
    assert status == 200, body
    assert body["data"][0]["url"]
    (entry,) = generates(shark)
    assert entry.ret == "0" and "a_bogus" in entry.query  # the page's script signed it
    assert shark.shark.a_bogus_ok(entry.raw_query)
    assert entry.sessionid == CN_TOKEN and entry.headers["user-agent"] == config.upstream.user_agent
    # The page claims the client's browser, and its client hints agree (not Chromium's own version).
    assert entry.headers["sec-ch-ua"] == config.upstream.sec_ch_ua
    assert entry.headers["sec-ch-ua-platform"] == '"Windows"' and entry.headers["accept-language"].startswith("zh-CN")
    assert [e.path for e in shark.journal if e.method == "GET" and e.vhost == "cn-web"][:2] == ["/", SCRIPT_PATH]
    # Only generate went through the page; the credit check and the polls kept the plain transport.
    assert not any("a_bogus" in e.query for e in shark.journal if e.path != GENERATE_PATH)
    assert shark.generate_count == 1


@needs_chromium
async def test_the_browser_sends_through_the_accounts_proxy(
    make_client: AppFactory, config: Config, clock: ManualClock, shark: Simulator, http_proxy: ConnectProxy
) -> None:
    client = await make_client(upstream=dataclasses.replace(config.upstream, transport="browser"))
    status, body = await video(client, clock, f"http://127.0.0.1:{http_proxy.port}@{CN_TOKEN}")
    assert status == 200, body
    # The page, its script and the in-page generate all went through the account's proxy, like every other hop.
    for what in (b"GET http://127.0.0.1", SCRIPT_PATH.encode(), b"/mweb/v1/aigc_draft/generate?"):
        assert what in http_proxy.sent, what
    assert shark.generate_count == 1


@needs_chromium
async def test_the_browser_context_is_reused_for_the_next_generate(
    make_client: AppFactory, config: Config, clock: ManualClock, shark: Simulator
) -> None:
    client = await make_client(upstream=dataclasses.replace(config.upstream, transport="browser"))
    assert (await video(client, clock))[0] == 200
    assert (await video(client, clock))[0] == 200
    assert shark.shark.script_loads == 1 and shark.generate_count == 2


@needs_chromium
async def test_browser_contexts_are_capped_least_recently_used_first(
    make_client: AppFactory, config: Config, clock: ManualClock, shark: Simulator
) -> None:
    client = await make_client(
        upstream=dataclasses.replace(config.upstream, transport="browser"),
        browser=BrowserConfig(executable=CHROMIUM, max_contexts=1),
    )
    for token in (CN_TOKEN, CN_TOKEN_2, CN_TOKEN):
        assert (await video(client, clock, token))[0] == 200
    # One context at a time: the second account closed the first one's, which had to load the page again.
    assert shark.shark.script_loads == 3 and shark.generate_count == 3
    assert [e.sessionid for e in generates(shark)] == [CN_TOKEN, CN_TOKEN_2, CN_TOKEN]


def chromium_processes() -> list[int]:
    """Process ids of the Chromium processes this test process started (its descendants named chrom*)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [os.getpid()]
    while todo:
        for child in parents.get(todo.pop(), []):
            todo.append(child)
            with contextlib.suppress(OSError):
                if "chrom" in Path(f"/proc/{child}/comm").read_text():
                    found.append(child)
    return found


@needs_chromium
async def test_after_chromium_crashes_the_next_generate_starts_it_again(
    make_client: AppFactory, config: Config, clock: ManualClock, shark: Simulator
) -> None:
    client = await make_client(upstream=dataclasses.replace(config.upstream, transport="browser"))
    assert (await video(client, clock))[0] == 200
    transport = client.app[CLIENT].transports.for_account(Account(sessionid=CN_TOKEN, region=Region.CN))
    assert isinstance(transport, BrowserTransport) and transport.open_contexts == 1
    victims = chromium_processes()
    assert victims
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    gone = asyncio.Event()
    assert transport._browser is not None
    transport._browser.on("disconnected", lambda _browser: gone.set())
    if transport._browser.is_connected():
        await asyncio.wait_for(gone.wait(), 10)  # Playwright notices the dead process
    status, body = await video(client, clock)
    assert status == 200, body
    assert shark.generate_count == 2 and shark.shark.script_loads == 2  # a new Chromium loaded the page again


async def test_a_browser_that_cannot_start_is_a_502_with_nothing_spent(
    make_client: AppFactory, config: Config, clock: ManualClock, shark: Simulator, tmp_path: Path
) -> None:
    broken = tmp_path / "chromium"
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    client = await make_client(
        upstream=dataclasses.replace(config.upstream, transport="browser"),
        browser=BrowserConfig(executable=str(broken)),
    )
    before = shark.account(CN_TOKEN).total
    status, body = await video(client, clock)
    assert status == 502 and body["error"]["code"] == "BROWSER_UNAVAILABLE", body
    assert "Chromium would not start" in body["error"]["message"]
    assert generates(shark) == [] and shark.account(CN_TOKEN).total == before


async def test_a_missing_browser_executable_is_a_start_up_error(config: Config) -> None:
    upstream = dataclasses.replace(config.upstream, transport="browser")
    with pytest.raises(ConfigError, match=r"browser\.executable"):
        Transports(upstream, BrowserConfig(executable="/nonexistent/chromium"), SessionPool(connect_timeout=1))


async def test_a_paid_model_on_a_free_account_is_refused_4013(
    client: TestClient[Any, Any], clock: ManualClock, shark: Simulator
) -> None:
    shark.settings.shark_models = frozenset()
    shark.account(CN_TOKEN).free = True
    status, body = await video(client, clock)
    assert status == 502 and body["error"]["code"] == "RISK_CONTROL_REJECTED", body  # 4013's own code (issue 11)
    assert "ret 4013" in body["error"]["message"] and shark.generate_count == 0


# ---------------------------------------------------------------- cookie-jar accounts (the client the pool uses)


@pytest.fixture
async def upstream(config: Config, clock: ManualClock) -> AsyncIterator[Callable[..., JimengClient]]:
    """Build JimengClients on `config` (optionally another transport), closed at the end."""
    pools: list[SessionPool] = []
    sets: list[Transports] = []

    def build(transport: str = "aiohttp", cfg: Config | None = None) -> JimengClient:
        up = dataclasses.replace((cfg or config).upstream, transport=transport)
        pool = SessionPool(connect_timeout=up.connect_timeout, ca_file=up.tls_ca_file)
        transports = Transports(up, config.browser, pool)
        pools.append(pool)
        sets.append(transports)
        return JimengClient(up, pool, clock, identity_salt=b"test-salt", transports=transports)

    yield build
    for t in sets:
        await t.close()
    for p in pools:
        await p.close()


async def refused_body(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> dict[str, Any]:
    """A valid Seedance 2.0 generate body: the one the server sent and the simulator refused with 1019."""
    assert (await video(client, clock))[0] == 502
    body = generates(sim)[-1].body
    assert isinstance(body, dict)
    return body


async def test_a_jar_account_generates_seedance_without_the_browser(
    client: TestClient[Any, Any],
    clock: ManualClock,
    shark: Simulator,
    upstream: Callable[..., JimengClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = await refused_body(client, clock, shark)
    jar_text = shark.issue_jar(CN_TOKEN, chrome=142)
    account = Account.from_jar(load_jar(jar_text, region=Region.CN, now=clock.time(), user_agent=CHROME_142), Region.CN)
    history_id = await upstream().generate(account, body, kind="video")
    assert shark.records[history_id].sessionid == CN_TOKEN
    entry = generates(shark)[-1]
    cookie = parse_cookie(entry.headers["cookie"])
    assert entry.headers["cookie"] == jar_text  # verbatim
    assert entry.query["webId"] == cookie["_tea_web_id"] and "a_bogus" not in entry.query
    assert entry.headers["user-agent"] == CHROME_142 and '"142"' in entry.headers["sec-ch-ua"]
    assert entry.headers["sec-ch-ua-platform"] == '"Windows"' and entry.query["os"] == "windows"
    for absent in ("accept-encoding", "cache-control", "pragma"):
        assert absent not in entry.headers
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert cookie["fpk1"] not in logged and cookie["ttwid"] not in logged  # the jar is a secret


async def test_a_jar_without_a_user_agent_claims_no_browser(
    client: TestClient[Any, Any], clock: ManualClock, shark: Simulator, upstream: Callable[..., JimengClient]
) -> None:
    body = await refused_body(client, clock, shark)
    account = Account.from_jar(load_jar(shark.issue_jar(CN_TOKEN), region=Region.CN, now=clock.time()), Region.CN)
    await upstream().generate(account, body, kind="video")
    entry = generates(shark)[-1]
    assert entry.ret == "0"
    assert "user-agent" not in entry.headers and "sec-ch-ua" not in entry.headers and "os" not in entry.query


@needs_chromium
async def test_a_jar_account_through_the_browser_sends_its_jar_from_the_page(
    client: TestClient[Any, Any], clock: ManualClock, shark: Simulator, upstream: Callable[..., JimengClient]
) -> None:
    body = await refused_body(client, clock, shark)
    jar_text = shark.issue_jar(CN_TOKEN, chrome=142)
    jar = load_jar(jar_text, region=Region.CN, now=clock.time(), user_agent=CHROME_142)
    await upstream("browser").generate(Account.from_jar(jar, Region.CN), body, kind="video")
    entry = generates(shark)[-1]
    assert entry.ret == "0" and "a_bogus" in entry.query
    assert parse_cookie(entry.headers["cookie"]) == parse_cookie(jar_text)  # the context holds the jar
    assert entry.query["webId"] == parse_cookie(jar_text)["_tea_web_id"]
    # Chromium 15x claims the jar's Chrome 142, client hints included, so the jar is not contradicted.
    assert entry.headers["user-agent"] == CHROME_142 and '"Chromium";v="142"' in entry.headers["sec-ch-ua"]


async def test_a_user_agent_whose_chrome_contradicts_the_jar_gets_4013(
    client: TestClient[Any, Any], clock: ManualClock, shark: Simulator, upstream: Callable[..., JimengClient]
) -> None:
    body = await refused_body(client, clock, shark)
    jar = load_jar(shark.issue_jar(CN_TOKEN, chrome=120), region=Region.CN, now=clock.time(), user_agent=CHROME_142)
    with pytest.raises(UpstreamRetError) as caught:
        await upstream().generate(Account.from_jar(jar, Region.CN), body, kind="video")
    assert caught.value.ret == "4013" and from_upstream(caught.value).code == "RISK_CONTROL_REJECTED"
    assert shark.generate_count == 0


async def test_a_web_id_that_differs_from_the_jars_tea_web_id_gets_4013(
    client: TestClient[Any, Any], clock: ManualClock, shark: Simulator, upstream: Callable[..., JimengClient]
) -> None:
    body = await refused_body(client, clock, shark)
    account = Account.from_jar(load_jar(shark.issue_jar(CN_TOKEN), region=Region.CN, now=clock.time()), Region.CN)
    api = upstream()
    api.web_id = lambda _account: "7000000000000000001"  # type: ignore[method-assign]  # a random webId, as peers sent
    with pytest.raises(UpstreamRetError) as caught:
        await api.generate(account, body, kind="video")
    assert caught.value.ret == "4013" and shark.generate_count == 0


# ---------------------------------------------------------------- the relay contract


class Relay:
    """A tiny relay: as a signer it answers `a_bogus` (made like the page does); as a relay it sends the call."""

    def __init__(self, sim: Simulator, mode: str) -> None:
        self.sim, self.mode = sim, mode
        self.requests: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        asked = await request.json()
        self.requests.append(asked)
        if self.mode == "signer":
            query = asked["url"].partition("?")[2]
            return web.json_response({"params": {"a_bogus": self.sim.shark.a_bogus_for(query)}})
        if self.mode == "garbage":
            return web.json_response({"hello": "world"})
        import aiohttp

        query = asked["url"].partition("?")[2]
        signed = f"{asked['url']}&a_bogus={self.sim.shark.a_bogus_for(query)}"
        async with (
            aiohttp.ClientSession() as session,
            session.post(signed, data=asked["body"].encode(), headers=asked["headers"]) as resp,
        ):
            return web.json_response({"status": resp.status, "body": await resp.text()})


@pytest.mark.parametrize("mode", ["signer", "relay"])
async def test_the_relay_contract(
    make_client: AppFactory,
    config: Config,
    clock: ManualClock,
    shark: Simulator,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    mode: str,
) -> None:
    relay = Relay(shark, mode)
    app = web.Application()
    app.router.add_post("/sign", relay.handle)
    server = await aiohttp_server(app)
    client = await make_client(
        upstream=dataclasses.replace(
            config.upstream, relay_url=str(server.make_url("/sign")), relay_gets_cookies=mode == "relay"
        )
    )
    status, body = await video(client, clock)
    assert status == 200, body
    (asked,) = relay.requests  # generate only
    assert asked["method"] == "POST" and GENERATE_PATH in asked["url"] and json.loads(asked["body"])["submit_id"]
    assert ("Cookie" in asked["headers"]) is (mode == "relay")
    (entry,) = generates(shark)
    assert entry.ret == "0" and shark.shark.a_bogus_ok(entry.raw_query)


@pytest.mark.parametrize("mode", ["down", "garbage"])
async def test_a_failing_relay_is_502_relay_unavailable_before_anything_is_spent(
    make_client: AppFactory,
    config: Config,
    clock: ManualClock,
    shark: Simulator,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    mode: str,
) -> None:
    if mode == "down":
        relay_url = f"http://127.0.0.1:{free_port()}/sign"
    else:
        app = web.Application()
        app.router.add_post("/sign", Relay(shark, "garbage").handle)
        relay_url = str((await aiohttp_server(app)).make_url("/sign"))
    client = await make_client(upstream=dataclasses.replace(config.upstream, relay_url=relay_url))
    before = shark.account(CN_TOKEN).total
    status, body = await video(client, clock)
    assert status == 502 and body["error"]["code"] == "RELAY_UNAVAILABLE", body
    assert generates(shark) == [] and shark.account(CN_TOKEN).total == before


def test_a_relay_cannot_be_combined_with_the_browser() -> None:
    from jimeng_server.config import parse_config

    with pytest.raises(ConfigError, match="relay_url"):
        parse_config({"upstream": {"transport": "browser", "relay_url": "http://127.0.0.1:1/sign"}})
    with pytest.raises(ConfigError, match="transport: must be one of"):
        parse_config({"upstream": {"transport": "curl"}})


# ---------------------------------------------------------------- impersonate vs aiohttp, over TLS


@pytest.fixture
async def https_config(
    sim: Simulator, aiohttp_server: Callable[..., Awaitable[TestServer]], tmp_path: Path, config: Config
) -> Config:
    """`config` pointed at the simulator served over HTTPS, trusting the test CA only."""
    context, ca_file = make_test_ca(tmp_path)
    server = await aiohttp_server(sim.create_app(), ssl=context)
    root = str(server.make_url("")).rstrip("/")
    assert root.startswith("https://")
    return with_upstream(with_simulator_hosts(config, simulator_hosts(root)), tls_ca_file=ca_file)


# Headers that belong to the hop, not to the request; curl-impersonate sends request priority the way Chrome does
# on its protocol (an HTTP/2 frame) and leaves the `Priority` header out.
_HOP = frozenset({"host", "content-length", "connection", "priority"})


def wire(entry: JournalEntry) -> tuple[Any, ...]:
    headers = {k: v for k, v in entry.headers.items() if k not in _HOP}
    return entry.method, entry.vhost, entry.path, entry.raw_query, entry.body, headers, entry.status, entry.ret


@pytest.mark.parametrize("via", ["direct", "http", "socks5"])
async def test_impersonate_and_aiohttp_send_the_same_journal(
    https_config: Config, sim: Simulator, clock: ManualClock, upstream: Callable[..., JimengClient], via: str
) -> None:
    proxy_server: ConnectProxy | Socks5Proxy | None = None
    proxy: str | None = None
    if via != "direct":
        proxy_server = ConnectProxy() if via == "http" else Socks5Proxy()
        await proxy_server.start()
        proxy = f"{via}://127.0.0.1:{proxy_server.port}"
    account = Account(sessionid=CN_TOKEN, region=Region.CN, proxy=proxy)
    jar = load_jar(sim.issue_jar(CN_TOKEN), region=Region.CN, now=clock.time(), user_agent=CHROME_142)
    jar_account = Account.from_jar(jar, Region.CN, proxy=proxy)
    journals = []
    try:
        for name in ("aiohttp", "impersonate"):
            api = upstream(name, https_config)
            start = len(sim.journal)
            for who in (account, jar_account):
                credits = await api.get_credits(who)
                assert credits.total == sim.account(CN_TOKEN).total
                await api.get_history(who, ["123"])
            journals.append([wire(e) for e in sim.journal[start:]])
    finally:
        if proxy_server is not None:
            await proxy_server.close()
    assert len(journals[0]) == 4 and all(e[-1] == "0" for e in journals[0])
    assert journals[0] == journals[1]
    if proxy_server is not None:
        sim_host = URL(https_config.upstream.hosts("cn").web)
        assert set(proxy_server.targets) == {f"{sim_host.host}:{sim_host.port}"}
        assert b"POST" not in proxy_server.sent  # TLS inside the tunnel: the proxy saw no plain HTTP


async def test_the_server_generates_through_the_impersonating_transport_over_tls(
    make_client: AppFactory, https_config: Config, clock: ManualClock, sim: Simulator
) -> None:
    client = await make_client(upstream=https_config.upstream)
    client_app_transport = client.app[CLIENT].transports
    assert client_app_transport.for_account(Account(sessionid=CN_TOKEN, region=Region.CN)).name == "aiohttp"
    client = await make_client(upstream=dataclasses.replace(https_config.upstream, transport="impersonate"))
    (resp,) = await drive(
        client.app, clock, client.post(IMAGE_URL, json={"prompt": "over tls"}, headers=bearer(CN_TOKEN))
    )
    assert resp.status == 200, await json_of(resp)
    assert sim.generate_count == 1 and generates(sim)[0].headers["user-agent"] == UpstreamConfig().user_agent


# ---------------------------------------------------------------- choosing a transport


def test_an_accounts_own_transport_overrides_the_default(config: Config) -> None:
    transports = Transports(config.upstream, config.browser, SessionPool(connect_timeout=1))
    plain = Account(sessionid=CN_TOKEN, region=Region.CN)
    own = Account(sessionid=CN_TOKEN, region=Region.CN, transport="impersonate")
    assert transports.for_account(plain).name == "aiohttp"
    assert transports.for_account(own).name == "impersonate"
    relay_config = dataclasses.replace(config.upstream, relay_url="http://127.0.0.1:1/sign")
    relayed = Transports(relay_config, config.browser, SessionPool(connect_timeout=1))
    assert relayed.for_account(own).name == "impersonate+relay"


@pytest.mark.parametrize(("transport", "module"), [("impersonate", "impersonate"), ("browser", "browser")])
def test_a_transport_without_its_extra_is_a_start_up_error(
    config: Config, monkeypatch: pytest.MonkeyPatch, transport: str, module: str
) -> None:
    from jimeng_server.upstream import browser, impersonate

    monkeypatch.setattr({"impersonate": impersonate, "browser": browser}[module], "available", lambda: False)
    with pytest.raises(ConfigError, match=r"pip install 'jimeng-server\[browser\]'"):
        upstream = dataclasses.replace(config.upstream, transport=transport)
        Transports(upstream, config.browser, SessionPool(connect_timeout=1))


def test_the_impersonated_chrome_follows_the_user_agent() -> None:
    from jimeng_server.upstream.impersonate import ImpersonateTransport

    generic = ImpersonateTransport(target="chrome")
    assert generic.target_for(CHROME_142) == "chrome142"
    newer = generic.target_for(CHROME_142.replace("142.0", "149.0"))  # the newest curl_cffi has, up to 149
    assert newer.startswith("chrome") and 142 <= int(newer.removeprefix("chrome")) <= 149
    assert generic.target_for(CHROME_142.replace("142.0", "90.0")) == "chrome"
    assert generic.target_for(None) == "chrome"
    assert ImpersonateTransport(target="chrome120").target_for(CHROME_142) == "chrome120"  # an explicit choice
