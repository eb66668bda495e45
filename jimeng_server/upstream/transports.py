"""Builds and owns the transports, and picks the one of each account.

`[upstream] transport` is the default; an account's own `transport` (set by the account pool) overrides it.
`require()` is the start-up check: a transport whose optional extra is missing, or a browser whose executable
does not exist, is a `ConfigError` naming the fix, raised before the server accepts a request. With
`[upstream] relay_url`, every transport is wrapped by the relay (`relay.py`).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..config import TRANSPORTS, BrowserConfig, ConfigError, UpstreamConfig
from . import browser, impersonate
from .recorder import RecordingTransport
from .relay import RelayTransport
from .tokens import Account
from .transport import AiohttpTransport, SessionPool, Transport

EXTRA_HINT = "pip install 'jimeng-server[browser]'"


def require(name: str, browser_config: BrowserConfig) -> None:
    """Raise ConfigError unless transport `name` can run here (known, its extra installed, its browser present)."""
    if name not in TRANSPORTS:
        raise ConfigError(f"transport must be one of {', '.join(TRANSPORTS)}, got {name!r}")
    if name == "impersonate" and not impersonate.available():
        raise ConfigError(f'transport = "impersonate" needs curl_cffi, which is not installed: {EXTRA_HINT}')
    if name == "browser":
        if not browser.available():
            raise ConfigError(f'transport = "browser" needs Playwright, which is not installed: {EXTRA_HINT}')
        exe = browser_config.executable
        if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
            raise ConfigError(
                f"browser.executable: {exe!r} is not an executable file; install Chromium "
                "(Debian: apt-get install chromium) or point [browser] executable at it"
            )


class Transports:
    """The transports of one server; each is built on first use and closed by `close()`."""

    def __init__(self, upstream: UpstreamConfig, browser_config: BrowserConfig, pool: SessionPool) -> None:
        require(upstream.transport, browser_config)
        self._upstream = upstream
        self._browser_config = browser_config
        self._pool = pool
        self._built: dict[str, Transport] = {}

    def for_account(self, account: Account) -> Transport:
        """The transport that sends `account`'s calls (its own choice, else the configured default)."""
        name = account.transport or self._upstream.transport
        key = f"{name}+relay" if self._upstream.relay_url else name
        transport = self._built.get(key)
        if transport is None:
            transport = self._build(name)
            up = self._upstream
            if up.relay_url:
                transport = RelayTransport(
                    transport,
                    self._pool,
                    url=up.relay_url,
                    timeout=up.relay_timeout,
                    gets_cookies=up.relay_gets_cookies,
                )
            if up.record_dir:  # the operator's opt-in recording of every exchange, redacted (upstream/recorder.py)
                transport = RecordingTransport(transport, Path(up.record_dir) / name, known=())
            self._built[key] = transport
        return transport

    def browser(self) -> browser.BrowserTransport:
        """The browser transport (built on first use): for refreshing a cookie jar, whatever an account sends
        with. ConfigError when Playwright or the browser executable is missing."""
        built = self._build("browser")
        assert isinstance(built, browser.BrowserTransport)
        return built

    def _build(self, name: str) -> Transport:
        base = self._built.get(name)
        if base is not None:
            return base
        require(name, self._browser_config)
        built: Transport
        if name == "impersonate":
            up = self._upstream
            built = impersonate.ImpersonateTransport(target=up.impersonate, ca_file=up.tls_ca_file)
        elif name == "browser":
            built = browser.BrowserTransport(self._browser_config, self._build("aiohttp"))
        else:
            built = AiohttpTransport(self._pool)
        self._built[name] = built
        return built

    async def close(self) -> None:
        """Close every transport built (the session pool belongs to the app)."""
        built, self._built = list(self._built.values()), {}
        for transport in built:
            await transport.close()
