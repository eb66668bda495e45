"""The hot-path JSON codec (jsonfast.py): the same values as the standard library, integers beyond 64 bits exact,
with the C codec and with the pure-Python fallback it uses when msgspec is absent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from jimeng_server import jsonfast
from jimeng_server.store.rows import dump_json
from jimeng_server.webhooks.events import event_body

SAMPLES = Path("/work/shared/upstream-samples")
BIG = 2**64 + 12345  # beyond both int64 and uint64
TEXT = (
    b'{"ret":"0","data":{"7001":{"status":50,"item_id":%d,"neg":%d,"f":1.5e16,"u":"\\u0026\\u5373\\ud83d\\ude00",'
    b'"nested":[{"x":null,"y":true}]}}}' % (BIG, -BIG)
)


@pytest.fixture(params=["c-codec", "fallback"])
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "fallback":
        monkeypatch.setattr(jsonfast, "_decode", None)
        monkeypatch.setattr(jsonfast, "_encode", None)
    elif not jsonfast.FAST:
        pytest.skip("msgspec is not installed")
    yield request.param


def test_integers_beyond_64_bits_stay_exact(codec: str) -> None:
    value = jsonfast.loads(TEXT)
    assert value == json.loads(TEXT)
    record = value["data"]["7001"]
    assert record["item_id"] == BIG and type(record["item_id"]) is int
    assert record["neg"] == -BIG
    assert record["u"] == "&即😀"
    again = jsonfast.loads(jsonfast.dumps(value))
    assert again == value and again["data"]["7001"]["item_id"] == BIG


def test_what_json_refuses_is_refused_the_same_way(codec: str) -> None:
    for bad in (b"", b"{", b'{"a":1}x', b"\xff\xfe", b"[1,]"):
        with pytest.raises(ValueError):
            jsonfast.loads(bad)
    assert jsonfast.loads(b"NaN") != jsonfast.loads(b"NaN")  # json's own extension: still accepted


def test_real_upstream_samples_decode_as_json_does(codec: str) -> None:
    files = sorted(SAMPLES.rglob("*.json")) if SAMPLES.exists() else []
    if not files:
        pytest.skip("no upstream samples on this machine")
    for path in files:
        data = path.read_bytes()
        assert jsonfast.loads(data) == json.loads(data), path.name


def test_stored_records_and_event_bodies_read_back_unchanged(codec: str) -> None:
    record = jsonfast.loads(TEXT)["data"]["7001"]
    stored = dump_json(record)
    assert stored is not None and " " not in stored.replace('"u":"&即😀"', "")
    assert json.loads(stored) == record
    body = event_body("task.succeeded", {"history_id": "7001", "raw_data": record}, 0.0)
    assert json.loads(body) == {
        "type": "task.succeeded",
        "timestamp": "1970-01-01T00:00:00.000Z",
        "data": {"history_id": "7001", "raw_data": record},
    }
