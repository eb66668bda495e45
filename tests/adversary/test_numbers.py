"""Issue 26, finding 4: every number a caller or operator sends is read by one parser (`jimeng_server.integers`):
"²" (which `str.isdigit()` accepts and `int()` refuses), 5,000 digits, 20+ digits (an SQLite INTEGER overflow),
"1_0" and non-ASCII digits are a 400 naming the field (or a one-line CLI error), never a 500 or a traceback.

The hypothesis test sends generated strings in every numeric field of every route over real HTTP."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pool_support import ADMIN_KEY, add_accounts, admin, seed_sim
from support import CN_TOKEN, bearer, json_of

from jimeng_server.config import AdminConfig
from jimeng_server.integers import NumberError, parse_int
from jimeng_server.simulator import Simulator
from jimeng_server.upstream.cookies import load_jar
from jimeng_server.upstream.regions import Region

Client = TestClient[Any, Any]

NASTY = ["²", "٣", "1_0", " 1 0", "9" * 5000, "9" * 20, "-1", "0x10", "1e3", "5.5", "+3", "", " ", "\x00", "१"]


@pytest.fixture
async def admin_client(make_client: Any, sim: Simulator) -> Client:
    seed_sim(sim)
    client: Client = await make_client(admin=AdminConfig(key=ADMIN_KEY))
    await add_accounts(client, "pa")
    return client


def test_parse_int_takes_ascii_digits_only() -> None:
    assert parse_int(" 42 ", "n", low=1, high=100) == 42
    assert parse_int(7, "n", low=1, high=100) == 7
    assert parse_int(3.0, "n", low=1, high=100, floats=True) == 3
    assert parse_int("-5", "x", low=-10, high=10) == -5
    for bad in [*NASTY, True, None, [], 3.5, float("nan"), float("inf"), 10**30]:
        with pytest.raises(NumberError, match=r"'n' must be (a whole number )?from 1 to 100"):
            parse_int(bad, "n", low=1, high=100)


async def assert_refused(resp: Any, field: str) -> None:
    body = await json_of(resp)
    assert resp.status == 400, (resp.status, body)
    assert set(body["error"]) >= {"message", "type", "code"}
    assert f"'{field}'" in body["error"]["message"], body


@pytest.mark.parametrize("value", ["²", "9" * 5000, "9" * 20, "٣", "1_0"])
async def test_n_on_every_image_endpoint(client: Client, sim: Simulator, value: str) -> None:
    for path in ("/v1/images/generations", "/v1/async/images/generations"):
        await assert_refused(await client.post(path, json={"prompt": "a cat", "n": value}, headers=bearer("x")), "n")
    for path in ("/v1/images/compositions", "/v1/async/images/compositions", "/v1/images/edits"):
        form = FormData()
        form.add_field("prompt", "a cat")
        form.add_field("n", value)
        form.add_field("images" if "compositions" in path else "image", "https://example.com/a.png")
        await assert_refused(await client.post(path, data=form, headers=bearer("x")), "n")
    assert sim.calls("/mweb/v1/aigc_draft/generate") == []


@pytest.mark.parametrize("value", ["²", "9" * 5000, "٣"])
async def test_video_duration(client: Client, value: str) -> None:
    for path in ("/v1/videos/generations", "/v1/async/videos/generations"):
        await assert_refused(
            await client.post(path, json={"prompt": "a cat", "duration": value}, headers=bearer("x")), "duration"
        )


async def test_a_huge_count_in_a_multi_image_prompt_is_no_500(client: Client, sim: Simulator) -> None:
    body = {"model": "jimeng-4.0", "prompt": "9" * 5000 + "张 cats"}
    resp = await client.post("/v1/async/images/generations", json=body, headers=bearer(CN_TOKEN))
    assert resp.status == 200, await resp.text()


@pytest.mark.parametrize("ref", ["²", "9" * 25, "9" * 5000, "٣"])
async def test_admin_account_refs(admin_client: Client, ref: str) -> None:
    for method, path in (
        ("POST", f"/admin/api/accounts/{ref}/enable"),
        ("POST", f"/admin/api/accounts/{ref}/disable"),
        ("DELETE", f"/admin/api/accounts/{ref}"),
    ):
        resp = await admin_client.request(method, path, headers=admin())
        body = await json_of(resp)
        assert resp.status == 404 and body["error"]["code"] == "ACCOUNT_NOT_FOUND", (path, resp.status, body)


@pytest.mark.parametrize("ref", ["²", 10**25, "9" * 25, -1])
async def test_key_account_lists(admin_client: Client, ref: Any) -> None:
    resp = await admin_client.post("/admin/api/keys", json={"name": "k", "accounts": [ref]}, headers=admin())
    body = await json_of(resp)
    assert resp.status == 400 and body["error"]["code"] == "UNKNOWN_ACCOUNT", body


@pytest.mark.parametrize("field", ["rate_per_minute", "max_in_flight"])
async def test_key_limits(admin_client: Client, field: str) -> None:
    for value in ("²", 10**25, -3, 1.5):
        resp = await admin_client.post("/admin/api/keys", json={"name": "k", field: value}, headers=admin())
        await assert_refused(resp, field)


@pytest.mark.parametrize("value", ["²", "0", "201", "9" * 5000, "٣", "-1"])
async def test_admin_task_limit(admin_client: Client, value: str) -> None:
    await assert_refused(await admin_client.get("/admin/api/tasks", params={"limit": value}, headers=admin()), "limit")


@pytest.mark.parametrize(
    "sid_guard", ["abc%7C%C2%B2%7C5%7Cx", "abc|²|²|x", "abc|" + "9" * 400 + "|5|x", "abc|1|" + "9" * 5000 + "|x"]
)
def test_cookie_jars_with_a_bad_sid_guard_load(sid_guard: str) -> None:
    jar = load_jar(f"sessionid=abc; sid_guard={sid_guard}", region=Region.CN, now=1.8e9)
    assert jar.get("sessionid") == "abc"


async def test_cookie_jar_fields_over_the_admin_api(admin_client: Client) -> None:
    jars = [
        "sessionid=abc0; sid_guard=abc%7C%C2%B2%7C5%7Cx",
        ".jimeng.jianying.com\tTRUE\t/\tTRUE\t" + "9" * 400 + "\tsessionid\tabc1",
        ".jimeng.jianying.com\tTRUE\t/\tTRUE\t²\tsessionid\tabc2",
        '[{"name": "sessionid", "value": "abc3", "domain": ".jimeng.jianying.com", "expirationDate": 1e400}]',
        '[{"name": "sessionid", "value": "abc4", "domain": ".jimeng.jianying.com", "expires": Infinity}]',
    ]
    for number, jar in enumerate(jars):
        resp = await admin_client.post(
            "/admin/api/accounts", json={"name": f"jar{number}", "cookies": jar}, headers=admin()
        )
        assert resp.status in (201, 400), (jar[:60], resp.status, await resp.text())
        await json_of(resp)


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "c.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "cli.db"}"\n')
    return subprocess.run(
        [sys.executable, "-m", "jimeng_server", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "args",
    [
        ("accounts", "enable", "²"),
        ("accounts", "remove", "9" * 25),
        ("keys", "create", "k", "--rate", "²"),
        ("keys", "create", "k", "--max-in-flight", "9" * 25),
        ("keys", "create", "k", "--accounts", "²"),
        ("--port", "²"),
    ],
)
def test_the_cli_answers_one_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    done = run_cli(tmp_path, *args)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert "error" in done.stderr.lower(), done.stderr


# ---------------------------------------------------------------------------------------------- generated

_NAMES = itertools.count()

NUMERIC_TEXT = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.characters(categories=["Nd", "No", "Nl"]), min_size=1, max_size=25),
    st.from_regex(r"[ +\-]?[0-9_]{0,30}(\.[0-9]*)?([eE][0-9]{1,4})?\s*", fullmatch=True),
    st.integers(min_value=19, max_value=5000).map(lambda n: "9" * n),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=NUMERIC_TEXT)
async def test_generated_strings_in_every_numeric_field(admin_client: Client, text: str) -> None:
    """Each numeric field of each route, sent `text`: never a 5xx; a 400 names the field."""
    name = f"gen{next(_NAMES)}"
    json_fields = [
        ("/v1/async/images/generations", {"prompt": "a cat", "n": text}, "n"),
        ("/v1/async/videos/generations", {"prompt": "a cat", "duration": text}, "duration"),
        ("/admin/api/keys", {"name": name + "r", "rate_per_minute": text}, "rate_per_minute"),
        ("/admin/api/keys", {"name": name + "m", "max_in_flight": text}, "max_in_flight"),
        ("/admin/api/keys", {"name": name + "a", "accounts": [text]}, "accounts"),
    ]
    for path, body, field in json_fields:
        headers = admin() if path.startswith("/admin") else bearer(CN_TOKEN)
        resp = await admin_client.post(path, json=body, headers=headers)
        answer = await json_of(resp)
        assert resp.status < 500, (path, field, text[:40], answer)
        if resp.status == 400 and field != "accounts":
            assert f"'{field}'" in answer["error"]["message"], answer
    form = FormData()
    form.add_field("prompt", "a cat")
    form.add_field("n", text)
    form.add_field("image", "https://example.com/a.png")
    resp = await admin_client.post("/v1/images/edits", data=form, headers=bearer("x"))
    assert resp.status < 500, await resp.text()
    for method, path in (
        ("GET", "/admin/api/tasks?limit=" + _quoted(text)),
        ("POST", "/admin/api/accounts/" + _quoted(text or "0") + "/check"),
    ):
        resp = await admin_client.request(method, path, headers=admin())
        assert resp.status < 500, (path, resp.status, await resp.text())


def _quoted(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


@pytest.mark.parametrize("size", ["١٠٢٤x١٠٢٤", "１０２４x１０２４", "1024x" + "9" * 5000])
async def test_size_takes_ascii_digits_only(client: Client, size: str) -> None:
    resp = await client.post(
        "/v1/async/images/generations", json={"prompt": "a cat", "size": size}, headers=bearer("x")
    )
    await assert_refused(resp, "size")


async def test_other_numbers_take_ascii_only(client: Client) -> None:
    resp = await client.post(
        "/v1/async/images/generations", json={"prompt": "a cat", "sample_strength": "٠.٥"}, headers=bearer("x")
    )
    await assert_refused(resp, "sample_strength")
    resp = await client.get("/v1/async/tasks/123?wait=١٢", headers=bearer("x"))
    await assert_refused(resp, "wait")


def test_a_netscape_session_cookie_may_say_minus_one() -> None:
    jar = load_jar(".jimeng.jianying.com\tTRUE\t/\tTRUE\t-1\tsessionid\tabc", region=Region.CN, now=1.8e9)
    assert jar.get("sessionid") == "abc"
