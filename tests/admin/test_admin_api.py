"""The admin API and pool management (issue 12): off without an admin key, 401 without or with a wrong key,
bad input refused with nothing written, secrets encrypted at rest when a key is set (and a start-up warning
when not), and the `jimeng-server accounts|keys` commands on the same database."""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cryptography.fernet import Fernet
from pool_support import ADMIN_KEY, POOL_SESSIONS, add_accounts, admin, create_key, key_auth, seed_sim
from support import AppFactory, json_of

from jimeng_server.api.admin import admin_key
from jimeng_server.api.appkeys import ACCOUNT_POOL
from jimeng_server.config import AccountsConfig, AdminConfig, Config, ConfigError
from jimeng_server.simulator import Simulator

Client = TestClient[Any, Any]


@pytest.fixture
async def admin_client(make_client: AppFactory) -> Client:
    return await make_client(admin=AdminConfig(key=ADMIN_KEY))


def database_bytes(config: Config) -> bytes:
    """The database file and its write-ahead log, as stored on disk."""
    path = Path(config.store.path)
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


async def error_of(resp: Any) -> tuple[int, str, str]:
    body = await json_of(resp)
    return resp.status, body["error"]["code"], body["error"]["message"]


def test_the_admin_key_env_var_overrides_the_config() -> None:
    assert admin_key(AdminConfig(key="from-config"), {"JIMENG_ADMIN_KEY": "from-env"}) == "from-env"
    assert admin_key(AdminConfig(key="from-config"), {}) == "from-config"
    assert admin_key(AdminConfig(), {}) == ""


async def test_admin_api_and_page_are_off_without_an_admin_key(client: Client) -> None:
    for path in ("/admin", "/admin/api/accounts", "/admin/static/admin.js"):
        resp = await client.get(path, headers=admin())
        assert resp.status == 404, path


async def test_admin_api_needs_the_admin_key(admin_client: Client) -> None:
    status, code, _ = await error_of(await admin_client.get("/admin/api/accounts"))
    assert (status, code) == (401, "ADMIN_KEY_REQUIRED")
    status, code, _ = await error_of(await admin_client.get("/admin/api/keys", headers={"Authorization": "Bearer no"}))
    assert (status, code) == (401, "INVALID_ADMIN_KEY")
    resp = await admin_client.post(
        "/admin/api/accounts", json={"name": "x", "token": POOL_SESSIONS["pa"]}, headers={"Authorization": "Bearer no"}
    )
    assert resp.status == 401
    assert (await json_of(await admin_client.get("/admin/api/accounts", headers=admin())))["data"] == []
    page = await admin_client.get("/admin")
    assert page.status == 200 and '<table id="accounts">' in await page.text()
    assert (await admin_client.get("/admin/static/admin.js")).status == 200


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"name": "pa", "token": POOL_SESSIONS["pb"]}, 409, "DUPLICATE_ACCOUNT"),  # name taken
        ({"name": "other", "token": POOL_SESSIONS["pa"]}, 409, "DUPLICATE_ACCOUNT"),  # session taken
        ({"name": "bad name!", "token": POOL_SESSIONS["pb"]}, 400, "INVALID_NAME"),
        ({"name": "123", "token": POOL_SESSIONS["pb"]}, 400, "INVALID_NAME"),
        ({"name": "x", "token": "two words"}, 400, "INVALID_TOKEN"),
        ({"name": "x", "token": "a,b"}, 400, "INVALID_TOKEN"),
        ({"name": "x", "token": "short"}, 400, "INVALID_TOKEN"),
        ({"name": "x", "token": POOL_SESSIONS["pb"], "proxy": "ftp://p.example:21"}, 400, "INVALID_PROXY"),
        ({"name": "x", "token": POOL_SESSIONS["pb"], "proxy": "http://host:notaport"}, 400, "INVALID_PROXY"),
        ({"name": "x", "token": f"http://user:pw@:8080@{POOL_SESSIONS['pb']}"}, 400, "INVALID_PROXY"),
        ({"name": "x"}, 400, "MISSING_PARAMETER"),
        ({"name": "x", "token": 5}, 400, "INVALID_PARAMETER"),
    ],
)
async def test_bad_accounts_are_refused_and_nothing_is_written(
    admin_client: Client, fields: dict[str, Any], status: int, code: str
) -> None:
    await add_accounts(admin_client, "pa")
    got_status, got_code, message = await error_of(
        await admin_client.post("/admin/api/accounts", json=fields, headers=admin())
    )
    assert (got_status, got_code) == (status, code), message
    for session in POOL_SESSIONS.values():
        assert session not in message and "pw" not in message
    names = [a["name"] for a in (await json_of(await admin_client.get("/admin/api/accounts", headers=admin())))["data"]]
    assert names == ["pa"]


