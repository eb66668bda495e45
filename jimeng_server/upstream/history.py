"""Pure parsing of `get_history_by_ids` records (upstream-protocol.md §9.2–§9.4)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any

DONE_STATUSES = frozenset({10, 50})
FAILED_STATUS = 30
WAITING_STATUSES = frozenset({20, 42, 45})
"""Statuses of a task still running (§9.4; 45 is not "finalizing": §18.2)."""
STATUS_SLOWDOWN: dict[int, float] = {42: 1.2, 45: 1.5}
"""Poll-interval factors for the later running statuses (the watcher's cadence)."""


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    """What the server needs from one upstream history record."""

    status: int | None
    fail_code: str
    item_count: int
    image_urls: tuple[str, ...]
    video_urls: tuple[str, ...]
    item_ids: tuple[str, ...]
    raw: dict[str, Any]

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES

    @property
    def failed(self) -> bool:
        return self.status == FAILED_STATUS

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
    url = _dig(item, "image", "large_images", 0, "image_url")
    return unescape_url(url) if isinstance(url, str) and url else None


_VIDEO_PATHS: tuple[tuple[str | int, ...], ...] = (
    ("common_attr", "transcoded_video", "origin", "video_url"),
    ("video", "transcoded_video", "origin", "video_url"),
    ("video", "play_url"),
    ("video", "download_url"),
    ("video", "url"),
)
# get_local_item_list prefers the download URL over the play URL (§9.5).
_HQ_VIDEO_PATHS: tuple[tuple[str | int, ...], ...] = (
    _VIDEO_PATHS[0],
    _VIDEO_PATHS[1],
    ("video", "download_url"),
    ("video", "play_url"),
    ("video", "url"),
)


def extract_video_url(item: Any, *, high_quality: bool = False) -> str | None:
    """The first video URL present at the documented item paths (§9.3, §9.5 for `high_quality`)."""
    for path in _HQ_VIDEO_PATHS if high_quality else _VIDEO_PATHS:
        url = _dig(item, *path)
        if isinstance(url, str) and url:
            return unescape_url(url)
    return None


def item_id(item: Any) -> str | None:
    """The id used to ask for a high-quality video URL (§9.3)."""
    for path in (("item_id",), ("id",), ("local_item_id",), ("common_attr", "id")):
        value = _dig(item, *path)
        if value not in (None, "", 0):
            return str(value)
    return None


def parse_status(value: Any) -> int | None:
    """The record status as an int (accepts numeric strings); None if absent or not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def parse_record(raw: dict[str, Any]) -> HistoryRecord:
    """Parse one record; `fail_code` is normalised to a string ("" when none)."""
    items = raw.get("item_list")
    items = items if isinstance(items, list) else []
    fail = raw.get("fail_code")
    fail_code = "" if fail in (None, 0, "0") else str(fail)
    images = tuple(u for u in (extract_image_url(i) for i in items) if u)
    videos = tuple(u for u in (extract_video_url(i) for i in items) if u)
    ids = tuple(i for i in (item_id(it) for it in items) if i)
    return HistoryRecord(
        status=parse_status(raw.get("status")),
        fail_code=fail_code,
        item_count=len(items),
        image_urls=images,
        video_urls=videos,
        item_ids=ids,
        raw=raw,
    )


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
    """`record` with each item's video URL replaced by its high-quality URL when `hq` has one."""
    items = record.raw.get("item_list")
    if not hq or not isinstance(items, list):
        return record
    urls = []
    for item in items:
        iid = item_id(item)
        url = hq.get(iid) if iid is not None else None
        url = url or extract_video_url(item)
        if url:
            urls.append(url)
    return replace(record, video_urls=tuple(urls))
