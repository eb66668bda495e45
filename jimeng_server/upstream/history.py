"""Pure parsing of `get_history_by_ids` records (docs/protocol.md §9.2–§9.4, §17.8–17.9, §18.4–18.5)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, TypedDict

from .. import jsonfast
from .codes import DEFAULT_STATUSES, STATUSES, StatusMeaning, StatusPolicy, meaning_of

WAITING_STATUSES = frozenset(s for s, f in STATUSES.items() if f.meaning is StatusMeaning.RUNNING) | {45}
"""Statuses known to be running (upstream/codes.py; 45 by default, §18.2); others are logged by the watcher."""
STATUS_SLOWDOWN: dict[int, float] = {42: 1.2, 45: 1.5}
"""Poll-interval factors for the later running statuses (the watcher's cadence)."""


class QueueBody(TypedDict):
    """Where a waiting task stands in the upstream's queue (§17.9); each field null when not given."""

    position: int | None
    length: int | None
    eta_seconds: float | None


ItemView = tuple[str | None, str | None, bool, str | None, str | None]
"""One item of a record as parsed once (`item_view`): `(image_url, video_url, clean, item_id, image_uri)`: its
image URL (`extract_image_url`), its video URL (`extract_video_url`), whether that video URL is the watermark-free
`video_model` one, its id (`item_id`), and the uri its image names (`image.large_images[0].image_uri`, else
`common_attr.cover_uri`: what an image result is re-signed from, `links.record_refs`); None when absent. A plain
tuple: one is made per item of every polled record, and a named one costs several times more to build."""


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    """What the server needs from one upstream history record.

    `clean_videos` is True when every video URL came from the item's `video_model` (the watermark-free URL,
    §18.4): no `get_local_item_list` call is needed then.
    """

    status: int | None
    fail_code: str
    item_count: int
    image_urls: tuple[str, ...]
    video_urls: tuple[str, ...]
    item_ids: tuple[str, ...]
    raw: dict[str, Any]
    clean_videos: bool = False
    meaning: StatusMeaning = StatusMeaning.RUNNING
    """What `status` means under the policy the record was parsed with (`codes.meaning_of`)."""
    items: tuple[ItemView, ...] = ()
    """What was read of each entry of `raw["item_list"]`, in order (one per entry; `with_high_quality` leaves
    it as parsed, preview URLs): callers that need per-item facts (`links.record_refs`) read them here
    instead of walking the raw items again."""

    @property
    def done(self) -> bool:
        return self.meaning is StatusMeaning.DONE

    @property
    def failed(self) -> bool:
        return self.meaning is StatusMeaning.FAILED

    @property
    def final(self) -> bool:
        return self.done or self.failed

    def urls(self, kind: str) -> tuple[str, ...]:
        """Result URLs of a task of `kind` ("image" or "video"); falls back to whatever the items hold."""
        primary = self.video_urls if kind == "video" else self.image_urls
        return primary or self.image_urls or self.video_urls


def _dig(obj: Any, *keys: str | int) -> Any:
    for key in keys:
        if isinstance(key, int):
            if not isinstance(obj, list) or len(obj) <= key:
                return None
            obj = obj[key]
        else:
            if not isinstance(obj, dict):
                return None
            obj = obj.get(key)
    return obj


def unescape_url(url: str) -> str:
    """Undo the literal `\\u0026` sequences the upstream leaves in some URLs (§9.3)."""
    return url.replace("\\u0026", "&")


def extract_image_url(item: Any) -> str | None:
    """`item.image.large_images[0].image_url`, unescaped; None when absent."""
    image = item.get("image") if isinstance(item, dict) else None  # _dig's walk, spelt out: it runs per item
    large = image.get("large_images") if isinstance(image, dict) else None
    first = large[0] if isinstance(large, list) and large else None
    url = first.get("image_url") if isinstance(first, dict) else None
    return unescape_url(url) if isinstance(url, str) and url else None


_TRANSCODED = ("common_attr", "video")
"""Where an item's `transcoded_video` may sit, in order (§9.3, §18.4)."""
_VIDEO_PATHS: tuple[tuple[str | int, ...], ...] = (
    ("video", "play_url"),
    ("video", "download_url"),
    ("video", "url"),
)
# get_local_item_list prefers the download URL over the play URL (§9.5).
_HQ_VIDEO_PATHS: tuple[tuple[str | int, ...], ...] = (
    ("video", "download_url"),
    ("video", "play_url"),
    ("video", "url"),
)


def _pixels(entry: dict[str, Any]) -> int:
    width, height = entry.get("width"), entry.get("height")
    return width * height if isinstance(width, int) and isinstance(height, int) else 0


def transcoded_url(item: Any) -> str | None:
    """The URL of `transcoded_video` under `common_attr` or `video`: its `origin` entry (§18.4), else the widest
    of its other entries, which real answers key by resolution name such as "360p" (§19.12, PY measured)."""
    for container in _TRANSCODED:
        variants = _dig(item, container, "transcoded_video")
        if not isinstance(variants, dict):
            continue
        entries = [v for v in variants.values() if isinstance(v, dict) and isinstance(v.get("video_url"), str)]
        entries = [v for v in entries if v["video_url"]]
        origin = variants.get("origin")
        if isinstance(origin, dict) and origin in entries:
            return str(origin["video_url"])
        if entries:
            return str(max(entries, key=_pixels)["video_url"])
    return None


def _area(entry: dict[str, Any]) -> int:
    width, height = entry.get("vwidth"), entry.get("vheight")
    return width * height if isinstance(width, int) and isinstance(height, int) else 0


def _b64_url(value: Any) -> str | None:
    """A base64-encoded http(s) URL decoded, else None (real ones are `https://`; the simulator serves http)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        url = base64.b64decode(value + "=" * (-len(value) % 4), validate=False).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return url if url.startswith(("https://", "http://")) else None


def video_models(item: Any) -> Iterator[Any]:
    """The `video_model` objects of an item, decoded (§17.8, §18.4): `item.video.video_model`, then
    `item.video_model`; each may be a JSON string (one that does not decode is skipped) or an object."""
    for raw in (_dig(item, "video", "video_model"), _dig(item, "video_model")):
        if isinstance(raw, str):
            try:
                yield jsonfast.loads(raw)  # the same values as json.loads, read by the fast codec when present
            except ValueError:
                continue
        else:
            yield raw


def watermark_free_url(item: Any) -> str | None:
    """The URL of `video_model` (§17.8, settled by the real item of §18.4): `item.video.video_model` (or
    `item.video_model`), a JSON string whose `video_list` entry with the largest `vwidth × vheight` has
    `main_url` (else `backup_url_1`) as base64 of a plain URL. None when anything is missing."""
    for model in video_models(item):
        entries = _dig(model, "video_list")
        if not isinstance(entries, dict):
            continue
        for entry in sorted((e for e in entries.values() if isinstance(e, dict)), key=_area, reverse=True):
            url = _b64_url(entry.get("main_url")) or _b64_url(entry.get("backup_url_1"))
            if url:
                return url
    return None


def _without_video(item: Any) -> bool:
    """True when none of the paths a video URL is read from exists in `item` (an image item): every one starts
    at `video`, `video_model` or `common_attr.transcoded_video`."""
    if not isinstance(item, dict):
        return True
    if "video" in item or "video_model" in item:
        return False
    attr = item.get("common_attr")
    return not (isinstance(attr, dict) and "transcoded_video" in attr)


def extract_video_url(item: Any, *, high_quality: bool = False) -> str | None:
    """The video URL of an item: the watermark-free `video_model` URL when present, else `transcoded_video`'s
    (`transcoded_url`), else the first URL at the other documented item paths (§9.3, §9.5 for `high_quality`)."""
    return None if _without_video(item) else _video_url(item, high_quality)[0]


def _video_url(item: Any, high_quality: bool) -> tuple[str | None, bool]:
    """`extract_video_url` of an item that is not `_without_video`, and whether the URL is the watermark-free
    one (read once, for `parse_record`)."""
    clean = watermark_free_url(item)
    if clean is not None:
        return clean, True
    transcoded = transcoded_url(item)
    if transcoded is not None:
        return unescape_url(transcoded), False
    for path in _HQ_VIDEO_PATHS if high_quality else _VIDEO_PATHS:
        url = _dig(item, *path)
        if isinstance(url, str) and url:
            return unescape_url(url), False
    return None, False


_NO_ITEM: ItemView = (None, None, False, None, None)
_NO_ID = (None, "", 0)
"""Values that name no item id (compared with ==, so False and 0.0 name none either)."""


def item_view(item: Any) -> ItemView:
    """Everything `parse_record` reads of one item (see `ItemView`), each path walked once.

    The same values as `extract_image_url`, `extract_video_url` and `item_id` give, read in one pass
    (it runs for every item of every polled record; tests/upstream/test_parse_once.py holds it to the readers):
    the image path is walked once for the URL and the uri, `common_attr` is read once for the video check, the
    cover uri and the id."""
    if not isinstance(item, dict):
        return _NO_ITEM
    image = item.get("image")
    large = image.get("large_images") if isinstance(image, dict) else None
    first = large[0] if isinstance(large, list) and large else None
    if isinstance(first, dict):
        url = first.get("image_url")
        uri = first.get("image_uri")
        url = url.replace("\\u0026", "&") if isinstance(url, str) and url else None
    else:
        url = uri = None
    attr = item.get("common_attr")
    attr = attr if isinstance(attr, dict) else None
    if not (isinstance(uri, str) and uri):
        uri = attr.get("cover_uri") if attr is not None else None
        uri = uri if isinstance(uri, str) and uri else None
    iid = item.get("item_id")
    if iid in _NO_ID:
        iid = item.get("id")
        if iid in _NO_ID:
            iid = item.get("local_item_id")
            if iid in _NO_ID:
                iid = attr.get("id") if attr is not None else None
    iid = None if iid in _NO_ID else str(iid)
    if "video" in item or "video_model" in item or (attr is not None and "transcoded_video" in attr):
        video, clean = _video_url(item, False)
        return (url, video, clean, iid, uri)
    return (url, None, False, iid, uri)


def item_id(item: Any) -> str | None:
    """The id used to ask for a high-quality video URL (§9.3)."""
    if not isinstance(item, dict):
        return None
    attr = item.get("common_attr")
    for value in (item.get("item_id"), item.get("id"), item.get("local_item_id")):
        if value not in _NO_ID:
            return str(value)
    value = attr.get("id") if isinstance(attr, dict) else None
    return str(value) if value not in _NO_ID else None


def parse_status(value: Any) -> int | None:
    """The record status as an int (accepts numeric strings); None if absent or not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def parse_record(
    raw: dict[str, Any], statuses: StatusPolicy = DEFAULT_STATUSES, *, running_items: bool = True
) -> HistoryRecord:
    """Parse one record; `fail_code` (a string or a number upstream, §18.5) is normalised to a string ("" when
    none); whether its status is final follows the status table and `statuses` (`codes.meaning_of`).

    With `running_items=False` (a poller that keeps only the status, the item count and the raw record of a task
    still running: the watcher) a record whose meaning is RUNNING is not read item by item: its `items`, URLs and
    ids are empty, everything else is as parsed. A final record is parsed in full either way."""
    items = raw.get("item_list")
    fail = raw.get("fail_code")
    fail_code = "" if fail in (None, 0, "0", "") else str(fail)
    status = parse_status(raw.get("status"))
    if not (isinstance(items, list) and items):  # no items: nothing to collect
        return HistoryRecord(status, fail_code, 0, (), (), (), raw, False, meaning_of(status, 0, statuses))
    meaning = meaning_of(status, len(items), statuses)
    if meaning is StatusMeaning.RUNNING and not running_items:
        return HistoryRecord(status, fail_code, len(items), (), (), (), raw, False, meaning)
    views = tuple(map(item_view, items))
    images: list[str] = []
    videos: list[str] = []
    ids: list[str] = []
    clean = True
    for image, video, clean_video, iid, _ in views:
        if image:
            images.append(image)
        if video:
            videos.append(video)
            clean = clean and clean_video
        if iid:
            ids.append(iid)
    return HistoryRecord(
        status,
        fail_code,
        len(views),
        tuple(images),
        tuple(videos),
        tuple(ids),
        raw,
        bool(videos) and clean,
        meaning,
        views,
    )


def _count(value: Any) -> int | None:
    """A non-negative integer, else None (negatives, fractions, strings and bools are ignored, §17.9)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def queue_of(raw: Any) -> QueueBody | None:
    """`{"position", "length", "eta_seconds"}` from `queue_info.queue_idx`, `queue_info.queue_length` and the
    record's top-level `forecast_queue_cost` (read as seconds, as fran0220 does; §17.9); None when the record
    gives none of them."""
    position = _count(_dig(raw, "queue_info", "queue_idx"))
    length = _count(_dig(raw, "queue_info", "queue_length"))
    eta = _seconds(_dig(raw, "forecast_queue_cost"))
    if position is None and length is None and eta is None:
        return None
    return {"position": position, "length": length, "eta_seconds": eta}


_NUMBERS = (int, float)
_INF = float("inf")


def _seconds(value: Any) -> float | None:
    """A finite non-negative number of seconds, else None (bools, strings, negatives and NaN are ignored)."""
    if isinstance(value, _NUMBERS) and not isinstance(value, bool) and 0 <= value < _INF:
        return float(value)
    return None


def forecast_left(raw: Any) -> float | None:
    """Seconds the upstream expects a running record (or a generate answer's `aigc_data`) still to take, counted
    from its answer: the top-level `forecast_queue_cost` (the wait in the queue; 0 when absent, as on a record
    already generating, §18.2) plus `forecast_generate_cost` (generating after that), both read as seconds
    (docs/protocol.md §17.9). None when `forecast_generate_cost` is absent or unusable: a missing forecast is
    normal (final records, older answers), and the caller then times its polls otherwise."""
    generate = _seconds(_dig(raw, "forecast_generate_cost"))
    if generate is None:
        return None
    return (_seconds(_dig(raw, "forecast_queue_cost")) or 0.0) + generate


def fail_message_of(raw: Any) -> str | None:
    """The upstream's readable failure text: `fail_starling_message`, else `fail_msg` (§17.9, §18.5)."""
    for key in ("fail_starling_message", "fail_msg"):
        value = _dig(raw, key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


_HQ_URL_PATTERNS = (
    re.compile(r"https://v\d+-dreamnia\.jimeng\.com/[^\"'\s\\]+"),
    re.compile(r"https://v\d+-[\w.-]+\.jimeng\.com/[^\"'\s\\]+"),
    re.compile(r"https://v\d+-[\w.-]+\.(?:vlabvod|jimeng)\.com/[^\"'\s\\]+"),
)


def local_item_urls(data: Any) -> dict[str, str]:
    """Item id -> download-quality video URL from a `get_local_item_list` answer (§9.5).

    The list is `item_list` or `local_item_list`; the URL follows the §9.5 path order. When a single item
    carries no URL field, the serialized item is scanned with the reference's regular expressions.
    """
    items = _dig(data, "item_list") or _dig(data, "local_item_list")
    out: dict[str, str] = {}
    for item in items if isinstance(items, list) else []:
        iid = item_id(item)
        if iid is None:
            continue
        url = extract_video_url(item, high_quality=True)
        if url is None:
            blob = json.dumps(item, ensure_ascii=False)
            url = next((m.group(0) for p in _HQ_URL_PATTERNS if (m := p.search(blob))), None)
        if url:
            out[iid] = unescape_url(url)
    return out


def with_high_quality(record: HistoryRecord, hq: dict[str, str]) -> HistoryRecord:
    """`record` with each item's video URL replaced by its high-quality URL when `hq` has one; a watermark-free
    `video_model` URL of the record is kept (§17.8 order: video_model, high quality, preview)."""
    items = record.raw.get("item_list")
    if not hq or not isinstance(items, list):
        return record
    urls = []
    for item in items:
        iid = item_id(item)
        url = watermark_free_url(item) or (hq.get(iid) if iid is not None else None)
        url = url or extract_video_url(item)
        if url:
            urls.append(url)
    return replace(record, video_urls=tuple(urls))
