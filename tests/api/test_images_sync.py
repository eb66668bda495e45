"""Sync text-to-image over real HTTP against the simulator: results, journal facts, errors."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from datetime import datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from support import CN_TOKEN, CN_TOKEN_2, POOR_TOKEN, US_TOKEN, bearer, drive, json_of

from jimeng_server.api.appkeys import CONFIG, WATCHER
from jimeng_server.clock import ManualClock
from jimeng_server.simulator import Fault, FaultKind, Simulator
from jimeng_server.simulator.state import SHANGHAI
from jimeng_server.upstream.signing import parse_cookie, sign

URL = "/v1/images/generations"


def assert_png(data: bytes) -> None:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    assert zlib.crc32(data[12:29]) == struct.unpack(">I", data[29:33])[0]


async def post(client: TestClient[Any, Any], clock: ManualClock, body: Any, *tokens: str) -> tuple[int, Any]:
    (resp,) = await drive(client.app, clock, client.post(URL, json=body, headers=bearer(*(tokens or (CN_TOKEN,)))))
    return resp.status, await json_of(resp)


async def test_text_to_image_returns_real_png_urls(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    status, body = await post(client, clock, {"prompt": "a cat in the snow", "model": "jimeng-4.5"})
    assert status == 200, body
    assert isinstance(body["created"], int)
    urls = [d["url"] for d in body["data"]]
    assert len(urls) == 4
    assert all("\\u0026" not in u for u in urls), "literal \\u0026 must be unescaped"
    for url in urls:
        async with client.session.get(url) as resp:
            assert resp.status == 200
            assert_png(await resp.read())


async def test_journal_every_call_signed_one_generate_charged_once(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    before = sim.account(CN_TOKEN).total
    status, _ = await post(client, clock, {"prompt": "a lighthouse", "ratio": "16:9", "resolution": "4k"})
    assert status == 200
    assert sim.generate_count == 1
    assert sim.account(CN_TOKEN).total == before - 4 * sim.settings.image_cost_4k  # the default 4 images at 4k
    assert len(sim.charges) == 1
    for entry in sim.journal:
        if entry.vhost == "cdn" or entry.path.startswith("/cdn"):
            continue
        h = entry.headers
        assert h["sign"] == sign(entry.path, int(h["device-time"]), pf="7", appvr="8.4.0")
        assert h["sign-ver"] == "1"
        cookie = parse_cookie(h["cookie"])
        assert cookie["sessionid"] == CN_TOKEN == cookie["sid_tt"] == cookie["sessionid_ss"]
    # The last poll saw the final status, and time moving on brings no further poll.
    history = sim.calls("/get_history_by_ids")
    assert history, "the watcher must poll"
    hid = next(iter(sim.records))
    assert all(hid in e.body["history_ids"] for e in history)
    for _ in range(30):
        await clock.advance(1.0)
        await client.app[WATCHER].run_once()
    assert sim.calls("/get_history_by_ids") == history


async def test_generate_payload_matches_size_table(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    status, _ = await post(
        client, clock, {"prompt": "wide", "ratio": "21:9", "resolution": "2k", "negative_prompt": "x"}
    )
    assert status == 200
    (gen,) = sim.calls("/aigc_draft/generate")
    draft = json.loads(gen.body["draft_content"])
    core = draft["component_list"][0]["abilities"]["generate"]["core_param"]
    assert (core["large_image_info"]["width"], core["large_image_info"]["height"]) == (3024, 1296)
    assert core["image_ratio"] == 8
    assert core["negative_prompt"] == "x"
    assert 2_500_000_000 <= core["seed"] < 2_600_000_000


async def test_b64_json_returns_png_bytes(client: TestClient[Any, Any], clock: ManualClock) -> None:
    status, body = await post(client, clock, {"prompt": "b64 please", "response_format": "b64_json"})
    assert status == 200
    assert len(body["data"]) == 4
    for item in body["data"]:
        assert_png(base64.b64decode(item["b64_json"]))


async def test_failed_task_with_content_code_is_422(client: TestClient[Any, Any], clock: ManualClock) -> None:
    status, body = await post(client, clock, {"prompt": "bad [sim:fail]"})
    assert status == 422
    assert body["error"]["code"] == "CONTENT_REJECTED"
    assert "2038" in body["error"]["message"]


async def test_partial_failure_returns_items_with_note(client: TestClient[Any, Any], clock: ManualClock) -> None:
    status, body = await post(client, clock, {"prompt": "half [sim:partial]"})
    assert status == 200
    assert len(body["data"]) == 1
    assert "1001" in body["note"]


async def test_status_50_is_done(client: TestClient[Any, Any], clock: ManualClock) -> None:
    status, body = await post(client, clock, {"prompt": "fifty [sim:status50]"})
    assert status == 200 and len(body["data"]) == 4


async def test_unknown_status_keeps_waiting(client: TestClient[Any, Any], clock: ManualClock) -> None:
    status, body = await post(client, clock, {"prompt": "odd [sim:unknown]"})
    assert status == 200 and len(body["data"]) == 4


async def test_stuck_with_items_times_out_at_deadline_not_early(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    start = clock.time()
    status, body = await post(client, clock, {"prompt": "never ends [sim:stuck]"})
    assert status == 504
    assert body["error"]["code"] == "TASK_TIMEOUT"
    assert clock.time() - start >= 900  # the deadline, not 5 "stable" polls


async def test_stuck_without_items_also_times_out(client: TestClient[Any, Any], clock: ManualClock) -> None:
    status, body = await post(client, clock, {"prompt": "nothing [sim:stuck0]"})
    assert status == 504 and body["error"]["code"] == "TASK_TIMEOUT"


async def test_hidden_record_is_not_an_error(client: TestClient[Any, Any], clock: ManualClock) -> None:
    status, body = await post(client, clock, {"prompt": "shy [sim:hidden=3]"})
    assert status == 200 and len(body["data"]) == 4


async def test_empty_success_is_502(client: TestClient[Any, Any], clock: ManualClock) -> None:
    status, body = await post(client, clock, {"prompt": "void [sim:empty]"})
    assert status == 502 and body["error"]["code"] == "EMPTY_RESULT"


async def test_session_expiring_while_polling_is_401(client: TestClient[Any, Any], clock: ManualClock) -> None:
    status, body = await post(client, clock, {"prompt": "bye [sim:stuck] [sim:expire]"})
    assert status == 401 and body["error"]["code"] == "TOKEN_EXPIRED"


async def test_content_refused_at_submit_is_422(client: TestClient[Any, Any], clock: ManualClock) -> None:
    status, body = await post(client, clock, {"prompt": "nope [sim:refuse]"})
    assert status == 422 and body["error"]["code"] == "CONTENT_REJECTED"


async def test_expired_session_is_401(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    sim.expire_session(CN_TOKEN)
    status, body = await post(client, clock, {"prompt": "x"})
    assert status == 401
    assert body["error"] == {
        "message": body["error"]["message"],
        "type": "authentication_error",
        "code": "TOKEN_EXPIRED",
    }
    assert "1015" in body["error"]["message"]
    assert CN_TOKEN not in body["error"]["message"]


async def test_no_credits_claims_daily_then_generates(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    status, _ = await post(client, clock, {"prompt": "free"}, POOR_TOKEN)
    assert status == 200
    assert len(sim.calls("/credit_receive")) == 1
    assert sim.generate_count == 1


async def test_no_credits_and_claim_used_is_402(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    sim.account(POOR_TOKEN).received_days.add(datetime.fromtimestamp(clock.time(), SHANGHAI).date().isoformat())
    status, body = await post(client, clock, {"prompt": "poor"}, POOR_TOKEN)
    assert status == 402
    assert body["error"]["code"] == "INSUFFICIENT_CREDITS"
    assert sim.generate_count == 0


async def test_generate_refused_for_credits_is_402(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    acct = sim.account(CN_TOKEN)
    acct.vip_credit, acct.gift_credit, acct.purchase_credit = 1, 0, 0  # > 0, but below the cost
    status, body = await post(client, clock, {"prompt": "expensive"})
    assert status == 402 and body["error"]["code"] == "INSUFFICIENT_CREDITS"
    assert "5000" in body["error"]["message"]


async def test_failover_to_second_token_when_first_expired(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    sim.expire_session(CN_TOKEN)
    status, _ = await post(client, clock, {"prompt": "two tokens"}, CN_TOKEN, CN_TOKEN_2)
    assert status == 200
    (record,) = sim.records.values()
    assert record.sessionid == CN_TOKEN_2


async def test_us_token_routes_to_us_hosts(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    status, body = await post(client, clock, {"prompt": "hello", "model": "jimeng-4.0"}, US_TOKEN)
    assert status == 200, body
    assert {e.vhost for e in sim.journal if e.path.startswith(("/mweb", "/commerce"))} == {"us-web", "us-commerce"}


async def test_model_missing_in_region_lists_region_models(client: TestClient[Any, Any], clock: ManualClock) -> None:
    status, body = await post(client, clock, {"prompt": "x", "model": "jimeng-5.0"}, US_TOKEN)
    assert status == 400
    assert "jimeng-4.5" in body["error"]["message"] and "region us" in body["error"]["message"]


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        ({"prompt": "x", "size": "large"}, "INVALID_PARAMETER", "1024x1024"),
        ({"prompt": "x", "size": "0x512"}, "INVALID_PARAMETER", "WIDTHxHEIGHT"),
        ({"prompt": "x", "width": 512}, "UNSUPPORTED_PARAMETER", "resolution"),
        ({"prompt": "x", "model": "midjourney-v6"}, "UNKNOWN_MODEL", "jimeng-4.5"),
        ({"prompt": "x", "ratio": "5:4"}, "INVALID_PARAMETER", "16:9"),
        ({"prompt": "x", "resolution": "8k"}, "INVALID_PARAMETER", "2k"),
        ({"prompt": "x", "sample_strength": "strong"}, "INVALID_PARAMETER", "number"),
        ({"prompt": "x", "sample_strength": 3}, "INVALID_PARAMETER", "between"),
        ({"prompt": "x", "intelligent_ratio": "maybe"}, "INVALID_PARAMETER", "true or false"),
        ({"prompt": "x", "response_format": "png"}, "INVALID_PARAMETER", "b64_json"),
        ({"prompt": 42}, "INVALID_PARAMETER", "string"),
        ({}, "MISSING_PARAMETER", "prompt"),
        ({"prompt": "   "}, "MISSING_PARAMETER", "prompt"),
    ],
)
async def test_bad_input_is_400(
    client: TestClient[Any, Any], body: dict[str, Any], code: str, needle: str, sim: Simulator
) -> None:
    resp = await client.post(URL, json=body, headers=bearer(CN_TOKEN))
    data = await json_of(resp)
    assert resp.status == 400, data
    assert data["error"]["code"] == code and data["error"]["type"] == "invalid_request_error"
    assert needle in data["error"]["message"]
    assert sim.generate_count == 0


@pytest.mark.parametrize(
    ("raw", "needle"),
    [(b"{not json", "not valid JSON"), (b"[1,2]", "JSON object"), (b"", "empty"), (b"\xff\xfe", "UTF-8")],
)
async def test_malformed_json_is_400(client: TestClient[Any, Any], raw: bytes, needle: str) -> None:
    resp = await client.post(URL, data=raw, headers={**bearer(CN_TOKEN), "Content-Type": "application/json"})
    data = await json_of(resp)
    assert resp.status == 400 and data["error"]["code"] == "INVALID_JSON" and needle in data["error"]["message"]


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "MISSING_AUTHORIZATION"),
        ({"Authorization": "Basic abc"}, "INVALID_TOKEN"),
        ({"Authorization": "Bearer , "}, "INVALID_TOKEN"),
    ],
)
async def test_missing_or_bad_authorization_is_401(
    client: TestClient[Any, Any], headers: dict[str, str], code: str
) -> None:
    resp = await client.post(URL, json={"prompt": "x"}, headers=headers)
    data = await json_of(resp)
    assert resp.status == 401 and data["error"]["code"] == code and data["error"]["type"] == "authentication_error"


async def test_upstream_down_is_502(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    sim.inject("/user_credit", Fault(FaultKind.HTTP_500), times=10)
    status, body = await post(client, clock, {"prompt": "x"})
    assert status == 502 and body["error"]["code"] == "UPSTREAM_HTTP_ERROR"
    assert len(sim.calls("/user_credit")) == 3  # 1 + read_retries, then give up


async def test_read_retry_recovers_and_uses_fresh_device_time(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    sim.inject("/user_credit", Fault(FaultKind.HTTP_500), times=1)
    status, _ = await post(client, clock, {"prompt": "x"})
    assert status == 200
    first, second = sim.calls("/user_credit")[:2]
    assert first.status == 500 and second.status == 200
    assert first.headers["device-time"] != second.headers["device-time"]


async def test_generate_timeout_is_504_and_never_resent(
    make_client: Any, config: Any, clock: ManualClock, sim: Simulator
) -> None:
    import dataclasses

    client = await make_client(upstream=dataclasses.replace(config.upstream, timeout=0.3))
    sim.inject("/aigc_draft/generate", Fault(FaultKind.DELAY, delay=0.6))
    status, body = await post(client, clock, {"prompt": "slow"})
    assert status == 504 and body["error"]["code"] == "UPSTREAM_TIMEOUT"
    # The delayed generate reached the simulator (its fault was used up); the test server cancels a
    # handler whose caller went away, so that call is never journalled. A re-send would have been.
    assert not sim.faults.rules
    assert sim.calls("/aigc_draft/generate") == []


async def test_generate_reset_is_not_resent(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    sim.inject("/aigc_draft/generate", Fault(FaultKind.RESET))
    status, body = await post(client, clock, {"prompt": "reset"})
    assert status == 502 and body["error"]["code"] == "UPSTREAM_UNAVAILABLE"
    assert len(sim.calls("/aigc_draft/generate")) == 1
    assert sim.generate_count == 0


async def test_version_gate_is_502_with_hint(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    sim.settings.min_appvr = "9.0.0"
    status, body = await post(client, clock, {"prompt": "old"})
    assert status == 502 and body["error"]["code"] == "UPSTREAM_VERSION_REJECTED"
    assert "appvr" in body["error"]["message"]


async def test_missing_aigc_data_is_502(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    sim.inject("/aigc_draft/generate", Fault(FaultKind.MISSING_AIGC_DATA))
    status, body = await post(client, clock, {"prompt": "x"})
    assert status == 502 and body["error"]["code"] == "UPSTREAM_BAD_RESPONSE"


async def test_malformed_upstream_json_is_502(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    sim.inject("/user_credit", Fault(FaultKind.MALFORMED_JSON))
    status, body = await post(client, clock, {"prompt": "x"})
    assert status == 502 and body["error"]["code"] == "UPSTREAM_BAD_RESPONSE"


async def test_multi_image_mode_by_keyword(client: TestClient[Any, Any], clock: ManualClock, sim: Simulator) -> None:
    status, _ = await post(client, clock, {"prompt": "画一个故事, 3张", "model": "jimeng-4.5"})
    assert status == 200
    (gen,) = sim.calls("/aigc_draft/generate")
    scene = json.loads(json.loads(gen.body["metrics_extra"])["sceneOptions"])[0]
    assert scene["scene"] == "ImageMultiGenerate" and "benefitCount" not in scene


async def test_multi_image_can_be_switched_off(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    status, _ = await post(client, clock, {"prompt": "一个故事", "multi_image": False})
    assert status == 200
    (gen,) = sim.calls("/aigc_draft/generate")
    scene = json.loads(json.loads(gen.body["metrics_extra"])["sceneOptions"])[0]
    assert scene["scene"] == "ImageBasicGenerate"


async def test_refused_token_is_tried_last_during_its_cooldown(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    sim.expire_session(CN_TOKEN)
    status, _ = await post(client, clock, {"prompt": "first"}, CN_TOKEN, CN_TOKEN_2)
    assert status == 200
    refused = [e for e in sim.journal if e.sessionid == CN_TOKEN]
    assert refused, "the first request tried the expired token"
    status, _ = await post(client, clock, {"prompt": "second"}, CN_TOKEN, CN_TOKEN_2)
    assert status == 200
    assert [e for e in sim.journal if e.sessionid == CN_TOKEN] == refused, "cooled down: not tried again"
    # After the cool-down the header order applies again.
    await clock.advance(client.app[CONFIG].upstream.account_cooldown_seconds + 1)
    status, _ = await post(client, clock, {"prompt": "third"}, CN_TOKEN, CN_TOKEN_2)
    assert status == 200
    assert len([e for e in sim.journal if e.sessionid == CN_TOKEN]) > len(refused)
