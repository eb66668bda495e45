"""Pure parts of the webhooks: signing against the standardwebhooks reference, secrets, schedule and jitter,
Retry-After, query and event bodies, callback URL validation, the [webhooks] config section."""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import random
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook
from support import FakeResolver
from webhook_support import SECRET, done_outcome, failed_outcome

from jimeng_server.api.callbacks import optional_callback_url, validate_callback_url
from jimeng_server.config import DEFAULT_WEBHOOK_SCHEDULE, ConfigError, WebhookConfig, parse_config
from jimeng_server.errors import BadRequest
from jimeng_server.net.policy import FetchPolicy
from jimeng_server.tasks.answer import settlement_of, task_query_body, wire_fail_code
from jimeng_server.tasks.records import Reason, Settlement, TaskStatus, event_type_of
from jimeng_server.webhooks.events import event_body, links_expire_at, new_event, new_event_id
from jimeng_server.webhooks.sender import parse_retry_after, retry_delay
from jimeng_server.webhooks.signatures import WebhookSecretError, delivery_headers, parse_secret, secret_key, sign

STRICT = FetchPolicy()
LOCAL = FetchPolicy(allow_private_networks=True)


RESOLVER = FakeResolver({"hooks.example": ["93.184.216.34"], "intranet.example": ["10.1.2.3"]})


# ------------------------------------------------------------------------------------------- signing


def test_signature_matches_the_standard_webhooks_reference() -> None:
    body = '{"type":"task.succeeded","data":{"名":"值"}}'.encode()
    ts = 1_767_225_600
    ours = sign(parse_secret(SECRET), "msg_1", ts, body)
    reference = Webhook(SECRET).sign("msg_1", datetime.fromtimestamp(ts, UTC), body.decode())
    assert ours == reference


def test_headers_verify_with_the_reference_receiver() -> None:
    body = event_body("task.succeeded", {"history_id": "h1"}, 1_767_225_600.0).encode()
    ts = int(datetime.now(UTC).timestamp())
    headers = delivery_headers("msg_abc", ts, body, parse_secret(SECRET))
    assert headers["webhook-id"] == "msg_abc" and headers["webhook-timestamp"] == str(ts)
    assert Webhook(SECRET).verify(body, headers)["data"] == {"history_id": "h1"}
    assert "webhook-signature" not in delivery_headers("msg_abc", ts, body, None)


def test_hmac_key_is_the_base64_decoded_secret() -> None:
    raw = b"\x00\x01binary key\xff"
    encoded = base64.b64encode(raw).decode()
    assert parse_secret("whsec_" + encoded) == raw
    assert parse_secret(encoded) == raw  # the prefix is optional
    assert parse_secret("whsec_" + encoded.rstrip("=")) == raw  # unpadded base64 is accepted


@pytest.mark.parametrize("bad", ["whsec_", "whsec_not base64!", "whsec_@@@@"])
def test_malformed_secrets_are_refused_without_echoing_them(bad: str) -> None:
    with pytest.raises(WebhookSecretError) as info:
        parse_secret(bad)
    assert bad.removeprefix("whsec_") not in str(info.value) or not bad.removeprefix("whsec_")


def test_env_secret_overrides_the_config() -> None:
    from_config = "whsec_" + base64.b64encode(b"config-key").decode()
    from_env = "whsec_" + base64.b64encode(b"env-key").decode()
    config = WebhookConfig(secret=from_config)
    assert secret_key(config, {}) == b"config-key"
    assert secret_key(config, {"JIMENG_WEBHOOK_SECRET": from_env}) == b"env-key"
    assert secret_key(config, {"JIMENG_WEBHOOK_SECRET": "  "}) == b"config-key"
    assert secret_key(WebhookConfig(), {}) is None
    with pytest.raises(ConfigError, match=r"^JIMENG_WEBHOOK_SECRET: the webhook secret must be whsec_"):
        secret_key(config, {"JIMENG_WEBHOOK_SECRET": "whsec_!!"})
    with pytest.raises(ConfigError, match=r"^webhooks\.secret: "):
        secret_key(WebhookConfig(secret="whsec_"), {})


def test_the_secret_never_shows_in_the_config_repr() -> None:
    assert SECRET not in repr(WebhookConfig(secret=SECRET))


