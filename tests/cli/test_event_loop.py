"""`[server] event_loop`: the loop the server runs on. "auto" (the default) takes uvloop when it is installed
(the `fast` extra), else asyncio's own loop; "uvloop" refuses to start without it, naming the fix; any other
value is a config error naming the key. The real command is run and answers an async submit on each loop."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import aiohttp
import pytest
from simulate_proc import free_port, start_simulate

from jimeng_server.concurrency import loop_factory
from jimeng_server.config import ConfigError, load_config


def _config(tmp_path: Path, event_loop: str) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "tasks.db"}"\n[server]\nlog_level = "WARNING"\nevent_loop = "{event_loop}"\n',
        encoding="utf-8",
    )
    return config


def test_an_unknown_event_loop_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, "trio"))
    assert "server.event_loop" in str(info.value)
    assert "auto, uvloop, asyncio" in str(info.value)
    assert load_config(_config(tmp_path, "asyncio")).server.event_loop == "asyncio"


def test_auto_takes_uvloop_when_it_is_installed() -> None:
    uvloop = pytest.importorskip("uvloop")
    factory = loop_factory("auto")
    assert factory is not None
    loop = factory()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
    assert loop_factory("asyncio") is None  # asyncio's own loop


def test_without_uvloop_auto_falls_back_and_uvloop_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    assert loop_factory("auto") is None
    with pytest.raises(ImportError):
        loop_factory("uvloop")


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
async def test_the_server_answers_a_submit_on_each_loop(tmp_path: Path, event_loop: str) -> None:
    if event_loop == "uvloop":
        pytest.importorskip("uvloop")
    server = await start_simulate(_config(tmp_path, event_loop), until="Bearer", seconds=30)
    try:
        token = re.search(r"Bearer ([A-Za-z0-9_-]+)", server.banner)
        assert token is not None
        async with aiohttp.ClientSession() as http, http.post(
            f"{server.url}/v1/async/images/generations",
            json={"prompt": "a lighthouse at dusk"},
            headers={"Authorization": f"Bearer {token.group(1)}"},
        ) as resp:
            body = await resp.json()
            assert resp.status == 200, body
        assert body["status"] == "submitted" and body["history_id"]
    finally:
        await server.stop()  # exit 0, no traceback


async def test_uvloop_asked_but_missing_fails_naming_the_fix(tmp_path: Path) -> None:
    hidden = tmp_path / "hide"
    (hidden / "uvloop").mkdir(parents=True)
    (hidden / "uvloop" / "__init__.py").write_text('raise ImportError("uvloop is hidden by the test")\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIMENG_")}
    env["PYTHONPATH"] = f"{hidden}:{env.get('PYTHONPATH', '')}".rstrip(":")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jimeng_server",
        "--config",
        str(_config(tmp_path, "uvloop")),
        "--host",
        "127.0.0.1",
        "--port",
        str(free_port()),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        _, err = await proc.communicate()
    text = err.decode()
    assert proc.returncode == 2, text
    assert "[server] event_loop" in text and "jimeng-server[fast]" in text
    assert "Traceback" not in text
