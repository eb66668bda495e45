"""Issue 26, finding 7c: with `[accounts] encryption_key` set, a background task's session token is stored sealed
(never the raw session id in `tasks.token` or the database file), and a restarted server still resumes it."""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet
from support import CN_TOKEN, AppFactory, bearer, json_of

from jimeng_server.api.appkeys import INTAKE, STORE, WATCHER
from jimeng_server.config import AccountsConfig, Config


async def test_in_flight_tokens_are_sealed(make_client: AppFactory, config: Config) -> None:
    accounts = AccountsConfig(encryption_key=Fernet.generate_key().decode())
    client = await make_client(accounts=accounts)
    resp = await client.post("/v1/async/images/generations", json={"prompt": "a cat"}, headers=bearer(CN_TOKEN))
    hid = (await json_of(resp))["history_id"]
    row = await client.app[STORE].get(hid)
    assert row is not None and row.token is not None
    assert row.token.startswith("sealed:") and CN_TOKEN not in row.token
    path = Path(config.store.path)
    for file in (path, path.with_name(path.name + "-wal")):
        if file.exists():
            assert CN_TOKEN.encode() not in file.read_bytes()
    # A restarted server (same key) opens it and watches the task again.
    again = await make_client(accounts=accounts)
    await again.app[INTAKE].resume()  # (start-up resumes already; a second call finds nothing new)
    assert again.app[WATCHER].is_watching(hid)
    # With another key it cannot be opened: not resumed, and no raw token anywhere.
    other = await make_client(accounts=AccountsConfig(encryption_key=Fernet.generate_key().decode()))
    await other.app[INTAKE].resume()
    assert not other.app[WATCHER].is_watching(hid)


async def test_without_a_key_nothing_changes(make_client: AppFactory) -> None:
    client = await make_client()
    resp = await client.post("/v1/async/images/generations", json={"prompt": "a cat"}, headers=bearer(CN_TOKEN))
    row = await client.app[STORE].get((await json_of(resp))["history_id"])
    assert row is not None and row.token == CN_TOKEN
