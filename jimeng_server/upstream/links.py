"""Result links that expire, and what re-signs them (docs/protocol.md §19.4, §18.4, §9.5). Pure functions.

- A result URL's lifetime is its `x-expires` query parameter (unix seconds; image and cover URLs, §19.4), else
  the `url_expire` of the item's `video_model` (§18.4); unknown otherwise.
- What a result is re-signed from (`ResultRef`): an image by its **uri** (`image.large_images[0].image_uri`, else
  `common_attr.cover_uri`, else the URL's path up to the `~tplv-` template: `tos-cn-i-…/<hash>`), re-signed with
  `get_image_by_uri {"uris": [...]}`; a video by its **item id**, re-signed with `get_local_item_list` (no shape
  of `get_video_by_vid` is known, §19.4).
- `uri2image` answers map each uri to `{image_uri, image_url}`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

from .history import (
    HistoryRecord,
    _dig,
    parse_record,
    unescape_url,
    video_models,
)

IMAGE_BY_URI_PATH: Final = "/mweb/v1/get_image_by_uri"


@dataclass(frozen=True, slots=True)
class ResultRef:
    """What one result can be re-signed from: `kind` "image" (`key` = image uri) or "video" (`key` = item id)."""

    kind: str
    key: str


_EXPIRES: Final = "x-expires"
_NAME: Final = _EXPIRES + "="


EXPIRY_MEMO: Final = 8192
"""Result URLs whose expiry `url_expiry` remembers (the most recently read; a burst's event bodies and their sends
read the same URLs within moments). About 300 bytes each, the URL included: 2.5 MB when full (measured)."""


@functools.lru_cache(maxsize=EXPIRY_MEMO)
def url_expiry(url: str) -> float | None:
    """The `x-expires` of a URL (the last one when repeated), None when it has none.

    The same answer as `parse_qs(urlsplit(url).query)["x-expires"][-1]` (read as digits), computed without
    building the whole query dict. It is read for each result by the settler's event body (`result_item`, whose
    earliest expiry the event stores), by the expiry checks of answers and of events stored without it
    (`result_links.earliest_expiry`) and by the keeper, so each URL is read once and remembered (the last
    `EXPIRY_MEMO` URLs; a pure function of the text). URLs urlsplit treats specially (non-ASCII, brackets, tabs or
    newlines) take that path itself."""
    text = unescape_url(url) if "\\" in url else url
    if not text.isascii() or "[" in text or "]" in text or "\t" in text or "\r" in text or "\n" in text:
        values = parse_qs(urlsplit(text).query).get(_EXPIRES) or [""]
        return _digits(values[-1])
    cut = text.find("#")
    start = text.find("?", 0, cut) if cut >= 0 else text.find("?")
    if start < 0:
        return None  # no query
    query = text[start + 1 : cut] if cut >= 0 else text[start + 1 :]
    if "%" not in query:
        at = query.rfind(_NAME)
        while at > 0 and query[at - 1] != "&":  # "ax-expires=": not the field; look further left
            at = query.rfind(_NAME, 0, at)
        if at < 0:
            return None
        end = query.find("&", at)
        value = query[at + len(_NAME) : end] if end >= 0 else query[at + len(_NAME) :]
        if value:  # the last field named x-expires with a value: parse_qs's answer ("+" is no digit either way)
            return _digits(value)
    # escapes (real links escape their x-signature), or a last x-expires without a value: the fields as parse_qs
    # reads them, from the last one back to the first that counts
    for field in reversed(query.split("&")):
        name, eq, given = field.partition("=")
        if not eq or not given:
            continue  # parse_qs drops fields without a value
        if name == _EXPIRES or ("%" in name and unquote(name.replace("+", " ")) == _EXPIRES):
            return _digits(unquote(given.replace("+", " ")) if "%" in given or "+" in given else given)
    return None


def _digits(text: str) -> float | None:
    return float(text) if text.isdigit() else None


def _uri_from_url(url: str) -> str | None:
    path = urlsplit(url).path.lstrip("/")
    uri = path.split("~", 1)[0]
    return uri if uri.startswith("tos-") and "/" in uri else None


def _image_ref(uri: str | None, url: str) -> ResultRef | None:
    """The ref of an image result (see the module doc): the uri its item names (`ItemView`'s `image_uri`), else
    the `tos-` uri in the path of its URL (`url`: the item's image URL as `parse_record` read it); None when
    neither names one."""
    if uri is not None:
        return ResultRef("image", uri)
    uri = _uri_from_url(url)
    return ResultRef("image", uri) if uri else None


def result_refs(raw: dict[str, Any] | None, kind: str) -> tuple[ResultRef | None, ...]:
    """One ref per result URL of a settled record, in the order `HistoryRecord.urls(kind)` lists them (items
    without a URL of that kind give no result; a result whose item names no ref gets None): `record_refs` of the
    record parsed from `raw` (a stored row's record)."""
    return record_refs(parse_record(raw), kind) if isinstance(raw, dict) else ()


def record_refs(record: HistoryRecord, kind: str) -> tuple[ResultRef | None, ...]:
    """One ref per result URL of `record` (see `result_refs`), from what `parse_record` read of each item
    (`record.items`): no item path is walked twice. A video record that shows no video falls back to its images,
    as `HistoryRecord.urls` does. A record whose `items` do not match its raw item list (built by hand) is parsed
    from `raw` first."""
    items = record.raw.get("item_list")
    views = record.items
    if not isinstance(items, list):
        return ()
    if len(views) != len(items):
        return record_refs(parse_record(record.raw), kind)
    if kind == "video":
        refs = tuple(ResultRef("video", iid) if iid else None for _, video, _, iid, _ in views if video)
        if refs:
            return refs
    return tuple(_image_ref(uri, url) for url, _, _, _, uri in views if url)


def video_model_expiry(item: Any) -> float | None:
    """`url_expire` of an item's `video_model` JSON (§18.4), None when absent."""
    for model in video_models(item):
        value = _dig(model, "url_expire")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def image_by_uri_body(uris: list[str]) -> dict[str, Any]:
    """The request body: the plural `uris` (the singular key answers ret 1000, §19.4)."""
    return {"uris": list(uris)}


def parse_uri2image(data: Any) -> dict[str, str]:
    """uri -> fresh image URL (unescaped) from a `get_image_by_uri` answer; entries without a URL are left out."""
    table = _dig(data, "uri2image")
    out: dict[str, str] = {}
    for uri, entry in table.items() if isinstance(table, dict) else ():
        url = _dig(entry, "image_url")
        if isinstance(uri, str) and isinstance(url, str) and url:
            out[uri] = unescape_url(url)
    return out
