"""Issue 20, item 9: `doctor --record DIR` saves every upstream exchange it makes, request and answer, in the
samples' layout with its secrets replaced by text of the same length (listed in MANIFEST.json), so an operator can
hand in real answers; what it saves goes through the client's parsers like the real samples."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
from doctor_support import on_clock
from support import CN_TOKEN, bearer, drive, json_of

from jimeng_server.cli import doctor_command
from jimeng_server.clock import ManualClock
from jimeng_server.config import Config
from jimeng_server.simulator import Simulator
from jimeng_server.upstream.client import generated_history_id, parse_credits
from jimeng_server.upstream.envelope import unwrap
from jimeng_server.upstream.history import parse_record
from jimeng_server.upstream.recorder import Redactor, endpoint_name, mask


async def test_doctor_records_redacted_exchanges(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock = ManualClock()
    code = await on_clock(
        clock, doctor_command(Config(), None, spend=True, simulate=True, clock=clock, record=str(tmp_path))
    )
    out = capsys.readouterr().out
    assert code == 0, out
    check_recording(tmp_path)


def check_recording(tmp_path: Path) -> None:
    """What the recording holds (read after the run, outside the event loop)."""
    manifest = json.loads((tmp_path / "MANIFEST.json").read_text(encoding="utf-8"))
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json") if p.name != "MANIFEST.json")
    assert sorted(m["file"] for m in manifest) == files
    folders = {f.split("/")[0] for f in files}
    assert {"user_credit", "get_history_by_ids", "aigc_draft_generate", "get_upload_token"} <= folders
    text = "".join((tmp_path / f).read_text(encoding="utf-8") for f in files)
    assert "simdemo" not in text  # the demo session id appears nowhere
    assert not re.search(r"sessionid=(?!REDACTED|0)", text)
    assert all(m["redacted"] for m in manifest if m["file"].startswith("aigc_draft_generate"))

    exchanges = {f: json.loads((tmp_path / f).read_text(encoding="utf-8")) for f in files}
    for name, exchange in exchanges.items():
        folder = name.split("/")[0]
        assert exchange["request"]["path"].endswith(folder.split("_")[-1]) or folder == endpoint_name(
            exchange["request"]["path"]
        )
        body = exchange["answer"]["body"]
        if folder == "aigc_draft_generate":
            assert generated_history_id(unwrap(body))
        elif folder == "get_history_by_ids" and unwrap(body):
            for raw in unwrap(body).values():
                assert parse_record(raw).status is not None
        elif folder == "user_credit":
            assert parse_credits(unwrap(body)).total > 0


def test_redaction_keeps_lengths_and_shapes() -> None:
    secret = "abcdef0123456789abcdef0123456789"
    redactor = Redactor([secret])
    body = {"uid": "1234567890", "user_id": 98765, "nested": [{"sign": "zz"}], "note": f"x {secret} y", "ok": True}
    masked = redactor.value(body, "body")
    assert masked == {
        "uid": "REDACTED00",
        "user_id": 10000,
        "nested": [{"sign": "00"}],
        "note": f"x {mask(secret)} y",
        "ok": True,
    }
    assert len(mask(secret)) == len(secret)
    headers = redactor.headers([("Cookie", f"sessionid={secret}"), ("Appvr", "8.4.0")])
    assert headers == {"Cookie": mask(f"sessionid={secret}"), "Appvr": "8.4.0"}
    url = redactor.url("https://h/p?aid=1&msToken=tok123&webId=777&x=https://c/i?x-signature=abc")
    assert url == "https://h/p?aid=1&msToken=000000&webId=000&x=https://c/i?x-signature=000"
    assert {f["at"] for f in redactor.fields} >= {"body.uid", "body.user_id", "headers.Cookie", "query.msToken"}


async def test_server_records_when_configured(
    make_client: Any, config: Config, clock: ManualClock, sim: Simulator, tmp_path: Path
) -> None:
    client = await make_client(upstream=dataclasses.replace(config.upstream, record_dir=str(tmp_path)))
    call = client.post("/v1/images/generations", json={"prompt": "a fox", "n": 1}, headers=bearer(CN_TOKEN))
    (resp,) = await drive(client.app, clock, call)
    assert resp.status == 200, await json_of(resp)
    check_server_recording(tmp_path / "aiohttp")


def check_server_recording(folder: Path) -> None:
    files = sorted(p for p in folder.rglob("*.json") if p.name != "MANIFEST.json")
    assert {p.parent.name for p in files} >= {"user_credit", "aigc_draft_generate", "get_history_by_ids"}
    text = "".join(p.read_text(encoding="utf-8") for p in files)
    assert CN_TOKEN not in text and "REDACTED" in text
    manifest = json.loads((folder / "MANIFEST.json").read_text(encoding="utf-8"))
    assert len(manifest) == len(files)
