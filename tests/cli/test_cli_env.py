"""The command line as a container runs it: `--version`, and host, port, config path and store path from
the environment (JIMENG_HOST, JIMENG_PORT, JIMENG_CONFIG, JIMENG_STORE_PATH), flags winning over them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from simulate_proc import free_port

from jimeng_server import __version__
from jimeng_server.config import ENV_OVERRIDES, Config, ConfigError, load_config, with_env_overrides

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIMENG_")}
    return env | extra


def test_version_flag() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "jimeng_server", "--version"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip() == f"jimeng-server {__version__}"


def test_env_overrides_apply_and_name_the_variable() -> None:
    config = with_env_overrides(
        Config(), {"JIMENG_HOST": "127.0.0.1", "JIMENG_PORT": "8080", "JIMENG_STORE_PATH": "/data/t.db"}
    )
    assert (config.server.host, config.server.port, config.store.path) == ("127.0.0.1", 8080, "/data/t.db")
    assert with_env_overrides(Config(), {"JIMENG_PORT": " "}) == Config()  # empty = unset
    for env, needle in (({"JIMENG_PORT": "http"}, "expected an integer"), ({"JIMENG_PORT": "0"}, "1-65535")):
        with pytest.raises(ConfigError, match=f"JIMENG_PORT: .*{needle}"):
            with_env_overrides(Config(), env)


def test_bad_env_value_exits_2_with_message() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "jimeng_server"],
        cwd=ROOT,
        env=_env(JIMENG_PORT="eighty"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "JIMENG_PORT" in done.stderr and "Traceback" not in done.stderr


async def test_server_takes_host_port_config_and_store_from_env(tmp_path: Path) -> None:
    config = tmp_path / "conf.toml"
    config.write_text('[server]\nlog_format = "json"\nport = 1\n', encoding="utf-8")  # the env port wins
    port = free_port()
    env = _env(
        JIMENG_CONFIG=str(config),
        JIMENG_HOST="127.0.0.1",
        JIMENG_PORT=str(port),
        JIMENG_STORE_PATH=str(tmp_path / "store" / "tasks.db"),
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jimeng_server",
        "--simulate",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            while b"Bearer" not in await proc.stdout.readline():
                assert proc.returncode is None
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/healthz", headers={"X-Request-Id": "env-check"}) as resp,
        ):
            assert resp.status == 200 and resp.headers["X-Request-Id"] == "env-check"
        assert (tmp_path / "store" / "tasks-simulate.db").exists()
        # The image's HEALTHCHECK command passes against it, and fails once nothing listens there.
        check = [sys.executable, "-c", healthcheck_command()]
        done = await asyncio.to_thread(subprocess.run, check, env=env, capture_output=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        dead = env | {"JIMENG_PORT": str(free_port())}
        done = await asyncio.to_thread(subprocess.run, check, env=dead, capture_output=True, timeout=30, check=False)
        assert done.returncode != 0
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    lines = [json.loads(line) for line in err.decode().splitlines() if line.strip()]
    assert any(f"127.0.0.1:{port}" in entry["message"] for entry in lines)
    assert any(entry["request_id"] == "env-check" and "/healthz" in entry["message"] for entry in lines)


def test_config_path_that_is_a_directory_is_a_clean_error(tmp_path: Path) -> None:
    # What a container gets when a bind-mounted config file was missing on the host (Docker makes a directory).
    with pytest.raises(ConfigError, match="cannot read config file"):
        with_env_overrides(load_config(tmp_path), {})


def test_dockerfile_by_reading() -> None:
    """No Docker daemon here: the Dockerfile is checked by reading it (non-root user, store volume, health
    check on /healthz, the documented environment overrides, the console script as entry point)."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r'^VOLUME \["/data"\]', text, re.MULTILINE)
    assert "JIMENG_STORE_PATH=/data/" in text
    assert re.search(r"^HEALTHCHECK .*\n.*/healthz", text, re.MULTILINE)
    assert 'ENTRYPOINT ["jimeng-server"]' in text
    for name in ENV_OVERRIDES:
        assert name in text
    compose = (ROOT / "compose.example.yaml").read_text(encoding="utf-8")
    assert "jimeng-data:/data" in compose and "build: ." in compose


def healthcheck_command() -> str:
    """The Python code of the Dockerfile's HEALTHCHECK."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    match = re.search(r'CMD python -c "([^"]+)"', text)
    assert match is not None
    return match.group(1)
