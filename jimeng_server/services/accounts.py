"""Choosing an account for a submit: credit check with daily auto-claim (docs/protocol.md §4.3),
balances known without a call per submit (`services/balances.py`: a reading reused for `cache_seconds`, less
the known charges, read again after a refusal; concurrent lookups of one account share one call), fail-over
to the next token when one is expired, out of credits or refused by risk control (1019, 4013, 1018: §17.6,
§18.6), and a cool-down with its reason that tries such an account last for a while (the reference picks a
token at random, with no memory). A daily claim refused by risk control (ret -4) is
not tried again for that account on the same Asia/Shanghai day.

Callers with an API key draw from the server's account pool instead (`services/pool.py`): the least busy
usable account with enough credits for the request's known cost, fail-over on refusals made before anything
was spent (expired session, no credits, risk control), each refused account cooled down with its reason, and
the key's usage counted. Costs are never predicted from tables (docs/protocol.md): a request's cost is
known once a pooled submit of the same kind (`cost_key`) was measured from the balance before and after.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from ..clock import Clock
from ..errors import (
    ACCOUNT_REFUSAL_CODES,
    RISK_CODES,
    ApiError,
    BadGateway,
    Conflict,
    GatewayTimeout,
    InsufficientCredits,
    TooManyRequests,
    Unauthorized,
    from_upstream,
)
from ..store.pool import AccountRow
from ..store.secretbox import SecretError
from ..upstream.client import Credits, JimengClient
from ..upstream.errors import UpstreamError, UpstreamRetError
from ..upstream.tokens import Account
from .apikeys import ApiKeys
from .balances import Balances
from .callers import Caller, KeyGrant, Payer, no_account_available
from .idempotency import SpendMark
from .params import ImageParams, VideoParams
from .pool import AccountPool, Choice, OverCap

log = logging.getLogger(__name__)

T = TypeVar("T")

CHECK_SECONDS = 5.0
"""How long an operator's check (`accounts check`, the dashboard opening) waits for one account's balance."""

POOL_REFUSALS = ("TOKEN_EXPIRED", "INVALID_TOKEN", "INSUFFICIENT_CREDITS", *sorted(ACCOUNT_REFUSAL_CODES))
"""Error codes of upstream refusals that spend nothing: a pooled submit moves on to another account."""


def cost_key(params: ImageParams | VideoParams) -> str:
    """What a submit's price depends on (kind, model, resolution, duration): its measured cost is kept under it."""
    if isinstance(params, VideoParams):
        return f"video:{params.model}:{params.resolution}:{params.duration}"
    return f"image:{params.model}:{params.resolution}:{params.count or 'default'}"  # n changes the price


_SHANGHAI = timedelta(hours=8)  # the upstream's credit day (§4.2); China has no DST


def shanghai_day(ts: float) -> str:
    """The calendar day (YYYY-MM-DD) in Asia/Shanghai at Unix time `ts`."""
    return (datetime.fromtimestamp(ts, UTC) + _SHANGHAI).date().isoformat()


@dataclass(frozen=True, slots=True)
class Cooldown:
    """Until when an account is tried last, and why (the API error code that put it there)."""

    until: float
    reason: str


