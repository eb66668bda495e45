"""The "browser" transport: the calls only a browser may send go out from inside a headless Chromium page.

Since February 2026 the upstream wants Seedance 2.0 generate calls to carry what its page's security script adds
(`a_bogus`, ret 1019 otherwise; docs/protocol.md §17.6–17.7). The only approach with reported successes is
to let the page send them: this transport keeps one browser context per account (its cookies, its proxy, its
User-Agent), loads the region's page there, waits until the page's security script has wrapped `fetch`
(or `window.bdms` / `window.byted_acrawler` exist), and runs the call with the page's own `fetch`. The answer goes
back to the client like any other transport's, so journal, idempotency and never-resend are unchanged. Every
other call goes through `fallback`.

Chromium is the system's (`[browser] executable`, e.g. Debian's /usr/bin/chromium), driven by Playwright (the
optional `browser` extra); nothing is downloaded. It starts on first use and again after a crash. Contexts are
reused, closed after `idle_timeout` seconds unused, and at most `max_contexts` stay open (least recently used
closed first). When Chromium will not start, crashes, or the page does not become ready, the call fails with
`BrowserUnavailable` (HTTP 502) before the request is sent, so nothing is spent.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from ..config import BrowserConfig
from .errors import BrowserUnavailable
from .signing import parse_cookie
from .transport import BROWSER_ONLY_PATHS, Broken, Outgoing, RawAnswer, TimedOut, Transport

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page, Playwright

# Headers a page cannot set on `fetch` (the browser sends its own) and must therefore not be handed over.
_BROWSER_OWNED = frozenset(
    {"cookie", "user-agent", "origin", "referer", "accept-encoding", "host", "content-length", "connection", "priority"}
)
_BRAND = re.compile(r'"([^"]+)";v="([^"]+)"')
_READY = """() => {
  const f = window.fetch;
  const wrapped = typeof f === 'function' && !/\\[native code\\]/.test(Function.prototype.toString.call(f));
  return wrapped || !!window.bdms || !!window.byted_acrawler;
}"""
_FETCH = """async ({url, headers, body, referrer}) => {
  try {
    const r = await fetch(url, {method: 'POST', headers, body, credentials: 'include', referrer, mode: 'cors'});
    return {status: r.status, body: await r.text(), error: ''};
  } catch (e) {
    return {status: 0, body: '', error: String((e && e.name) || 'Error')};
  }
}"""


def available() -> bool:
    """True when Playwright (the `browser` extra) is installed."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class _Tab:
    context: BrowserContext
    page: Page
    last_used: float


