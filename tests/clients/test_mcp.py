"""`jimeng-server mcp` over stdio, driven by the MCP SDK's own client: the subprocess calls the test server over
real HTTP (loopback), which drives the simulator; the tools' answers agree with the task query."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import pytest
from aiohttp.test_utils import TestClient
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import ImageContent, TextContent
from simulate_proc import free_port
from support import CN_TOKEN, CN_TOKEN_2, bearer, drive, json_of

from jimeng_server.api.fields import IMAGE
from jimeng_server.clock import ManualClock
from jimeng_server.simulator import Simulator, simulator_hosts
from jimeng_server.simulator.media import png
from jimeng_server.simulator.scripts import Script, Step

pytestmark = pytest.mark.wall_clock  # the in-process server signs with the system clock; the simulator checks the skew

ROOT = Path(__file__).resolve().parents[2]


TOOLS = {"generate_image", "edit_image", "generate_video", "get_task", "list_models", "get_balance"}


@asynccontextmanager
async def connect(client: TestClient[Any, Any], tmp_path: Path) -> AsyncIterator[ClientSession]:
    """`python -m jimeng_server mcp` pointed at the test server (key from the environment), connected. (A context
    manager entered in the test itself: the SDK's cancel scopes must be left in the task that entered them.)"""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "jimeng_server", "mcp", "--url", str(client.make_url("")).rstrip("/")],
        env={"PYTHONPATH": str(ROOT), "JIMENG_API_KEY": CN_TOKEN, "PATH": os.environ.get("PATH", "")},
        cwd=str(tmp_path),
    )
    with (tmp_path / "mcp-stderr.log").open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session


def texts(result: Any) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


async def test_tools_are_listed(client: TestClient[Any, Any], tmp_path: Path) -> None:
    async with connect(client, tmp_path) as mcp:
        tools = {t.name: t for t in (await mcp.list_tools()).tools}
        assert set(tools) == TOOLS
        assert "prompt" in tools["generate_image"].input_schema["required"]
        described = tools["generate_image"].description or ""
        for name in ("ratio", "resolution"):  # every choice the image body documents, in the tool's words
            assert all(choice in described for choice in IMAGE[name].choices), (name, described)


async def test_generate_image_reports_progress_and_returns_links_and_images(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, tmp_path: Path
) -> None:
    async with connect(client, tmp_path) as mcp:
        sim.settings.queue_ahead = 2  # a long run: progress comes before the end however fast the clock moves
        sim.next_script = Script([Step(20, 0)] * 120 + [Step(20, 1), Step(42, 2), Step(10, 4)])
        progress: list[tuple[float, float | None, str | None]] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append((value, total, message))

        call = mcp.call_tool("generate_image", {"prompt": "an agent's cat"}, progress_callback=on_progress)
        (result,) = await drive(client.app, clock, call)
        assert not result.is_error, texts(result)
        history_id = re.search(r"Task (\d+) is done", texts(result))
        assert history_id is not None
        resp = await client.get(f"/v1/async/tasks/{history_id.group(1)}", headers=bearer(CN_TOKEN))
        task = await json_of(resp)
        links = re.findall(r"!\[image \d+\]\(([^)]+)\)", texts(result))
        assert links == [r["url"] for r in task["results"]] and links
        images = [c for c in result.content if isinstance(c, ImageContent)]
        assert len(images) == len(links) and all(base64.b64decode(i.data)[:4] == b"\x89PNG" for i in images)
        messages = [m for _, _, m in progress]
        assert messages[0] == f"submitted task {history_id.group(1)}" and messages[-1] == "done"
        assert any(m and (m.startswith("Queued") or m.startswith("Generating")) for m in messages)
        assert [v for v, _, _ in progress] == sorted(v for v, _, _ in progress)


async def test_without_wait_then_get_task(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, tmp_path: Path
) -> None:
    async with connect(client, tmp_path) as mcp:
        result = await mcp.call_tool("generate_video", {"prompt": "waves", "model": "sora-2", "wait": False})
        found = re.search(r"Submitted task (\d+)", texts(result))
        assert found is not None and sim.generate_count == 1
        (done,) = await drive(
            client.app, clock, mcp.call_tool("get_task", {"history_id": found.group(1), "wait_seconds": 60})
        )
        resp = await client.get(f"/v1/async/tasks/{found.group(1)}", headers=bearer(CN_TOKEN))
        assert f"[video]({(await json_of(resp))['results'][0]['url']})" in texts(done)
        frame = "data:image/png;base64," + base64.b64encode(png(24, 24, (5, 6, 7))).decode()
        edited = await mcp.call_tool("edit_image", {"prompt": "night", "images": [frame], "wait": False})
        assert re.search(r"Submitted task \d+", texts(edited)) and sim.generate_count == 2
        (gen,) = sim.calls("/aigc_draft/generate")[1:]
        assert "blend" in gen.body["draft_content"]


