"""Parsers against the real recorded upstream answers (tests/fixtures/upstream_samples, §18), and the simulator's
answers against their shapes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from samples import load_sample, sample_text

from jimeng_server.errors import from_upstream
from jimeng_server.tasks.answer import task_query_body
from jimeng_server.upstream.client import generated_history_id, parse_credits
from jimeng_server.upstream.envelope import unwrap
from jimeng_server.upstream.errors import UpstreamRetError
from jimeng_server.upstream.history import extract_video_url, fail_message_of, parse_record, queue_of


def test_running_record_keyed_by_submit_id_is_still_running() -> None:
    data = unwrap(load_sample("get_history_by_ids/cn_status45_keyed_by_submit_id_2025-09-13.json"))
    record = parse_record(data["19637d71-15df-445e-b86d-490f3549cb85"])
    assert (record.status, record.final, record.item_count, record.fail_code) == (45, False, 0, "")
    assert queue_of(record.raw) is None  # no queue fields in that record: the answer says null, not zeros


def test_failed_record_with_string_fail_code_and_readable_reason() -> None:
    raw = load_sample("get_history_by_ids/cn_status30_fail2036_fragment.txt")
    record = parse_record(raw)
    assert record.failed and record.fail_code == "2036"
    assert fail_message_of(raw) == "生成失败，本次不消耗积分"
    body = task_query_body(
        history_id="h", task_type="image", status=30, fail_code=record.fail_code, item_count=0, results=None, raw=raw
    )
    assert (body["fail_code"], body["fail_message"], body["queue"]) == (2036, "生成失败，本次不消耗积分", None)


def test_generate_success_with_fields_directly_under_data() -> None:
    data = unwrap(load_sample("aigc_draft_generate/cn_success_image_v40_2025-09-13.json"))
    assert generated_history_id(data) == "25594898552322"
    assert queue_of(data) == {"position": 0, "length": 0, "eta_seconds": 0.0}
    assert generated_history_id({"aigc_data": {"history_record_id": 7}}) == "7"
    assert generated_history_id({}) is None


@pytest.mark.parametrize(
    ("name", "ret", "code"),
    [
        ("get_history_by_ids/cn_ret1015_login_error_2024-12-18.txt", "1015", "TOKEN_EXPIRED"),
        ("aigc_draft_generate/cn_ret1000_invalid_parameter_2025-04-11.json", "1000", "UPSTREAM_PARAM_ERROR"),
        ("aigc_draft_generate/cn_ret1018_account_punish_limit_2025-01-27.json", "1018", "ACCOUNT_PENALISED"),
        ("aigc_draft_generate/cn_ret5001_credit_prededuct_failed_2026-03-08.txt", "5001", "UPSTREAM_BUSY"),
        ("credit_receive/intl_hk_ret-4_shark_check_reject_2026-01-16.json", "-4", "CLAIM_RISK_REJECTED"),
        ("user_credit/cn_ret1015_check_login_error_with_zero_credit.txt", "1015", "TOKEN_EXPIRED"),
    ],
)
def test_refusals_map_to_their_own_codes(name: str, ret: str, code: str) -> None:
    with pytest.raises(UpstreamRetError) as info:
        unwrap(load_sample(name))  # a balance is never read from a refused answer (§18.7)
    assert info.value.ret == ret
    assert from_upstream(info.value).code == code


def test_vip_credit_batches_expire() -> None:
    credits = parse_credits(unwrap(load_sample("user_credit/cn_vip_credits_detail_abridged.txt")))
    points = credits.as_points()
    assert points["vipCredit"] == 15000 and points["totalCredit"] == 15000
    assert points["nextExpiry"] == {"amount": 15000, "expiresAt": 1778886358, "source": "vip_credits"}


def test_expiring_credits_list_is_preferred_over_the_same_batch_in_the_detail() -> None:
    # The shape of iptag #25 (§17.13): one batch in expiring_credits and again in credits_detail.gift_credits.
    data = {
        "credit": {"gift_credit": 50, "purchase_credit": 0, "vip_credit": 0},
        "expiring_credits": [{"credit_amount": 50, "expire_time": 1762617599}],
        "credits_detail": {"gift_credits": [{"residual_credits": 50, "credits_life_end": 1762617599}]},
    }
    points = parse_credits(data).as_points()
    assert points["expiringCredits"] == [{"amount": 50, "expiresAt": 1762617599, "source": "expiring_credits"}]
    assert parse_credits({"credit": {}, "credits_detail": {}}).as_points()["nextExpiry"] is None


def _video_object(text: str) -> dict[str, Any]:
    """The item's `video` object of the get_asset_list excerpt (the collector's cuts lie outside it)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == '"video": {' and "video_id" in lines[i + 1])
    end = next(i for i in range(start, len(lines)) if '"aigc_image_params"' in lines[i])
    return dict(json.loads("{" + "\n".join(lines[start:end]).rstrip().rstrip(",") + "}")["video"])


def test_real_video_item_url_is_under_video_transcoded_video() -> None:
    video = _video_object(sample_text("get_asset_list/cn_video_item_vgfm30_2026-02-11_excerpt.txt"))
    assert video["watermark_type"] == 1 and video["video_model"].startswith("<<COLLECTOR CUT")
    url = extract_video_url({"video": video})  # the cut video_model is not JSON: the next path is taken
    assert url is not None and url.startswith("https://v9-artist.vlabvod.com/")
