"""`POST /v1/chat/completions` with the `openai` package itself, over real HTTP against the server and the
simulator: whole and streamed answers, compositions from image parts, videos, failures, Idempotency-Key, and the
same truth as the task query."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pool_support import ADMIN_KEY, POOL_SESSIONS, add_accounts, create_key, key_auth, seed_sim
from support import CN_TOKEN, bearer, drive, json_of

from jimeng_server.api.appkeys import STORE, WEBHOOKS
from jimeng_server.api.sse import EventStream
from jimeng_server.clock import ManualClock
from jimeng_server.config import AdminConfig, Config, SecurityConfig
from jimeng_server.simulator import Simulator
from jimeng_server.simulator.media import png
from jimeng_server.simulator.scripts import Script, Step

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
PNG = png(40, 30, (200, 10, 10))
LINK = re.compile(r"!\[image (\d+)\]\((http://127\.0\.0\.1:\d+/[^)]+)\)")


@pytest.fixture
async def sdk(client: TestClient[Any, Any]) -> AsyncIterator[openai.AsyncOpenAI]:
    http = openai.DefaultAsyncHttpxClient(trust_env=False)
    sdk = openai.AsyncOpenAI(api_key=CN_TOKEN, base_url=str(client.make_url("/v1")), max_retries=0, http_client=http)
    yield sdk
    await sdk.close()


def user(*parts: Any) -> list[dict[str, Any]]:
    content: Any = parts[0] if len(parts) == 1 and isinstance(parts[0], str) else list(parts)
    return [{"role": "system", "content": "you draw"}, {"role": "user", "content": content}]


async def task_of(client: TestClient[Any, Any], history_id: str) -> Any:
    resp = await client.get(f"/v1/async/tasks/{history_id}", headers=bearer(CN_TOKEN))
    assert resp.status == 200
    return await json_of(resp)


async def test_whole_answer_links_the_images_of_the_task(
    sdk: openai.AsyncOpenAI, client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    call = sdk.chat.completions.create(model="dall-e-3", messages=user("a cat in the snow"))  # type: ignore[arg-type]
    (answer,) = await drive(client.app, clock, call)
    content = answer.choices[0].message.content or ""
    links = LINK.findall(content)
    history_id = (answer.model_extra or {})["history_id"]
    assert answer.object == "chat.completion" and answer.model == "dall-e-3"
    assert answer.choices[0].finish_reason == "stop" and answer.choices[0].message.role == "assistant"
    task = await task_of(client, history_id)
    assert task["status"] == 10 and [u for _, u in links] == [r["url"] for r in task["results"]]
    assert [n for n, _ in links] == [str(n) for n in range(1, len(links) + 1)] and len(links) == 4
    (gen,) = sim.calls("/aigc_draft/generate")
    assert "a cat in the snow" in json.dumps(gen.body, ensure_ascii=False) and sim.generate_count == 1


async def test_options_ride_as_extra_body_keys(
    sdk: openai.AsyncOpenAI, client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    call = sdk.chat.completions.create(
        model="jimeng-4.0",
        messages=user("two dogs"),  # type: ignore[arg-type]
        n=2,
        extra_body={"size": "1792x1024", "temperature": 0.3},
    )
    (answer,) = await drive(client.app, clock, call)
    assert len(LINK.findall(answer.choices[0].message.content or "")) == 2
    (gen,) = sim.calls("/aigc_draft/generate")
    core = json.loads(gen.body["draft_content"])["component_list"][0]["abilities"]["generate"]["core_param"]
    assert core["model"] == "high_aes_general_v40" and core["large_image_info"]["resolution_type"] == "2k"
    assert (core["large_image_info"]["width"], core["large_image_info"]["height"]) == (2560, 1440)


async def test_image_parts_make_a_composition(
    sdk: openai.AsyncOpenAI,
    client: TestClient[Any, Any],
    clock: ManualClock,
    sim: Simulator,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> None:
    async def picture(request: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    app = web.Application()
    app.router.add_get("/cat.png", picture)
    pictures = await aiohttp_server(app)
    data_uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    messages = user(
        {"type": "text", "text": "put them"},
        {"type": "image_url", "image_url": {"url": str(pictures.make_url("/cat.png"))}},
        {"type": "text", "text": "side by side"},
        {"type": "image_url", "image_url": {"url": data_uri}},
    )
    (answer,) = await drive(client.app, clock, sdk.chat.completions.create(model="gpt-image-1", messages=messages))
    assert LINK.findall(answer.choices[0].message.content or "")
    (gen,) = sim.calls("/aigc_draft/generate")
    draft = json.loads(gen.body["draft_content"])
    blend = draft["component_list"][0]["abilities"]["blend"]
    assert len(blend["ability_list"]) == 2 and "put them\\nside by side" in json.dumps(draft, ensure_ascii=False)


async def test_video_model_makes_a_video(
    sdk: openai.AsyncOpenAI, client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    call = sdk.chat.completions.create(
        model="sora-2",
        messages=user("waves at dusk"),  # type: ignore[arg-type]
        extra_body={"duration": 5, "ratio": "16:9"},
    )
    (answer,) = await drive(client.app, clock, call)
    content = answer.choices[0].message.content or ""
    task = await task_of(client, (answer.model_extra or {})["history_id"])
    link = re.fullmatch(r"\[video\]\((http://127\.0\.0\.1:\d+/\S+)\)", content.strip())
    assert task["task_type"] == "video" and task["status"] == 10 and link is not None
    assert link.group(1) == task["results"][0]["url"]  # the chat says what the query says
    async with client.session.get(link.group(1)) as got:
        assert got.status == 200 and got.content_type == "video/mp4"
    (gen,) = sim.calls("/aigc_draft/generate")
    assert "dreamina_ic_generate_video_model_vgfm_3.5_pro" in json.dumps(gen.body)


async def test_stream_sends_progress_before_the_task_ends(
    sdk: openai.AsyncOpenAI,
    client: TestClient[Any, Any],
    clock: ManualClock,
    sim: Simulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The chunks arrive while the task runs (checked against the store at each arrival), in order: the
    submit line, the queue places as they change, generating, the links, the stop chunk. The clock moves only
    once the reader has taken every chunk sent and the server waits on the clock again (its next look), so
    each state is read before the next, however slow the machine (no wall-clock pacing)."""
    sim.settings.image_step_seconds = 4.0
    sim.settings.queue_ahead = 8
    sim.next_script = Script([Step(20, 0)] * 30 + [Step(20, 1), Step(42, 2), Step(10, 4)])
    seen: list[tuple[str, str | None, bool, float]] = []
    sent = [0]
    send = EventStream.send

    async def counted(self: EventStream, data: Any, *, event: str | None = None, raw: bool = False) -> None:
        await send(self, data, event=event, raw=raw)
        sent[0] += not raw  # a chunk the SDK yields ([DONE] is raw)

    monkeypatch.setattr(EventStream, "send", counted)

    async def consume() -> None:
        stream = await sdk.chat.completions.create(
            model="dall-e-3",
            messages=user("a slow fox"),  # type: ignore[arg-type]
            stream=True,
        )
        async for piece in stream:
            row = await client.app[STORE].get((piece.model_extra or {})["history_id"])
            assert row is not None
            choice = piece.choices[0]
            seen.append((choice.delta.content or "", choice.finish_reason, row.final, clock.time()))

    def unread() -> bool:  # a chunk not taken yet, or the server busy between its looks (not on the clock)
        return sent[0] != len(seen) or clock.next_wakeup() is None

    await drive(client.app, clock, consume(), hold=unread)
    texts = [t for t, _, _, _ in seen]
    assert texts[0].startswith("Submitted image task ") and not seen[0][2]
    queued = [t for t in texts if t.startswith("Queued: position")]
    assert queued and len(set(queued)) == len(queued)  # one line per change (how many: the clock's pace)
    assert texts.index("Generating…\n") > texts.index(queued[-1])
    first_link = next(i for i, t in enumerate(texts) if LINK.search(t))
    assert all(not final for _, _, final, _ in seen[:first_link])  # progress came while the task ran
    assert seen[0][3] < seen[first_link][3]  # and earlier on the clock
    assert len(LINK.findall(texts[first_link])) == 4 and seen[-1][1] == "stop"