async def test_refusals_are_tool_errors_with_the_servers_message(
    client: TestClient[Any, Any], sim: Simulator, tmp_path: Path
) -> None:
    async with connect(client, tmp_path) as mcp:
        result = await mcp.call_tool("generate_image", {"prompt": "x", "model": "midjourney-v6"})
        assert result.is_error and "UNKNOWN_MODEL" in texts(result) and "[models] aliases" in texts(result)
        missing = await mcp.call_tool("get_task", {"history_id": "123"})
        assert missing.is_error and "TASK_NOT_FOUND" in texts(missing)
        sneaky = await mcp.call_tool("get_task", {"history_id": "../../../v1/models"})
        # One path segment: the server looks that id up (and finds nothing) instead of another route answering.
        assert sneaky.is_error and "task '../../../v1/models' was not found" in texts(sneaky)
        assert sim.generate_count == 0 and CN_TOKEN not in texts(result) + texts(missing)


async def test_models_and_balance(client: TestClient[Any, Any], tmp_path: Path) -> None:
    async with connect(client, tmp_path) as mcp:
        models = texts(await mcp.call_tool("list_models", {}))
        assert "- dall-e-3 = jimeng-4.5 (image" in models and "- jimeng-video-3.5-pro (video" in models
        balance = texts(await mcp.call_tool("get_balance", {}))
        assert '"points"' in balance and CN_TOKEN not in balance


@asynccontextmanager
async def http_server(client: TestClient[Any, Any], tmp_path: Path) -> AsyncIterator[str]:
    """`python -m jimeng_server mcp --http` on a free port, pointed at the test server; its /mcp URL."""
    port = free_port()
    with (tmp_path / "mcp-http.log").open("w") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "jimeng_server", "mcp", "--http", "--port", str(port)),
            *("--url", str(client.make_url("")).rstrip("/")),
            env={"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "")},
            stdout=log,
            stderr=log,
        )
        try:
            async with asyncio.timeout(30):
                while True:
                    assert proc.returncode is None, (tmp_path / "mcp-http.log").read_text()
                    try:
                        _, writer = await asyncio.open_connection("127.0.0.1", port)
                    except OSError:
                        await asyncio.sleep(0.05)  # polling a port another process opens
                        continue
                    writer.close()
                    await writer.wait_closed()
                    break
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            proc.terminate()
            await proc.wait()


@asynccontextmanager
async def http_session(url: str, token: str) -> AsyncIterator[ClientSession]:
    async with (
        httpx2.AsyncClient(headers=bearer(token), trust_env=False, timeout=60) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def test_streamable_http_needs_a_key_and_uses_each_requests_own(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, tmp_path: Path
) -> None:
    async with http_server(client, tmp_path) as url:
        async with aiohttp.ClientSession() as plain:
            resp = await plain.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
            assert resp.status == 401 and (await resp.json())["error"]["code"] == "MISSING_TOKEN"
        async with http_session(url, CN_TOKEN) as mcp:
            assert {t.name for t in (await mcp.list_tools()).tools} == TOOLS
            result = await mcp.call_tool("generate_image", {"prompt": "over http", "wait": False})
            found = re.search(r"Submitted task (\d+)", texts(result))
            assert found is not None
            (done,) = await drive(
                client.app, clock, mcp.call_tool("get_task", {"history_id": found.group(1), "wait_seconds": 60})
            )
            assert "is done" in texts(done) and [c for c in done.content if isinstance(c, ImageContent)]
        async with http_session(url, CN_TOKEN_2) as other:  # another caller's key: not its task
            missing = await other.call_tool("get_task", {"history_id": found.group(1)})
            assert missing.is_error and "TASK_NOT_FOUND" in texts(missing)
    assert sim.generate_count == 1


async def test_in_process_serves_its_own_app_from_the_config(
    sim: Simulator, sim_server: Any, clock: ManualClock, tmp_path: Path
) -> None:
    """`mcp --in-process --config FILE`: the tools are served by the app of that config inside the MCP process
    (its own store file), against the simulator: no server to run first."""
    root = str(sim_server.make_url("")).rstrip("/")
    lines = [
        f'[store]\npath = "{tmp_path / "in-process.db"}"',
        '[server]\nlog_level = "WARNING"',
        "[security]\nallow_private_networks = true",
    ]
    for region, hosts in simulator_hosts(root).items():
        lines.append(f"[upstream.regions.{region.value}]")
        lines.extend(f'{name} = "{url}"' for name, url in hosts.items())
    config = tmp_path / "config.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "jimeng_server", "mcp", "--in-process", "--config", str(config)],
        env={"PYTHONPATH": str(ROOT), "JIMENG_API_KEY": CN_TOKEN, "PATH": os.environ.get("PATH", "")},
        cwd=str(tmp_path),
    )
    with (tmp_path / "mcp-stderr.log").open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as mcp:
            await mcp.initialize()
            assert "- dall-e-3 = jimeng-4.5" in texts(await mcp.call_tool("list_models", {}))
            result = await mcp.call_tool("generate_image", {"prompt": "in process", "wait": False})
            found = re.search(r"Submitted task (\d+)", texts(result))
            assert found is not None and sim.generate_count == 1
            running = await mcp.call_tool("get_task", {"history_id": found.group(1)})
            assert f"Task {found.group(1)} is still running" in texts(running)
    assert (tmp_path / "in-process.db").exists()
