"""Pure video pieces: the §8 builders checked by the simulator's strict validator (and its refusals), the
omni prompt split, high-quality URL extraction, and the MP4 box reader/writer."""

from __future__ import annotations

import io
import itertools
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from jimeng_server.mp4 import iter_boxes, movie_facts, tiny_mp4
from jimeng_server.simulator import video as sim_video  # noqa: F401 - registers gen_video
from jimeng_server.simulator.generate import GenerateInvalid, validate_generate
from jimeng_server.upstream import vod
from jimeng_server.upstream.catalog import VIDEO_MODELS
from jimeng_server.upstream.errors import UpstreamBadResponse
from jimeng_server.upstream.history import local_item_urls, parse_record, with_high_quality
from jimeng_server.upstream.payloads import ImageRef
from jimeng_server.upstream.regions import Region
from jimeng_server.upstream.video_payloads import (
    FrameJob,
    OmniJob,
    RefPart,
    TextPart,
    VideoRef,
    VideoVersions,
    build_frame_video_generate,
    build_omni_video_generate,
    meta_list,
    split_prompt,
)

V = VideoVersions()
KEY_35 = VIDEO_MODELS["jimeng-video-3.5-pro"][Region.CN]
KEY_30 = VIDEO_MODELS["jimeng-video-3.0"][Region.CN]
KEY_SD = VIDEO_MODELS["jimeng-video-seedance-2.0"][Region.CN]


def ids() -> Callable[[], str]:
    counter = itertools.count()
    return lambda: str(uuid.UUID(int=next(counter)))


def frame_body(**kw: Any) -> dict[str, Any]:
    job = FrameJob(**{"model_key": KEY_35, "prompt": "p", "ratio": "1:1", "duration_s": 5, **kw})
    return build_frame_video_generate(job, region=Region.CN, versions=V, now_ms=1, seed=7, new_id=ids())


def omni_job(**kw: Any) -> OmniJob:
    materials = (ImageRef("tos-cn-i-x/a", 10, 20, "png"), VideoRef("v0d1", 1280, 720, 4960))
    base: dict[str, Any] = {
        "model_key": KEY_SD,
        "duration_s": 5,
        "materials": materials,
        "parts": (RefPart(0), TextPart(" moves like "), RefPart(1)),
    }
    return OmniJob(**{**base, **kw})


def omni_body(job: OmniJob | None = None) -> dict[str, Any]:
    return build_omni_video_generate(job or omni_job(), region=Region.CN, versions=V, now_ms=1, seed=7, new_id=ids())


def check(body: dict[str, Any], region: Region = Region.CN) -> Any:
    return validate_generate(body, region, "sess", is_committed=lambda _uri: True)


