"""The READMEs' examples run as written: the polling example and the `openai` package against `--simulate`
in a subprocess, the webhook receiver against signed deliveries. Both READMEs open with the same two set-up
commands."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import openai
import pytest
from simulate_proc import free_port, start_simulate

from jimeng_server.simulator.media import png
from jimeng_server.webhooks.signatures import delivery_headers, parse_secret

ROOT = Path(__file__).resolve().parents[2]
READMES = ("README.md", "README.zh.md")
SECRET = "whsec_" + base64.b64encode(b"readme-example-secret-32-bytes!!").decode()


def blocks(readme: str, lang: str) -> list[str]:
    text = (ROOT / readme).read_text(encoding="utf-8")
    return re.findall(rf"```{lang}\n(.*?)```", text, re.DOTALL)


def example(readme: str, needle: str) -> str:
    (code,) = [b for b in blocks(readme, "python") if needle in b]
    return code


def _env(**extra: str) -> dict[str, str]:
    drop = ("JIMENG_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)} | extra


async def _wait_for_port(port: int, proc: asyncio.subprocess.Process) -> None:
    async with asyncio.timeout(30):
        while True:
            assert proc.returncode is None, "the example exited early"
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.02)  # polling a port another process opens (no event crosses processes)
                continue
            writer.close()
            await writer.wait_closed()
            return


def test_both_readmes_open_with_the_same_setup_commands() -> None:
    english, chinese = (blocks(r, "bash")[:2] for r in READMES)
    assert english == chinese
    assert "--simulate" in english[0] and "pytest" in english[1]


@pytest.fixture
async def simulate(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """`python -m jimeng_server --simulate` in a subprocess (real clock, short watcher intervals): its base
    URL and the demo token it prints."""
    config = tmp_path / "config.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "tasks.db"}"\n[watcher.image]\nfirst_poll = 0.5\ninterval = 0.5\n'
        '[server]\nlog_level = "WARNING"\n',
        encoding="utf-8",
    )
    server = await start_simulate(config, until="Bearer", cwd=ROOT, env=_env())
    try:
        token = re.search(r"Bearer ([A-Za-z0-9_-]+)", server.banner)
        assert token is not None
        yield server.url, token.group(1)
    finally:
        await server.stop()


async def test_polling_example_runs_against_simulate(simulate: tuple[str, str], tmp_path: Path) -> None:
    base, token = simulate
    for readme in READMES:
        script = tmp_path / f"poll-{readme}.py"
        script.write_text(example(readme, "?wait=30"), encoding="utf-8")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            env=_env(API_BASE=base, API_TOKEN=token),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        lines = out.decode().splitlines()
        assert lines[0].startswith("submitted ")
        assert len(lines) == 5 and all(re.match(r"http://127\.0\.0\.1:\d+/.*\.png", u) for u in lines[1:])


async def test_openai_example_runs_as_written(simulate: tuple[str, str], tmp_path: Path) -> None:
    """The README's OpenAI snippet (`model="dall-e-3"`, a built-in alias), run unchanged against the `--simulate`
    server with the `openai` package, a `cat.png` in its working directory."""
    base, token = simulate
    (tmp_path / "cat.png").write_bytes(png(16, 9, (1, 2, 3)))
    for readme in READMES:
        script = tmp_path / f"openai-{readme}.py"
        script.write_text(example(readme, "client.images.edit"), encoding="utf-8")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            cwd=tmp_path,
            env=_env(API_BASE=base, API_TOKEN=token),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        generated, edited, alias_of = out.decode().splitlines()
        assert all(re.match(r"http://127\.0\.0\.1:\d+/.*\.png", u) for u in (generated, edited))
        assert alias_of == "jimeng-4.5"


async def _run_example(readme: str, needle: str, base: str, token: str, cwd: Path) -> str:
    script = cwd / f"example-{readme}.py"
    script.write_text(example(readme, needle), encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        cwd=cwd,
        env=_env(API_BASE=base, API_TOKEN=token),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(90):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_chat_and_video_examples_run_as_written(simulate: tuple[str, str], tmp_path: Path) -> None:
    """The chat completions snippet streams the progress and the links; the OpenAI Videos snippet polls and
    writes the MP4 (both READMEs, the `openai` package, the `--simulate` server)."""
    base, token = simulate
    for readme in READMES:
        text = await _run_example(readme, "chat.completions.create", base, token, tmp_path)
        assert text.startswith("Submitted image task ") and re.search(r"!\[image 1\]\(http://127\.0\.0\.1:\d+/", text)
        (tmp_path / "waves.mp4").unlink(missing_ok=True)
        await _run_example(readme, "create_and_poll", base, token, tmp_path)
        assert (tmp_path / "waves.mp4").read_bytes()[4:8] == b"ftyp"


async def test_openai_sdk_against_simulate(simulate: tuple[str, str]) -> None:
    """The `openai` package with catalogue names and an unknown name against the `--simulate` server."""
    base, token = simulate
    http = openai.DefaultAsyncHttpxClient(trust_env=False)
    async with openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=token, max_retries=0, http_client=http) as client:
        image = await client.images.generate(model="jimeng-4.5", prompt="a cat in the snow", size="1792x1024")
        assert image.data and all(item.url for item in image.data)
        with pytest.raises(openai.BadRequestError) as err:
            await client.images.generate(model="midjourney-v6", prompt="x")
        assert err.value.code == "UNKNOWN_MODEL"
        with pytest.raises(openai.NotFoundError) as missing:
            await client.models.retrieve("midjourney-v6")
        assert missing.value.code == "MODEL_NOT_FOUND"


@pytest.mark.parametrize("readme", READMES)
async def test_webhook_receiver_example_verifies_and_deduplicates(readme: str, tmp_path: Path) -> None:
    script = tmp_path / "receiver.py"
    script.write_text(example(readme, "BaseHTTPRequestHandler"), encoding="utf-8")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        env=_env(PORT=str(port), JIMENG_WEBHOOK_SECRET=SECRET),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await _wait_for_port(port, proc)
        event = {
            "type": "task.succeeded",
            "timestamp": "2026-01-01T12:00:08.000Z",
            "data": {"history_id": "8875", "status": 10, "results": [{"url": "https://cdn.example/a.png"}]},
        }
        body = json.dumps(event).encode()
        good = delivery_headers("msg_1", int(time.time()), body, parse_secret(SECRET))
        forged = delivery_headers("msg_2", int(time.time()), body, b"another key")
        stale = delivery_headers("msg_3", int(time.time()) - 3600, body, parse_secret(SECRET))
        url = f"http://127.0.0.1:{port}/hook"
        async with aiohttp.ClientSession() as http:
            statuses = []
            for headers in (good, good, forged, stale):
                async with http.post(url, data=body, headers=headers) as resp:
                    statuses.append(resp.status)
        assert statuses == [204, 204, 401, 401]
        assert proc.stdout is not None
        async with asyncio.timeout(10):
            line = (await proc.stdout.readline()).decode().strip()
        assert line == "task.succeeded 8875 ['https://cdn.example/a.png']"
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            out, _ = await proc.communicate()
    assert out.decode().strip() == "", "a repeated or refused delivery printed something"


async def test_polling_example_shows_the_servers_error_body(simulate: tuple[str, str], tmp_path: Path) -> None:
    """A refused call prints the server's error answer (what to fix), not only urllib's status line."""
    base, _ = simulate
    for readme in READMES:
        script = tmp_path / f"refused-{readme}.py"
        script.write_text(example(readme, "?wait=30"), encoding="utf-8")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            env=_env(API_BASE=base, API_TOKEN="jk_not-a-key-of-this-server"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            _, err = await proc.communicate()
        text = err.decode()
        assert proc.returncode == 1 and "Traceback" not in text, text
        status, _, body = text.strip().partition(": ")
        assert status == "HTTP 401" and json.loads(body)["error"]["code"] == "INVALID_API_KEY"
_N8N_HARNESS = """
const cases = JSON.parse(process.argv[2]);
const out = [];
for (const c of cases) {
  const $env = { JIMENG_WEBHOOK_SECRET: c.secret };
  const $json = { headers: c.headers };
  const $binary = { data: { data: Buffer.from(c.body, 'utf8').toString('base64') } };
  try {
    const result = (function () {
      %s
    })();
    out.push({ ok: true, json: result[0].json });
  } catch (e) {
    out.push({ ok: false, error: String(e.message) });
  }
}
console.log(JSON.stringify(out));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run the n8n Code node snippet")
@pytest.mark.parametrize("readme", READMES)
async def test_n8n_signature_check_accepts_signed_events_only(readme: str, tmp_path: Path) -> None:
    """The README's n8n Code node (JavaScript), run by Node.js with n8n's `$env`, `$json`, `$binary`: a delivery
    signed by the server passes and yields the event; a forged, stale or tampered one throws."""
    (code,) = blocks(readme, "javascript")
    body = json.dumps({"type": "task.succeeded", "data": {"history_id": "42", "status": 10}})
    now = int(time.time())
    key = parse_secret(SECRET)

    def case(headers: dict[str, str], sent: str = body) -> dict[str, object]:
        return {"secret": SECRET, "headers": {k.lower(): v for k, v in headers.items()}, "body": sent}

    cases = [
        case(delivery_headers("msg_1", now, body.encode(), key)),
        case(delivery_headers("msg_2", now, body.encode(), b"another key")),
        case(delivery_headers("msg_3", now - 3600, body.encode(), key)),
        case(delivery_headers("msg_4", now, body.encode(), key), sent=body.replace("42", "43")),
    ]
    script = tmp_path / "n8n.js"
    script.write_text(_N8N_HARNESS % code, encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        "node", str(script), json.dumps(cases), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    results = json.loads(out)
    assert results[0] == {"ok": True, "json": json.loads(body)}
    assert [r["ok"] for r in results[1:]] == [False, False, False]
    assert all(r["error"] == "bad webhook signature" for r in results[1:])
