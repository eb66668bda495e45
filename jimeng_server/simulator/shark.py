"""The simulator's risk control on generate ("shark"), its web page and its browser cookie jars (§17.6–17.7).

Checks on `aigc_draft/generate`, in this order, after the request checks of `checks.py` and the draft validation:
1. `webId` query (CN) differs from the `_tea_web_id` cookie                                   -> 4013
2. the cookie is a jar this simulator issued (`issue_jar`) and the `User-Agent`'s Chrome major differs
   from the one the jar was issued for (a missing User-Agent claims nothing, so it passes)        -> 4013
3. a paid model key (`settings.paid_models`) on an account marked `free`                          -> 4013
4. a model in shark mode (`settings.shark_models`, Seedance 2.0 by default) without a valid `a_bogus` and
   without a full jar of this account                                                             -> 1019

The page: `GET /{web vhost}/` answers a small HTML page whose script (`GET /{web vhost}/secsdk/runtime.js`,
`SCRIPT_PATH`) wraps `window.fetch`, sets `window.bdms`, and appends `a_bogus=<token>.<hash>` to generate calls:
`token` is issued per script load and `hash` is FNV-1a (32 bit, hex) of `token + "|" + <query before a_bogus>`.
Only a real JavaScript engine that ran the script can send a valid one (or a test that calls `a_bogus_for`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from urllib.parse import unquote

from ..upstream.identity import chrome_major
from ..upstream.signing import parse_cookie, sid_guard
from .checks import Refusal

SCRIPT_PATH = "/secsdk/runtime.js"
RISK_ERRMSG = "生成失败，疑似存在异常行为，请重新尝试"
SHARK_ERRMSG = "shark not pass"
_A_BOGUS = "&a_bogus="


@dataclass(frozen=True, slots=True)
class JarFacts:
    """What the simulator remembers about a jar it issued (keyed by its `ttwid`)."""

    sessionid: str
    web_id: str
    chrome_major: int


def fnv1a(text: str) -> str:
    """FNV-1a 32-bit of the text's character codes (ASCII here), as 8 hex digits; the page script does the same."""
    h = 0x811C9DC5
    for ch in text:
        h ^= ord(ch)
        h = (h * 0x01000193) & 0xFFFFFFFF
    return f"{h:08x}"


