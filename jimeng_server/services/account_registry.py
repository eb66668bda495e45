"""The pool's stored accounts: adding (token grammar or a browser cookie jar), finding, enabling, deleting, the
sealed secrets, and each account's stored health (last error, cool-down, balance).

Secrets (session id, proxy URL, a cookie jar) are one JSON blob, sealed by `store.secretbox` when a key is
configured. Nothing here logs or returns a secret: rows carry the masked session only. Which account a submit
takes is `services/account_chooser.py` and `services/pool.py`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from ..clock import Clock
from ..config import BrowserConfig, ConfigError
from ..errors import ApiError, BadRequest, Conflict, NotFound
from ..integers import INT64_MAX, digits_value
from ..store.base import Store
from ..store.pool import AccountHealth, AccountRow, DuplicateError, NewAccount
from ..store.secretbox import SecretBox, SecretError
from ..upstream import transports
from ..upstream.cookies import JarError, load_jar
from ..upstream.regions import Region
from ..upstream.tokens import Account, ProxyPrefixError, TokenError, parse_proxy, parse_token

log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NOTE_MAX = 500
"""The longest note an account may carry (characters)."""


def check_name(name: str, what: str) -> str:
    """A management name: 1-64 of letters, digits, '.', '_', '-' (starting with a letter or digit), not all
    digits (commands take a name or an id)."""
    if not _NAME.fullmatch(name) or name.isdigit():
        raise BadRequest(
            f"the {what} name {name[:80]!r} is not valid: use 1-64 letters, digits, '.', '_' or '-', not only digits",
            code="INVALID_NAME",
        )
    return name


def check_proxy(proxy: str) -> str:
    """`upstream.tokens.parse_proxy` as a 400 INVALID_PROXY (the message never repeats the URL: it may hold a
    password); returns the proxy with `socks://` made `socks5://`."""
    try:
        return parse_proxy(proxy)
    except ProxyPrefixError as exc:
        raise BadRequest(str(exc), code="INVALID_PROXY") from None


def parse_pool_token(token: str, proxy: str | None = None) -> Account:
    """An account from the token grammar `[proxy@][us-|hk-|jp-|sg-]sessionid`, with an optional separate proxy;
    400 INVALID_TOKEN / INVALID_PROXY naming what is wrong (never echoing the secret)."""
    try:
        account = parse_token(token)
    except ProxyPrefixError as exc:
        raise BadRequest(str(exc), code="INVALID_PROXY") from None
    except TokenError as exc:
        raise BadRequest(str(exc), code="INVALID_TOKEN") from None
    if "," in token or len(account.sessionid) < 8 or ":" in account.sessionid or "@" in account.sessionid:
        raise BadRequest(
            "the token is not one session id: expected [proxy@][us-|hk-|jp-|sg-]sessionid (one account per add)",
            code="INVALID_TOKEN",
        )
    if proxy and account.proxy:
        raise BadRequest("give the proxy once: in the token (proxy@sessionid) or separately", code="INVALID_PROXY")
    chosen = proxy or account.proxy
    return Account(sessionid=account.sessionid, region=account.region, proxy=check_proxy(chosen) if chosen else None)


class AccountRegistry:
    """The stored accounts (CRUD, secrets, health). `services/pool.py`'s `AccountPool` is this plus choosing."""

    def __init__(
        self,
        store: Store,
        box: SecretBox,
        clock: Clock,
        *,
        cooldown_seconds: float = 600.0,
        browser: BrowserConfig | None = None,
    ) -> None:
        """`browser`: the `[browser]` settings an account's `transport = "browser"` is checked against."""
        self._store = store
        self.browser = browser or BrowserConfig()
        self.box = box
        self.clock = clock
        self.cooldown_seconds = cooldown_seconds

    # ------------------------------------------------------------------ management

    async def add(
        self,
        name: str,
        token: str | None = None,
        *,
        cookies: str | None = None,
        region: str | None = None,
        user_agent: str | None = None,
        transport: str | None = None,
        proxy: str | None = None,
        note: str = "",
    ) -> AccountRow:
        """Store a new account (sealed when a key is set): a session id (`token`, the token grammar) or a full
        browser cookie jar (`cookies`: a Cookie header, a Netscape cookies.txt or an extension's JSON export,
        for `region`, default cn), with an optional User-Agent matching the jar and a per-account `transport`.
        400 for a bad name, token, jar (the reason: no sessionid, wrong domain, expired), proxy, transport or
        note; 409 when the name or the session is already in the pool. Nothing is written on any error."""
        check_name(name, "account")
        if len(note) > NOTE_MAX:
            raise BadRequest(f"the note is longer than {NOTE_MAX} characters", code="INVALID_NOTE")
        if token is None and cookies is None:
            raise BadRequest(
                "'token' (a session id) or 'cookies' (a browser cookie jar) is required", code="MISSING_PARAMETER"
            )
        if token is not None and cookies is not None:
            raise BadRequest("give either a token (session id) or a cookie jar, not both", code="INVALID_ACCOUNT")
        if transport is not None:
            try:
                transports.require(transport, self.browser)
            except ConfigError as exc:
                raise BadRequest(str(exc), code="INVALID_TRANSPORT") from None
        account = (
            parse_pool_token(token, proxy)
            if token is not None
            else self._jar_account(cookies or "", region, user_agent, proxy)
        )
        if transport is not None:
            account = dataclasses.replace(account, transport=transport)
        blob, sealed = self.box.seal(_secret_json(account))
        new = NewAccount(
            name=name,
            region=account.region.value,
            fingerprint=account.fingerprint,
            masked=account.masked,
            secret=blob,
            sealed=sealed,
            has_proxy=account.proxy is not None,
            note=note,
        )
        try:
            return await self._store.add_account(new, now=self.clock.time())
        except DuplicateError as exc:
            raise Conflict(str(exc), code="DUPLICATE_ACCOUNT") from None

    async def rows(self) -> list[AccountRow]:
        """Every stored account."""
        return await self._store.accounts()

    async def find(self, ref: str | int) -> AccountRow:
        """The account with this id or name; 404 ACCOUNT_NOT_FOUND otherwise."""
        row = None
        number = ref if isinstance(ref, int) else digits_value(ref)
        if number is not None and 0 < number <= INT64_MAX:
            row = await self._store.account_by_id(number)
        if row is None and isinstance(ref, str):
            row = await self._store.account_by_name(ref)
        if row is None:
            raise NotFound(
                f"no account {str(ref)[:80]!r} in the pool; list them with GET /admin/api/accounts",
                code="ACCOUNT_NOT_FOUND",
            )
        return row

    async def set_enabled(self, ref: str | int, enabled: bool) -> AccountRow:
        """Enable (ending its stored cool-down, for every model too: the store does both at once) or disable an
        account; returns the updated row."""
        row = await self.find(ref)
        await self._store.set_account_enabled(row.id, enabled)
        return await self.find(row.id)

    async def delete(self, account_id: int) -> None:
        """Delete the stored account; its finished tasks stay queryable."""
        await self._store.delete_account(account_id)

    def _jar_account(self, text: str, region: str | None, user_agent: str | None, proxy: str | None) -> Account:
        try:
            where = Region(region or "cn")
        except ValueError:
            raise BadRequest(f"region must be one of {', '.join(Region)}", code="INVALID_REGION") from None
        try:
            jar = load_jar(text, region=where, now=self.clock.time(), user_agent=user_agent or None)
        except JarError as exc:
            raise BadRequest(f"the cookie jar cannot be used: {exc}", code="INVALID_COOKIES") from None
        if proxy:
            check_proxy(proxy)
        return Account.from_jar(jar, where, proxy=proxy or None)

    async def refresh_cookies(self, ref: str | int, harvest: Callable[[Account], Awaitable[str]]) -> AccountRow:
        """Give an account a fresh full cookie jar: `harvest(account)` (the client's `harvest_jar`, a real
        browser) loads the region's page with the account's cookies; the jar it returns is checked and stored
        (a session-id account becomes a jar account). 400 INVALID_COOKIES when the harvested jar cannot work."""
        row = await self.find(ref)
        account = self.account_of(row)
        text = await harvest(account)
        agent = account.jar.user_agent if account.jar is not None else None
        try:
            jar = load_jar(text, region=account.region, now=self.clock.time(), user_agent=agent)
        except JarError as exc:
            raise BadRequest(f"the refreshed cookie jar cannot be used: {exc}", code="INVALID_COOKIES") from None
        fresh = Account.from_jar(jar, account.region, proxy=account.proxy, transport=account.transport)
        blob, sealed = self.box.seal(_secret_json(fresh))
        updated = await self._store.update_account_secret(row.id, blob, sealed)
        assert updated is not None
        return updated

    def account_of(self, row: AccountRow) -> Account:
        """The usable account of a row (opens the sealed secret); raises SecretError, or JarError for a jar whose
        session has expired since it was added."""
        data = json.loads(self.box.open(row.secret, row.sealed))
        region = Region(row.region)
        if data.get("jar"):
            jar = load_jar(data["jar"], region=region, now=self.clock.time(), user_agent=data.get("user_agent"))
            return Account.from_jar(jar, region, proxy=data.get("proxy"), transport=data.get("transport"))
        return Account(
            sessionid=data["sessionid"], region=region, proxy=data.get("proxy"), transport=data.get("transport")
        )

    async def resolve(self, account_id: int) -> Account | None:
        """The account with this id, or None when it was removed or its secret cannot be opened."""
        row = await self._store.account_by_id(account_id)
        if row is None:
            return None
        try:
            return self.account_of(row)
        except (SecretError, JarError) as exc:
            log.warning("pool account %s unusable: %s", row.name, exc)
            return None

    def identity(self, row: AccountRow) -> tuple[str, str | None]:
        """How the account appears to the upstream (no secret): its credential kind ("session id", "cookie jar",
        or "unreadable" when the secret cannot be opened) and its transport (None: the configured one)."""
        try:
            data = json.loads(self.box.open(row.secret, row.sealed))
        except SecretError:
            return "unreadable", None
        return ("cookie jar" if data.get("jar") else "session id"), data.get("transport")

    # ------------------------------------------------------------------ health

    async def record_refusal(
        self, account_id: int, err: ApiError, *, checked: bool = False, cool: bool = True, seconds: float | None = None
    ) -> None:
        """Keep the reason of an upstream refusal and (when `cool`) rest the account for `seconds` (default
        `cooldown_seconds`)."""
        until = self.clock.time() + (self.cooldown_seconds if seconds is None else seconds) if cool else None
        health = AccountHealth(err.code, err.message, until, checked=checked)
        await self._store.record_account_health(account_id, health, now=self.clock.time())

    async def record_success(self, account_id: int, credits: int | None, *, checked: bool = False) -> None:
        """Clear an account's error and cool-down; store its balance when read."""
        health = AccountHealth(None, None, None, checked=checked, credits=credits)
        await self._store.record_account_health(account_id, health, now=self.clock.time())


def _secret_json(account: Account) -> bytes:
    """The sealed secret: the session id and proxy, and for a jar account the jar (as its Cookie header), the
    User-Agent it goes with, and the account's transport."""
    secret: dict[str, Any] = {"sessionid": account.sessionid, "proxy": account.proxy, "transport": account.transport}
    if account.jar is not None:
        secret["jar"] = account.jar.header()
        secret["user_agent"] = account.jar.user_agent
    return json.dumps(secret).encode("utf-8")


def health_state(row: AccountRow, now: float) -> str:
    """The account's health in one word: disabled, cooling_down, error (its last call failed) or ok."""
    if not row.enabled:
        return "disabled"
    if row.cooling(now):
        return "cooling_down"
    if row.last_error_code:
        return "error"
    return "ok"
