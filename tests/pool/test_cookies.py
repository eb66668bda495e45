"""Cookie jars (upstream/cookies.py) in their three forms, the refusals with their reasons, and the browser claims
(User-Agent, `os`, client hints) a jar account sends, which must never contradict the jar."""

from __future__ import annotations

import json

import pytest

from jimeng_server.clock import ManualClock
from jimeng_server.config import UpstreamConfig
from jimeng_server.upstream.client import JimengClient
from jimeng_server.upstream.cookies import JarError, load_jar, parse_cookies
from jimeng_server.upstream.identity import chrome_major, profile_for
from jimeng_server.upstream.regions import Region
from jimeng_server.upstream.signing import sid_guard
from jimeng_server.upstream.tokens import Account
from jimeng_server.upstream.transport import SessionPool

NOW = 1_780_000_000
SID = "0123456789abcdef0123456789abcdef"
WEB_ID = "7412345678901234567"
MAC_CHROME = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/147.0.0.0 Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0"
HEADER = (
    f"_tea_web_id={WEB_ID}; sid_guard={sid_guard(SID, NOW - 100)}; sessionid={SID}; sessionid_ss={SID}; ttwid=1%7Cab"
)
LINUX_CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/150.0.0.0"
EDGE = MAC_CHROME.replace("Safari/537.36", "Safari/537.36 Edg/147.0.1.2")


def netscape(*rows: tuple[str, int, str, str]) -> str:
    lines = ["# Netscape HTTP Cookie File", "# a comment"]
    for domain, expires, name, value in rows:
        prefix = "#HttpOnly_" if name.startswith("session") else ""
        lines.append(f"{prefix}{domain}\tTRUE\t/\tTRUE\t{expires}\t{name}\t{value}")
    return "\n".join(lines) + "\n"


def test_a_cookie_header_string_is_kept_verbatim() -> None:
    jar = load_jar("Cookie: " + HEADER, region=Region.CN, now=NOW)
    assert jar.header() == HEADER
    assert jar.sessionid == SID and jar.web_id == WEB_ID and jar.is_full
    assert jar.names() == ["_tea_web_id", "sid_guard", "sessionid", "sessionid_ss", "ttwid"]


def test_a_netscape_file_keeps_the_sites_live_cookies_only() -> None:
    text = netscape(
        (".jianying.com", NOW + 3600, "sessionid", SID),
        ("jimeng.jianying.com", 0, "_tea_web_id", WEB_ID),
        (".jianying.com", NOW - 5, "old", "gone"),
        (".example.com", NOW + 3600, "tracker", "x"),
    )
    jar = load_jar(text, region=Region.CN, now=NOW)
    assert jar.header() == f"sessionid={SID}; _tea_web_id={WEB_ID}"


def test_a_browser_extension_json_export_is_read() -> None:
    cookie_editor = [
        {"name": "sessionid", "value": SID, "domain": ".capcut.com", "expirationDate": NOW + 10.5},
        {"name": "ttwid", "value": "1%7Cxy", "domain": ".capcut.com", "session": True},
    ]
    jar = load_jar(json.dumps(cookie_editor), region=Region.US, now=NOW, user_agent=f"  {MAC_CHROME} ")
    assert jar.header() == f"sessionid={SID}; ttwid=1%7Cxy" and jar.user_agent == MAC_CHROME
    devtools = {"cookies": [{"name": "sessionid", "value": SID, "domain": "dreamina.capcut.com", "expires": -1}]}
    assert load_jar(json.dumps(devtools), region=Region.SG, now=NOW).sessionid == SID


