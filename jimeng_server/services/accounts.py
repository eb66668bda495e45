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
    ApiError,
    BadGateway,
    Conflict,
    GatewayTimeout,
    InsufficientCredits,
    ServiceUnavailable,
    TooManyRequests,
    from_upstream,
)
from ..store.pool import AccountRow
from ..store.secretbox import SecretError
from ..upstream.client import Credits, JimengClient
from ..upstream.cookies import JarError
from ..upstream.errors import UpstreamError, UpstreamRetError
from ..upstream.tokens import Account
from .apikeys import ApiKeys
from .balances import Balances
from .callers import Caller, KeyGrant, Payer, no_account_available
from .idempotency import SpendMark
from .params import ImageParams, VideoParams
from .pool import AccountPool, Choice, OverCap
from .refusals import ModelCooldowns, Refusal, RefusalPolicy, Scope, unhealthy

log = logging.getLogger(__name__)

T = TypeVar("T")

CHECK_SECONDS = 5.0
"""How long an operator's check (`accounts check`, the dashboard opening) waits for one account's balance."""


def cost_key(params: ImageParams | VideoParams) -> str:
    """What a submit's price depends on (kind, model, resolution, duration): its measured cost is kept under it."""
    if isinstance(params, VideoParams):
        return f"video:{params.model}:{params.resolution}:{params.duration}"
    return f"image:{params.model}:{params.resolution}:{params.count or 'default'}"  # n changes the price


_SHANGHAI = timedelta(hours=8)  # the upstream's credit day (§4.2); China has no DST


