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
the key's usage counted. One loop serves both: the accounts come from an account source
(`services/account_sources.py`: the header's tokens, or the pool), the refusals are judged by one policy
(`services/refusals.py`). Costs are never predicted from tables (docs/protocol.md): a request's cost is
known once a pooled submit of the same kind (`cost_key`) was measured from the balance before and after.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from ..clock import Clock
from ..errors import (
    ApiError,
    BadGateway,
    Conflict,
    GatewayTimeout,
    InsufficientCredits,
    from_upstream,
)
from ..jobs import Jobs
from ..store.pool import AccountRow
from ..store.secretbox import SecretError
from ..upstream.client import Credits, JimengClient
from ..upstream.cookies import JarError
from ..upstream.errors import UpstreamError, UpstreamRetError
from ..upstream.tokens import Account
from .account_sources import AccountSource, CostBook, PoolAccounts, RawTokens, pool_policy
from .apikeys import ApiKeys
from .balances import Balances
from .callers import Caller
from .idempotency import SpendMark
from .params import ImageParams, VideoParams
from .pool import AccountPool
from .refusals import Cooldown, Cooldowns, Refusal, RefusalPolicy, unhealthy

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
        jobs: Jobs | None = None,
    ) -> None:
        """`pool` and `keys` serve callers with an API key (their usage counted on `keys`); `claim_daily`: pooled
        submits claim the daily credits of an account at zero; `jobs` owns the balance lookups."""
        self.client = client
        self.pool = pool
        self.keys = keys
        self.claim_daily = claim_daily
        self.clock = clock
        self.cache_seconds = cache_seconds
        self.cooldown_seconds = cooldown_seconds
        self.risk_cooldown_seconds = risk_cooldown_seconds
        self.balances = Balances(client.get_credits, clock, max_age=cache_seconds, jobs=jobs)
        self.cooldowns = Cooldowns(clock)  # raw token fingerprint -> until when it (or a model on it) is tried last
        self.refusals = RefusalPolicy(cooldown_seconds, risk_cooldown_seconds)
        self._claim_refused: dict[str, str] = {}  # account fingerprint -> Shanghai day its claim got ret -4
        self.costs = CostBook()  # measured costs of pooled submits, the pool accounts' last readings
        # Set by the app (TaskIntake.record_spent): told an accepted submit's result and its estimated cost, to
        # store it as the task's cost; it must not raise.
        self.on_spent: Callable[[object, int], Awaitable[None]] | None = None

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
        return self.cooldowns.of(account.fingerprint, model)

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
        model = model_of(cost)
        source: AccountSource
        if caller.key is not None:
            assert self.pool is not None and self.keys is not None
            source = PoolAccounts(
                self.pool,
                self.keys,
                caller.key,
                spend=spend,
                model=model,
                cost=cost,
                claim=self.claim_daily,
                balances=self.balances,
                costs=self.costs,
            )
        else:
            source = RawTokens(
                caller.accounts,
                model=model,
                cost=cost,
                policy=self.refusals,
                cooldowns=self.cooldowns,
                balances=self.balances,
                costs=self.costs,
            )
        return await self._submit(source, action, model)

    def known_cost(self, cost: str | None) -> int:
        """The credits a request of this `cost_key` is known to need (1 until one was measured)."""
        return self.costs.known(cost) or 1

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

    async def _submit(
        self, source: AccountSource, action: Callable[[Account], Awaitable[T]], model: str | None
    ) -> tuple[Account, T]:
        """The one submit loop: run `action` with the next account of `source` until one accepts it.

        A refusal that spent nothing (`RefusalPolicy`: a refused session, too few credits, a failed balance
        read, risk control, a rate limit) drops the account's known balance, is reported to `source` (which
        rests what it is about) and moves on to the next account. Any other error ends the attempt at once.
        When no account is left, the last refusal is raised (so a model every account refuses ends with the
        upstream's reason), else `source.none_left()`. Each account is released whatever happens.
        """
        last: ApiError | None = None
        while (lease := await source.next()) is not None:
            outcome: tuple[int, T] | Refusal | None = None
            try:
                outcome = await self._attempt(
                    lease.account, source.paying(lease, action), claim=source.claim, model=model, policy=source.policy
                )
            finally:
                source.release(lease, accepted=outcome is not None and not isinstance(outcome, Refusal))
            if isinstance(outcome, Refusal):
                last = outcome.error
                await source.refused(lease, outcome)
                continue
            before, result = outcome
            spent = await source.accepted(lease, before)
            if spent is not None and self.on_spent is not None:
                await self.on_spent(result, spent)
            return lease.account, result
        raise last if last is not None else source.none_left()

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
            refusal = pool_policy(self.pool).of_balance_read(err)
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