def test_event_ids_are_unique() -> None:
    ids = {new_event_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(i.startswith("msg_") for i in ids)
    assert all(len(i) == 36 and int(i[4:], 16) >= 0 for i in ids)  # msg_ + 32 hex digits


def test_a_forked_process_never_hands_out_its_parents_next_event_ids() -> None:
    """Ids are read from the OS's random source many at a time; a forked child drops the buffer it inherited."""
    new_event_id()  # the buffer now holds unread ids
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.close(read)
        os.write(write, " ".join(new_event_id() for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent = {new_event_id() for _ in range(50)}
    assert len(child) == 50 and not child & parent


def test_an_event_stores_when_its_links_expire_as_its_body_says() -> None:
    link = "https://cdn.example/{}.webp?x-expires={}&x-signature=s"
    image = (link.format("a", 1_767_229_200), link.format("b", 1_767_225_600), "https://cdn.example/c.webp")
    done = Settlement(TaskStatus.DONE, 50, "", None, image, 3, {"status": 50})
    created = new_event("h1", "image", done, 1_767_220_000.0)
    results = json.loads(created.body)["data"]["results"]
    assert created.links_expire_at == 1_767_225_600.0 == min(r["expires_at"] for r in results if r["expires_at"])
    unsaid = new_event("h2", "image", dataclasses.replace(done, results=image[2:]), 1_767_220_000.0)
    assert unsaid.links_expire_at == math.inf  # no link says: nothing to re-sign
    failed = new_event("h3", "image", dataclasses.replace(done, status=TaskStatus.FAILED, results=None), 0.0)
    assert failed.links_expire_at == math.inf
    video = new_event("h4", "video", dataclasses.replace(done, results=image[:1]), 0.0)
    assert video.links_expire_at == -math.inf  # a video's links live as its stored record says: always look
    assert links_expire_at("image", []) == math.inf


# ------------------------------------------------------------------------------------------- schedule


def test_retry_delay_follows_the_schedule_then_ends() -> None:
    rng = random.Random(1)
    schedule = (0.0, 5.0, 300.0)
    assert [retry_delay(schedule, n, jitter=0.0, rng=rng) for n in (1, 2, 3)] == [5.0, 300.0, None]


def test_jitter_stays_within_its_fraction() -> None:
    rng = random.Random(7)
    delays = [retry_delay((0.0, 100.0), 1, jitter=0.1, rng=rng) for _ in range(500)]
    assert all(d is not None and 90.0 <= d <= 110.0 for d in delays)
    assert len(set(delays)) > 100  # really varied


def test_default_schedule() -> None:
    assert DEFAULT_WEBHOOK_SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)


def test_retry_after_forms() -> None:
    now = 1_767_225_600.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after("Thu, 01 Jan 2026 00:02:00 GMT", now) == 120.0
    assert parse_retry_after("Wed, 31 Dec 2025 23:00:00 GMT", now) == 0.0  # in the past: at once
    for bad in (None, "", "soon", "-5", "1.5e3"):
        assert parse_retry_after(bad, now) is None


# ------------------------------------------------------------------------------------------- bodies


def test_fail_code_on_the_wire() -> None:
    assert wire_fail_code("") == 0
    assert wire_fail_code("2038") == 2038
    assert wire_fail_code("E_BLOCKED") == "E_BLOCKED"


def test_task_query_body() -> None:
    assert task_query_body(history_id="h1", task_type="video", status=20, fail_code="", item_count=0, results=None) == {
        "history_id": "h1",
        "task_type": "video",
        "status": 20,
        "fail_code": 0,
        "item_count": 0,
        "results": None,
        "queue": None,
        "fail_message": None,
    }
    body = task_query_body(history_id="h1", task_type="image", status=10, fail_code="", item_count=1, results=["u"])
    assert body["results"] == [{"url": "u", "expires_at": None, "kept": False}]


def test_event_body_shape() -> None:
    text = event_body("task.failed", {"history_id": "h1", "名": "值"}, 1_767_225_600.25)
    assert json.loads(text) == {
        "type": "task.failed",
        "timestamp": "2026-01-01T00:00:00.250Z",
        "data": {"history_id": "h1", "名": "值"},
    }
    assert "名" in text  # UTF-8, not \u escapes


def test_event_types_and_failure_reasons() -> None:
    assert event_type_of(TaskStatus.DONE) == "task.succeeded"
    assert event_type_of(TaskStatus.FAILED) == "task.failed"
    with pytest.raises(ValueError, match="not final"):
        event_type_of(TaskStatus.PROCESSING)
    assert settlement_of(done_outcome("h", ["u"])).error is None
    assert settlement_of(done_outcome("h", [])).error == {
        "code": "EMPTY_RESULT",
        "message": "the upstream finished the task but returned no results; try again",
    }
    assert settlement_of(failed_outcome("h", Reason.SESSION_EXPIRED)).error == {
        "code": "TOKEN_EXPIRED",
        "message": "the upstream refused the session; sign in again",
    }
    assert settlement_of(failed_outcome("h", Reason.NOT_FOUND, detail="missing after 6 polls")).error == {
        "code": "TASK_NOT_VISIBLE",
        "message": "the upstream never showed the task (missing after 6 polls)",
    }
    content = settlement_of(failed_outcome("h", Reason.UPSTREAM_FAILED, fail_code="2038"))
    assert content.error is not None and content.error["code"] == "CONTENT_REJECTED"


# ------------------------------------------------------------------------------------------- callback URLs


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://2130706433/hook",  # 127.0.0.1 in disguise
        "http://localhost/hook",
        "https://intranet.example/hook",  # resolves to 10.1.2.3
    ],
)
async def test_private_callback_urls_are_refused(url: str) -> None:
    with pytest.raises(BadRequest) as info:
        await validate_callback_url(url, STRICT, resolver=RESOLVER)
    assert info.value.status == 400 and info.value.code == "INVALID_CALLBACK_URL"
    assert "callback_url" in info.value.message
    assert "allow_private_networks" in info.value.message  # says how to allow it for local setups


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "http://169.254.169.254/x", "http://localhost/h"])
async def test_private_callback_urls_pass_when_allowed(url: str) -> None:
    assert await validate_callback_url(url, LOCAL) == url


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("ftp://hooks.example/x", "http or https"),
        ("hooks.example/x", "http or https"),
        ("", "must be an http(s) URL"),
        (42, "must be an http(s) URL"),
        ("https://hooks.example/" + "a" * 2100, "limit is 2048"),
        ("https://nxdomain.example/x", "could not resolve"),
    ],
)
async def test_bad_callback_urls_say_what_is_wrong(value: object, fragment: str) -> None:
    with pytest.raises(BadRequest) as info:
        await validate_callback_url(value, STRICT, resolver=RESOLVER)
    assert info.value.code == "INVALID_CALLBACK_URL"
    assert fragment in info.value.message


