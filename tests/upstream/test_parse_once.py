"""`history.parse_record` reads each item once (`ItemView`) and `links.record_refs` reuses that reading: both must
give exactly what the per-field readers give (`extract_image_url`, `extract_video_url`, `item_id`,
`watermark_free_url`, and the refs each item names, read item by item), on the real recorded answers and on generated
records that mix every item shape the readers know (images with and without uri, cover uris, play/download URLs,
`transcoded_video` keyed by name, `video_model` JSON strings with base64 URLs, ids in every field, junk)."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from samples import SAMPLES, load_sample

from jimeng_server import jsonfast
from jimeng_server.upstream.codes import DEFAULT_STATUSES, StatusMeaning, meaning_of
from jimeng_server.upstream.history import (
    HistoryRecord,
    _dig,
    extract_image_url,
    extract_video_url,
    item_id,
    parse_record,
    parse_status,
    video_models,
    watermark_free_url,
    with_high_quality,
)
from jimeng_server.upstream.links import ResultRef, record_refs, result_refs


def reference(raw: dict[str, Any]) -> HistoryRecord:
    """The record as the per-field readers give it, each walking the items on its own (the parse before
    `ItemView`)."""
    items = raw.get("item_list")
    items = items if isinstance(items, list) else []
    fail = raw.get("fail_code")
    videos = [(i, extract_video_url(i)) for i in items]
    urls = tuple(u for _, u in videos if u)
    status = parse_status(raw.get("status"))
    return HistoryRecord(
        status=status,
        fail_code="" if fail in (None, 0, "0", "") else str(fail),
        item_count=len(items),
        image_urls=tuple(u for u in (extract_image_url(i) for i in items) if u),
        video_urls=urls,
        item_ids=tuple(i for i in (item_id(it) for it in items) if i),
        raw=raw,
        clean_videos=bool(urls) and all(watermark_free_url(i) for i, u in videos if u),
        meaning=meaning_of(status, len(items), DEFAULT_STATUSES),
    )


def reference_refs(raw: dict[str, Any], kind: str) -> tuple[ResultRef | None, ...]:
    """The refs of a record's results as the per-item readers give them, each item walked on its own (the reading
    before `record_refs`): a video result's item id; an image result's `image_uri`, else `cover_uri`, else the
    `tos-` uri in its URL's path; a video task without videos falls back to its images."""
    items = raw.get("item_list")
    refs: list[ResultRef | None] = []
    for item in items if isinstance(items, list) else []:
        if kind == "video" and extract_video_url(item):
            iid = item_id(item)
            refs.append(ResultRef("video", iid) if iid else None)
        elif kind != "video" and (url := extract_image_url(item)):
            refs.append(reference_image_ref(item, url))
    if not refs and kind == "video":
        return reference_refs(raw, "image")
    return tuple(refs)


def reference_image_ref(item: Any, url: str) -> ResultRef | None:
    for path in (("image", "large_images", 0, "image_uri"), ("common_attr", "cover_uri")):
        value = _dig(item, *path)
        if isinstance(value, str) and value:
            return ResultRef("image", value)
    uri = urlsplit(url).path.lstrip("/").split("~", 1)[0]
    return ResultRef("image", uri) if uri.startswith("tos-") and "/" in uri else None


def assert_same(raw: dict[str, Any]) -> None:
    record = parse_record(raw)
    assert dataclasses.replace(record, items=()) == reference(raw)
    assert len(record.items) == (len(raw["item_list"]) if isinstance(raw.get("item_list"), list) else 0)
    for kind in ("image", "video"):
        assert record_refs(record, kind) == reference_refs(raw, kind) == result_refs(raw, kind)
        hq = with_high_quality(record, {i: f"https://hq.example/{i}.mp4" for i in record.item_ids})
        assert record_refs(hq, kind) == reference_refs(raw, kind)  # the items stay as parsed