PAGE_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Jimeng (simulated)</title>
<script src="secsdk/runtime.js"></script></head>
<body><p>simulated upstream page</p></body></html>
"""

_SCRIPT = """(function () {
  var token = "%TOKEN%";
  var nativeFetch = window.fetch.bind(window);
  function fnv(s) {
    var h = 0x811c9dc5;
    for (var i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 0x01000193) >>> 0; }
    return ("0000000" + h.toString(16)).slice(-8);
  }
  window.fetch = function (input, init) {
    var url = typeof input === "string" ? input : input.url;
    if (url.indexOf("/aigc_draft/generate") >= 0) {
      var q = url.indexOf("?") >= 0 ? url.slice(url.indexOf("?") + 1) : "";
      url += (url.indexOf("?") >= 0 ? "&" : "?") + "a_bogus=" + encodeURIComponent(token + "." + fnv(token + "|" + q));
    }
    return nativeFetch(url, init);
  };
  window.bdms = {ready: true};
})();
"""


class Shark:
    """Issued page tokens and jars, and the generate checks that use them."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.tokens: set[str] = set()
        self.jars: dict[str, JarFacts] = {}
        self.script_loads = 0

    def script(self) -> str:
        """The page's security script, with a freshly issued token."""
        token = f"{self._rng.getrandbits(64):016x}"
        self.tokens.add(token)
        self.script_loads += 1
        return _SCRIPT.replace("%TOKEN%", token)

    def a_bogus_for(self, query: str) -> str:
        """A valid `a_bogus` for a raw query (what the page script computes), under a newly issued token."""
        token = f"{self._rng.getrandbits(64):016x}"
        self.tokens.add(token)
        return f"{token}.{fnv1a(token + '|' + query)}"

    def a_bogus_ok(self, raw_query: str) -> bool:
        """True when the raw query ends with an `a_bogus` the page script made for the query before it."""
        head, sep, value = raw_query.rpartition(_A_BOGUS)
        if not sep or "&" in value:
            return False
        token, dot, digest = unquote(value).partition(".")
        return bool(dot) and token in self.tokens and digest == fnv1a(token + "|" + head)

    def page_cookies(self, sessionid: str, *, chrome: int, web_id: str | None) -> dict[str, str]:
        """The cookies the page's security SDK sets for a signed-in browser (Chrome `chrome`): a registered
        `ttwid` tied to the browser's `_tea_web_id` (set only when it has none yet, as the analytics SDK does),
        and the fingerprint cookies. A jar taken from that browser is full."""
        ttwid = f"1%7C{self._rng.getrandbits(128):032x}%7C{self._rng.getrandbits(32)}"
        fresh = {} if web_id else {"_tea_web_id": str(7 * 10**18 + self._rng.randrange(10**18))}
        self.jars[ttwid] = JarFacts(sessionid=sessionid, web_id=web_id or fresh["_tea_web_id"], chrome_major=chrome)
        return {
            **fresh,
            "ttwid": ttwid,
            "fpk1": f"{self._rng.getrandbits(256):064x}",
            "odin_tt": f"{self._rng.getrandbits(256):064x}",
        }

    def issue_jar(self, sessionid: str, *, user_id: str, now: int, chrome: int = 142) -> str:
        """A full browser jar (a `Cookie` header string) for `sessionid`, as if harvested from Chrome `chrome`."""
        ttwid = f"1%7C{self._rng.getrandbits(128):032x}%7C{now}"
        web_id = str(7 * 10**18 + self._rng.randrange(10**18))
        self.jars[ttwid] = JarFacts(sessionid=sessionid, web_id=web_id, chrome_major=chrome)
        pairs = [
            ("_tea_web_id", web_id),
            ("passport_csrf_token", f"{self._rng.getrandbits(128):032x}"),
            ("is_staff_user", "false"),
            ("sid_guard", sid_guard(sessionid, now)),
            ("uid_tt", user_id),
            ("uid_tt_ss", user_id),
            ("sid_tt", sessionid),
            ("sessionid", sessionid),
            ("sessionid_ss", sessionid),
            ("ttwid", ttwid),
            ("fpk1", f"{self._rng.getrandbits(256):064x}"),
            ("odin_tt", f"{self._rng.getrandbits(256):064x}"),
        ]
        return "; ".join(f"{k}={v}" for k, v in pairs)

    def check(
        self,
        *,
        headers: dict[str, str],
        query: dict[str, str],
        raw_query: str,
        sessionid: str,
        account_free: bool,
        model_key: str,
        shark_models: frozenset[str],
        paid_models: frozenset[str],
    ) -> Refusal | None:
        """The generate checks of the module docstring, in order; None when the call passes."""
        cookie = parse_cookie(headers.get("cookie", ""))
        risk = Refusal("4013", RISK_ERRMSG)
        tea = cookie.get("_tea_web_id")
        if "webId" in query and tea is not None and query["webId"] != tea:
            return risk
        jar = self.jars.get(cookie.get("ttwid", ""))
        if jar is not None and jar.sessionid != sessionid:
            jar = None  # another account's fingerprint cookies: not this account's jar
        agent = headers.get("user-agent")
        if jar is not None and agent is not None and chrome_major(agent) != jar.chrome_major:
            return risk
        if account_free and model_key in paid_models:
            return risk
        if model_key in shark_models and jar is None and not self.a_bogus_ok(raw_query):
            return Refusal("1019", SHARK_ERRMSG)
        return None
