"""Issue 20, item 5: every real upstream answer in tests/fixtures/upstream_samples (a copy of the shared
upstream-samples) goes through the parser the client uses for that endpoint, and the simulator's own answers of
the shapes the sources disagree on (ImageX `UploadHost` vs `UploadHosts`, a VOD apply without `Vid`, a commit
without `Duration`, §19.8) go through the same parsers over real HTTP."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from samples import SAMPLES, load_sample, sample_text
from support import CN_TOKEN, bearer, drive, json_of

from jimeng_server.api.appkeys import CLIENT
from jimeng_server.clock import ManualClock
from jimeng_server.errors import from_upstream
from jimeng_server.mp4 import tiny_mp4
from jimeng_server.simulator import Simulator
from jimeng_server.simulator.media import png
from jimeng_server.upstream import imagex, vod
from jimeng_server.upstream.client import generated_history_id, parse_credits
from jimeng_server.upstream.envelope import unwrap
from jimeng_server.upstream.errors import UpstreamRetError
from jimeng_server.upstream.history import extract_video_url, parse_record, queue_of, unescape_url
from jimeng_server.upstream.regions import Region
from jimeng_server.upstream.tokens import parse_token

Check = Callable[[], None]


def _refusal(name: str, ret: str, code: str, *, salvage: bool = False) -> Check:
    """The sample is a refusal: the envelope parser raises its `ret`, mapped to the API error `code`."""

    def check() -> None:
        body = load_sample(name) if not salvage else _salvaged(sample_text(name))
        with pytest.raises(UpstreamRetError) as info:
            unwrap(body)
        assert info.value.ret == ret
        assert from_upstream(info.value).code == code

    return check


def _salvaged(text: str) -> dict[str, Any]:
    """The envelope fields of a truncated answer (its text ends mid-object)."""
    fields = dict(re.findall(r'"(ret|errmsg|systime|logid)":"([^"]*)"', text))
    assert "ret" in fields, text[:80]
    return fields


def _running_keyed_by_submit_id() -> None:
    data = unwrap(load_sample("get_history_by_ids/cn_status45_keyed_by_submit_id_2025-09-13.json"))
    (raw,) = data.values()
    record = parse_record(raw)
    assert record.status == 45 and not record.final and record.item_count == 0


def _truncated_running() -> None:
    text = sample_text("get_history_by_ids/cn_status20_empty_item_list_2026-02-09_truncated.txt")
    envelope = _salvaged(text)
    assert envelope["ret"] == "0" and envelope["systime"].isdigit()
    match = re.search(r'"(\d+)":\{"generate_type":12,"history_record_id":"\1"', text)
    assert match is not None  # records keyed by history id, as the client reads them
    record = parse_record({"status": 20, "item_list": []})
    assert not record.final


def _failed_record() -> None:
    record = parse_record(load_sample("get_history_by_ids/cn_status30_fail2036_fragment.txt"))
    assert record.failed and record.fail_code == "2036"


def _generate_success() -> None:
    data = unwrap(load_sample("aigc_draft_generate/cn_success_image_v40_2025-09-13.json"))
    assert generated_history_id(data) and queue_of(data) is not None


def _vip_credits() -> None:
    credits = parse_credits(unwrap(load_sample("user_credit/cn_vip_credits_detail_abridged.txt")))
    assert credits.total == 15000


def _video_item() -> None:
    text = sample_text("get_asset_list/cn_video_item_vgfm30_2026-02-11_excerpt.txt")
    urls = re.findall(r'"video_url": "(https://[^"]+)"', text)
    item = {"video": {"transcoded_video": {"origin": {"video_url": urls[0]}}}}
    assert urls and extract_video_url(item) == unescape_url(urls[0]) and "\\u0026" not in unescape_url(urls[0])


def _upload_token() -> None:
    data = load_sample("vod_upload/cn_get_upload_token_scene1_data_only_elided.json")
    creds = imagex.parse_upload_token(data, Region.CN, now=0.0, default_ttl=900.0)
    assert creds.expires_at == 1770445162.0  # expired_time 2026-02-07T14:19:22+08:00


def _vod_apply_without_vid() -> None:
    address = vod.parse_apply(load_sample("vod_upload/cn_ApplyUploadInner_elided.json"))
    assert address.upload_host == "tos-hl-x.snssdk.com" and address.vid is None  # the commit names it


def _vod_commit() -> None:
    video = vod.parse_commit(load_sample("vod_upload/cn_CommitUploadInner_elided.json"))
    assert (video.vid, video.width, video.height, video.duration) == ("v03870g10004d63cmmvog65lt0hhk6t0", 720, 1280, 8)


def _upload_bytes() -> None:
    vod.check_upload_answer((SAMPLES / "vod_upload/cn_upload_bytes_code2000.json").read_bytes())


def _passport_expired() -> None:
    body = unwrap(load_sample("passport_account_info/cn_error_code13_session_expired_2026-09-10.json"))
    assert body["error_code"] == 13 and "user_id" not in body  # no ret envelope: returned whole, no user id


CHECKS: dict[str, Check] = {
    "get_history_by_ids/cn_status45_keyed_by_submit_id_2025-09-13.json": _running_keyed_by_submit_id,
    "get_history_by_ids/cn_status20_empty_item_list_2026-02-09_truncated.txt": _truncated_running,
    "get_history_by_ids/cn_status30_fail2036_fragment.txt": _failed_record,
    "get_history_by_ids/cn_ret1015_login_error_2024-12-18.txt": _refusal(
        "get_history_by_ids/cn_ret1015_login_error_2024-12-18.txt", "1015", "TOKEN_EXPIRED"
    ),
    "aigc_draft_generate/cn_success_image_v40_2025-09-13.json": _generate_success,
    "aigc_draft_generate/intl_ret3018_permission_denied_2026-01-27_truncated.txt": _refusal(
        "aigc_draft_generate/intl_ret3018_permission_denied_2026-01-27_truncated.txt",
        "3018",
        "UPSTREAM_VERSION_REJECTED",
        salvage=True,
    ),
    "aigc_draft_generate/cn_ret1000_invalid_parameter_2025-04-11.json": _refusal(
        "aigc_draft_generate/cn_ret1000_invalid_parameter_2025-04-11.json", "1000", "UPSTREAM_PARAM_ERROR"
    ),
    "aigc_draft_generate/cn_ret1018_account_punish_limit_2025-01-27.json": _refusal(
        "aigc_draft_generate/cn_ret1018_account_punish_limit_2025-01-27.json", "1018", "ACCOUNT_PENALISED"
    ),
    "aigc_draft_generate/cn_ret5001_credit_prededuct_failed_2026-03-08.txt": _refusal(
        "aigc_draft_generate/cn_ret5001_credit_prededuct_failed_2026-03-08.txt", "5001", "UPSTREAM_BUSY"
    ),
    "aigc_draft_generate/cn_ret4013_risk_reject_video_2026-04-26_abridged.json": _refusal(
        "aigc_draft_generate/cn_ret4013_risk_reject_video_2026-04-26_abridged.json", "4013", "RISK_CONTROL_REJECTED"
    ),
    "credit_receive/intl_hk_ret-4_shark_check_reject_2026-01-16.json": _refusal(
        "credit_receive/intl_hk_ret-4_shark_check_reject_2026-01-16.json", "-4", "CLAIM_RISK_REJECTED"
    ),
    "user_credit/cn_ret1015_check_login_error_with_zero_credit.txt": _refusal(
        "user_credit/cn_ret1015_check_login_error_with_zero_credit.txt", "1015", "TOKEN_EXPIRED"
    ),
    "user_credit/cn_vip_credits_detail_abridged.txt": _vip_credits,
    "get_asset_list/cn_video_item_vgfm30_2026-02-11_excerpt.txt": _video_item,
    "vod_upload/cn_get_upload_token_scene1_data_only_elided.json": _upload_token,
    "vod_upload/cn_ApplyUploadInner_elided.json": _vod_apply_without_vid,
    "vod_upload/cn_CommitUploadInner_elided.json": _vod_commit,
    "vod_upload/cn_upload_bytes_code2000.json": _upload_bytes,
    "upload_audit/cn_ret3020_download_file_failed_2026-04-26_abridged.json": _refusal(
        "upload_audit/cn_ret3020_download_file_failed_2026-04-26_abridged.json", "3020", "UPSTREAM_ERROR"
    ),
    "passport_account_info/cn_error_code13_session_expired_2026-09-10.json": _passport_expired,
}


def test_every_sample_has_a_parser_check() -> None:
    files = {p.relative_to(SAMPLES).as_posix() for p in SAMPLES.rglob("*") if p.is_file() and p.name != "INDEX.md"}
    assert files == set(CHECKS), "a sample without a parser check (or a check without its sample)"


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_sample_goes_through_the_clients_parser(name: str) -> None:
    CHECKS[name]()


def test_imagex_apply_reads_either_host_field() -> None:
    base = {"StoreInfos": [{"StoreUri": "tos-cn-i-x/y", "Auth": "a"}], "SessionKey": "k"}
    for address in ({**base, "UploadHosts": ["up.example"]}, {**base, "UploadHost": "up.example"}):
        assert imagex.parse_apply({"Result": {"UploadAddress": address}}).upload_host == "up.example"


# ------------------------------------------------------------------ the simulator's variants over real HTTP

CLIP = tiny_mp4(6000, tag=b"six", width=640, height=360)


async def test_singular_upload_host_answer_uploads(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    sim.settings.imagex_host_field = "UploadHost"
    data = aiohttp.FormData()
    data.add_field("prompt", "mix")
    data.add_field("images", png(40, 40, (5, 6, 7)), filename="a.png", content_type="image/png")
    call = client.post("/v1/images/compositions", data=data, headers=bearer(CN_TOKEN))
    (resp,) = await drive(client.app, clock, call)
    assert resp.status == 200, await json_of(resp)
    (apply,) = [e for e in sim.journal if e.query.get("Action") == "ApplyImageUpload"]
    assert apply.status == 200 and sim.generate_count == 1


async def test_vod_apply_without_vid_and_commit_without_duration(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    sim.settings.vod_apply_vid = False
    sim.settings.vod_commit_duration = False
    data = aiohttp.FormData()
    for key, value in {"model": "jimeng-video-seedance-2.0-fast", "functionMode": "omni_reference"}.items():
        data.add_field(key, value)
    data.add_field("prompt", "@clip.mp4 slower")
    data.add_field("video_file", CLIP, filename="clip.mp4", content_type="video/mp4")
    (resp,) = await drive(client.app, clock, client.post("/v1/videos/generations", data=data, headers=bearer(CN_TOKEN)))
    assert resp.status == 200, await json_of(resp)
    body = sim.calls("/aigc_draft/generate")[-1].body
    draft = json.loads(body["draft_content"])
    gen_input = draft["component_list"][0]["abilities"]["gen_video"]["text_to_video_params"]["video_gen_inputs"][0]
    (material,) = gen_input["unified_edit_input"]["material_list"]
    assert material["video_info"]["vid"] in sim.uploads.vids  # the vid of the commit
    assert material["video_info"]["duration"] == 6000  # our own reading of the file
    assert body["extend"]["m_video_commerce_info"]["amount"] == 11  # 5 s out + 6 s in (§19.1)


async def test_transcoded_video_keyed_by_resolution_is_read(
    client: TestClient[Any, Any], clock: ManualClock, sim: Simulator
) -> None:
    sim.settings.transcoded_by_resolution = True  # §19.12: "360p", "720p", ... instead of "origin"
    call = client.post(
        "/v1/videos/generations", json={"prompt": "a wave", "model": "jimeng-video-3.5-pro"}, headers=bearer(CN_TOKEN)
    )
    (resp,) = await drive(client.app, clock, call)
    assert resp.status == 200, await json_of(resp)
    (hid,) = sim.records
    data = await client.app[CLIENT].get_history(parse_token(CN_TOKEN), [hid])
    record = parse_record(data[hid])
    (url,) = record.video_urls
    assert "stale" not in url  # the widest entry, not the 360p one
    async with client.session.get(url) as got:
        assert got.status == 200


def test_transcoded_video_prefers_origin_then_the_widest() -> None:
    wide = {"width": 1280, "height": 720, "video_url": "https://v/720"}
    narrow = {"width": 640, "height": 360, "video_url": "https://v/360"}
    assert extract_video_url({"video": {"transcoded_video": {"360p": narrow, "720p": wide}}}) == "https://v/720"
    origin = {"origin": {"video_url": "https://v/o"}, "720p": wide}
    assert extract_video_url({"common_attr": {"transcoded_video": origin}}) == "https://v/o"
