"""Cookie-jar accounts in the pool (issue 13 on top of the pool): added over the admin API and the CLI, refused
with the reason when they cannot work, and used by key callers with the jar's identity (Seedance 2.0 in shark
mode goes through without a browser)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pool_support import ADMIN_KEY, POOL_SESSIONS, admin, create_key, key_auth, seed_sim
from support import drive, json_of

from jimeng_server.api.admin_views import account_view
from jimeng_server.api.appkeys import ACCOUNT_POOL, CLIENT, POOL
from jimeng_server.clock import ManualClock
from jimeng_server.config import AdminConfig, BrowserConfig, Config
from jimeng_server.simulator import Simulator
from jimeng_server.simulator.state import SEEDANCE_20_KEYS
from jimeng_server.upstream.transports import Transports

Client = TestClient[Any, Any]
ROOT = Path(__file__).resolve().parents[2]
SEEDANCE = "jimeng-video-seedance-2.0"
CHROMIUM = "/usr/bin/chromium"


async def admin_client(make_client: Any, sim: Simulator) -> Client:
    seed_sim(sim)
    sim.settings.shark_models = SEEDANCE_20_KEYS  # Seedance 2.0 needs a_bogus or a full jar
    return await make_client(admin=AdminConfig(key=ADMIN_KEY))


async def add(client: Client, **fields: Any) -> tuple[int, Any]:
    resp = await client.post("/admin/api/accounts", json=fields, headers=admin())
    return resp.status, await json_of(resp)


async def seedance(client: Client, clock: ManualClock, key: str) -> tuple[int, Any]:
    body = {"prompt": "a cat surfing", "model": SEEDANCE, "duration": 5}
    (resp,) = await drive(client.app, clock, client.post("/v1/videos/generations", json=body, headers=key_auth(key)))
    return resp.status, await json_of(resp)


async def test_a_jar_account_is_added_and_used_with_the_jars_identity(
    make_client: Any, sim: Simulator, clock: ManualClock
) -> None:
    client = await admin_client(make_client, sim)
    jar = sim.issue_jar(POOL_SESSIONS["pa"], chrome=142)
    agent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0"
    status, body = await add(client, name="jarred", cookies=jar, user_agent=agent + " Safari/537.36")
    assert status == 201, body
    assert (body["credential"], body["transport"], body["region"]) == ("cookie jar", None, "cn")
    assert POOL_SESSIONS["pa"] not in json.dumps(body) and "_tea_web_id" not in json.dumps(body)
    key = await create_key(client)

    status, answer = await seedance(client, clock, key)
    assert status == 200, answer
    (entry,) = [e for e in sim.journal if e.path.endswith("/aigc_draft/generate")]
    assert entry.sessionid == POOL_SESSIONS["pa"] and entry.ret == "0"
    web_id = next(p.split("=", 1)[1] for p in jar.split("; ") if p.startswith("_tea_web_id="))
    assert entry.query["webId"] == web_id  # the jar's own webId, not a random one


async def test_a_session_id_account_is_refused_by_shark_mode_and_the_jar_is_the_remedy(
    make_client: Any, sim: Simulator, clock: ManualClock
) -> None:
    client = await admin_client(make_client, sim)
    status, _ = await add(client, name="plain", token=POOL_SESSIONS["pb"])
    assert status == 201
    key = await create_key(client)
    status, answer = await seedance(client, clock, key)
    assert (status, answer["error"]["code"]) == (502, "UPSTREAM_RISK_CONTROL"), answer
    assert "cookie jar" in answer["error"]["message"]
    (row,) = await client.app[ACCOUNT_POOL].rows()
    assert row.last_error_code == "UPSTREAM_RISK_CONTROL"  # the account rests, with the reason
    assert sim.generate_count == 0


async def test_bad_jars_and_transports_are_refused_with_the_reason_and_nothing_is_written(
    make_client: Any, sim: Simulator
) -> None:
    client = await admin_client(make_client, sim)
    jar = sim.issue_jar(POOL_SESSIONS["pa"])
    no_session = "; ".join(p for p in jar.split("; ") if not p.startswith(("sessionid=", "sessionid_ss=")))
    cases = [
        ({"cookies": no_session}, "INVALID_COOKIES", "sessionid"),
        ({"cookies": jar, "token": POOL_SESSIONS["pa"]}, "INVALID_ACCOUNT", "either"),
        ({"cookies": jar, "region": "mars"}, "INVALID_REGION", "region"),
        ({"token": POOL_SESSIONS["pa"], "transport": "telepathy"}, "INVALID_TRANSPORT", "transport"),
    ]
    for fields, code, word in cases:
        status, body = await add(client, name="bad", **fields)
        assert (status, body["error"]["code"]) == (400, code), (fields, body)
        assert word in body["error"]["message"]
        assert POOL_SESSIONS["pa"] not in body["error"]["message"]
    assert await client.app[ACCOUNT_POOL].rows() == []


def test_cli_adds_a_jar_account_from_a_file(config: Config, tmp_path: Path) -> None:
    live = Simulator()  # real clock: the CLI checks the jar's expiry against the real time
    seed_sim(live)
    jar_file = tmp_path / "cookies.txt"
    jar_file.write_text(live.issue_jar(POOL_SESSIONS["pc"]), encoding="utf-8")
    config_file = tmp_path / "server.toml"
    config_file.write_text(f'[store]\npath = "{config.store.path}"\n', encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "jimeng_server", "--config", str(config_file), "accounts", "add", "cli-jar",
         "--cookies", str(jar_file)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "added account cli-jar" in run.stdout and POOL_SESSIONS["pc"] not in run.stdout + run.stderr
    listing = subprocess.run(
        [sys.executable, "-m", "jimeng_server", "--config", str(config_file), "accounts", "list"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "cli-jar" in listing.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "jimeng_server", "--config", str(config_file), "accounts", "add", "x",
         "--cookies", str(tmp_path / "nope.txt")],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert missing.returncode == 2 and "cannot read the cookie jar file" in missing.stderr


async def test_refresh_cookies_gives_an_account_a_full_jar_from_a_real_browser(
    make_client: Any, sim: Simulator, clock: ManualClock, config: Config
) -> None:
    """`accounts refresh-cookies`: a session-id account's page is loaded in headless Chromium; the cookies the
    page's security script sets make it a full jar, and Seedance 2.0 then goes through without the browser."""
    if not os.access(CHROMIUM, os.X_OK):
        assert not os.environ.get("CI"), "install Debian's chromium (apt-get install -y chromium), as .ci/run does"
        pytest.skip("no /usr/bin/chromium: install Debian's chromium (apt-get install -y chromium) to run this test")
    client = await admin_client(make_client, sim)
    status, _ = await add(client, name="plain", token=POOL_SESSIONS["pa"])
    assert status == 201
    pool = client.app[ACCOUNT_POOL]
    transports = Transports(config.upstream, BrowserConfig(executable=CHROMIUM), client.app[POOL])
    try:
        row = await pool.refresh_cookies(
            "plain", lambda account: client.app[CLIENT].harvest_jar(account, transports.browser())
        )
    finally:
        await transports.close()
    account = pool.account_of(row)
    assert account.jar is not None and account.jar.is_full and account.sessionid == POOL_SESSIONS["pa"]
    assert (await account_view(pool, row))["credential"] == "cookie jar"
    pages = [e for e in sim.journal if e.method == "GET" and e.path == "/"]
    assert pages and pages[-1].sessionid == POOL_SESSIONS["pa"]  # the page was loaded with the account's session

    key = await create_key(client)
    status, answer = await seedance(client, clock, key)
    assert status == 200, answer  # the refreshed jar passes shark mode over plain aiohttp