async def test_stream_over_plain_http_keeps_alive_and_ends_at_the_deadline(
    make_client: ClientFactory, config: Config, clock: ManualClock, sim: Simulator
) -> None:
    """A task that never ends: the same line is not repeated (keep-alive comments instead), and past the kind's
    deadline the stream says TASK_TIMEOUT and ends with [DONE]."""
    schedule = dataclasses.replace(config.watcher.image, deadline=60.0)
    client = await make_client(watcher=dataclasses.replace(config.watcher, image=schedule))
    body = {"model": "jimeng-4.5", "messages": user("still [sim:stuck0]"), "stream": True}

    async def read() -> tuple[int, str, str]:
        resp = await client.post("/v1/chat/completions", json=body, headers=bearer(CN_TOKEN))
        return resp.status, resp.headers["Content-Type"], await resp.text()

    ((status, content_type, text),) = await drive(client.app, clock, read())
    assert status == 200 and content_type.startswith("text/event-stream")
    events = [e for e in text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]" and ": keep-alive" in events
    chunks = [json.loads(e[6:]) for e in events if e.startswith("data: {")]
    assert chunks[-1]["error"]["code"] == "TASK_TIMEOUT" and chunks[-1]["error"]["message"]
    contents = [c["choices"][0]["delta"].get("content") for c in chunks[:-1]]
    assert [c["object"] for c in chunks[:-1]] == ["chat.completion.chunk"] * len(contents)
    assert contents.count("Generating…\n") == 1 and clock.time() >= 1_767_225_600 + 60


