"""The relay transport: hands the calls only a browser may send to an operator's signer or relay.

Contract (README "Relay contract"): for each such call the server POSTs JSON to `[upstream] relay_url`:

    {"url": "<full URL with query>", "method": "POST", "headers": {"Name": "value", ...}, "body": "<JSON text>"}

`headers` holds the `Cookie` only when `[upstream] relay_gets_cookies = true`. The relay answers HTTP 200 with a
JSON object, either
- a signer's `{"params": {"a_bogus": "...", ...}}`: string query parameters the server appends (in that order)
  before it sends the call itself through the account's own transport; or
- a relay's `{"status": 200, "body": "<the upstream's answer, as text>"}`: the upstream's answer itself.

Anything else (no connection, a timeout, another HTTP status, not JSON, neither shape) is `RelayUnavailable`
(HTTP 502 `RELAY_UNAVAILABLE`). In signer mode the upstream has then seen nothing; in relay mode the server never
sends the call again itself, so a relay that may have forwarded it must answer with what the upstream said.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

from .errors import RelayUnavailable
from .transport import BROWSER_ONLY_PATHS, Outgoing, RawAnswer, SessionPool, Transport


class RelayTransport:
    """Wraps the account's transport: the browser-only calls go through the relay first, the rest straight on."""

    def __init__(
        self, inner: Transport, pool: SessionPool, *, url: str, timeout: float, gets_cookies: bool
    ) -> None:
        self.inner = inner
        self.name = f"{inner.name}+relay"
        self._pool = pool
        self._url = url
        self._timeout = timeout
        self._gets_cookies = gets_cookies

    async def send(self, out: Outgoing) -> RawAnswer:
        if out.path not in BROWSER_ONLY_PATHS:
            return await self.inner.send(out)
        answer = await self._ask(out)
        params = answer.get("params")
        if isinstance(params, dict):
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in params.items()):
                raise RelayUnavailable("the signer's params must map names to strings")
            sep = "&" if "?" in out.url else "?"
            signed = out.url + (sep + urlencode(params, quote_via=quote) if params else "")
            return await self.inner.send(replace(out, url=signed))
        status, body = answer.get("status"), answer.get("body")
        if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599 and isinstance(body, str):
            return RawAnswer(status, body.encode())
        raise RelayUnavailable("the relay's answer has neither 'params' nor 'status' and 'body'")

    async def _ask(self, out: Outgoing) -> dict[str, Any]:
        headers = {k: v for k, v in out.headers if self._gets_cookies or k.lower() != "cookie"}
        request = {"url": out.url, "method": "POST", "headers": headers, "body": out.body.decode()}
        session = self._pool.get(None)
        try:
            async with session.post(
                self._url, json=request, timeout=aiohttp.ClientTimeout(total=self._timeout), allow_redirects=False
            ) as resp:
                if resp.status != 200:
                    raise RelayUnavailable(f"the relay answered HTTP {resp.status}")
                raw = await resp.read()
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise RelayUnavailable(f"the relay did not answer within {self._timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise RelayUnavailable(f"cannot reach the relay ({type(exc).__name__})") from None
        try:
            answer = json.loads(raw)
        except ValueError:
            raise RelayUnavailable("the relay's answer is not JSON") from None
        if not isinstance(answer, dict):
            raise RelayUnavailable("the relay's answer is not a JSON object")
        return answer

    async def close(self) -> None:
        """The wrapped transport and the pool belong to `Transports`."""

