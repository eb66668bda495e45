"""Log redaction: the `redact` patterns, the RedactingFilter, and end-to-end runs whose logs name accounts only
in masked form."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from support import CN_TOKEN, CN_TOKEN_2, bearer, drive, json_of

from jimeng_server.clock import ManualClock
from jimeng_server.logs import RedactingFilter, redact, setup_logging
from jimeng_server.simulator import Fault, FaultKind, Simulator
from jimeng_server.upstream.tokens import parse_token

URL = "/v1/images/generations"


@pytest.mark.parametrize(
    ("text", "secrets", "kept"),
    [
        ("Authorization: Bearer abc123,def456", ["abc123", "def456"], ["Authorization: Bearer "]),
        ("authorization: bearer abc123", ["abc123"], ["authorization: bearer "]),
        ("Bearer abc123, def456 ,ghi789", ["abc123", "def456", "ghi789"], ["Bearer "]),
        ("Bearer us-abc123,,hk-def456 then more", ["abc123", "def456"], ["then more"]),
        (
            "Cookie: _tea_web_id=7123; sessionid=abc123; sid_tt=def456; sessionid_ss=ghi789; uid_tt=u1",
            ["abc123", "def456", "ghi789"],
            ["_tea_web_id=7123", "uid_tt=u1", "sessionid=", "sid_tt="],
        ),
        ("sid_guard=abc123%7C1700000000%7C5184000", ["abc123"], ["sid_guard="]),
        (
            '{"access_key_id": "AKIDabc123", "secret_access_key": "SECRETdef456", "session_token": "STSghi789"}',
            ["AKIDabc123", "SECRETdef456", "STSghi789"],
            ['"secret_access_key": "', '"session_token": "'],
        ),
        ("{'secret_access_key': 'SECRETdef456', 'x': 1}", ["SECRETdef456"], ["'x': 1"]),
        ("secret_access_key=SECRETdef456&x=1", ["SECRETdef456"], ["x=1"]),
        ("proxy http://user:pw0secret@10.0.0.1:8080 failed", ["pw0secret"], ["10.0.0.1:8080 failed"]),
        ("socks5://bob:pw0secret@proxy.test:1080@us-abc", ["pw0secret"], ["proxy.test:1080"]),
    ],
)
def test_redact(text: str, secrets: list[str], kept: list[str]) -> None:
    out = redact(text)
    for secret in secrets:
        assert secret not in out, out
    for part in kept:
        assert part in out, out
    assert "***" in out


@pytest.mark.parametrize(
    "text", ["nothing to hide here", "poll of 3 task(s) for sess...ffff failed: HTTP 500", "http://10.0.0.1:8080/x"]
)
def test_redact_leaves_ordinary_text(text: str) -> None:
    assert redact(text) == text


def _record(msg: str, args: Any = None, exc_info: Any = None) -> logging.LogRecord:
    return logging.LogRecord("t", logging.WARNING, __file__, 1, msg, args, exc_info)


def test_filter_rewrites_record_with_args() -> None:
    record = _record("upstream said %s for %s", ("sessionid=abc123; sid_tt=abc123", "acct"))
    assert RedactingFilter().filter(record) is True
    assert record.args is None
    assert record.getMessage() == "upstream said sessionid=***; sid_tt=*** for acct"


def test_filter_with_mapping_args() -> None:
    record = _record("header %(h)s", ({"h": "Bearer abc123"},))
    RedactingFilter().filter(record)
    assert "abc123" not in record.getMessage()


def test_filter_leaves_clean_records_alone() -> None:
    args = ("a", 3)
    record = _record("value %s and %d", args)
    RedactingFilter().filter(record)
    assert record.msg == "value %s and %d" and record.args == args


def test_filter_redacts_exception_text() -> None:
    try:
        raise RuntimeError("bad cookie sessionid=abc123secret")
    except RuntimeError:
        record = _record("failed", exc_info=sys.exc_info())
    RedactingFilter().filter(record)
    assert record.exc_text is not None
    assert "abc123secret" not in record.exc_text and "RuntimeError" in record.exc_text
    formatted = logging.Formatter().format(record)
    assert "abc123secret" not in formatted


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_setup_logging_redacts_on_output(
    restore_root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging("debug")
    root = logging.getLogger()
    assert root.level == logging.DEBUG
    (handler,) = root.handlers
    assert any(isinstance(f, RedactingFilter) for f in handler.filters)
    logging.getLogger("jimeng_server.test").warning("sent Bearer %s", "abc123secret")
    handler.flush()
    err = capsys.readouterr().err
    assert "sent Bearer ***" in err and "abc123secret" not in err


# ---------------------------------------------------------------- end to end


def _log_text(caplog: pytest.LogCaptureFixture) -> str:
    records = [r for when in ("setup", "call") for r in caplog.get_records(when)]
    return "\n".join(r.getMessage() + (r.exc_text or "") for r in records)


async def test_failover_and_poll_failures_log_masked_accounts_only(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    sim.expire_session(CN_TOKEN)
    sim.inject("/get_history_by_ids", Fault(FaultKind.HTTP_500), times=3)  # one whole poll fails (1 + 2 retries)
    sim.inject("/get_history_by_ids", Fault(FaultKind.RET, ret="1019", errmsg="shark not pass"), skip=3)
    (resp,) = await drive(
        client.app, clock, client.post(URL, json={"prompt": "logged"}, headers=bearer(CN_TOKEN, CN_TOKEN_2))
    )
    body = await json_of(resp)
    assert resp.status == 200, body
    assert len(body["data"]) == 4
    (record,) = sim.records.values()
    assert record.sessionid == CN_TOKEN_2

    masked = parse_token(CN_TOKEN_2).masked
    warnings = [r.getMessage() for r in caplog.get_records("call") if r.levelno >= logging.WARNING]
    poll_warnings = [w for w in warnings if "poll" in w]
    assert len(poll_warnings) >= 2, warnings  # the HTTP 500 poll and the 1019 poll
    assert all(masked in w for w in poll_warnings)
    text = _log_text(caplog)
    for secret in (CN_TOKEN, CN_TOKEN_2):
        assert secret not in text
        assert secret[:12] not in text and secret[-12:] not in text


async def test_expired_token_and_failing_upstream_logs_no_token(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    sim.expire_session(CN_TOKEN)
    (resp,) = await drive(client.app, clock, client.post(URL, json={"prompt": "x"}, headers=bearer(CN_TOKEN)))
    assert resp.status == 401
    sim.inject("/user_credit", Fault(FaultKind.HTTP_500), times=10)
    (resp,) = await drive(client.app, clock, client.post(URL, json={"prompt": "x"}, headers=bearer(CN_TOKEN_2)))
    assert resp.status == 502
    text = _log_text(caplog)
    assert "failed after" in text  # the client logged the exhausted retries
    assert parse_token(CN_TOKEN_2).masked in text
    for secret in (CN_TOKEN, CN_TOKEN_2):
        assert secret not in text