async def test_failed_task_is_an_error_whole_and_streamed(
    sdk: openai.AsyncOpenAI, client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as whole:
        await drive(client.app, clock, sdk.chat.completions.create(model="dall-e-3", messages=user("x [sim:fail]")))
    assert whole.value.code == "CONTENT_REJECTED"

    async def streamed() -> None:
        stream = await sdk.chat.completions.create(model="dall-e-3", messages=user("y [sim:fail]"), stream=True)
        async for _ in stream:
            pass

    with pytest.raises(openai.APIError) as err:
        await drive(client.app, clock, streamed())
    assert err.value.code == "CONTENT_REJECTED" and "task" in err.value.message


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        ({"model": "dall-e-3"}, "MISSING_PARAMETER", "messages"),
        ({"messages": []}, "INVALID_PARAMETER", "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "MISSING_PARAMETER", "user"),
        ({"messages": [{"role": "user", "content": "   "}]}, "MISSING_PARAMETER", "messages[0]"),
        ({"messages": [{"role": "user", "content": 7}]}, "INVALID_PARAMETER", "content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
            "UNSUPPORTED_PARAMETER",
            "messages[0].content[0]",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "INVALID_PARAMETER", "image_url"),
        ({"messages": user("x"), "model": "gpt-4o"}, "UNKNOWN_MODEL", "aliases"),
        ({"messages": user("x"), "model": 5}, "INVALID_PARAMETER", "model"),
        ({"messages": user("x"), "stream": "yes"}, "INVALID_PARAMETER", "stream"),
        ({"messages": user("x"), "size": "huge"}, "INVALID_PARAMETER", "size"),
        ({"messages": user("x"), "model": "sora-2", "duration": 99}, "INVALID_PARAMETER", "duration"),
        (
            {
                "messages": user({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}),
                "model": "sora-2",
            },
            "INVALID_PARAMETER",
            "http(s) URL",
        ),
        ({"messages": user("x"), "callback_url": "ftp://x"}, "INVALID_CALLBACK_URL", "callback_url"),
    ],
)
async def test_bad_requests_are_400_before_anything_is_spent(
    client: TestClient[Any, Any], sim: Simulator, body: dict[str, Any], code: str, needle: str
) -> None:
    resp = await client.post("/v1/chat/completions", json=body, headers=bearer(CN_TOKEN))
    answer = await json_of(resp)
    assert resp.status == 400, answer
    assert answer["error"]["code"] == code and needle in answer["error"]["message"]
    assert sim.generate_count == 0


async def test_no_credentials_is_401(client: TestClient[Any, Any]) -> None:
    resp = await client.post("/v1/chat/completions", json={"messages": user("x")})
    assert resp.status == 401 and (await json_of(resp))["error"]["code"]


