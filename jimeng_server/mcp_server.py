"""`jimeng-server mcp`: a Model Context Protocol server for agent hosts (Claude Desktop, Cursor, ...), built
with the official MCP SDK (the optional `[mcp]` extra; imported only by this command): over stdio with one key,
or with `--http` over streamable HTTP at `/mcp` in a process of its own (the SDK's HTTP transport is ASGI:
Starlette and uvicorn stay out of the API server), each HTTP request authenticated by its own Bearer key (401
without one), which every tool call passes on to the API.

It is a client of a running jimeng-server: every tool is an HTTP call with the given key (a `jk_` API key, or
session ids), so the pool, API keys, idempotency, the store and webhooks apply exactly as for any other caller,
and what a tool says is what the task query says (it follows the task through
`GET /v1/async/tasks/{id}/events`). Tools:
- `generate_image`, `edit_image`, `generate_video`: submit an async task, then (with `wait`, the default) follow
  it to the end, reporting MCP progress notifications (queue place, generating); the result is the Markdown links
  plus, for images up to `INLINE_IMAGE_BYTES`, the images themselves. Without `wait`: the task id at once.
- `get_task`: one task (optionally waiting up to 60 s for it to end), `list_models`, `get_balance`.
A refusal is a tool error carrying the server's message (what to fix).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import quote

import aiohttp
from mcp.server.mcpserver import Context, Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from starlette.types import ASGIApp, Receive, Scope, Send

from . import __version__
from .services.chat import progress_text, result_urls, results_markdown
from .upstream import catalog

IMAGE_TOOL = (
    f"Make images from a text prompt. model: e.g. {catalog.DEFAULT_IMAGE_MODEL} (list_models); ratio: "
    f"{', '.join(catalog.RATIOS)}; resolution: {', '.join(catalog.RESOLUTIONS)} (each model's own in list_models); "
    f"n: how many images (1 to {catalog.MAX_IMAGE_COUNT})."
)
"""The `generate_image` tool's description: the choices the image parser takes (`api/fields.IMAGE` reads the same
catalogue), so the tool cannot name fewer or others."""
INLINE_IMAGE_BYTES = 2 * 1024 * 1024
"""Largest result image also returned as MCP image content (bigger ones: the link only)."""
URL_ENV, KEY_ENV = "JIMENG_URL", "JIMENG_API_KEY"


class Api:
    """The running server, called with one key. Answers are JSON; an error answer raises ToolError with the
    server's message and code (the key never appears in it)."""

    def __init__(self, base_url: str, key: str, session: aiohttp.ClientSession) -> None:
        self.base = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {key}"}
        self.session = session

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            async with self.session.request(method, self.base + path, json=body, headers=self.headers) as resp:
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ToolError(f"jimeng-server at {self.base} did not answer ({type(exc).__name__})") from None
        if resp.status >= 400:
            error = data.get("error", {}) if isinstance(data, dict) else {}
            raise ToolError(f"{error.get('message', f'HTTP {resp.status}')} ({error.get('code', resp.status)})")
        return data

    async def events(self, history_id: str) -> AsyncIterator[tuple[str, Any]]:
        """The task's Server-Sent Events: (event name, decoded data) until the stream ends."""
        url = f"{self.base}/v1/async/tasks/{quote(history_id, safe='')}/events"
        async with self.session.get(url, headers=self.headers) as resp:
            if resp.status >= 400:
                data = await resp.json(content_type=None)
                raise ToolError(str(data.get("error", {}).get("message", f"HTTP {resp.status}")))
            name, data_line = "message", ""
            async for raw in resp.content:
                line = raw.decode("utf-8").rstrip("\r\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data_line = line[6:]
                elif not line and data_line:
                    yield name, json.loads(data_line)
                    name, data_line = "message", ""


async def _follow(api: Api, history_id: str, ctx: Context) -> dict[str, Any]:
    """Follow a task to its final body, reporting each visible change as MCP progress."""
    step = 0
    async for name, data in api.events(history_id):
        if name == "final":
            await ctx.report_progress(step + 1, step + 1, "done")
            return dict(data)
        if name == "error":
            raise ToolError(f"task {history_id}: {data['error']['message']} ({data['error']['code']})")
        step += 1
        await ctx.report_progress(step, None, progress_text(data).strip())
    raise ToolError(f"task {history_id}: the event stream ended early; ask get_task")


async def _answer(api: Api, body: dict[str, Any]) -> list[str | Image]:
    """A final task as tool content: a status line and the links, then the small images themselves."""
    history_id = body["history_id"]
    if body.get("status") == 30 and not result_urls(body):
        error = body.get("error") or {}
        raise ToolError(f"task {history_id} failed: {error.get('message', 'no result')} ({error.get('code')})")
    content: list[str | Image] = [f"Task {history_id} is done.\n{results_markdown(body)}"]
    if body.get("task_type") == "image":
        for url in result_urls(body):
            image = await _small_image(api.session, url)
            if image is not None:
                content.append(image)
    return content


async def _small_image(session: aiohttp.ClientSession, url: str) -> Image | None:
    try:
        async with session.get(url) as resp:
            if resp.status != 200 or (resp.content_length or 0) > INLINE_IMAGE_BYTES:
                return None
            data = await resp.content.read(INLINE_IMAGE_BYTES + 1)
            kind = resp.content_type.partition("/")[2] or "png"
    except (aiohttp.ClientError, TimeoutError):
        return None
    return Image(data=data, format=kind) if len(data) <= INLINE_IMAGE_BYTES else None


def _fields(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def request_key(ctx: Context) -> str | None:
    """The key of an MCP-over-HTTP request (its `Authorization: Bearer ...`); None over stdio."""
    request = ctx.request_context.request
    headers = getattr(request, "headers", None)
    header = headers.get("authorization", "") if headers is not None else ""
    scheme, _, key = str(header).partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


def build_server(base_url: str, session: aiohttp.ClientSession, default_key: str | None) -> MCPServer:
    """The MCP server with the six tools. Each call uses the key of its HTTP request (MCP over HTTP), else
    `default_key` (stdio)."""

    def api_of(ctx: Context) -> Api:
        key = request_key(ctx) or default_key
        if not key:
            raise ToolError("no key: send Authorization: Bearer <jk_ key or session ids>")
        return Api(base_url, key, session)

    server: MCPServer = MCPServer(
        "jimeng-server",
        version=__version__,
        instructions="Make images and videos with Jimeng / Dreamina through jimeng-server. Long work reports "
        "progress; pass wait=false to get a task id at once and ask get_task later.",
    )

    async def submit(path: str, body: dict[str, Any], wait: bool, ctx: Context) -> list[str | Image]:
        api = api_of(ctx)
        accepted = await api.call("POST", path, body)
        history_id = str(accepted["history_id"])
        if not wait:
            return [f"Submitted task {history_id}; ask get_task with this id for its result."]
        await ctx.report_progress(0, None, f"submitted task {history_id}")
        return await _answer(api, await _follow(api, history_id, ctx))

    @server.tool(structured_output=False, description=IMAGE_TOOL)
    async def generate_image(
        prompt: str,
        ctx: Context,
        model: str | None = None,
        ratio: str | None = None,
        resolution: str | None = None,
        n: int | None = None,
        wait: bool = True,
    ) -> list[str | Image]:
        """`IMAGE_TOOL`."""
        body = _fields(prompt=prompt, model=model, ratio=ratio, resolution=resolution, n=n)
        return await submit("/v1/async/images/generations", body, wait, ctx)

    @server.tool(structured_output=False)
    async def edit_image(
        prompt: str,
        images: list[str],
        ctx: Context,
        model: str | None = None,
        ratio: str | None = None,
        resolution: str | None = None,
        wait: bool = True,
    ) -> list[str | Image]:
        """Make new images from 1 to 10 input images (http(s) URLs or data:image/...;base64 URIs) and a prompt
        saying what to change or combine."""
        body = _fields(prompt=prompt, images=images, model=model, ratio=ratio, resolution=resolution)
        return await submit("/v1/async/images/compositions", body, wait, ctx)

    @server.tool(structured_output=False)
    async def generate_video(
        prompt: str,
        ctx: Context,
        model: str | None = None,
        duration: int | None = None,
        ratio: str | None = None,
        resolution: str | None = None,
        first_frame_url: str | None = None,
        last_frame_url: str | None = None,
        wait: bool = True,
    ) -> list[str | Image]:
        """Make a video from a prompt, optionally from a first (and last) frame image URL. model: e.g.
        jimeng-video-3.5-pro (list_models); duration in seconds (the model's allowed values)."""
        frames = [u for u in (first_frame_url, last_frame_url) if u]
        body = _fields(prompt=prompt, model=model, duration=duration, ratio=ratio, resolution=resolution)
        if frames:
            body["file_paths"] = frames
        return await submit("/v1/async/videos/generations", body, wait, ctx)

    @server.tool(structured_output=False)
    async def get_task(history_id: str, ctx: Context, wait_seconds: float = 0) -> list[str | Image]:
        """A task's status and, once done, its result links. wait_seconds (0 to 60): wait that long for a
        running task to end."""
        api = api_of(ctx)
        wait = max(0.0, min(60.0, wait_seconds))
        body = await api.call("GET", f"/v1/async/tasks/{quote(history_id, safe='')}?wait={wait:g}")
        if body.get("status") == 20:
            return [f"Task {history_id} is still running. {progress_text(body).strip()}"]
        return await _answer(api, body)

    @server.tool(structured_output=False)
    async def list_models(ctx: Context) -> str:
        """The image and video models (and aliases) this server can use."""
        data = await api_of(ctx).call("GET", "/v1/models")
        lines = []
        for m in data["data"]:
            alias = f" = {m['alias_of']}" if m.get("alias_of") else ""
            lines.append(f"- {m['id']}{alias} ({m.get('type')}; regions {', '.join(m.get('regions') or [])})")
        return "\n".join(lines)

    @server.tool(structured_output=False)
    async def get_balance(ctx: Context) -> str:
        """The credits of the account(s) behind the key, as the server reports them."""
        return json.dumps(await api_of(ctx).call("POST", "/token/points"), ensure_ascii=False, indent=2)

    return server


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120))