def mutate(body: dict[str, Any], where: str, fn: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Apply `fn` to the decoded draft / metrics / body and re-encode."""
    body = json.loads(json.dumps(body))
    if where == "body":
        fn(body)
    else:
        decoded = json.loads(body[where])
        fn(decoded)
        body[where] = json.dumps(decoded)
    return body


def gen_input(draft: dict[str, Any]) -> dict[str, Any]:
    params = draft["component_list"][0]["abilities"]["gen_video"]["text_to_video_params"]
    result: dict[str, Any] = params["video_gen_inputs"][0]
    return result


def test_frame_body_is_valid_and_priced_by_duration() -> None:
    spec = check(frame_body(duration_s=10))
    assert (spec.kind, spec.duration_s, spec.model_key) == ("video", 10, KEY_35)
    body = frame_body(first_frame=ImageRef("u1"), end_frame=ImageRef("u2"))
    spec = check(body)
    assert spec.extra["image_uris"] == ["u1", "u2"]
    draft = json.loads(body["draft_content"])
    assert gen_input(draft)["first_frame_image"]["image_uri"] == "u1"
    assert json.loads(body["metrics_extra"])["originSubmitId"] != body["submit_id"]


def test_resolution_only_for_3_0() -> None:
    check(frame_body(model_key=KEY_30, resolution="1080p"))
    with pytest.raises(GenerateInvalid, match="resolution"):
        check(frame_body(model_key=KEY_30))
    with pytest.raises(GenerateInvalid, match="resolution"):
        check(frame_body(resolution="720p"))


@pytest.mark.parametrize(
    ("where", "fn", "match"),
    [
        ("draft_content", lambda d: gen_input(d).update(duration_ms=8000), "duration_ms"),
        ("draft_content", lambda d: gen_input(d).update(duration_ms=5500), "duration_ms"),
        ("body", lambda b: b["extend"]["m_video_commerce_info"].update(benefit_type="x"), "benefit_type"),
        ("body", lambda b: b.update(submit_id="nope"), "submit_id"),
        ("draft_content", lambda d: gen_input(d).update(end_frame_image=None), "end_frame_image"),
        ("draft_content", lambda d: gen_input(d).update(first_frame_image={"image_uri": ""}), "image_uri"),
        ("metrics_extra", lambda m: m.update(functionMode="omni_reference"), "video_task_extra"),
    ],
)
def test_frame_body_refusals(where: str, fn: Callable[[dict[str, Any]], None], match: str) -> None:
    with pytest.raises(GenerateInvalid, match=match):
        check(mutate(frame_body(), where, fn))


def test_uncommitted_frame_uri_is_refused() -> None:
    body = frame_body(first_frame=ImageRef("tos-cn-i-x/never-uploaded"))
    with pytest.raises(GenerateInvalid, match="committed"):
        validate_generate(body, Region.CN, "sess", is_committed=lambda _uri: False)


def test_model_not_in_region() -> None:
    job = FrameJob(model_key=KEY_SD, prompt="p", ratio="1:1", duration_s=5)
    body = build_frame_video_generate(job, region=Region.US, versions=V, now_ms=1, seed=7, new_id=ids())
    with pytest.raises(GenerateInvalid, match="not served"):
        check(body, Region.US)


def test_omni_body_is_valid() -> None:
    body = omni_body()
    spec = check(body)
    assert spec.extra["vids"] == ["v0d1"] and spec.extra["video_ms"] == 4960
    assert spec.prompt == " moves like "
    assert json.loads(body["metrics_extra"])["originSubmitId"] == body["submit_id"]
    assert body["extend"]["m_video_commerce_info"]["benefit_type"] == "dreamina_video_seedance_20_video_add"
    scene = json.loads(json.loads(body["metrics_extra"])["sceneOptions"])[0]
    assert scene["materialTypes"] == [1, 2] and "resolution" not in scene


def _video_info(d: dict[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = gen_input(d)["unified_edit_input"]["material_list"][1]["video_info"]
    return info


def _set_meta(d: dict[str, Any], metas: list[dict[str, Any]]) -> None:
    gen_input(d)["unified_edit_input"]["meta_list"] = metas


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (lambda d: _set_meta(d, [{"meta_type": "image", "text": "", "material_ref": {"material_idx": 5}}]), "range"),
        (lambda d: _set_meta(d, [{"meta_type": "video", "text": "", "material_ref": {"material_idx": 0}}]), "match"),
        (lambda d: d.update(min_features=[]), "functionMode"),
        (lambda d: _video_info(d).update(duration=15001), "15000"),
        (lambda d: gen_input(d).update(prompt="x"), "prompt"),
    ],
)
def test_omni_refusals(fn: Callable[[dict[str, Any]], None], match: str) -> None:
    with pytest.raises(GenerateInvalid, match=match):
        check(mutate(omni_body(), "draft_content", fn))


def test_omni_only_for_seedance() -> None:
    with pytest.raises(GenerateInvalid, match="omni"):
        check(omni_body(omni_job(model_key=KEY_35)))


def test_split_prompt_longest_name_first() -> None:
    names = {"image_file_1": 0, "image_file_10": 1, "cat.png": 2}
    parts = split_prompt("@image_file_10 and @image_file_1 with @cat.png!", names)
    assert parts == (RefPart(1), TextPart(" and "), RefPart(0), TextPart(" with "), RefPart(2), TextPart("!"))
    assert split_prompt("plain", names) == (TextPart("plain"),)
    assert split_prompt("", {}) == (TextPart(""),)
    job = omni_job(parts=(TextPart("a "), RefPart(1)))
    assert meta_list(job) == [
        {"meta_type": "text", "text": "a "},
        {"meta_type": "video", "text": "", "material_ref": {"material_idx": 1}},
    ]


def test_local_item_urls_order_and_regex_fallback() -> None:
    data = {
        "item_list": [
            {"item_id": "1", "video": {"play_url": "https://p/low", "download_url": "https://d/high"}},
            {"common_attr": {"id": "2"}, "extra": "see https://v26-dreamnia.jimeng.com/x/y.mp4?a=1 here"},
            {"video": {"download_url": "https://no-id"}},
        ]
    }
    assert local_item_urls(data) == {"1": "https://d/high", "2": "https://v26-dreamnia.jimeng.com/x/y.mp4?a=1"}
    assert local_item_urls({"local_item_list": [{"id": 3, "video": {"url": "https://u"}}]}) == {"3": "https://u"}
    record = parse_record(
        {"status": 10, "item_list": [{"item_id": "1", "video": {"play_url": "https://p/low"}}, {"item_id": "9"}]}
    )
    assert with_high_quality(record, {"1": "https://d/high"}).video_urls == ("https://d/high",)
    assert with_high_quality(record, {}).video_urls == ("https://p/low",)


def test_tiny_mp4_boxes_and_duration() -> None:
    data = tiny_mp4(12500, tag=b"abc")
    boxes = list(iter_boxes(io.BytesIO(data), 0, len(data)))
    assert [b.kind for b in boxes] == [b"ftyp", b"moov", b"mdat"]
    assert sum(b.size + 8 for b in boxes) == len(data)
    moov = boxes[1]
    inner = list(iter_boxes(io.BytesIO(data), moov.offset, moov.offset + moov.size))
    assert [b.kind for b in inner] == [b"mvhd"] and inner[0].size == 100
    assert movie_seconds(io.BytesIO(data)) == 12.5
    assert movie_seconds(io.BytesIO(b"not an mp4 at all")) is None


def test_vod_protocol_helpers() -> None:
    assert vod.apply_query("dreamina", 5, "abc") == [
        ("Action", "ApplyUploadInner"),
        ("Version", "2020-11-19"),
        ("SpaceName", "dreamina"),
        ("FileType", "video"),
        ("IsInner", "1"),
        ("FileSize", "5"),
        ("s", "abc"),
    ]
    assert vod.commit_body("sk1") == b'{"SessionKey":"sk1","Functions":[]}'
    assert "Content-Disposition" not in vod.upload_headers("auth", "3610a686")
    assert vod.space_name({}) == "dreamina" and vod.space_name({"space_name": "x"}) == "x"
    node = {"UploadHost": "up.example", "StoreInfos": [{"StoreUri": "s/1", "Auth": "a"}], "SessionKey": "k", "Vid": "v"}
    address = vod.parse_apply({"Result": {"InnerUploadAddress": {"UploadNodes": [node]}}})
    assert (address.upload_host, address.store_uri, address.vid) == ("up.example", "s/1", "v")
    # An apply without a Vid (the elided sample of §18) is fine: the commit names it (§19.8).
    assert vod.parse_apply({"Result": {"InnerUploadAddress": {"UploadNodes": [{**node, "Vid": ""}]}}}).vid is None
    with pytest.raises(UpstreamBadResponse, match="lacks session_key"):
        vod.parse_apply({"Result": {"InnerUploadAddress": {"UploadNodes": [{**node, "SessionKey": ""}]}}})
    with pytest.raises(UpstreamBadResponse, match="needs a Vid"):
        vod.parse_commit({"Result": {"Results": [{"VideoMeta": {"Width": 1}}]}})
    meta = {"Uri": "u", "Width": 1280, "Height": 720, "Duration": 4.9596}
    video = vod.parse_commit({"Result": {"Results": [{"Vid": "v", "VideoMeta": meta}]}})
    assert (video.vid, video.width, video.duration_ms) == ("v", 1280, 4960)
    vod.check_upload_answer(b'{"code":2000,"data":{"crc32":"x"}}')
    with pytest.raises(UpstreamBadResponse):
        vod.check_upload_answer(b'{"code":"2000"}')


def movie_seconds(f: Any) -> float | None:
    facts = movie_facts(f)
    return facts.duration if facts is not None else None