async def test_idempotency_key_submits_once_streamed_or_not(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    headers = bearer(CN_TOKEN) | {"Idempotency-Key": "chat-1"}
    body = {"model": "dall-e-3", "messages": user("once")}

    async def post(stream: bool) -> Any:
        resp = await client.post("/v1/chat/completions", json=body | {"stream": stream}, headers=headers)
        assert resp.status == 200
        return await resp.text()

    (whole,) = await drive(client.app, clock, post(False))
    (streamed,) = await drive(client.app, clock, post(True))
    history_id = json.loads(whole)["history_id"]
    assert f'"history_id": "{history_id}"' in streamed or f'"history_id":"{history_id}"' in streamed
    assert sim.generate_count == 1
    other = await client.post("/v1/chat/completions", json=body | {"model": "jimeng-4.0"}, headers=headers)
    assert other.status == 422 and (await json_of(other))["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"


async def test_callback_url_delivers_the_same_task(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, receiver: Any
) -> None:
    rec, server = receiver
    body = {"model": "dall-e-3", "messages": user("called back"), "callback_url": str(server.make_url("/hook"))}

    async def post() -> Any:
        resp = await client.post("/v1/chat/completions", json=body, headers=bearer(CN_TOKEN))
        assert resp.status == 200
        return await resp.json()

    (answer,) = await drive(client.app, clock, post())
    await client.app[WEBHOOKS].drain()
    (delivery,) = rec.on("/hook")
    event = json.loads(delivery.body)
    links = [u for _, u in LINK.findall(answer["choices"][0]["message"]["content"])]
    assert event["data"]["history_id"] == answer["history_id"]
    assert [r["url"] for r in event["data"]["results"]] == links


async def test_api_key_pays_with_the_pool_on_each_store(
    make_client: ClientFactory, config: Config, clock: ManualClock, sim: Simulator, store_url: str
) -> None:
    """A `jk_` key: the pool pays (a pool session sent the generate), the key owns the task, a raw token that
    did not submit it cannot see it; on SQLite and PostgreSQL."""
    seed_sim(sim)
    client = await make_client(admin=AdminConfig(key=ADMIN_KEY), store=dataclasses.replace(config.store, url=store_url))
    await add_accounts(client)
    key = await create_key(client)
    http = openai.DefaultAsyncHttpxClient(trust_env=False)
    async with openai.AsyncOpenAI(
        api_key=key, base_url=str(client.make_url("/v1")), max_retries=0, http_client=http
    ) as sdk:
        call = sdk.chat.completions.create(model="dall-e-3", messages=user("pooled"))  # type: ignore[arg-type]
        (answer,) = await drive(client.app, clock, call)
    history_id = (answer.model_extra or {})["history_id"]
    (gen,) = sim.calls("/aigc_draft/generate")
    assert gen.sessionid in POOL_SESSIONS.values()
    mine = await client.get(f"/v1/async/tasks/{history_id}", headers=key_auth(key))
    links = [u for _, u in LINK.findall(answer.choices[0].message.content or "")]
    assert mine.status == 200 and [r["url"] for r in (await json_of(mine))["results"]] == links
    other = await client.get(f"/v1/async/tasks/{history_id}", headers=bearer(CN_TOKEN))
    assert other.status == 404


async def test_image_urls_pass_the_address_guard(make_client: ClientFactory, sim: Simulator) -> None:
    """With private networks refused, an image_url naming a loopback or link-local address is a 400 UNSAFE_URL
    before any upload or generate."""
    client = await make_client(security=SecurityConfig(allow_private_networks=False))
    for url in ("http://127.0.0.1:9/cat.png", "http://169.254.169.254/latest/meta-data"):
        body = {"messages": user({"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": url}})}
        resp = await client.post("/v1/chat/completions", json=body, headers=bearer(CN_TOKEN))
        answer = await json_of(resp)
        assert resp.status == 400 and answer["error"]["code"] == "UNSAFE_URL", answer
    assert sim.generate_count == 0 and not sim.calls("/get_upload_token")


async def test_the_fields_chat_clients_send_are_accepted(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    """A body as Open WebUI / LobeChat / Cherry Studio send it (history, sampling knobs, stream_options, user,
    tools) makes one image task from the last user message."""
    body = {
        "model": "jimeng-4.5",
        "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "a red fox"},
            {"role": "assistant", "content": "![image 1](http://example.invalid/old.png)"},
            {"role": "user", "content": [{"type": "text", "text": "now in the snow"}]},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.7,
        "top_p": 1,
        "max_tokens": 4096,
        "presence_penalty": 0,
        "frequency_penalty": 0,
        "user": "someone",
        "tools": [],
    }

    async def read() -> str:
        resp = await client.post("/v1/chat/completions", json=body, headers=bearer(CN_TOKEN))
        assert resp.status == 200
        return await resp.text()

    (text,) = await drive(client.app, clock, read())
    assert text.rstrip().endswith("data: [DONE]") and LINK.search(text)
    (gen,) = sim.calls("/aigc_draft/generate")
    sent = json.dumps(gen.body, ensure_ascii=False)
    assert "now in the snow" in sent and "a red fox" not in sent


async def test_default_watch_mode_follows_the_task_too(
    make_client: ClientFactory, config: Config, clock: ManualClock, sim: Simulator
) -> None:
    """With `[watcher] watch = "callbacks"` (the default: only waited-on tasks are polled) the chat's own looks
    keep the task watched until it ends, streamed or not."""
    client = await make_client(watcher=dataclasses.replace(config.watcher, watch="callbacks"))
    body = {"model": "dall-e-3", "messages": user("by default")}

    async def post(stream: bool) -> str:
        resp = await client.post("/v1/chat/completions", json=body | {"stream": stream}, headers=bearer(CN_TOKEN))
        assert resp.status == 200
        return await resp.text()

    whole, streamed = await drive(client.app, clock, post(False), post(True))
    assert len(LINK.findall(json.loads(whole)["choices"][0]["message"]["content"])) == 4
    assert len(LINK.findall(streamed)) == 4 and streamed.rstrip().endswith("data: [DONE]")
    assert sim.generate_count == 2