def _records(value: Any) -> Iterator[dict[str, Any]]:
    """Every object in a sample that holds an `item_list` or a `status` (the records)."""
    if isinstance(value, dict):
        if "item_list" in value or "status" in value:
            yield value
        for inner in value.values():
            yield from _records(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _records(inner)


def test_real_samples_parse_to_the_same_records() -> None:
    names = sorted(p.relative_to(SAMPLES).as_posix() for p in SAMPLES.rglob("*") if p.suffix in (".json", ".txt"))
    seen = 0
    for name in names:
        try:
            data = load_sample(name)
        except (ValueError, SyntaxError):
            continue
        for raw in _records(data):
            assert_same(raw)
            seen += 1
    assert seen >= 4  # the history and asset samples have records


def test_a_hand_built_record_is_read_from_raw() -> None:
    raw = {"status": 50, "item_list": [{"image": {"large_images": [{"image_url": "https://a/tos-cn-i-x/h~tplv.png"}]}}]}
    built = HistoryRecord(50, "", 1, ("https://a/tos-cn-i-x/h~tplv.png",), (), (), raw)  # no `items`
    assert record_refs(built, "image") == reference_refs(raw, "image") != ()


def _b64(url: str) -> str:
    return base64.b64encode(url.encode()).decode().rstrip("=")


URL = st.sampled_from(
    [
        "https://p3.example/tos-cn-i-ab/h1~tplv-x.png?x-expires=1767225600&x-signature=s",
        "https://p3.example/tos-cn-i-ab/h2~tplv-x.png?a=1\\u0026x-expires=17",
        "https://cdn.example/plain.png",
        "https://v3.example/v.mp4?x-expires=5",
        "",
    ]
)
JUNK = st.one_of(st.none(), st.integers(-1, 3), st.text(max_size=3), st.lists(st.none(), max_size=1))
ID = st.one_of(st.none(), st.just(""), st.just(0), st.integers(1, 2**70), st.sampled_from(["i1", "i2", "0"]))


@st.composite
def items(draw: st.DrawFn) -> Any:
    item: dict[str, Any] = {}
    if draw(st.booleans()):
        large = [{"image_url": draw(URL)}] if draw(st.booleans()) else draw(st.sampled_from([[], None, "x"]))
        if isinstance(large, list) and large and draw(st.booleans()):
            large[0]["image_uri"] = draw(st.sampled_from(["tos-cn-i-ab/uri", "", None]))
        item["image"] = {"large_images": large}
    if draw(st.booleans()):
        item["common_attr"] = {"id": draw(ID)}
        if draw(st.booleans()):
            item["common_attr"]["cover_uri"] = draw(st.sampled_from(["tos-cn-i-ab/cover", ""]))
        if draw(st.booleans()):
            name = draw(st.sampled_from(["origin", "360p", "720p"]))
            entry = {"video_url": draw(URL), "width": draw(st.integers(0, 9)), "height": 2}
            item["common_attr"]["transcoded_video"] = {name: entry, "x": draw(JUNK)}
    if draw(st.booleans()):
        video: dict[str, Any] = {draw(st.sampled_from(["play_url", "download_url", "url"])): draw(URL)}
        if draw(st.booleans()):
            model = {
                "video_list": {
                    "v1": {"main_url": draw(st.sampled_from([_b64("https://clean.example/v.mp4"), "@@", ""])),
                           "vwidth": 2, "vheight": 2},
                },
                "url_expire": 1767225600,
            }
            video["video_model"] = draw(st.sampled_from([json.dumps(model), "{not json", model]))
        item["video"] = video
    for key in draw(st.lists(st.sampled_from(["item_id", "id", "local_item_id"]), max_size=2, unique=True)):
        item[key] = draw(ID)
    return item if draw(st.integers(0, 9)) else draw(JUNK)


RECORDS = st.fixed_dictionaries(
    {},
    optional={
        "status": st.one_of(st.sampled_from([10, 20, 30, 42, 45, 50, "50", True, None]), JUNK),
        "fail_code": st.one_of(st.sampled_from([0, "0", "", 2036, "2036", None]), JUNK),
        "item_list": st.one_of(st.lists(items(), max_size=4), JUNK),
    },
)


@settings(max_examples=400, deadline=None)
@given(RECORDS)
def test_generated_records_parse_as_the_per_field_readers_do(raw: dict[str, Any]) -> None:
    assert_same(raw)


BIG = 2**64 + 12345  # beyond int64 and uint64


@pytest.fixture(params=["c-codec", "fallback"])
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "fallback":
        monkeypatch.setattr(jsonfast, "_decode", None)
        monkeypatch.setattr(jsonfast, "_encode", None)
    elif not jsonfast.FAST:
        pytest.skip("msgspec is not installed")
    return str(request.param)


def test_integers_beyond_64_bits_stay_exact_through_the_parse(codec: str) -> None:
    """A poll answer decoded by either codec parses to item ids and a raw record with the upstream's exact
    integers, and the watcher's compact copy of it (dumps, then loads) reads back the same record."""
    text = (
        b'{"ret":"0","data":{"7001":{"status":50,"fail_code":%d,"item_list":[{"item_id":%d,"image":'
        b'{"large_images":[{"image_url":"https://p.example/tos-cn-i-x/h~t.png?x-expires=%d","image_uri":"u"}]}},'
        b'{"common_attr":{"id":%d},"video":{"play_url":"https://v.example/v.mp4"}}]}}}' % (BIG, BIG, BIG, -BIG)
    )
    raw = jsonfast.loads(text)["data"]["7001"]
    assert raw == json.loads(text)["data"]["7001"]
    record = parse_record(raw)
    assert record.item_ids == (str(BIG), str(-BIG)) and record.fail_code == str(BIG)
    assert record.raw["item_list"][0]["item_id"] == BIG and type(record.raw["item_list"][0]["item_id"]) is int
    assert record.image_urls == (f"https://p.example/tos-cn-i-x/h~t.png?x-expires={BIG}",)
    assert record.done and record.video_urls == ("https://v.example/v.mp4",)
    assert record_refs(record, "video") == (ResultRef("video", str(-BIG)),)
    again = parse_record(jsonfast.loads(jsonfast.dumps(raw)))
    assert again == record
    assert_same(raw)


def test_video_model_strings_read_alike_on_both_codecs(codec: str) -> None:
    """The `video_model` JSON string inside an item is read by jsonfast: its integers stay exact, its
    watermark-free URL is found, and a string that is not JSON is skipped, with either codec."""
    model = {"video_list": {"v1": {"main_url": _b64("https://clean.example/v.mp4"), "vwidth": 2, "vheight": 2}},
             "url_expire": BIG}
    item = {"item_id": "i1", "video": {"play_url": "https://v.example/p.mp4", "video_model": json.dumps(model)}}
    assert [m["url_expire"] for m in video_models(item) if isinstance(m, dict)] == [BIG]
    other = {"video": {"play_url": "https://v.example/q.mp4", "video_model": "{not json"}}
    record = parse_record({"status": 50, "item_list": [item, other]})
    assert record.video_urls == ("https://clean.example/v.mp4", "https://v.example/q.mp4")
    assert not record.clean_videos  # the second item's URL is the preview one
    assert parse_record({"status": 50, "item_list": [item]}).clean_videos



@pytest.mark.parametrize("status", [20, 42, 45, 50, 10, 30, 99, "20", None])
@pytest.mark.parametrize("items", [0, 1, 4])
def test_a_poll_reads_the_items_of_final_records_only(status: Any, items: int) -> None:
    """`parse_record(..., running_items=False)` (the watcher's poll): a record still running keeps its status,
    fail code, item count, meaning and raw record but no item is read; any other record is parsed in full."""
    item = {"image": {"large_images": [{"image_url": "https://cdn.example/a.png", "image_uri": "tos-a/b"}]}, "id": 7}
    raw: dict[str, Any] = {"status": status, "fail_code": "2038", "item_list": [dict(item) for _ in range(items)]}
    full = parse_record(raw)
    polled = parse_record(raw, running_items=False)
    if full.meaning is StatusMeaning.RUNNING:
        unread = dataclasses.replace(full, image_urls=(), video_urls=(), item_ids=(), clean_videos=False, items=())
        assert polled == unread
        assert (polled.status, polled.item_count, polled.fail_code, polled.raw) == (full.status, items, "2038", raw)
    else:
        assert polled == full