class BrowserTransport:
    """Browser-only calls from a page of a per-account context; the rest through `fallback`."""

    name = "browser"

    def __init__(self, config: BrowserConfig, fallback: Transport) -> None:
        self.config = config
        self.fallback = fallback
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._tabs: OrderedDict[tuple[str, str | None, str], _Tab] = OrderedDict()
        self._lock = asyncio.Lock()

    @property
    def open_contexts(self) -> int:
        """How many account contexts are open now."""
        return len(self._tabs)

    async def send(self, out: Outgoing) -> RawAnswer:
        if out.path not in BROWSER_ONLY_PATHS:
            return await self.fallback.send(out)
        page = await self._ready_page(out)
        headers = {k: v for k, v in out.headers if k.lower() not in _BROWSER_OWNED and not k.lower().startswith("sec-")}
        args = {"url": out.url, "headers": headers, "body": out.body.decode(), "referrer": out.referer}
        try:
            result: dict[str, Any] = await asyncio.wait_for(page.evaluate(_FETCH, args), out.timeout)
        except TimeoutError:
            await self._forget(out)
            raise TimedOut(f"no answer within {out.timeout:g} s (in the browser)") from None
        except Exception as exc:  # Playwright's errors: the page or the browser went away while sending
            await self._forget(out)
            raise Broken(f"the browser failed while sending ({type(exc).__name__})") from None
        if result.get("error"):
            raise Broken(f"the page's fetch failed ({result['error']})")
        return RawAnswer(int(result.get("status", 0)), str(result.get("body", "")).encode())

    async def harvest(self, out: Outgoing) -> str:
        """Load the region's page in a fresh context of the account (its cookies, proxy and identity), let the
        page's security script run, and return every cookie the browser then holds for the site, as one `Cookie`
        header (what the peer that got through does every few hours, §17.6). The context is closed after."""
        async with self._lock:
            browser = await self._launched()
        tab = await self._open(browser, out)
        try:
            host = urlsplit(out.page).hostname or ""
            cookies = await tab.context.cookies(out.page)
            return "; ".join(f"{c['name']}={c['value']}" for c in cookies if host.endswith(c["domain"].lstrip(".")))
        finally:
            await _quietly(tab.context.close())

    async def close(self) -> None:
        async with self._lock:
            tabs, self._tabs = list(self._tabs.values()), OrderedDict()
            for tab in tabs:
                await _quietly(tab.context.close())
            if self._browser is not None:
                await _quietly(self._browser.close())
            if self._playwright is not None:
                await _quietly(self._playwright.stop())
            self._browser = self._playwright = None

    # ------------------------------------------------------------------ contexts

    async def _ready_page(self, out: Outgoing) -> Page:
        key = (out.account.fingerprint, out.account.proxy, out.page)
        async with self._lock:
            if self._browser is not None and not self._browser.is_connected():
                self._tabs.clear()  # Chromium went away (crashed or was killed): start again below
            now = time.monotonic()
            for stale in [k for k, t in self._tabs.items() if now - t.last_used > self.config.idle_timeout]:
                await _quietly(self._tabs.pop(stale).context.close())
            tab = self._tabs.get(key)
            if tab is not None and not tab.page.is_closed():
                tab.last_used = now
                self._tabs.move_to_end(key)
                return tab.page
            if tab is not None:
                await _quietly(self._tabs.pop(key).context.close())
            while len(self._tabs) >= self.config.max_contexts:
                _, oldest = self._tabs.popitem(last=False)
                await _quietly(oldest.context.close())
            browser = await self._launched()
            tab = await self._open(browser, out)
            self._tabs[key] = tab
            return tab.page

    async def _open(self, browser: Browser, out: Outgoing) -> _Tab:
        proxy = _playwright_proxy(out.account.proxy)
        try:
            context = await browser.new_context(
                proxy=proxy,  # type: ignore[arg-type]  # a ProxySettings TypedDict
                locale=_locale(out.header("Accept-Language")),
            )
        except Exception as exc:
            raise BrowserUnavailable(f"could not open a browser context ({type(exc).__name__})") from None
        try:
            host = urlsplit(out.page).hostname or ""
            cookies = [
                {"name": k, "value": v, "domain": host, "path": "/"}
                for k, v in parse_cookie(out.header("Cookie") or "").items()
            ]
            await context.add_cookies(cookies)  # type: ignore[arg-type]  # SetCookieParam TypedDicts
            page = await context.new_page()
            await self._claim(context, page, out)
            wait_ms = self.config.page_timeout * 1000
            await page.goto(out.page, timeout=wait_ms, wait_until="load")
            await page.wait_for_function(_READY, timeout=wait_ms)
        except Exception as exc:
            await _quietly(context.close())
            raise BrowserUnavailable(
                f"the region's page did not become ready in {self.config.page_timeout:g} s ({type(exc).__name__})"
            ) from None
        return _Tab(context, page, time.monotonic())

    async def _claim(self, context: BrowserContext, page: Page, out: Outgoing) -> None:
        """Make the page claim the account's browser: the client's User-Agent with client hints that agree with
        it (`Sec-Ch-Ua*` as the client would send them). Without a User-Agent (a jar that came without one) the
        page keeps Chromium's own identity, minus the "Headless" marker, and sends no client hints."""
        agent = out.header("User-Agent")
        override: dict[str, Any] = {"acceptLanguage": out.header("Accept-Language") or ""}
        if agent is None:
            own = str(await page.evaluate("navigator.userAgent"))
            override["userAgent"] = own.replace("HeadlessChrome/", "Chrome/")
        else:
            override["userAgent"] = agent
            brands = _BRAND.findall(out.header("Sec-Ch-Ua") or "")
            if brands:
                override["userAgentMetadata"] = {
                    "brands": [{"brand": b, "version": v} for b, v in brands],
                    "platform": (out.header("Sec-Ch-Ua-Platform") or "").strip('"'),
                    "platformVersion": "",
                    "architecture": "x86",
                    "model": "",
                    "mobile": out.header("Sec-Ch-Ua-Mobile") == "?1",
                }
        session = await context.new_cdp_session(page)
        await session.send("Emulation.setUserAgentOverride", override)

    async def _launched(self) -> Browser:
        if self._browser is not None and self._browser.is_connected():
            return self._browser
        self._tabs.clear()  # their browser is gone
        try:
            from playwright.async_api import async_playwright

            if self._playwright is None:
                self._playwright = await async_playwright().start()
            args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
            self._browser = await self._playwright.chromium.launch(
                executable_path=self.config.executable, headless=True, args=args
            )
        except Exception as exc:
            raise BrowserUnavailable(f"Chromium would not start ({type(exc).__name__})") from None
        return self._browser

    async def _forget(self, out: Outgoing) -> None:
        async with self._lock:
            tab = self._tabs.pop((out.account.fingerprint, out.account.proxy, out.page), None)
            if tab is not None:
                await _quietly(tab.context.close())


def _playwright_proxy(proxy: str | None) -> dict[str, str] | None:
    """Playwright's proxy settings for an account proxy URL (credentials passed apart, as Chromium wants)."""
    if proxy is None:
        return None
    parts = urlsplit(proxy)
    scheme = "socks5" if parts.scheme.lower() in ("socks", "socks5") else parts.scheme.lower()
    server = f"{scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    out = {"server": server}
    if parts.username:
        out["username"] = unquote(parts.username)
        out["password"] = unquote(parts.password or "")
    return out


def _locale(accept_language: str | None) -> str | None:
    return accept_language.split(",")[0].strip() if accept_language else None


async def _quietly(closing: Any) -> None:
    """Await a close that may fail because the browser is already gone."""
    try:
        await closing
    except Exception:  # closing a dead browser's objects raises; there is nothing left to do
        return