async def test_account_with_proxy_and_management_round_trip(admin_client: Client) -> None:
    resp = await admin_client.post(
        "/admin/api/accounts",
        json={"name": "us1", "token": f"us-{POOL_SESSIONS['pa']}", "proxy": "socks5://u:secretpw@10.0.0.1:1080"},
        headers=admin(),
    )
    body = await json_of(resp)
    assert resp.status == 201 and body["region"] == "us" and body["proxy"] is True
    assert "secretpw" not in await resp.text() and POOL_SESSIONS["pa"] not in await resp.text()
    account = await admin_client.app[ACCOUNT_POOL].resolve(body["id"])
    assert account is not None and account.proxy == "socks5://u:secretpw@10.0.0.1:1080"
    assert (await json_of(await admin_client.post("/admin/api/accounts/us1/disable", headers=admin())))[
        "enabled"
    ] is False
    assert (await json_of(await admin_client.post("/admin/api/accounts/us1/enable", headers=admin())))[
        "enabled"
    ] is True
    resp = await admin_client.delete("/admin/api/accounts/us1", headers=admin())
    assert resp.status == 200
    status, code, _ = await error_of(await admin_client.delete("/admin/api/accounts/us1", headers=admin()))
    assert (status, code) == (404, "ACCOUNT_NOT_FOUND")


async def test_check_reads_the_balance_and_records_a_refusal(admin_client: Client, sim: Simulator) -> None:
    seed_sim(sim, credits=77)
    await add_accounts(admin_client, "pa", "pb")
    body = await json_of(await admin_client.post("/admin/api/accounts/pa/check", headers=admin()))
    assert body["credits"] == 77 and body["health"]["state"] == "ok" and body["health"]["last_check_at"] is not None
    sim.expire_session(POOL_SESSIONS["pb"])
    body = await json_of(await admin_client.post("/admin/api/accounts/pb/check", headers=admin()))
    assert body["health"]["state"] == "cooling_down" and body["health"]["last_error_code"] == "TOKEN_EXPIRED"


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"name": "alice"}, 409, "DUPLICATE_KEY"),
        ({"name": ""}, 400, "MISSING_PARAMETER"),
        ({"name": "k", "accounts": ["nope"]}, 400, "UNKNOWN_ACCOUNT"),
        ({"name": "k", "accounts": []}, 400, "INVALID_PARAMETER"),
        ({"name": "k", "accounts": "pa"}, 400, "INVALID_PARAMETER"),
        ({"name": "k", "rate_per_minute": 0}, 400, "INVALID_PARAMETER"),
        ({"name": "k", "max_in_flight": "5"}, 400, "INVALID_PARAMETER"),
    ],
)
async def test_bad_keys_are_refused_and_nothing_is_written(
    admin_client: Client, fields: dict[str, Any], status: int, code: str
) -> None:
    await add_accounts(admin_client, "pa")
    await create_key(admin_client, "alice")
    got = await error_of(await admin_client.post("/admin/api/keys", json=fields, headers=admin()))
    assert got[:2] == (status, code), got[2]
    names = [k["name"] for k in (await json_of(await admin_client.get("/admin/api/keys", headers=admin())))["data"]]
    assert names == ["alice"]


async def test_keys_are_shown_once_and_stored_as_hashes(admin_client: Client, config: Config) -> None:
    key = await create_key(admin_client, "alice")
    listed = await (await admin_client.get("/admin/api/keys", headers=admin())).text()
    assert key not in listed and key[:8] in listed
    with sqlite3.connect(config.store.path) as conn:
        (stored,) = conn.execute("SELECT hash FROM api_keys").fetchone()
    assert stored == hashlib.sha256(key.encode()).hexdigest()
    assert key.encode() not in database_bytes(config)


