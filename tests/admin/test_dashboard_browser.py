"""The dashboard in a real headless browser (issue 12): Debian's Chromium driven by Playwright against a server
seeded the way `--simulate` seeds it (three demo pool accounts and a demo API key). Asserts on the rendered
page: the accounts are listed, a task shows with its owner and webhook state, a key created through the form
appears (and works over HTTP), a key revoked with its button is refused, an account added through the form
appears.

Needs /usr/bin/chromium (`.ci/run` installs Debian's `chromium` when missing); browsers are never downloaded.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import Browser, Page, async_playwright, expect
from pool_support import ADMIN_KEY, POOL_SESSIONS, key_auth
from support import AppFactory, json_of

from jimeng_server.api.appkeys import STORE, TASK_COSTS, WATCHER
from jimeng_server.cli import DEMO_ACCOUNTS, seed_demo_pool
from jimeng_server.clock import ManualClock
from jimeng_server.config import AdminConfig
from jimeng_server.services.insights import utc_day
from jimeng_server.simulator import Simulator, seed_demo
from jimeng_server.tasks.cost import CostSource
from jimeng_server.upstream.regions import Region

CHROMIUM = "/usr/bin/chromium"
expect.set_options(timeout=15_000)  # a loaded CI machine: give each rendered assertion time
Client = TestClient[Any, Any]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        # CI installs it (.ci/run) and must run this test; a developer machine without it skips, saying why.
        assert not os.environ.get("CI"), "install Debian's chromium (apt-get install -y chromium), as .ci/run does"
        pytest.skip("no /usr/bin/chromium: install Debian's chromium (apt-get install -y chromium) to run this test")
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        await chromium.close()


@pytest.fixture
async def demo(make_client: AppFactory, sim: Simulator) -> tuple[Client, str]:
    """A server seeded like `--simulate`: the demo pool and key, and one task submitted with that key."""
    client = await make_client(admin=AdminConfig(key=ADMIN_KEY))
    demo_key = await seed_demo_pool(client.app, [seed_demo(sim) for _ in range(DEMO_ACCOUNTS)])
    resp = await client.post("/v1/async/images/generations", json={"prompt": "a cat"}, headers=key_auth(demo_key))
    assert resp.status == 200
    return client, demo_key


async def open_dashboard(browser: Browser, client: Client) -> Page:
    page = await browser.new_page()
    await page.goto(str(client.make_url("/admin")))
    await page.fill("#admin-key", ADMIN_KEY)
    await page.click("#login-form button")
    await expect(page.locator("#panel")).to_be_visible()
    return page


async def test_dashboard_lists_the_pool_and_creates_and_revokes_keys(
    browser: Browser, demo: tuple[Client, str], sim: Simulator
) -> None:
    client, _ = demo
    page = await open_dashboard(browser, client)

    accounts = page.locator("#accounts tbody tr")
    await expect(accounts).to_have_count(3)
    names = await accounts.evaluate_all("rows => rows.map(r => r.dataset.name)")
    assert all(name.startswith("demo-") for name in names)
    await expect(page.locator("#accounts tbody")).to_contain_text("ok")
    tasks = page.locator("#tasks tbody tr")
    await expect(tasks).to_have_count(1)
    await expect(tasks.first).to_contain_text("processing")
    await expect(tasks.first).to_contain_text("key demo-")

    await page.fill("#create-key input[name=name]", "web-key")
    await page.fill("#create-key input[name=accounts]", names[0])
    await page.fill("#create-key input[name=rate_per_minute]", "30")
    await page.click("#create-key button")
    await expect(page.locator("#new-key")).to_be_visible()
    created = (await page.locator("#new-key code").text_content()) or ""
    assert created.startswith("jk_")
    row = page.locator("#keys tbody tr[data-name=web-key]")
    await expect(row).to_contain_text("30")
    await expect(row).to_contain_text(names[0])  # the account it may use, by name
    await expect(row).to_contain_text("active")
    resp = await client.post("/v1/async/images/generations", json={"prompt": "a fox"}, headers=key_auth(created))
    assert resp.status == 200, await json_of(resp)

    await row.locator("button", has_text="Revoke").click()
    await expect(row).to_contain_text("revoked")
    resp = await client.post("/v1/async/images/generations", json={"prompt": "a fox"}, headers=key_auth(created))
    assert resp.status == 401

    sim.add_account(POOL_SESSIONS["pa"], region=Region.CN, vip=50)
    await page.fill("#add-account input[name=name]", "from-the-page")
    await page.fill("#add-account input[name=token]", POOL_SESSIONS["pa"])
    await page.click("#add-account button")
    await expect(accounts).to_have_count(4)
    await expect(page.locator("#accounts tbody tr[data-name=from-the-page]")).to_contain_text("ok")
    assert POOL_SESSIONS["pa"] not in await page.content()
    await page.close()


async def test_dashboard_shows_the_error_for_a_wrong_admin_key(browser: Browser, demo: tuple[Client, str]) -> None:
    client, _ = demo
    page = await browser.new_page()
    await page.goto(str(client.make_url("/admin")))
    await page.fill("#admin-key", "wrong")
    await page.click("#login-form button")
    await expect(page.locator("#status")).to_contain_text("admin key is wrong")
    await expect(page.locator("#panel")).to_be_hidden()
    await page.close()


# ------------------------------------------------------------------------------ overview and detail (issue 24)


async def finish_all(client: Client, clock: ManualClock) -> None:
    for _ in range(120):
        if not client.app[WATCHER].pending:
            return
        await clock.advance(1.0)
        await client.app[WATCHER].run_once()
    raise AssertionError("tasks did not finish")


async def test_dashboard_overview_detail_previews_logs_and_phone_width(
    browser: Browser, demo: tuple[Client, str], clock: ManualClock
) -> None:
    client, demo_key = demo
    resp = await client.post(
        "/v1/async/images/generations", json={"prompt": "a cat [sim:fail]"}, headers=key_auth(demo_key)
    )
    failed = (await json_of(resp))["history_id"]
    await finish_all(client, clock)
    await client.app[TASK_COSTS].drain()  # the settled spending records made the stored estimates measured
    store = client.app[STORE]
    done = next(task for task, _ in await store.recent(10) if task.history_id != failed)
    costs = await store.costs_of([done.history_id, failed])
    assert costs[done.history_id].source is CostSource.MEASURED and costs[done.history_id].credits > 0
    spent = sum(cost.credits for cost in costs.values())
    stats = await json_of(await client.get("/admin/api/stats", headers={"Authorization": f"Bearer {ADMIN_KEY}"}))
    assert (stats["totals"]["tasks"], stats["totals"]["done"], stats["totals"]["failed"]) == (2, 1, 1)

    page = await open_dashboard(browser, client)
    # The numbers: the totals cards and the charts show what the API counts.
    for name, number in (("tasks", 2), ("done", 1), ("failed", 1), ("accounts", DEMO_ACCOUNTS)):
        await expect(page.locator(f"#totals .card[data-total='{name}'] b")).to_have_text(str(number))
    await expect(page.locator("#chart-failures .bar[data-label=CONTENT_REJECTED] .value")).to_have_text("1")
    await expect(page.locator("#chart-model .bar")).to_have_count(1)
    # Credits per day: the stored task costs, by the day the task was created.
    await expect(page.locator("#chart-day-credits .bar")).to_have_count(1)
    day_credits = page.locator(f"#chart-day-credits .bar[data-label='{utc_day(done.created_at)}'] .value")
    await expect(day_credits).to_have_text(str(spent))
    # Credits are read on open: every account shows a number.
    credits = await page.locator("#accounts tbody tr td:nth-child(6)").all_text_contents()
    assert len(credits) == DEMO_ACCOUNTS and all(c.strip().isdigit() for c in credits), credits
    # The failed task: its row and its detail show the code.
    failed_row = page.locator(f"#tasks tbody tr[data-id='{failed}']")
    await expect(failed_row).to_contain_text("CONTENT_REJECTED")
    await failed_row.click()
    await expect(page.locator("#detail-error")).to_contain_text("CONTENT_REJECTED")
    await expect(page.locator("#detail-history li")).to_have_count(2)
    # The finished task: its previews load.
    done_row = page.locator("#tasks tbody tr", has_text="done")
    await done_row.click()
    await expect(page.locator("#detail-error")).to_be_hidden()
    preview = page.locator("#detail-previews img").first
    await expect(preview).to_be_visible()
    loaded = "() => { const i = document.querySelector('#detail-previews img'); return i.complete && i.naturalWidth }"
    await page.wait_for_function(loaded)
    # The log tail shows the server's recent lines (here: the dashboard's own calls).
    await expect(page.locator("#log")).to_contain_text("/admin/api/stats")
    # A favicon, and no horizontal overflow at phone width.
    assert await page.locator("link[rel=icon]").get_attribute("href") == "/admin/static/favicon.svg"
    icon = await client.get("/admin/static/favicon.svg")
    assert icon.status == 200 and b"<svg" in await icon.read()
    await page.set_viewport_size({"width": 420, "height": 900})
    # Reading scrollWidth lays the page out at the new width first.
    widths = await page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1] <= 420, widths
    await page.close()
