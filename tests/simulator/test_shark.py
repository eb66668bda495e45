"""The simulator's risk control (simulator/shark.py) as pure checks: a_bogus verification, full jars, and the order
of the 4013 and 1019 refusals."""

from __future__ import annotations

import random
from typing import Any

from jimeng_server.simulator.shark import Shark, fnv1a
from jimeng_server.simulator.state import SEEDANCE_20_KEYS
from jimeng_server.upstream.signing import parse_cookie

SID = "sess-shark-0001"
QUERY = "aid=513695&device_platform=web&region=cn&webId=7000000000000000001&da_version=3.3.9"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{}.0.0.0 Safari/537.36"
)


def check(shark: Shark, cookie: str, raw_query: str = QUERY, **kw: Any) -> str | None:
    query = dict(p.split("=", 1) for p in raw_query.split("&"))
    refusal = shark.check(
        headers={"cookie": cookie, **kw.pop("headers", {})},
        query=query,
        raw_query=raw_query,
        sessionid=SID,
        account_free=kw.pop("free", False),
        model_key=kw.pop("model", "dreamina_seedance_40_pro"),
        shark_models=SEEDANCE_20_KEYS,
        paid_models=SEEDANCE_20_KEYS,
    )
    return None if refusal is None else refusal.ret


def test_fnv1a_matches_the_known_vectors() -> None:
    assert fnv1a("") == "811c9dc5" and fnv1a("a") == "e40c292c" and fnv1a("foobar") == "bf9cf968"


def test_only_an_a_bogus_made_for_this_query_with_an_issued_token_passes() -> None:
    shark = Shark(random.Random(1))
    plain = f"_tea_web_id=7000000000000000001; sessionid={SID}"
    assert check(shark, plain) == "1019"
    signed = f"{QUERY}&a_bogus={shark.a_bogus_for(QUERY)}"
    assert check(shark, plain, signed) is None
    assert check(shark, plain, signed.replace("3.3.9", "3.4.0")) == "1019"  # the query changed after signing
    forged = f"{QUERY}&a_bogus=0000000000000000.{fnv1a('0000000000000000|' + QUERY)}"
    assert check(shark, plain, forged) == "1019"  # a token the page never issued
    assert check(shark, plain, model="dreamina_ic_generate_video_model_vgfm_3.5_pro") is None  # not in shark mode


def test_a_full_jar_passes_without_a_bogus_and_its_identity_is_checked() -> None:
    shark = Shark(random.Random(2))
    jar = shark.issue_jar(SID, user_id="abc", now=1_780_000_000, chrome=147)
    web_id = parse_cookie(jar)["_tea_web_id"]
    query = QUERY.replace("7000000000000000001", web_id)
    assert check(shark, jar, query) is None
    assert check(shark, jar, query, headers={"user-agent": CHROME.format(147)}) is None
    assert check(shark, jar, query, headers={"user-agent": CHROME.format(132)}) == "4013"
    assert check(shark, jar, QUERY) == "4013"  # webId differs from _tea_web_id
    assert check(shark, jar, query, free=True) == "4013"
    other = Shark(random.Random(3)).issue_jar("someone-else", user_id="x", now=1_780_000_000, chrome=147)
    other_query = QUERY.replace("7000000000000000001", parse_cookie(other)["_tea_web_id"])
    assert check(shark, other.replace("someone-else", SID), other_query) == "1019"  # fingerprints it never issued