async def run_stdio(base_url: str, key: str) -> None:
    """MCP over stdio, every call with `key`."""
    async with _session() as session:
        await build_server(base_url, session, key).run_stdio_async()


def require_bearer(app: ASGIApp) -> ASGIApp:
    """An ASGI wrapper answering 401 (the API's error shape) to HTTP requests without a Bearer key; the key
    itself is checked by the API on each tool call."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = dict(scope.get("headers") or []).get(b"authorization", b"")
            scheme, _, key = header.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not key.strip():
                body = json.dumps(
                    {
                        "error": {
                            "message": "send Authorization: Bearer <jk_ key or session ids>",
                            "type": "authentication_error",
                            "code": "MISSING_TOKEN",
                        }
                    }
                ).encode()
                headers = [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]
                await send({"type": "http.response.start", "status": 401, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)

    return guarded


async def run_http(base_url: str, host: str, port: int) -> None:
    """MCP over streamable HTTP at `/mcp` (its own process, uvicorn); each call with its request's key."""
    import uvicorn

    async with _session() as session:
        server = build_server(base_url, session, None)
        app = require_bearer(server.streamable_http_app(host=host))
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        await uvicorn.Server(config).serve()


LocalApi = Callable[[str | None], AbstractAsyncContextManager[str]]
"""Serves the server app of a config file in this process; yields its base URL (cli.local_api)."""