@pytest.mark.parametrize(
    ("text", "region", "reason"),
    [
        ("_tea_web_id=1; ttwid=2", Region.CN, "no sessionid cookie"),
        (netscape((".capcut.com", NOW + 60, "sessionid", SID)), Region.CN, "no cookie of the cn site"),
        (netscape((".jianying.com", NOW + 60, "sessionid", SID)), Region.US, "capcut.com"),
        (netscape((".jianying.com", NOW - 60, "sessionid", SID)), Region.CN, "sessionid cookie expired on"),
        (f"sessionid={SID}; sid_guard={sid_guard(SID, NOW - 5184001)}", Region.CN, "(sid_guard)"),
        ("", Region.CN, "empty"),
        ("[{not json", Region.CN, "not valid JSON"),
        ('[{"name": "sessionid"}]', Region.CN, "entry 0: needs string 'name' and 'value'"),
        ('{"a": 1}', Region.CN, "must be an array"),
        ("sessionid", Region.CN, "name=value"),
        ("one=1\ntwo=2", Region.CN, "one line"),
        ("# Netscape HTTP Cookie File\n.jianying.com\tTRUE\t/\tTRUE\tsoon\tsessionid\tx", Region.CN, "Unix seconds"),
        ("# Netscape HTTP Cookie File\n.jianying.com\tTRUE\t/\tsessionid\tx", Region.CN, "7 tab-separated"),
        ('[{"name": "sessionid", "value": "a\\r\\nX-Evil: 1"}]', Region.CN, "cannot carry"),
    ],
)
def test_bad_jars_are_refused_with_the_reason_and_never_the_value(text: str, region: Region, reason: str) -> None:
    with pytest.raises(JarError) as caught:
        load_jar(text, region=region, now=NOW)
    assert reason in str(caught.value)
    assert SID not in str(caught.value)


def test_a_user_agent_must_be_one_line() -> None:
    with pytest.raises(JarError, match="one line"):
        load_jar(HEADER, region=Region.CN, now=NOW, user_agent="Chrome/1\r\nX: y")


def test_the_jar_is_secret_in_reprs() -> None:
    jar = load_jar(HEADER, region=Region.CN, now=NOW, user_agent=MAC_CHROME)
    account = Account.from_jar(jar, Region.CN, transport="impersonate")
    assert SID not in repr(jar) and SID not in repr(account) and WEB_ID not in repr(account)
    assert account.sessionid == SID and account.transport == "impersonate"


def test_parse_cookies_reports_stated_domains() -> None:
    (cookie,) = parse_cookies(netscape((".jianying.com", 0, "sessionid", SID)))
    assert cookie.domain == ".jianying.com" and cookie.expires is None


@pytest.mark.parametrize(
    ("agent", "os", "platform", "brand"),
    [
        (MAC_CHROME, "mac", '"macOS"', '"Google Chrome";v="147"'),
        (UpstreamConfig().user_agent, "windows", '"Windows"', '"Google Chrome";v="142"'),
        (EDGE, "mac", '"macOS"', '"Microsoft Edge";v="147"'),
        (LINUX_CHROME, "linux", '"Linux"', "150"),
    ],
)
def test_client_hints_follow_the_user_agent(agent: str, os: str, platform: str, brand: str) -> None:
    profile = profile_for(agent)
    hints = dict(profile.hints)
    assert profile.os == os and hints["Sec-Ch-Ua-Platform"] == platform and brand in hints["Sec-Ch-Ua"]
    assert f'"Chromium";v="{chrome_major(agent)}"' in hints["Sec-Ch-Ua"]


def test_browsers_without_client_hints_get_none_and_no_agent_claims_nothing() -> None:
    firefox = profile_for(FIREFOX)
    assert firefox.hints == () and firefox.os == "windows" and chrome_major(FIREFOX) is None
    nothing = profile_for(None)
    assert (nothing.user_agent, nothing.os, nothing.hints) == (None, None, ())


def test_a_jar_account_sends_the_jar_and_claims_only_what_its_user_agent_says() -> None:
    client = JimengClient(UpstreamConfig(), SessionPool(connect_timeout=1), ManualClock(), identity_salt=b"s")
    jar_account = Account.from_jar(load_jar(HEADER, region=Region.CN, now=NOW, user_agent=MAC_CHROME), Region.CN)
    headers = client.headers(jar_account, "/mweb/v1/get_history_by_ids", "https://h", None, NOW)
    params = client.default_params(jar_account)
    assert headers["Cookie"] == HEADER and headers["User-Agent"] == MAC_CHROME
    assert headers["Sec-Ch-Ua-Platform"] == '"macOS"' and params["os"] == "mac" and params["webId"] == WEB_ID
    assert not {"Accept-Encoding", "Cache-Control", "Pragma"} & set(headers)
    # The same session without its jar: today's identity, untouched.
    plain = Account(sessionid=SID, region=Region.CN)
    plain_headers = client.headers(plain, "/mweb/v1/get_history_by_ids", "https://h", None, NOW)
    assert plain_headers["User-Agent"] == UpstreamConfig().user_agent
    assert client.default_params(plain)["os"] == "windows"
    assert plain_headers["Cookie"].startswith(f"_tea_web_id={client.default_params(plain)['webId']};")
    assert plain_headers["Accept-Encoding"] == "gzip, deflate"