async def test_secrets_are_encrypted_with_a_key_and_warned_about_without(
    make_client: AppFactory, config: Config, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    seed_sim(sim)
    fernet_key = Fernet.generate_key().decode()
    sealed = await make_client(admin=AdminConfig(key=ADMIN_KEY), accounts=AccountsConfig(encryption_key=fernet_key))
    await add_accounts(sealed, "pa")
    assert POOL_SESSIONS["pa"].encode() not in database_bytes(config)
    key = await create_key(sealed)
    resp = await sealed.post("/v1/async/images/generations", json={"prompt": "x"}, headers=key_auth(key))
    assert resp.status == 200  # the sealed secret is opened to submit
    assert not [r for r in caplog.records if "unencrypted" in r.getMessage()]
    # Without the key, the next start warns; the sealed account cannot be opened, so a submit finds none.
    plain = await make_client(admin=AdminConfig(key=ADMIN_KEY))
    assert [r for r in caplog.records if r.levelno == logging.WARNING and "unencrypted" in r.getMessage()]
    resp = await plain.post("/v1/async/images/generations", json={"prompt": "x"}, headers=key_auth(key))
    assert resp.status == 503


async def test_a_malformed_encryption_key_fails_at_start(make_client: AppFactory) -> None:
    with pytest.raises(ConfigError, match="not a Fernet key"):
        await make_client(accounts=AccountsConfig(encryption_key="not-a-key"))


# ------------------------------------------------------------------------------------------ CLI


def cli(config_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jimeng_server", "--config", str(config_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_cli_accounts_and_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    db = tmp_path / "pool.db"
    cfg.write_text(f'[store]\npath = "{db}"\n', encoding="utf-8")
    session = POOL_SESSIONS["pa"]
    added = cli(cfg, "accounts", "add", "main", f"socks5://u:pw@10.1.1.1:1080@{session}", "--note", "team A")
    assert added.returncode == 0, added.stderr
    assert "added account main" in added.stdout and "warning: stored unencrypted" in added.stdout
    assert session not in added.stdout + added.stderr
    dup = cli(cfg, "accounts", "add", "main", POOL_SESSIONS["pb"])
    assert dup.returncode == 1 and "already in the pool" in dup.stderr
    bad = cli(cfg, "accounts", "add", "other", POOL_SESSIONS["pb"], "--proxy", "gopher://x")
    assert bad.returncode == 2 and "proxy" in bad.stderr
    listed = cli(cfg, "accounts", "list")
    assert listed.returncode == 0 and "main" in listed.stdout and "team A" in listed.stdout
    assert "other" not in listed.stdout and session not in listed.stdout
    assert cli(cfg, "accounts", "disable", "main").returncode == 0
    assert "disabled" in cli(cfg, "accounts", "list").stdout

    created = cli(cfg, "keys", "create", "alice", "--accounts", "main", "--rate", "5")
    assert created.returncode == 0, created.stderr
    key = next(word for word in created.stdout.split() if word.startswith("jk_"))
    keys = cli(cfg, "keys", "list")
    assert "alice" in keys.stdout and key not in keys.stdout and "active" in keys.stdout
    assert cli(cfg, "keys", "create", "bob", "--accounts", "nope").returncode == 2
    assert cli(cfg, "keys", "revoke", "alice").returncode == 0
    assert "revoked" in cli(cfg, "keys", "list").stdout
    assert cli(cfg, "accounts", "remove", "main").returncode == 0
    assert "(none)" in cli(cfg, "accounts", "list").stdout


def test_cli_encrypts_with_the_env_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    db = tmp_path / "pool.db"
    cfg.write_text(f'[store]\npath = "{db}"\n', encoding="utf-8")
    env = {"JIMENG_ACCOUNTS_KEY": Fernet.generate_key().decode()}
    added = cli(cfg, "accounts", "add", "main", POOL_SESSIONS["pa"], env=env)
    assert added.returncode == 0 and "unencrypted" not in added.stdout
    with sqlite3.connect(db) as conn:
        (secret, sealed) = conn.execute("SELECT secret, sealed FROM accounts").fetchone()
    assert sealed == 1 and POOL_SESSIONS["pa"].encode() not in secret
    bad = cli(cfg, "accounts", "list", env={"JIMENG_ACCOUNTS_KEY": "short"})
    assert bad.returncode == 2 and "Fernet" in bad.stderr
