"""`upstream.links.url_expiry`: the `x-expires` of a result URL, read without building the whole query dict.

Its contract is the answer `urllib.parse` gives (`parse_qs(urlsplit(url).query)`, the last value, digits only);
the property test holds it to that reference over URLs made of the pieces that matter (percent-escapes, `+`,
empty and value-less fields, fragments, the upstream's literal `\\u0026`, brackets, non-ASCII, tabs)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from jimeng_server.upstream.links import url_expiry


def reference(url: str) -> float | None:
    """What `url_expiry` must answer: the standard library's reading of the query."""
    values = parse_qs(urlsplit(url.replace("\\u0026", "&")).query).get("x-expires") or [""]
    text = values[-1]
    return float(text) if text.isdigit() else None


def outcome(read: Callable[[str], float | None], url: str) -> float | str | None:
    """`read(url)`, or the name of the ValueError it raises (urlsplit refuses some netlocs, float() some unicode
    digits: both readers must raise it alike)."""
    try:
        return read(url)
    except ValueError as exc:
        return type(exc).__name__


def assert_same(url: str) -> None:
    assert outcome(url_expiry, url) == outcome(reference, url), url


REAL = (
    "https://p3-dreamina-sign.byteimg.com/tos-cn-i-tb4s082cfz/0123abcd~tplv-tb4s082cfz-aigc_resize:0:0.png"
    "?lk3s=43402efa&x-expires=1767225600&x-signature=abcDEF%2Bghi%3D&format=.png"
)


def test_real_links() -> None:
    assert url_expiry(REAL) == 1767225600.0
    assert url_expiry(REAL.replace("&x-expires", "\\u0026x-expires")) == 1767225600.0  # the upstream's escape
    assert url_expiry("https://cdn.example/a.png?sig=1&t=2") is None
    assert url_expiry("https://cdn.example/a.png") is None
    assert url_expiry("https://cdn.example/a.png?x-expires=1&x-expires=2") == 2.0  # the last one counts
    assert url_expiry("https://cdn.example/a.png?x-expires=5&x-expires=") == 5.0  # an empty value is no value
    assert url_expiry("https://cdn.example/a.png?x%2Dexpires=7") == 7.0  # an escaped name
    assert url_expiry("https://cdn.example/a.png?x-expires=%37") == 7.0  # an escaped value
    assert url_expiry("https://cdn.example/a.png#?x-expires=7") is None  # in the fragment
    assert url_expiry("https://cdn.example/a.png?x-expires=12abc") is None


PIECES = st.sampled_from(
    [
        "x-expires", "x%2Dexpires", "x%2dexpires", "x+expires", "expires", "=", "&", "?", "#", "\\u0026", "%",
        "%3", "%37", "+", "1767225600", "12", "0", "a", "/", ":", "//", "https:", "[", "]", "é", "²", "\t", "\n",
        " ", ";", "..",
    ]
)


@settings(max_examples=3000, deadline=None)
@given(st.lists(PIECES, max_size=14).map("".join))
def test_same_answer_as_the_standard_library(url: str) -> None:
    assert_same(url)


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=40))
def test_any_text(url: str) -> None:
    assert_same(url)
