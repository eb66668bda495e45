"""The account pool: accounts stored by the server (task-store database), their health, and the live count of
tasks each one has in flight.

Selection (`choose`): an account the key may use, enabled, not cooling down, not known to hold fewer credits
than the request's known cost, with the fewest tasks in flight (then the lowest id). Tasks in flight are the
account's stored tasks still processing and younger than their kind's deadline (`in_flight_window`; a task
nobody asks about any more stops counting then), plus the submits in progress. The choice is reserved at once
(no await between the count and the reservation), so concurrent submits spread evenly; the reservation ends
when the submit ends, by then its task is stored.

Secrets (session id, proxy URL; later a cookie jar) are one JSON blob, sealed by `store.secretbox` when a key
is configured. Nothing here logs or returns a secret: rows carry the masked session only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
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
from .refusals import Cooldown, Cooldowns

log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_NOTE_MAX = 500


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


@dataclass(frozen=True, slots=True)
class Choice:
    """A reserved pool account: release it with `AccountPool.release` when the submit ends."""

    account_id: int
    name: str
    account: Account
    owner: str


class AccountPool:
    """The stored accounts (CRUD, health) and the live in-flight counts used to pick one.

    A CLI process uses the same object for management only.
    """

    def __init__(
        self,
        store: Store,
        box: SecretBox,
        clock: Clock,
        *,
        cooldown_seconds: float = 600.0,
        claim_daily: bool = False,
        in_flight_window: Mapping[str, float] | None = None,
        browser: BrowserConfig | None = None,
    ) -> None:
        """`browser`: the `[browser]` settings an account's `transport = "browser"` is checked against."""
        self._store = store
        self.browser = browser or BrowserConfig()
        self.box = box
        self.clock = clock
        self.cooldown_seconds = cooldown_seconds
        self.claim_daily = claim_daily  # an account known to be at zero stays usable: its daily claim is tried
        self.in_flight_window = dict(in_flight_window or {"image": 900.0, "video": 1200.0})  # by task kind
        self._reserved: Counter[int] = Counter()  # account id -> submits in progress
        self._reserved_by: Counter[str] = Counter()  # owner -> submits in progress
        self._stored: Counter[int] = Counter()  # account id -> stored tasks in flight, as last counted
        self._stored_by: Counter[str] = Counter()  # owner -> the same
        # Accepted submits whose reservation ended but which no count started after their end has seen yet:
        # (the count epoch at their end, account id, owner). Without them a count that read the store before
        # the task was stored would let a concurrent submit past the owner's cap.
        self._recent: list[tuple[int, int, str]] = []
        self._epoch = 0  # counts started
        self._applied = 0  # the epoch of the count whose figures are in _stored
        self.models = Cooldowns(clock)  # (account id, model) pairs resting after a refusal of that model

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
        if len(note) > _NOTE_MAX:
            raise BadRequest(f"the note is longer than {_NOTE_MAX} characters", code="INVALID_NOTE")
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
        """Every stored account (and a fresh count of their tasks in flight)."""
        await self.count_in_flight()
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
        """Enable (ending any cool-down) or disable an account; returns the updated row."""
        row = await self.find(ref)
        await self._store.set_account_enabled(row.id, enabled)
        if enabled:
            self.models.clear(row.id)
        return await self.find(row.id)

    async def remove(self, ref: str | int) -> AccountRow:
        """Delete an account; its finished tasks stay queryable. 409 while it has tasks in flight."""
        row = await self.find(ref)
        if self.in_flight(row.id):
            raise Conflict(
                f"account {row.name!r} has {self.in_flight(row.id)} task(s) in flight; disable it and remove it "
                "once they have finished",
                code="ACCOUNT_BUSY",
            )
        await self._store.delete_account(row.id)
        return row

    def _jar_account(self, text: str, region: str | None, user_agent: str | None, proxy: str | None) -> Account:
        try:
            where = Region(region or "cn")
        except ValueError:
            raise BadRequest("region must be one of cn, us, hk, jp, sg", code="INVALID_REGION") from None
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

    def describe(self, row: AccountRow) -> dict[str, Any]:
        """The public view of an account (admin API, CLI): no secret, only the masked session."""
        now = self.clock.time()
        return {
            "id": row.id,
            "name": row.name,
            "region": row.region,
            "session": row.masked,
            "proxy": row.has_proxy,
            **self._identity(row),
            "enabled": row.enabled,
            "note": row.note,
            "credits": row.credits,
            "credits_at": row.credits_at,
            "in_flight": self.in_flight(row.id),
            "health": {
                "state": _state(row, now),
                "last_check_at": row.last_check_at,
                "last_error_code": row.last_error_code,
                "last_error": row.last_error,
                "cooldown_until": row.cooldown_until if row.cooling(now) else None,
                "model_cooldowns": [_model_view(c) for c in self.models.active(row.id)],
            },
            "created_at": row.created_at,
        }

    def _identity(self, row: AccountRow) -> dict[str, Any]:
        """How the account appears to the upstream (no secret): its credential kind and transport."""
        try:
            data = json.loads(self.box.open(row.secret, row.sealed))
        except SecretError:
            return {"credential": "unreadable", "transport": None}
        return {"credential": "cookie jar" if data.get("jar") else "session id", "transport": data.get("transport")}

    # ------------------------------------------------------------------ health

    async def record_refusal(
        self, account_id: int, err: ApiError, *, checked: bool = False, cool: bool = True, seconds: float | None = None
    ) -> None:
        """Keep the reason of an upstream refusal and (when `cool`) rest the account for `seconds` (default
        `cooldown_seconds`)."""
        until = self.clock.time() + (self.cooldown_seconds if seconds is None else seconds) if cool else None
        health = AccountHealth(err.code, err.message, until, checked=checked)
        await self._store.record_account_health(account_id, health, now=self.clock.time())

    async def record_model_refusal(self, account_id: int, model: str, err: ApiError, *, seconds: float) -> None:
        """Rest `model` on the account for `seconds` (every other model stays usable) and keep the reason."""
        self.models.add(account_id, model, seconds, err)
        await self.record_refusal(account_id, err, cool=False)

    async def record_success(self, account_id: int, credits: int | None, *, checked: bool = False) -> None:
        """Clear an account's error and cool-down; store its balance when read."""
        health = AccountHealth(None, None, None, checked=checked, credits=credits)
        await self._store.record_account_health(account_id, health, now=self.clock.time())

    # ------------------------------------------------------------------ selection and in-flight counts

    def in_flight(self, account_id: int) -> int:
        """Submits in progress plus accepted tasks not yet final, for one account."""
        recent = sum(1 for _, a, _ in self._recent if a == account_id)
        return self._reserved[account_id] + self._stored[account_id] + recent

    def owner_in_flight(self, owner: str) -> int:
        """The same for one owner (an API key)."""
        recent = sum(1 for _, _, o in self._recent if o == owner)
        return self._reserved_by[owner] + self._stored_by[owner] + recent

    async def count_in_flight(self) -> None:
        """Count the stored tasks in flight again (before showing `owner_in_flight`)."""
        now = self.clock.time()
        self._epoch += 1
        epoch = self._epoch  # this count sees every task stored before now
        counts = await self._store.pool_tasks_in_flight(
            image_since=now - self.in_flight_window["image"], video_since=now - self.in_flight_window["video"]
        )
        if epoch < self._applied:
            return  # a count that started later was applied meanwhile: its figures are newer
        self._applied = epoch
        self._stored, self._stored_by = Counter(), Counter()
        for account_id, owner, count in counts:
            self._stored[account_id] += count
            self._stored_by[owner] += count
        self._recent = [r for r in self._recent if r[0] >= epoch]  # the older ones are in these figures

    async def usable(
        self,
        allowed: tuple[int, ...] | None,
        *,
        exclude: frozenset[int] = frozenset(),
        min_credits: int = 1,
        model: str | None = None,
    ) -> list[tuple[AccountRow, Account]]:
        """The accounts a submit may use now, best first: allowed, enabled, not cooling down (for `model` either),
        not known to hold fewer than `min_credits` (a balance read within the cool-down; at zero, with
        `claim_daily`, the claim is tried instead), secret readable; fewest in flight first."""
        now = self.clock.time()
        await self.count_in_flight()
        rows = await self._store.accounts()
        found: list[tuple[AccountRow, Account]] = []
        for row in rows:
            if row.id in exclude or (allowed is not None and row.id not in allowed):
                continue
            short = _known_short(row, now, self.cooldown_seconds, min_credits, claim_daily=self.claim_daily)
            if not row.enabled or row.cooling(now) or short or self.models.get(row.id, model) is not None:
                continue
            try:
                found.append((row, self.account_of(row)))
            except (SecretError, JarError) as exc:
                log.warning("pool account %s skipped: %s", row.name, exc)
        found.sort(key=lambda pair: (self.in_flight(pair[0].id), pair[0].id))
        return found

    async def choose(
        self,
        allowed: tuple[int, ...] | None,
        owner: str,
        *,
        exclude: frozenset[int],
        cap: int,
        min_credits: int = 1,
        model: str | None = None,
    ) -> Choice | None:
        """Reserve the best usable account for a submit of `owner` that may pay `min_credits`; None when none is
        usable. Raises `OverCap` when the owner already has `cap` tasks in flight (checked in the same step as
        the reservation)."""
        candidates = await self.usable(allowed, exclude=exclude, min_credits=min_credits, model=model)
        # No await from here on: the counts read are the counts reserved against.
        if self.owner_in_flight(owner) >= cap:
            raise OverCap(cap)
        if not candidates:
            return None
        row, account = min(candidates, key=lambda pair: (self.in_flight(pair[0].id), pair[0].id))
        self._reserved[row.id] += 1
        self._reserved_by[owner] += 1
        return Choice(row.id, row.name, account, owner)

    def release(self, choice: Choice, *, accepted: bool = False) -> None:
        """End a reservation (the submit answered, failed or moved on to another account). An `accepted` submit
        (its task stored) keeps counting until a count of the stored tasks that started after now has seen it."""
        self._reserved[choice.account_id] -= 1
        self._reserved_by[choice.owner] -= 1
        if accepted:
            self._recent.append((self._epoch, choice.account_id, choice.owner))


