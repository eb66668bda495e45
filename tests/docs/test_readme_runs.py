"""Every README example that talks to a server runs against `--simulate` as written (issue 24), with only the
address, the session id and file paths filled in: the curl commands, the OpenAI snippet (with the README's
model aliases), and the pool and key commands (on the simulator's store: `--simulate` before the command).
The Python polling and webhook examples have their own tests (test_readme_examples.py); README.zh.md's code
blocks are the same bytes (test_readme_parity.py)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from simulate_proc import SimulateProcess, start_simulate

from jimeng_server.simulator.media import png

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BASE = "http://127.0.0.1:5100"
CALLBACK = "https://example.com/hooks/jimeng"  # the README's public callback host, offline here


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.DOTALL)


def env() -> dict[str, str]:
    drop = ("JIMENG_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[SimulateProcess, Path, str]]:
    """`--simulate` with the README's `[models.aliases]` block in its config: (server, config path, token)."""
    (aliases,) = [b for b in blocks("toml") if "[models.aliases]" in b]
    config = tmp_path / "config.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "tasks.db"}"\n[watcher.image]\nfirst_poll = 0.3\ninterval = 0.3\n'
        # A receiver on this machine stands in for the README's public callback host (README: a local receiver
        # needs allow_private_networks).
        f'[server]\nlog_level = "WARNING"\n[security]\nallow_private_networks = true\n{textwrap.dedent(aliases)}',
        encoding="utf-8",
    )
    proc = await start_simulate(config, until="Dashboard:", cwd=tmp_path, env=env())
    token = re.search(r"Bearer ([A-Za-z0-9_-]+)", proc.banner)
    assert token is not None
    try:
        yield proc, config, token.group(1)
    finally:
        await proc.stop()


async def shell(command: str, cwd: Path, **extra: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        command,
        cwd=cwd,
        env=env() | extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(120):
        out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_the_curl_examples_answer_as_the_readme_says(
    server: tuple[SimulateProcess, Path, str],
    json_hook: tuple[str, list[dict[str, Any]], asyncio.Event],
    tmp_path: Path,
) -> None:
    proc, _, token = server
    hook, got, arrived = json_hook
    curls = [b for b in blocks("bash") if b.startswith("curl ")]
    assert len(curls) >= 2
    (tmp_path / "photo.png").write_bytes(png(64, 48, (90, 120, 150)))  # the post-edit examples' file
    submitted = []
    last_history_id = ""
    for block in curls:
        command = block.replace(BASE, proc.url).replace("YOUR_SESSIONID", token)
        command = command.replace(CALLBACK, hook)
        code, out, err = await shell(
            command, tmp_path, TOKEN=token, API_TOKEN=token, API_BASE=proc.url, HISTORY_ID=last_history_id
        )
        assert code == 0, err
        if "/events" in block:  # the event stream of the task submitted before: it ends with the final event
            assert "event: final" in out, out
            continue
        answer = json.loads(out)
        last_history_id = answer.get("history_id") or last_history_id
        assert "error" not in answer, (block, answer)
        assert answer.get("data") or answer.get("history_id"), answer
        if CALLBACK in block:
            submitted.append(answer["history_id"])
    # The webhook example: the final state is POSTed to the callback_url.
    assert len(submitted) == 1
    async with asyncio.timeout(60):
        await arrived.wait()
    assert got[0]["type"] == "task.succeeded" and got[0]["data"]["history_id"] == submitted[0]


async def test_the_pool_and_key_commands_run_on_the_simulators_store(
    server: tuple[SimulateProcess, Path, str], tmp_path: Path
) -> None:
    """The operator commands as written, on the simulator's store; the two that need a browser's cookie jar
    file and Chromium talking to the real site are left out."""
    _, config, _ = server
    (block,) = [b for b in blocks("bash") if "accounts add alice-cn" in b]
    lines = [line for line in block.replace("\\\n", " ").splitlines() if line.startswith("jimeng-server ")]
    runnable = [line for line in lines if "--cookies" not in line and "refresh-cookies" not in line]
    assert len(runnable) == len(lines) - 2
    cli = f"{sys.executable} -m jimeng_server --config {config} --simulate"
    outputs = []
    for line in runnable:
        command = line.replace("jimeng-server --config config.toml", cli)
        code, out, err = await shell(command, tmp_path)
        assert code == 0, (line, err)
        outputs.append(out)
    text = "\n".join(outputs)
    assert "added account alice-cn" in text and "added account bob-us" in text
    assert "created API key team-a" in text and "revoked API key team-a" in text