def model_of(cost: str | None) -> str | None:
    """The model named by a `cost_key` (what model refusals are scoped to), or None."""
    parts = cost.split(":") if cost else []
    return parts[1] if len(parts) >= 3 and parts[1] else None


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
        self._model_cooldowns = ModelCooldowns(clock)  # (fingerprint, model) -> the same, for model refusals
        self.refusals = RefusalPolicy(cooldown_seconds, risk_cooldown_seconds)
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

    def cooldown(self, account: Account, model: str | None = None) -> Cooldown | None:
        """The raw token's cool-down while it lasts (the account's, else the one of `model` on it), else None."""
        cool = self._cooldown.get(account.fingerprint)
        if cool is not None and cool.until > self.clock.time():
            return cool
        resting = self._model_cooldowns.get(account.fingerprint, model)
        return Cooldown(resting.until, resting.reason) if resting is not None else None

    def ordered(self, accounts: Sequence[Account], model: str | None = None) -> list[Account]:
        """`accounts` in header order, except that accounts refused recently (expired session, no credits, risk
        control, for `model` or for all) go last while their cool-down lasts: they are still tried when nothing
        else works."""
        return sorted(accounts, key=lambda a: self.cooldown(a, model) is not None)

    async def submit(
        self,
        caller: Caller,
        action: Callable[[Account], Awaitable[T]],
        *,
        spend: SpendMark,
        cost: str | None = None,
    ) -> tuple[Account, T]:
        """Run `action` (which spends credits) for `caller`: with the first usable header token (raw tokens),
        or with an account of the pool chosen for the caller's API key (`cost`: the request's `cost_key`, which
        also names the model refusals are scoped to; `spend.payer` names the key and the account tried, for the
        generate `action` sends). Both loops follow one refusal policy (`services/refusals.py`)."""
        if caller.key is not None:
            return await self._submit_pooled(caller.key, action, spend, cost)
        return await self._submit_raw(caller.accounts, action, cost)

    def known_cost(self, cost: str | None) -> int:
        """The credits a request of this `cost_key` is known to need (1 until one was measured)."""
        return self._costs.get(cost, 1) if cost is not None else 1

    async def _attempt(
        self,
        account: Account,
        action: Callable[[Account], Awaitable[T]],
        *,
        claim: bool,
        model: str | None,
        policy: RefusalPolicy,
    ) -> tuple[int, T] | Refusal:
        """Check the balance, then run `action`: the balance before and the result, or the `Refusal` (nothing was
        spent) that moves the request on to the next account. Any other error is raised as the API error.

        A balance read that fails for any reason (the session refused, a dead proxy, an HTTP error) is a
        refusal of the account: nothing was sent that spends."""
        try:
            before = await self.ensure_credits(account, claim=claim)
        except (ApiError, UpstreamError) as exc:
            err = exc if isinstance(exc, ApiError) else from_upstream(exc)
            self.forget(account)
            refusal = policy.of_balance_read(err)
            if refusal is None:
                raise err from None
            return refusal
        try:
            return before, await action(account)
        except (ApiError, UpstreamError) as exc:
            err = exc if isinstance(exc, ApiError) else from_upstream(exc)
            refusal = policy.of_submit(err, model)
            if refusal is None:
                raise err from None
            self.forget(account)
            return refusal

    async def _submit_raw(
        self, accounts: Sequence[Account], action: Callable[[Account], Awaitable[T]], cost: str | None
    ) -> tuple[Account, T]:
        """Run `action` with the first usable account (see `ordered`).

        A refusal that spent nothing (`RefusalPolicy`: a refused session, too few credits, a failed balance
        read, risk control) moves on to the next token and cools down what it is about (the token, or the
        model on the token) with that reason; its known balance is dropped. Any other error ends the attempt
        at once. After an accepted submit the cost of `cost`, when one was measured, is taken off the account's
        known balance (nothing is read).
        """
        model = model_of(cost)
        last: ApiError | None = None
        for account in self.ordered(accounts, model):
            outcome = await self._attempt(account, action, claim=True, model=model, policy=self.refusals)
            if not isinstance(outcome, Refusal):
                if cost in self._costs:
                    self.balances.charge(account, self._costs[cost])
                self._cooldown.pop(account.fingerprint, None)
                return account, outcome[1]
            last = outcome.error
            if outcome.scope is Scope.MODEL and model is not None:
                self._model_cooldowns.add(account.fingerprint, model, outcome.seconds, last)
            else:
                self._cooldown[account.fingerprint] = Cooldown(self.clock.time() + outcome.seconds, outcome.reason)
            log.info(
                "account %s cooled down for %g s (%s): %s",
                account.masked,
                outcome.seconds,
                model if outcome.scope is Scope.MODEL else "all models",
                outcome.reason,
            )
        assert last is not None
        raise last

    async def _submit_pooled(
        self, key: KeyGrant, action: Callable[[Account], Awaitable[T]], spend: SpendMark, cost: str | None
    ) -> tuple[Account, T]:
        """Run `action` with the least busy usable pool account of `key`; on a refusal that spent nothing, cool
        down what it is about (the account, or the model on the account) with the reason and try the next.
        Other errors end the attempt at once.

        429 TOO_MANY_IN_FLIGHT when the key is at its cap; when no account is left, the last refusal (so a
        model every account refuses ends with the upstream's reason), else 503 NO_ACCOUNT_AVAILABLE. The
        credits spent are measured from the balance before (the known one: no call when it is fresh) and after
        the submit (read anew).
        """
        assert self.pool is not None and self.keys is not None
        model = model_of(cost)
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
                    model=model,
                )
            except OverCap as exc:
                raise TooManyRequests(
                    f"this API key already has {exc.cap} task(s) in flight, its cap; retry when one has finished",
                    code="TOO_MANY_IN_FLIGHT",
                    retry_after=5,
                ) from None
            if choice is None:
                raise last if last is not None else self._none_left(key, model)
            tried.add(choice.account_id)
            account = choice.account
            payer = Payer(key.owner, choice.account_id)

            async def paying(account: Account, payer: Payer = payer) -> T:
                spend.payer = payer  # set once the balance check passed: the generate is what spends
                return await action(account)

            outcome: tuple[int, T] | Refusal | None = None
            try:
                outcome = await self._attempt(
                    account, paying, claim=self.claim_daily, model=model, policy=self._pool_refusals()
                )
            finally:
                self.pool.release(choice, accepted=outcome is not None and not isinstance(outcome, Refusal))
            if isinstance(outcome, Refusal):
                last = outcome.error
                log.info("pool account %s refused (%s); trying another", choice.name, outcome.reason)
                if outcome.scope is Scope.MODEL and model is not None:
                    await self.pool.record_model_refusal(choice.account_id, model, last, seconds=outcome.seconds)
                else:
                    await self.pool.record_refusal(choice.account_id, last, seconds=outcome.seconds)
                continue
            before, result = outcome
            try:
                await self._count_use(key, choice, before, cost)
            except Exception:  # the task is accepted and paid for: its answer must not turn into an error
                log.exception("usage of API key %s on account %s not recorded", key.name, choice.name)
            return account, result

    def _none_left(self, key: KeyGrant, model: str | None) -> ApiError:
        """503 NO_ACCOUNT_AVAILABLE, naming the refusal of `model` when that is what rests the key's accounts."""
        assert self.pool is not None
        if model is not None:
            ids = key.accounts if key.accounts is not None else self.pool.models.holders()
            resting = [c for who in ids if (c := self.pool.models.get(who, model)) is not None]
            if resting:
                return ServiceUnavailable(
                    f"every account this key may use was refused {model} recently ({resting[0].message}); other "
                    "models still work, or try again later",
                    code="NO_ACCOUNT_AVAILABLE",
                )
        return no_account_available()

    async def check_pooled(self, ref: str | int) -> AccountRow:
        """Read a pool account's balance now and store its health: the balance and no error, or the upstream's
        refusal (a refusal that would fail a submit over also starts a cool-down). Returns the updated row."""
        assert self.pool is not None
        row = await self.pool.find(ref)
        try:
            credits = await self.credits(self.pool.account_of(row), fresh=True)
        except (SecretError, JarError) as exc:
            await self.pool.record_refusal(row.id, Conflict(str(exc), code="SECRET_UNREADABLE"), checked=True)
        except UpstreamError as exc:
            err = from_upstream(exc)
            refusal = self._pool_refusals().of_balance_read(err)
            cool = refusal is not None
            await self.pool.record_refusal(
                row.id, err, checked=True, cool=cool, seconds=refusal.seconds if refusal else None
            )
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

    async def recheck_unhealthy(self) -> int:
        """Read again the balance of each enabled pool account resting after a failed balance read (transport,
        proxy, HTTP error: not a refusal of its session, credits or a model): a good reading ends the cool-down
        and brings it back, a failed one rests it again. Returns how many were checked."""
        assert self.pool is not None
        now = self.clock.time()
        rows = [
            r
            for r in await self.pool.rows()
            if r.enabled and r.cooling(now) and r.last_error_code is not None and unhealthy(r.last_error_code)
        ]
        for row in rows:
            await self.check_pooled(row.id)
            log.info("pool account %s re-checked: %s", row.name, (await self.pool.find(row.id)).last_error_code or "ok")
        return len(rows)

    def _pool_refusals(self) -> RefusalPolicy:
        """The refusal policy of the pool: its accounts rest `[accounts] cooldown_seconds` for every refusal."""
        assert self.pool is not None
        return RefusalPolicy(self.pool.cooldown_seconds, self.pool.cooldown_seconds)

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