class OverCap(Exception):
    """An owner is at its cap on tasks in flight."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"at the cap of {cap} task(s) in flight")
        self.cap = cap


def _secret_json(account: Account) -> bytes:
    """The sealed secret: the session id and proxy, and for a jar account the jar (as its Cookie header), the
    User-Agent it goes with, and the account's transport."""
    secret: dict[str, Any] = {"sessionid": account.sessionid, "proxy": account.proxy, "transport": account.transport}
    if account.jar is not None:
        secret["jar"] = account.jar.header()
        secret["user_agent"] = account.jar.user_agent
    return json.dumps(secret).encode("utf-8")


def _known_short(row: AccountRow, now: float, within: float, need: int, *, claim_daily: bool) -> bool:
    """True when a recent balance reading says the account cannot pay `need` (and no daily claim may help)."""
    if row.credits is None or row.credits_at is None or now - row.credits_at >= within:
        return False
    if row.credits <= 0 and claim_daily:
        return False
    return row.credits < need


def _model_view(cool: Cooldown) -> dict[str, Any]:
    return {"model": cool.model, "until": cool.until, "reason": cool.reason}


def _state(row: AccountRow, now: float) -> str:
    if not row.enabled:
        return "disabled"
    if row.cooling(now):
        return "cooling_down"
    if row.last_error_code:
        return "error"
    return "ok"
