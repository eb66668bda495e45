"""Post-edit payload builders against the §19.5 shapes (../shared/upstream-protocol.md)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from jimeng_server.upstream.payloads import ImageRef
from jimeng_server.upstream.postedit_payloads import (
    TOOL_INFO,
    Expansion,
    InterpolationJob,
    ItemVideo,
    OwnItem,
    PostEditJob,
    PostEditTool,
    build_interpolation_generate,
    build_postedit_generate,
    check_region,
    expansion_for_ratio,
    item_image_size,
    item_video,
)
from jimeng_server.upstream.regions import Region


def _ids() -> Any:
    counter = itertools.count()
    return lambda: f"00000000-0000-4000-8000-{next(counter):012d}"


def _build(job: PostEditJob) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    body = build_postedit_generate(job, region=Region.CN, version="3.3.28", now_ms=1_700_000_000_000, new_id=_ids())
    draft = json.loads(body["draft_content"])
    return body, draft, json.loads(body["metrics_extra"])


UPLOAD = ImageRef("tos-cn-i-abc/123", 2048, 2048, "png")
OWN = OwnItem(item_id="812345678901200", history_id="8123456789012")


@pytest.mark.parametrize(
    ("tool", "gen_type", "postedit_type"),
    [
        (PostEditTool.NORMAL_HD, 13, 13),
        (PostEditTool.PRO_HD, 35, 35),
        (PostEditTool.PAINTING, 8, 8),
        (PostEditTool.SUPER_RESOLUTION, None, 2),
    ],
)
def test_component_names_the_tool_and_its_codes(tool: PostEditTool, gen_type: int | None, postedit_type: int) -> None:
    expansion = Expansion(0.9, 0.9, 0.9, 0.9) if tool is PostEditTool.PAINTING else None
    source = OWN if tool is PostEditTool.SUPER_RESOLUTION else UPLOAD
    body, draft, metrics = _build(PostEditJob(tool, source, expansion=expansion))
    assert body["extend"] == {"root_model": "high_aes_general_v50"}
    assert draft["min_version"] == "3.2.9" and draft["version"] == "3.3.28"
    (component,) = draft["component_list"]
    assert draft["main_component_id"] == component["id"]
    assert component["type"] == "image_base_component"
    assert component["generate_type"] == tool.value
    assert component.get("gen_type") == gen_type
    assert ("gen_type" in component) == (gen_type is not None)
    ability = component["abilities"][tool.value]
    assert ability["postedit_param"]["generate_type"] == postedit_type
    assert metrics["generateId"] == body["submit_id"]


def test_uploaded_source_goes_in_origin_image_only() -> None:
    _, draft, metrics = _build(PostEditJob(PostEditTool.NORMAL_HD, UPLOAD))
    param = draft["component_list"][0]["abilities"]["normal_hd"]["postedit_param"]
    assert param["origin_image"]["image_uri"] == UPLOAD.uri
    assert param["origin_image"]["source_from"] == "upload"
    assert "item_id" not in param and "origin_history_id" not in param
    assert "sceneOptions" not in metrics and "originItemId" not in metrics


def test_own_item_goes_as_item_id_and_history_without_origin_image() -> None:
    _, draft, metrics = _build(PostEditJob(PostEditTool.SUPER_RESOLUTION, OWN))
    ability = draft["component_list"][0]["abilities"]["super_resolution"]
    param = ability["postedit_param"]
    assert param["item_id"] == 812345678901200 and param["origin_history_id"] == 8123456789012
    assert "origin_image" not in param
    assert ability["core_param"]["generate_type"] == 0
    assert metrics["originItemId"] == OWN.item_id


def test_pro_hd_carries_its_strengths_and_scene() -> None:
    _, draft, metrics = _build(PostEditJob(PostEditTool.PRO_HD, UPLOAD))
    ability = draft["component_list"][0]["abilities"]["pro_hd"]
    assert ability["hd_scene_type"] == "auto"
    assert ability["original_image_strength"] == 0.65 and ability["detail_strength"] == 0.65
    assert ability["resolution_type"] == "2k"
    assert json.loads(metrics["sceneOptions"])[0]["scene"] == "ImageProHD"


def test_painting_up_scale_and_count() -> None:
    job = PostEditJob(PostEditTool.PAINTING, UPLOAD, expansion=Expansion(0.1, 0.2, 0.3, 0.4, 3), count=2)
    _, draft, metrics = _build(job)
    abilities = draft["component_list"][0]["abilities"]
    up = abilities["painting"]["up_scale"]
    assert (up["top"], up["bottom"], up["left"], up["right"]) == (0.1, 0.2, 0.3, 0.4)
    assert up["max_size"] == 12960 and up["image_ratio"] == 3
    assert abilities["gen_option"]["gen_count"] == 2 and metrics["generateCount"] == 2


@pytest.mark.parametrize(
    "job",
    [
        PostEditJob(PostEditTool.SUPER_RESOLUTION, UPLOAD),
        PostEditJob(PostEditTool.PAINTING, UPLOAD),
        PostEditJob(PostEditTool.NORMAL_HD, UPLOAD, expansion=Expansion(0, 0, 1, 1)),
        PostEditJob(PostEditTool.PAINTING, UPLOAD, expansion=Expansion(0, 0, 1, 1), count=0),
    ],
)
def test_impossible_jobs_are_refused(job: PostEditJob) -> None:
    with pytest.raises(ValueError):
        _build(job)


def test_expansion_for_ratio() -> None:
    wide = expansion_for_ratio(2048, 2048, (16, 9), 3)
    assert wide.top == wide.bottom == 0 and wide.left == wide.right == pytest.approx((16 / 9 - 1) / 2, abs=1e-4)
    assert wide.image_ratio == 3
    tall = expansion_for_ratio(2048, 2048, (9, 16), 5)
    assert tall.left == tall.right == 0 and tall.top == pytest.approx((16 / 9 - 1) / 2, abs=1e-4)
    with pytest.raises(ValueError):
        expansion_for_ratio(2048, 2048, (1, 1), 1)


def _video(job: InterpolationJob) -> tuple[dict[str, Any], dict[str, Any]]:
    body = build_interpolation_generate(job, region=Region.CN, version="3.3.28", now_ms=1, new_id=_ids())
    return body, json.loads(body["draft_content"])


def test_interpolation_of_an_uploaded_clip() -> None:
    body, draft = _video(InterpolationJob(vid="v0abc", duration_ms=5000))
    assert body["extend"]["root_model"] == "dreamina_seedance_40_mini"
    assert body["extend"]["m_video_commerce_info"]["benefit_type"] == "video_frame_interpolation"
    assert body["extend"]["m_video_commerce_info"]["amount"] == 0
    assert draft["min_version"] == "3.1.0"
    (component,) = draft["component_list"]
    assert component["process_type"] == 3
    gen = component["abilities"]["gen_video"]
    assert gen["scene"] == "insert_frame" and "video_ref_params" not in gen
    (inp,) = gen["text_to_video_params"]["video_gen_inputs"]
    assert inp["vid"] == "v0abc" and inp["template_id"] == 0
    frame = inp["v2v_opt"]["insert_frame"]
    assert frame["enable"] is True and frame["target_fps"] == 60 and frame["origin_fps"] == 24
    assert frame["duration_ms"] == 5000 and inp["v2v_opt"]["min_version"] == "3.1.0"
    scenes = json.loads(json.loads(body["metrics_extra"])["sceneOptions"])
    assert {"type": "video", "scene": "VideoFrameInterpolation", "videoDuration": 5} in scenes


def test_interpolation_of_an_own_clip_refers_to_its_item() -> None:
    _, draft = _video(InterpolationJob(vid="v0abc", duration_ms=5000, source=OWN))
    gen = draft["component_list"][0]["abilities"]["gen_video"]
    ref = gen["video_ref_params"]
    assert ref["generate_type"] == 0 and ref["item_id"] == 812345678901200
    assert ref["origin_history_id"] == 8123456789012  # a number here ...
    assert gen["text_to_video_params"]["video_gen_inputs"][0]["origin_history_id"] == "8123456789012"  # a string


def test_item_facts() -> None:
    image = {"image": {"large_images": [{"image_url": "u", "width": 2048, "height": 1152}]}}
    assert item_image_size(image) == (2048, 1152)
    assert item_image_size({"image": {"large_images": []}}) is None
    assert item_image_size({"image": {"large_images": [{"width": "2048", "height": 1}]}}) is None
    clip = {"video": {"video_id": "v1", "duration_ms": 8000, "fps": 30}}
    assert item_video(clip) == ItemVideo("v1", 8000, 30)
    # §19.12: transcoded_video keyed by resolution names, each with its vid and fps.
    transcoded = {"video": {"transcoded_video": {"360p": {"vid": "v2", "fps": 25, "video_url": "u"}}}}
    assert item_video(transcoded) == ItemVideo("v2", 5000, 25)
    assert item_video({"video": {"transcoded_video": {"origin": {"video_url": "u"}}}}) is None
    assert item_video({"video": {"video_id": "v3", "fps": True}}) == ItemVideo("v3", 5000, 24)


def test_tools_are_known_in_cn_only() -> None:
    for tool in TOOL_INFO:
        check_region(tool, Region.CN)
        with pytest.raises(ValueError, match="region"):
            check_region(tool, Region.US)
    assert {t: i.credits for t, i in TOOL_INFO.items()} == {
        "normal_hd": 0,
        "pro_hd": 1,
        "painting": None,
        "super_resolution": 0,
        "insert_frame": 0,
    }