async def run_in_process(local: LocalApi, config_path: str | None, key: str) -> None:
    """MCP over stdio against the server app of `config_path` run in this process (its store, pool, watcher)."""
    async with local(config_path) as base_url:
        await run_stdio(base_url, key)


def main(argv: list[str], *, local: LocalApi | None = None) -> int:
    """`jimeng-server mcp [--url URL | --in-process [--config FILE]] [--key KEY] [--http [--host H] [--port P]]`:
    serve MCP over stdio (URL and key default to the env vars JIMENG_URL and JIMENG_API_KEY; `--in-process` runs
    the server app of the config in this process instead, with `local`), or with `--http` over streamable HTTP
    at `http://H:P/mcp`, each request authenticated by its own Bearer key. Returns the exit status."""
    parser = argparse.ArgumentParser(prog="jimeng-server mcp", description="MCP server for agent hosts")
    parser.add_argument("--url", default=os.environ.get(URL_ENV, "http://127.0.0.1:5100"), help="the server")
    parser.add_argument("--key", default=None, help=f"stdio: a jk_ API key or session ids (default: ${KEY_ENV})")
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP at /mcp instead of stdio")
    parser.add_argument("--host", default="127.0.0.1", help="--http: listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5101, help="--http: listen port (default 5101)")
    parser.add_argument(
        "--in-process", action="store_true", help="stdio: run the server itself in this process (no --url needed)"
    )
    parser.add_argument("--config", default=os.environ.get("JIMENG_CONFIG"), help="--in-process: config.toml")
    args = parser.parse_args(argv)
    import anyio

    if args.http:
        anyio.run(run_http, args.url, args.host, args.port)
        return 0
    key = args.key or os.environ.get(KEY_ENV, "")
    if not key:
        print(f"jimeng-server mcp: no key: pass --key or set {KEY_ENV}", file=sys.stderr)
        return 2
    if args.in_process:
        if local is None:
            print("jimeng-server mcp: --in-process needs the jimeng-server command", file=sys.stderr)
            return 2
        anyio.run(run_in_process, local, args.config, key)
        return 0
    anyio.run(run_stdio, args.url, key)
    return 0