class AccountService:
    """Balance lookups (`Balances`: a reading reused for `cache_seconds`) and the submit-with-fail-over loop."""

    def __init__(
        self,
        client: JimengClient,
        clock: Clock,
        *,
        cache_seconds: float,
        cooldown_seconds: float = 600.0,
        pool: AccountPool | None = None,
        keys: ApiKeys | None = None,
        claim_daily: bool = False,
        risk_cooldown_seconds: float = 3600.0,
    ) -> None:
        """`pool` and `keys` serve callers with an API key (their usage counted on `keys`); `claim_daily`: pooled
        submits claim the daily credits of an account at zero."""
        self.client = client
        self.pool = pool
        self.keys = keys
        self.claim_daily = claim_daily
        self.clock = clock
        self.cache_seconds = cache_seconds
        self.cooldown_seconds = cooldown_seconds
        self.risk_cooldown_seconds = risk_cooldown_seconds
        self.balances = Balances(client.get_credits, clock, max_age=cache_seconds)
        self._cooldown: dict[str, Cooldown] = {}  # account fingerprint -> until when it is tried last, and why
        self._claim_refused: dict[str, str] = {}  # account fingerprint -> Shanghai day its claim got ret -4
        self._balance: dict[int, int] = {}  # pool account id -> the last balance read after a pooled submit
        self._costs: dict[str, int] = {}  # cost_key -> the smallest spend measured for one pooled submit

    async def credits(self, account: Account, *, fresh: bool = False) -> Credits:
        """The account's balance as known (`Balances.get`); `fresh`: read now."""
        return await self.balances.get(account, fresh=fresh)

    def forget(self, account: Account) -> None:
        """Drop the known balance (after a refusal): the next lookup reads it."""
        self.balances.forget(account)

    async def close(self) -> None:
        """Cancel the balance lookups in flight."""
        await self.balances.close()

    async def ensure_credits(self, account: Account, *, claim: bool = True) -> int:
        """The account's balance; InsufficientCredits unless it has credits, after claiming the daily ones if it
        has none (when `claim`)."""
        credits = await self.credits(account)
        if credits.total > 0:
            return credits.total
        if not claim:
            raise InsufficientCredits("the account has no credits; top up or enable [accounts] claim_daily")
        try:
            granted = await self.receive(account)
        except UpstreamError as exc:
            raise InsufficientCredits(
                f"the account has no credits and the daily claim failed ({from_upstream(exc).message}); top up "
                "or use another account"
            ) from None
        except BadGateway as exc:
            raise InsufficientCredits(f"the account has no credits and {exc.message}") from None
        total = (await self.credits(account, fresh=True)).total
        if total <= 0:
            raise InsufficientCredits(
                "the account has no credits and the daily claim granted "
                f"{'none' if granted <= 0 else 'nothing usable'}; top up"
            )
        return total

    async def receive(self, account: Account) -> int:
        """Claim the daily credits; a risk-control refusal (ret -4) is remembered for the Asia/Shanghai day and
        the claim is not sent again that day (BadGateway CLAIM_RISK_REJECTED)."""
        if self._claim_refused.get(account.fingerprint) == shanghai_day(self.clock.time()):
            raise BadGateway(
                "the upstream's risk control refused this account's daily claim earlier today (ret -4 shark check "
                "reject); it is not retried until tomorrow (Asia/Shanghai)",
                code="CLAIM_RISK_REJECTED",
            )
        try:
            return await self.client.receive_credits(account)
        except UpstreamRetError as exc:
            if exc.ret == "-4":
                self._claim_refused[account.fingerprint] = shanghai_day(self.clock.time())
            raise

    def cooldown(self, account: Account) -> Cooldown | None:
        """The account's cool-down while it lasts, else None."""
        cool = self._cooldown.get(account.fingerprint)
        return cool if cool is not None and cool.until > self.clock.time() else None

    def ordered(self, accounts: Sequence[Account]) -> list[Account]:
        """`accounts` in header order, except that accounts refused recently (expired session, no credits,
        risk control) go last while their cool-down lasts: they are still tried when nothing else works."""
        return sorted(accounts, key=lambda a: self.cooldown(a) is not None)

    async def submit(
        self,
        caller: Caller,
        action: Callable[[Account], Awaitable[T]],
        *,
        spend: SpendMark,
        cost: str | None = None,
    ) -> tuple[Account, T]:
        """Run `action` (which spends credits) for `caller`: with the first usable header token (raw tokens),
        or with an account of the pool chosen for the caller's API key (`cost`: the request's `cost_key`;
        `spend.payer` names the key and the account tried, for the generate `action` sends)."""
        if caller.key is not None:
            return await self._submit_pooled(caller.key, action, spend, cost)
        return await self._submit_raw(caller.accounts, action, cost)

    def known_cost(self, cost: str | None) -> int:
        """The credits a request of this `cost_key` is known to need (1 until one was measured)."""
        return self._costs.get(cost, 1) if cost is not None else 1

    async def _submit_raw(
        self, accounts: Sequence[Account], action: Callable[[Account], Awaitable[T]], cost: str | None
    ) -> tuple[Account, T]:
        """Run `action` with the first usable account (see `ordered`).

        An account whose session is refused, whose credits are too low, or which risk control refuses (1019,
        4013, 1018) is skipped for the next one and cooled down (`cooldown_seconds`, or `risk_cooldown_seconds`
        for risk control) with that reason; those refusals happen before anything is spent, and its known
        balance is dropped. Any other error ends the attempt at once. After an accepted submit the cost of
        `cost`, when one was measured, is taken off the account's known balance (nothing is read).
        """
        last: ApiError | None = None
        for account in self.ordered(accounts):
            try:
                await self.ensure_credits(account)
                result = await action(account)
            except UpstreamError as exc:
                err = from_upstream(exc)
                if not (isinstance(err, Unauthorized | InsufficientCredits) or err.code in ACCOUNT_REFUSAL_CODES):
                    raise err from None
                last = err
            except (Unauthorized, InsufficientCredits) as err:
                last = err
            else:
                if cost in self._costs:
                    self.balances.charge(account, self._costs[cost])
                self._cooldown.pop(account.fingerprint, None)
                return account, result
            self.forget(account)
            assert last is not None
            seconds = self.risk_cooldown_seconds if last.code in RISK_CODES else self.cooldown_seconds
            self._cooldown[account.fingerprint] = Cooldown(self.clock.time() + seconds, last.code)
            log.info("account %s cooled down for %g s: %s", account.masked, seconds, last.code)
        assert last is not None
        raise last

    async def _submit_pooled(
        self, key: KeyGrant, action: Callable[[Account], Awaitable[T]], spend: SpendMark, cost: str | None
    ) -> tuple[Account, T]:
        """Run `action` with the least busy usable pool account of `key`; on a refusal that spent nothing, cool
        that account down (with the reason) and try the next. Other errors end the attempt at once.

        429 TOO_MANY_IN_FLIGHT when the key is at its cap; 503 NO_ACCOUNT_AVAILABLE (or the last refusal) when
        no account is left. The credits spent are measured from the balance before (the known one: no call
        when it is fresh) and after the submit (read anew).
        """
        assert self.pool is not None and self.keys is not None
        tried: set[int] = set()
        last: ApiError | None = None
        while True:
            try:
                choice = await self.pool.choose(
                    key.accounts,
                    key.owner,
                    exclude=frozenset(tried),
                    cap=key.max_in_flight,
                    min_credits=self.known_cost(cost),
                )
            except OverCap as exc:
                raise TooManyRequests(
                    f"this API key already has {exc.cap} task(s) in flight, its cap; retry when one has finished",
                    code="TOO_MANY_IN_FLIGHT",
                    retry_after=5,
                ) from None
            if choice is None:
                raise last if last is not None else no_account_available()
            tried.add(choice.account_id)
            account = choice.account
            try:
                before = await self.ensure_credits(account, claim=self.claim_daily)
                spend.payer = Payer(key.owner, choice.account_id)
                result = await action(account)
            except (ApiError, UpstreamError) as exc:
                err = exc if isinstance(exc, ApiError) else from_upstream(exc)
                self.forget(account)
                if err.code not in POOL_REFUSALS:
                    raise err from None
                last = err
                log.info("pool account %s refused (%s); trying another", choice.name, err.code)
                await self.pool.record_refusal(choice.account_id, err)
                continue
            finally:
                self.pool.release(choice)
            try:
                await self._count_use(key, choice, before, cost)
            except Exception:  # the task is accepted and paid for: its answer must not turn into an error
                log.exception("usage of API key %s on account %s not recorded", key.name, choice.name)
            return account, result

    async def check_pooled(self, ref: str | int) -> AccountRow:
        """Read a pool account's balance now and store its health: the balance and no error, or the upstream's
        refusal (a refusal that would fail a submit over also starts a cool-down). Returns the updated row."""
        assert self.pool is not None
        row = await self.pool.find(ref)
        try:
            credits = await self.credits(self.pool.account_of(row), fresh=True)
        except SecretError as exc:
            await self.pool.record_refusal(row.id, Conflict(str(exc), code="SECRET_UNREADABLE"), checked=True)
        except UpstreamError as exc:
            err = from_upstream(exc)
            await self.pool.record_refusal(row.id, err, checked=True, cool=err.code in POOL_REFUSALS)
        else:
            await self.pool.record_success(row.id, credits.total, checked=True)
        return await self.pool.find(row.id)

    async def check_pooled_all(
        self, refs: Sequence[str | int], *, concurrency: int = 8, seconds: float | None = None
    ) -> list[AccountRow]:
        """`check_pooled` for each of `refs` (all resolved first: an unknown one is a 404 before any call), at
        most `concurrency` at a time and each for at most `seconds` (default CHECK_SECONDS; an account whose
        balance read takes longer is recorded as UPSTREAM_TIMEOUT, without a cool-down), so checking a pool
        against an unreachable upstream takes a few seconds, not the sum of every read's retries. Rows in the
        order of `refs`."""
        assert self.pool is not None
        pool = self.pool
        rows = [await pool.find(ref) for ref in refs]
        bound = CHECK_SECONDS if seconds is None else seconds
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(row: AccountRow) -> AccountRow:
            async with gate:
                try:
                    async with asyncio.timeout(bound):
                        return await self.check_pooled(row.id)
                except TimeoutError:
                    late = GatewayTimeout(
                        f"no balance answer within {bound:g} s (the upstream did not answer, or refused every retry)",
                        code="UPSTREAM_TIMEOUT",
                    )
                    await pool.record_refusal(row.id, late, checked=True, cool=False)
                    return await pool.find(row.id)

        return list(await asyncio.gather(*(one(row) for row in rows)))

    async def _count_use(self, key: KeyGrant, choice: Choice, before: int, cost: str | None) -> None:
        """After an accepted pooled submit: read the balance again (a call that starts now), store it, clear the
        account's error, add the drop since the previous reading to the key's usage and keep it as the known
        cost of `cost` (the smallest seen: submits of one account that cross inflate a reading). A failed
        reading counts the spend as unknown (0): the task goes on."""
        assert self.pool is not None and self.keys is not None
        try:
            after: int | None = (await self.credits(choice.account, fresh=True)).total
        except UpstreamError:
            after = None
        spent = 0
        if after is not None:
            spent = max(0, self._balance.get(choice.account_id, before) - after)
            self._balance[choice.account_id] = after
            if spent > 0 and cost is not None:
                self._costs[cost] = min(self._costs.get(cost, spent), spent)
        await self.pool.record_success(choice.account_id, after)
        await self.keys.record_use(key.id, credits_spent=spent)