async def test_public_callback_url_is_accepted_and_normalised() -> None:
    assert await validate_callback_url(" https://hooks.example/h?x=1 ", STRICT, resolver=RESOLVER) == (
        "https://hooks.example/h?x=1"
    )
    assert await optional_callback_url(None, STRICT) is None
    assert await optional_callback_url("  ", STRICT) is None
    assert await optional_callback_url("https://hooks.example/h", STRICT, resolver=RESOLVER) == (
        "https://hooks.example/h"
    )


# ------------------------------------------------------------------------------------------- config


def test_webhooks_config_section_parses() -> None:
    cfg = parse_config({"webhooks": {"schedule": [0, 10, 60], "jitter": 0.2, "max_concurrency": 4}})
    assert cfg.webhooks.schedule == (0.0, 10.0, 60.0)
    assert (cfg.webhooks.jitter, cfg.webhooks.max_concurrency, cfg.webhooks.timeout) == (0.2, 4, 15.0)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"schedule": []}, "webhooks.schedule: needs at least one delay"),
        ({"schedule": [0, -5]}, "webhooks.schedule[1]: must not be negative"),
        ({"schedule": [0, "5m"]}, "webhooks.schedule[1]: expected a number"),
        ({"jitter": 1.5}, "webhooks.jitter: must be a fraction below 1"),
        ({"max_concurrency": 0}, "webhooks.max_concurrency: must be at least 1"),
        ({"timeout": 20.0, "lease_seconds": 10.0}, "webhooks.lease_seconds: must be longer than timeout"),
        ({"secret": 5}, "webhooks.secret: expected a string"),
        ({"retries": 3}, "unknown config key webhooks.retries"),
    ],
)
def test_webhooks_config_errors_name_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"webhooks": table})
    assert message in str(info.value)
