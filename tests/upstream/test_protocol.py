"""Pure units of the upstream protocol, checked against the vectors and tables of docs/protocol.md."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote_plus

import pytest

from jimeng_server import errors
from jimeng_server.upstream import catalog
from jimeng_server.upstream.catalog import CatalogError, ImageSize
from jimeng_server.upstream.envelope import unwrap
from jimeng_server.upstream.errors import (
    UpstreamBadResponse,
    UpstreamHttpError,
    UpstreamRetError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from jimeng_server.upstream.history import (
    extract_image_url,
    extract_video_url,
    item_id,
    parse_record,
)
from jimeng_server.upstream.identity import derive_identity
from jimeng_server.upstream.payloads import (
    BLOB_URL_PREFIX,
    DraftVersions,
    ImageJob,
    ImageRef,
    build_image_generate,
    history_image_info,
)
from jimeng_server.upstream.regions import Region
from jimeng_server.upstream.signing import build_cookie, parse_cookie, sid_guard, sign
from jimeng_server.upstream.tokens import (
    Account,
    TokenError,
    parse_authorization,
    parse_token,
    parse_token_list,
)

SESSION = "sess0unit0aaaabbbbccccddddeeeeff"

# ---------------------------------------------------------------- §2.4 Sign

SIGN_VECTORS = [
    ("/mweb/v1/aigc_draft/generate", "a29e0b750501aa30af81fd309a15ceca"),
    ("/mweb/v1/get_history_by_ids", "89fc65c93b50132b5eded79da14f0c14"),
    ("/commerce/v1/benefits/user_credit", "f3f7a12f5f13aca1846fe2ea4fd8a65e"),
    ("/commerce/v1/benefits/credit_receive", "944980d8ce8654a303db0e32d93a62fc"),
    ("/passport/account/info/v2", "50ae3799a22d985399d1cafbd651cc3a"),
    ("/mweb/v1/get_upload_token", "1b29032d7ce81e3017668ac5c1923e78"),
    ("/mweb/v1/algo_proxy", "73b25a8dd90901d22253516266d9fe75"),
    ("/mweb/v1/get_local_item_list", "91f54cd6c5f6f62f939146893a80bf9e"),
]


@pytest.mark.parametrize(("path", "expected"), SIGN_VECTORS)
def test_sign_vectors(path: str, expected: str) -> None:
    assert sign(path, 1700000000, pf="7", appvr="8.4.0") == expected


def test_sign_depends_on_time_and_versions() -> None:
    base = sign("/mweb/v1/aigc_draft/generate", 1700000000, pf="7", appvr="8.4.0")
    assert sign("/mweb/v1/aigc_draft/generate", 1700000001, pf="7", appvr="8.4.0") != base
    assert sign("/mweb/v1/aigc_draft/generate", 1700000000, pf="7", appvr="8.5.0") != base
    # Only the last 7 characters of the path count.
    assert sign("/other/prefix/generate", 1700000000, pf="7", appvr="8.4.0") == base


# ---------------------------------------------------------------- §2.5 Cookie


def test_cookie_pairs_in_documented_order() -> None:
    cookie = build_cookie(SESSION, web_id="7123456789012345678", user_id="ab" * 16, now=1700000000)
    names = [part.split("=", 1)[0] for part in cookie.split("; ")]
    assert names == [
        "_tea_web_id",
        "is_staff_user",
        "sid_guard",
        "uid_tt",
        "uid_tt_ss",
        "sid_tt",
        "sessionid",
        "sessionid_ss",
    ]
    pairs = parse_cookie(cookie)
    assert pairs["_tea_web_id"] == "7123456789012345678"
    assert pairs["is_staff_user"] == "false"
    assert pairs["uid_tt"] == pairs["uid_tt_ss"] == "ab" * 16
    assert pairs["sid_tt"] == pairs["sessionid"] == pairs["sessionid_ss"] == SESSION


def test_sid_guard_is_url_encoded() -> None:
    value = sid_guard(SESSION, 1700000000)
    assert value == f"{SESSION}%7C1700000000%7C5184000%7CMon%2C+03-Feb-2025+08%3A17%3A09+GMT"
    assert unquote_plus(value) == f"{SESSION}|1700000000|5184000|Mon, 03-Feb-2025 08:17:09 GMT"
    assert parse_cookie(build_cookie(SESSION, web_id="7", user_id="u", now=1700000000))["sid_guard"] == value


# ---------------------------------------------------------------- §6.2 sizes

# ratio -> ((1k w, h, code), (2k w, h, code), (4k w, h, code)), copied from the document's table.
SIZE_TABLE: dict[str, tuple[tuple[int, int, int], ...]] = {
    "1:1": ((1024, 1024, 1), (2048, 2048, 1), (4096, 4096, 101)),
    "4:3": ((768, 1024, 4), (2304, 1728, 4), (4608, 3456, 104)),
    "3:4": ((1024, 768, 2), (1728, 2304, 2), (3456, 4608, 102)),
    "16:9": ((1024, 576, 3), (2560, 1440, 3), (5120, 2880, 103)),
    "9:16": ((576, 1024, 5), (1440, 2560, 5), (2880, 5120, 105)),
    "3:2": ((1024, 682, 7), (2496, 1664, 7), (4992, 3328, 107)),
    "2:3": ((682, 1024, 6), (1664, 2496, 6), (3328, 4992, 106)),
    "21:9": ((1195, 512, 8), (3024, 1296, 8), (6048, 2592, 108)),
}
NANOBANANAPRO_4K = {
    "1:1": (4096, 4096, 1),
    "4:3": (4693, 3520, 4),
    "3:4": (3520, 4693, 2),
    "16:9": (5404, 3040, 3),
    "9:16": (3040, 5404, 5),
    "3:2": (4992, 3328, 7),
    "2:3": (3328, 4992, 6),
    "21:9": (6197, 2656, 8),
}
SIZE_CASES = [
    (ratio, res, expected)
    for ratio, row in SIZE_TABLE.items()
    for res, expected in zip(("1k", "2k", "4k"), row, strict=True)
]


@pytest.mark.parametrize(("ratio", "resolution", "expected"), SIZE_CASES)
def test_size_table(ratio: str, resolution: str, expected: tuple[int, int, int]) -> None:
    w, h, code = expected
    assert catalog.image_size(ratio, resolution) == ImageSize(w, h, code, resolution)
    # The same table serves every region for the jimeng models.
    assert catalog.image_size(ratio, resolution, model="jimeng-4.0", region=Region.US) == ImageSize(
        w, h, code, resolution
    )


def test_size_table_covers_every_ratio() -> None:
    assert set(catalog.RATIOS) == set(SIZE_TABLE)
    assert len(SIZE_CASES) == 24


@pytest.mark.parametrize(("ratio", "expected"), list(NANOBANANAPRO_4K.items()))
@pytest.mark.parametrize("region", [Region.US, Region.HK, Region.JP, Region.SG])
def test_nanobananapro_4k_table(ratio: str, expected: tuple[int, int, int], region: Region) -> None:
    w, h, code = expected
    assert catalog.image_size(ratio, "4k", model="nanobananapro", region=region) == ImageSize(w, h, code, "4k")


def test_nanobananapro_below_4k_uses_the_common_table() -> None:
    assert catalog.image_size("16:9", "2k", model="nanobananapro", region=Region.US) == ImageSize(2560, 1440, 3, "2k")


@pytest.mark.parametrize("ratio", list(SIZE_TABLE))
@pytest.mark.parametrize("resolution", ["1k", "2k", "4k"])
def test_nanobanana_us_is_always_1024_square(ratio: str, resolution: str) -> None:
    assert catalog.image_size(ratio, resolution, model="nanobanana", region=Region.US) == ImageSize(
        1024, 1024, 1, "2k"
    )


@pytest.mark.parametrize("ratio", list(SIZE_TABLE))
@pytest.mark.parametrize("region", [Region.HK, Region.JP, Region.SG])
def test_nanobanana_asia_is_forced_to_1k_with_the_ratio(ratio: str, region: Region) -> None:
    w, h, code = SIZE_TABLE[ratio][0]
    assert catalog.image_size(ratio, "4k", model="nanobanana", region=region) == ImageSize(w, h, code, "1k")


@pytest.mark.parametrize(
    ("ratio", "resolution", "needle"),
    [("5:4", "2k", "ratio"), ("1:1", "8k", "resolution"), ("", "2k", "ratio"), ("1:1", "2K", "resolution")],
)
def test_unknown_ratio_or_resolution_is_an_error(ratio: str, resolution: str, needle: str) -> None:
    with pytest.raises(CatalogError) as info:
        catalog.image_size(ratio, resolution)
    message = str(info.value)
    assert needle in message
    # The message lists what is allowed.
    assert "16:9" in message or "2k" in message


# ---------------------------------------------------------------- §1.1 token grammar


def test_plain_token_is_cn() -> None:
    acct = parse_token(SESSION)
    assert (acct.sessionid, acct.region, acct.proxy) == (SESSION, Region.CN, None)


@pytest.mark.parametrize(
    ("prefix", "region"),
    [
        ("us-", Region.US),
        ("US-", Region.US),
        ("Us-", Region.US),
        ("hk-", Region.HK),
        ("HK-", Region.HK),
        ("jp-", Region.JP),
        ("jP-", Region.JP),
        ("sg-", Region.SG),
        ("SG-", Region.SG),
    ],
)
def test_region_prefix_is_case_insensitive_and_session_case_kept(prefix: str, region: Region) -> None:
    acct = parse_token(f"{prefix}AbCdEf123")
    assert acct.region is region
    assert acct.sessionid == "AbCdEf123"
    assert acct.proxy is None


def test_unknown_prefix_stays_part_of_a_cn_session() -> None:
    acct = parse_token("eu-abc123")
    assert (acct.region, acct.sessionid) == (Region.CN, "eu-abc123")


def test_proxy_with_credentials_splits_at_last_at() -> None:
    acct = parse_token("http://user:pass@proxy.com:8080@hk-sess")
    assert acct.proxy == "http://user:pass@proxy.com:8080"
    assert acct.region is Region.HK
    assert acct.sessionid == "sess"


def test_socks5_proxy() -> None:
    acct = parse_token("socks5://127.0.0.1:1080@sess")
    assert (acct.proxy, acct.region, acct.sessionid) == ("socks5://127.0.0.1:1080", Region.CN, "sess")


@pytest.mark.parametrize("scheme", ["http", "HTTPS", "socks4", "Socks5"])
def test_proxy_scheme_is_case_insensitive(scheme: str) -> None:
    acct = parse_token(f"{scheme}://10.0.0.1:3128@us-sess")
    assert acct.proxy is not None and acct.proxy.endswith("10.0.0.1:3128")
    assert (acct.region, acct.sessionid) == (Region.US, "sess")


def test_proxy_is_trimmed() -> None:
    acct = parse_token("  http://10.0.0.1:3128@sess  ")
    assert (acct.proxy, acct.sessionid) == ("http://10.0.0.1:3128", "sess")


def test_proxy_scheme_without_at_is_all_token() -> None:
    acct = parse_token("http://proxy.com:8080")
    assert acct.proxy is None
    assert acct.sessionid == "http://proxy.com:8080"


def test_at_as_last_char_is_not_split() -> None:
    acct = parse_token("http://proxy.com:8080@")
    assert acct.proxy is None
    assert acct.sessionid == "http://proxy.com:8080@"


def test_at_as_first_char_is_part_of_the_token() -> None:
    acct = parse_token("@sess")
    assert (acct.proxy, acct.sessionid, acct.region) == (None, "@sess", Region.CN)


def test_at_without_proxy_scheme_is_not_split() -> None:
    acct = parse_token("ftp://host:1@sess")
    assert acct.proxy is None and acct.sessionid == "ftp://host:1@sess"


def test_comma_list_spaces_empty_items_and_duplicates() -> None:
    accounts = parse_token_list(" a1 ,, us-b2 , a1,,US-b2 , c3 ,")
    assert [(a.sessionid, a.region) for a in accounts] == [("a1", Region.CN), ("b2", Region.US), ("c3", Region.CN)]


def test_same_session_in_two_regions_is_two_accounts() -> None:
    accounts = parse_token_list("abc,us-abc")
    assert [a.region for a in accounts] == [Region.CN, Region.US]


def test_authorization_header() -> None:
    accounts = parse_authorization(f"Bearer {SESSION}, us-{SESSION}")
    assert [(a.region, a.sessionid) for a in accounts] == [(Region.CN, SESSION), (Region.US, SESSION)]


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "   ",
        SESSION,  # Bearer missing
        f"Basic {SESSION}",
        "Bearer",
        "Bearer   ",
        "Bearer ,, ,",
    ],
)
def test_unusable_authorization_is_token_error_without_the_token(header: str | None) -> None:
    with pytest.raises(TokenError) as info:
        parse_authorization(header)
    assert SESSION not in str(info.value)


@pytest.mark.parametrize(
    "item",
    ["", "   ", "us-", "HK-", " sg- ", f"{SESSION} x", f'{SESSION}"', f"{SESSION};", f"{SESSION}é", f"us-{SESSION}\t1"],
)
def test_bad_token_items_are_errors_without_the_token(item: str) -> None:
    with pytest.raises(TokenError) as info:
        parse_token(item)
    assert SESSION not in str(info.value)


def test_bad_item_in_a_list_fails_the_list_without_leaking() -> None:
    with pytest.raises(TokenError) as info:
        parse_authorization(f"Bearer {SESSION},bad token")
    assert SESSION not in str(info.value) and "bad token" not in str(info.value)


def test_masked_never_contains_the_session() -> None:
    for token in (SESSION, f"us-{SESSION}", "shortsess", "http://user:pass@127.0.0.1:9@jp-" + SESSION):
        acct = parse_token(token)
        assert acct.sessionid not in acct.masked
        assert "pass" not in acct.masked and "127.0.0.1" not in acct.masked
        assert acct.sessionid not in str(acct) and acct.sessionid not in repr(acct)
        assert "pass" not in repr(acct)
    assert parse_token(f"us-{SESSION}").masked.startswith("us-")


def test_token_round_trips() -> None:
    for token in (SESSION, f"sg-{SESSION}", f"http://u:p@127.0.0.1:8080@us-{SESSION}"):
        acct = parse_token(token)
        assert parse_token(acct.token) == acct


def test_fingerprint_stable_and_per_region() -> None:
    cn, cn_again, us = parse_token(SESSION), parse_token(f" {SESSION} "), parse_token(f"us-{SESSION}")
    assert cn.fingerprint == cn_again.fingerprint
    assert cn.fingerprint != us.fingerprint
    assert cn.fingerprint != parse_token(SESSION + "x").fingerprint
    assert SESSION not in cn.fingerprint
    assert re.fullmatch(r"[0-9a-f]{16,64}", cn.fingerprint)
    # A proxy does not change which account it is.
    assert parse_token(f"http://127.0.0.1:1@{SESSION}").fingerprint == cn.fingerprint


# ---------------------------------------------------------------- §2.8 envelope


@pytest.mark.parametrize("ok", ["0", 0, " 0 "])
def test_envelope_success_string_or_number(ok: Any) -> None:
    assert unwrap({"ret": ok, "errmsg": "success", "data": {"x": 1}}) == {"x": 1}


def test_envelope_numeric_error_ret() -> None:
    with pytest.raises(UpstreamRetError) as info:
        unwrap({"ret": 1015, "errmsg": "login error", "data": {}}, path="/p")
    assert info.value.ret == "1015"
    assert info.value.errmsg == "login error"


def test_envelope_string_error_ret_keeps_data() -> None:
    with pytest.raises(UpstreamRetError) as info:
        unwrap({"ret": "3018", "errmsg": "permission denied", "data": {"aigc_data": None}})
    assert info.value.ret == "3018" and info.value.data == {"aigc_data": None}


@pytest.mark.parametrize(
    "body",
    [{"message": "success", "data": {"user_id": 1}}, {"user_id": 5}, {"ret": "abc", "x": 1}, {"ret": None}],
)
def test_envelope_without_numeric_ret_is_returned_whole(body: dict[str, Any]) -> None:
    assert unwrap(body) == body


@pytest.mark.parametrize("body", [[1, 2], "text", None, 3])
def test_envelope_non_object_is_bad_response(body: Any) -> None:
    with pytest.raises(UpstreamBadResponse):
        unwrap(body, path="/x")


# ---------------------------------------------------------------- §9.2/§9.3 history


def test_image_url_unescapes_literal_u0026() -> None:
    item = {"image": {"large_images": [{"image_url": "https://cdn/x.png?a=1\\u0026b=2\\u0026c=3"}]}}
    assert extract_image_url(item) == "https://cdn/x.png?a=1&b=2&c=3"


@pytest.mark.parametrize(
    "item",
    [{}, {"image": {}}, {"image": {"large_images": []}}, {"image": {"large_images": [{"image_url": ""}]}}, "x"],
)
def test_image_url_absent(item: Any) -> None:
    assert extract_image_url(item) is None


_ALL_VIDEO_PATHS = {
    "common_attr": {"transcoded_video": {"origin": {"video_url": "u1"}}},
    "video": {
        "transcoded_video": {"origin": {"video_url": "u2"}},
        "play_url": "u3",
        "download_url": "u4",
        "url": "u5",
    },
}


def _without(item: dict[str, Any], *drop: str) -> dict[str, Any]:
    """A deep copy of `item` with the named URLs removed."""
    copy = json.loads(json.dumps(item))
    if "u1" in drop:
        del copy["common_attr"]
    if "u2" in drop:
        del copy["video"]["transcoded_video"]
    for key, name in (("play_url", "u3"), ("download_url", "u4"), ("url", "u5")):
        if name in drop:
            del copy["video"][key]
    return copy


@pytest.mark.parametrize(
    ("drop", "expected"),
    [((), "u1"), (("u1",), "u2"), (("u1", "u2"), "u3"), (("u1", "u2", "u3"), "u4"), (("u1", "u2", "u3", "u4"), "u5")],
)
def test_video_url_precedence(drop: tuple[str, ...], expected: str) -> None:
    assert extract_video_url(_without(_ALL_VIDEO_PATHS, *drop)) == expected


@pytest.mark.parametrize(
    ("drop", "expected"),
    [((), "u1"), (("u1",), "u2"), (("u1", "u2"), "u4"), (("u1", "u2", "u4"), "u3"), (("u1", "u2", "u3", "u4"), "u5")],
)
def test_high_quality_video_url_prefers_download(drop: tuple[str, ...], expected: str) -> None:
    assert extract_video_url(_without(_ALL_VIDEO_PATHS, *drop), high_quality=True) == expected


def test_video_url_none_and_unescaped() -> None:
    assert extract_video_url({"video": {}}) is None
    assert extract_video_url({"video": {"play_url": "https://v/a?x=1\\u0026y=2"}}) == "https://v/a?x=1&y=2"


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"item_id": "i1", "id": "i2", "local_item_id": "i3", "common_attr": {"id": "i4"}}, "i1"),
        ({"id": "i2", "local_item_id": "i3", "common_attr": {"id": "i4"}}, "i2"),
        ({"local_item_id": "i3", "common_attr": {"id": "i4"}}, "i3"),
        ({"common_attr": {"id": "i4"}}, "i4"),
        ({"item_id": 7512345678901234567}, "7512345678901234567"),
        ({"item_id": "", "id": "i2"}, "i2"),
        ({}, None),
    ],
)
def test_item_id_precedence(item: dict[str, Any], expected: str | None) -> None:
    assert item_id(item) == expected


@pytest.mark.parametrize(
    ("fail_code", "expected"),
    [(2038, "2038"), ("2038", "2038"), (None, ""), ("", ""), (0, ""), ("0", ""), (1001, "1001")],
)
def test_fail_code_normalised(fail_code: Any, expected: str) -> None:
    record = parse_record({"status": 30, "fail_code": fail_code, "item_list": []})
    assert record.fail_code == expected
    assert record.failed and record.final and not record.done


def test_record_without_fail_code_key() -> None:
    assert parse_record({"status": 20}).fail_code == ""


def test_record_parsing_statuses_and_items() -> None:
    items = [
        {"image": {"large_images": [{"image_url": "https://c/0?a\\u0026b"}]}, "item_id": "a"},
        {"image": {"large_images": [{"image_url": "https://c/1"}]}, "item_id": "b"},
        {"no_image": True},
    ]
    record = parse_record({"status": "50", "item_list": items})
    assert record.status == 50 and record.done and record.final
    assert record.item_count == 3
    assert record.image_urls == ("https://c/0?a&b", "https://c/1")
    assert record.item_ids == ("a", "b")
    assert record.urls("image") == record.image_urls
    assert parse_record({"status": 42}).final is False
    assert parse_record({"status": True}).status is None
    assert parse_record({"item_list": "oops"}).item_count == 0


# ---------------------------------------------------------------- §7 payload builder


def _ids() -> Any:
    counter = iter(range(10_000))
    return lambda: f"id-{next(counter):04d}"


def _job(**kw: Any) -> ImageJob:
    base: dict[str, Any] = {
        "model_key": "high_aes_general_v40l",
        "prompt": "a cute cat",
        "size": catalog.image_size("16:9", "2k"),
    }
    base.update(kw)
    return ImageJob(**base)


def _build(job: ImageJob, region: Region = Region.CN) -> dict[str, Any]:
    return build_image_generate(
        job, region=region, versions=DraftVersions(), now_ms=1769533510229, seed=2577444542, new_id=_ids()
    )


def _decode(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    assert isinstance(body["draft_content"], str)
    assert isinstance(body["metrics_extra"], str)
    draft = json.loads(body["draft_content"])
    metrics = json.loads(body["metrics_extra"])
    assert isinstance(metrics["sceneOptions"], str)
    (scene,) = json.loads(metrics["sceneOptions"])
    return draft, metrics, scene


def test_text_to_image_body_invariants() -> None:
    body = _build(_job())
    assert set(body) == {"extend", "submit_id", "metrics_extra", "draft_content", "http_common_info"}
    draft, metrics, scene = _decode(body)
    assert draft["type"] == "draft" and draft["version"] == "3.0.2" and draft["min_version"] == "3.0.2"
    assert draft["is_from_tsn"] is True and draft["min_features"] == []
    (component,) = draft["component_list"]
    assert draft["main_component_id"] == component["id"]
    assert component["type"] == "image_base_component" and component["generate_type"] == "generate"
    assert component["metadata"]["created_time_in_ms"] == "1769533510229"
    core = component["abilities"]["generate"]["core_param"]
    assert component["abilities"]["generate"]["gen_option"]["generate_all"] is False
    assert body["extend"]["root_model"] == core["model"] == scene["modelReqKey"] == "high_aes_general_v40l"
    assert core["prompt"] == "a cute cat"
    assert core["image_ratio"] == 3 and core["intelligent_ratio"] is False
    assert core["large_image_info"]["width"] == 2560 and core["large_image_info"]["height"] == 1440
    assert core["large_image_info"]["resolution_type"] == "2k"
    assert core["negative_prompt"] == "" and core["sample_strength"] == 0.5
    assert core["seed"] == 2577444542
    assert metrics["generateId"] == body["submit_id"]
    assert metrics["promptSource"] == "custom" and metrics["generateCount"] == 1 and metrics["isRegenerate"] is False
    assert scene["scene"] == "ImageBasicGenerate" and scene["benefitCount"] == 4 and scene["abilityList"] == []
    assert scene["resolutionType"] == "2k"
    assert scene["reportParams"]["extraVipFunctionKey"] == "high_aes_general_v40l-2k"
    assert "templateId" not in metrics
    # Every generated id in the draft is fresh (the component id is only repeated as main_component_id).
    ids = re.findall(r'"id":"(id-\d+)"', body["draft_content"])
    assert len(ids) == len(set(ids)) == 8 and body["submit_id"] not in ids


@pytest.mark.parametrize(("intelligent", "has_ratio"), [(True, False), (False, True)])
def test_image_ratio_absent_iff_intelligent_ratio(intelligent: bool, has_ratio: bool) -> None:
    draft, _, _ = _decode(_build(_job(intelligent_ratio=intelligent)))
    core = draft["component_list"][0]["abilities"]["generate"]["core_param"]
    assert ("image_ratio" in core) is has_ratio
    assert core["intelligent_ratio"] is intelligent
    # Width and height still come from the table.
    assert (core["large_image_info"]["width"], core["large_image_info"]["height"]) == (2560, 1440)


@pytest.mark.parametrize(("region", "aid"), [(Region.CN, 513695), (Region.US, 513641), (Region.JP, 513641)])
def test_aid_per_region(region: Region, aid: int) -> None:
    assert _build(_job(), region)["http_common_info"] == {"aid": aid}


def test_multi_image_metrics() -> None:
    _, metrics, scene = _decode(_build(_job(multi_image=True)))
    assert scene["scene"] == "ImageMultiGenerate" and "benefitCount" not in scene
    keys = ("templateId", "templateSource", "lastRequestId", "originRequestId")
    assert {k: metrics[k] for k in keys} == dict.fromkeys(keys, "")


@pytest.mark.parametrize("n", [1, 2, 3])
def test_blend_body(n: int) -> None:
    uris = tuple(f"tos-cn-i-tb4s082cfz/img{i}" for i in range(n))
    images = tuple(ImageRef(u, 100 + i, 200 + i, "png") for i, u in enumerate(uris))
    body = _build(_job(images=images, intelligent_ratio=True, sample_strength=0.3))
    draft, _, scene = _decode(body)
    assert draft["min_version"] == "3.2.9"
    component = draft["component_list"][0]
    assert component["generate_type"] == "blend"
    abilities = component["abilities"]
    blend = abilities["blend"]
    assert "gen_option" in abilities and "gen_option" not in blend
    assert ("min_version" in blend) is (n >= 2)
    if n >= 2:
        assert blend["min_version"] == "3.2.9"
    core = blend["core_param"]
    assert core["prompt"] == "##" * n + "a cute cat"
    assert "image_ratio" in core  # always sent in blend
    assert "seed" not in core
    assert [a["image_uri_list"] for a in blend["ability_list"]] == [[u] for u in uris]
    assert [a["strength"] for a in blend["ability_list"]] == [0.3] * n
    assert [a["image_list"][0]["uri"] for a in blend["ability_list"]] == list(uris)
    # The real size and format from the commit, not the reference's 0/0/"" (§15).
    assert [(a["image_list"][0]["width"], a["image_list"][0]["format"]) for a in blend["ability_list"]] == [
        (100 + i, "png") for i in range(n)
    ]
    assert [p["ability_index"] for p in blend["prompt_placeholder_info_list"]] == list(range(n))
    assert len(scene["abilityList"]) == n
    assert all(a["source"]["imageUrl"].startswith(BLOB_URL_PREFIX) for a in scene["abilityList"])


@pytest.mark.parametrize(("single", "count"), [(True, 12), (False, 9)])
def test_history_image_info_scenes(single: bool, count: int) -> None:
    info = history_image_info(single=single)
    scenes = info["image_scene_list"]
    assert len(scenes) == count
    assert (info["width"], info["height"], info["format"]) == (2048, 2048, "webp")
    assert all(s["format"] == "webp" for s in scenes)
    for s in scenes:
        if s["scene"] == "smart_crop":
            assert s["uniq_key"] == f"smart_crop-w:{s['width']}-h:{s['height']}"
        else:
            assert s["scene"] == "normal" and s["uniq_key"] == str(s["width"]) and s["width"] == s["height"]
    normals = [s["width"] for s in scenes if s["scene"] == "normal"]
    assert normals == [2400, 1080, 720, 480, 360]
    crops = {(s["width"], s["height"]) for s in scenes if s["scene"] == "smart_crop"}
    assert {(360, 360), (480, 480), (720, 720), (720, 480)} <= crops
    assert ({(360, 240), (240, 320), (480, 640)} <= crops) is single


# ---------------------------------------------------------------- identity


def test_identity_per_account() -> None:
    a, b = parse_token(SESSION), parse_token(SESSION + "b")
    ia, ib = derive_identity(b"salt", a.fingerprint), derive_identity(b"salt", b.fingerprint)
    for ident in (ia, ib):
        assert re.fullmatch(r"7\d{18}", ident.web_id)
        assert re.fullmatch(r"[0-9a-f]{32}", ident.user_id)
    assert ia.web_id != ib.web_id and ia.user_id != ib.user_id
    assert derive_identity(b"salt", a.fingerprint) == ia
    assert derive_identity(b"other", a.fingerprint) != ia


# ---------------------------------------------------------------- catalogue


@pytest.mark.parametrize(
    ("key", "benefit"),
    [
        ("dreamina_veo3.1_generate_video", "generate_video_veo3.1"),
        ("dreamina_veo3_generate_video", "generate_video_veo3"),
        ("dreamina_sora2_generate_video", "generate_video_sora2"),
        ("dreamina_seedance_40_pro", "dreamina_video_seedance_20_pro"),
        ("dreamina_seedance_40", "dreamina_seedance_20_fast"),
        ("dreamina_ic_generate_video_model_vgfm_3.5_pro", "dreamina_video_seedance_15_pro"),
        ("some_vgfm_3.5", "dreamina_video_seedance_15"),
        ("dreamina_ic_generate_video_model_vgfm_3.0", "basic_video_operation_vgfm_v_three"),
        ("dreamina_ic_generate_video_model_vgfm_3.0_pro", "basic_video_operation_vgfm_v_three"),
        ("dreamina_ic_generate_video_model_vgfm_lite", "basic_video_operation_vgfm_v_three"),
        ("dreamina_ic_generate_video_model_vgfm1.0", "basic_video_operation_vgfm_v_three"),
    ],
)
def test_video_benefit_type(key: str, benefit: str) -> None:
    assert catalog.video_benefit_type(key) == benefit


def test_video_benefit_type_omni() -> None:
    assert catalog.video_benefit_type("dreamina_seedance_40_pro", omni=True) == "dreamina_video_seedance_20_video_add"
    assert catalog.video_benefit_type("dreamina_seedance_40", omni=True) == "dreamina_seedance_20_fast_with_video"


@pytest.mark.parametrize(
    ("model", "durations"),
    [
        ("jimeng-video-veo3", (8,)),
        ("jimeng-video-veo3.1", (8,)),
        ("jimeng-video-sora2", (4, 8, 12)),
        ("jimeng-video-3.5-pro", (5, 10, 12)),
        ("jimeng-video-seedance-2.0", tuple(range(4, 16))),
        ("jimeng-video-seedance-2.0-fast", tuple(range(4, 16))),
        ("jimeng-video-3.0", (5, 10)),
        ("jimeng-video-3.0-pro", (5, 10)),
        ("jimeng-video-3.0-fast", (5, 10)),
        ("jimeng-video-2.0", (5, 10)),
        ("jimeng-video-2.0-pro", (5, 10)),
    ],
)
def test_allowed_durations(model: str, durations: tuple[int, ...]) -> None:
    assert catalog.allowed_durations(model) == durations
    assert catalog.default_duration(model) in durations


def test_image_model_key_lookups_and_errors() -> None:
    assert catalog.image_model_key("jimeng-4.5", Region.CN) == "high_aes_general_v40l"
    assert catalog.image_model_key("nanobanana", Region.US) == "external_model_gemini_flash_image_v25"
    assert catalog.image_model_key("nanobananapro", Region.SG) == "dreamina_image_lib_1"
    with pytest.raises(CatalogError) as info:
        catalog.image_model_key("nanobanana", Region.CN)
    message = str(info.value)
    assert "not available" in message and "region cn" in message
    assert "jimeng-4.5" in message and "jimeng-3.1" in message and "nanobanana," not in message + ","
    with pytest.raises(CatalogError) as info:
        catalog.image_model_key("jimeng-5.0", Region.US)
    listed = str(info.value).split("use one of:")[1]
    assert [m.strip() for m in listed.split(",")] == catalog.models_for("image", Region.US)
    assert "jimeng-5.0" not in listed
    with pytest.raises(CatalogError, match="unknown"):
        catalog.image_model_key("dall-e-3", Region.HK)


def test_video_resolution_models() -> None:
    assert catalog.video_takes_resolution("dreamina_ic_generate_video_model_vgfm_3.0")
    assert catalog.video_takes_resolution("dreamina_ic_generate_video_model_vgfm_3.0_fast")
    assert not catalog.video_takes_resolution("dreamina_ic_generate_video_model_vgfm_3.0_pro")
    assert not catalog.video_takes_resolution("dreamina_ic_generate_video_model_vgfm_3.5_pro")


# ---------------------------------------------------------------- errors.from_upstream


@pytest.mark.parametrize(
    ("ret", "status", "code"),
    [
        ("1015", 401, "TOKEN_EXPIRED"),
        ("5000", 402, "INSUFFICIENT_CREDITS"),
        ("1006", 402, "INSUFFICIENT_CREDITS"),
        ("4001", 402, "INSUFFICIENT_CREDITS"),  # JS enum external_no_credits ([upstream] ret_4001)
        ("2003", 422, "CONTENT_REJECTED"),
        ("3018", 502, "UPSTREAM_VERSION_REJECTED"),
        ("3000", 502, "REGION_NOT_ALLOWED"),
        ("1019", 502, "UPSTREAM_RISK_CONTROL"),
        ("4002", 502, "UPSTREAM_PARAM_ERROR"),
        ("34010100", 502, "UPSTREAM_ERROR"),
    ],
)
def test_from_upstream_ret_mapping(ret: str, status: int, code: str) -> None:
    err = errors.from_upstream(UpstreamRetError(ret, "some errmsg", path="/mweb/v1/x"))
    assert (err.status, err.code) == (status, code)
    assert f"ret {ret}" in err.message
    body = err.body()["error"]
    assert body["code"] == code and body["message"] == err.message and body["type"]


def test_from_upstream_transport_mapping() -> None:
    limited = errors.from_upstream(UpstreamHttpError(429, "/p: HTTP 429"))
    assert (limited.status, limited.code) == (429, "RATE_LIMITED")
    http = errors.from_upstream(UpstreamHttpError(503, "/p: HTTP 503"))
    assert (http.status, http.code) == (502, "UPSTREAM_HTTP_ERROR") and "503" in http.message
    timeout = errors.from_upstream(UpstreamTimeout("/p: no answer within 45 s"))
    assert (timeout.status, timeout.code) == (504, "UPSTREAM_TIMEOUT")
    down = errors.from_upstream(UpstreamUnavailable("/p: cannot connect"))
    assert (down.status, down.code) == (502, "UPSTREAM_UNAVAILABLE")
    bad = errors.from_upstream(UpstreamBadResponse("/p: not JSON"))
    assert (bad.status, bad.code) == (502, "UPSTREAM_BAD_RESPONSE")


def test_account_equality_ignores_nothing_secret_in_repr() -> None:
    acct = Account(sessionid=SESSION, region=Region.US, proxy="http://u:secretpw@h:1")
    text = repr(acct)
    assert SESSION not in text and "secretpw" not in text
