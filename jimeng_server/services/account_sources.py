"""Where a submit's accounts come from: the one submit loop (`AccountService.submit`) asks an account source for
the next account to try and tells it how the try ended; the source decides the order and remembers refusals.

- `RawTokens`: the header's tokens in order, those resting after a refusal last (they are still tried when
  nothing else works); refusals rest the token, or the model on it, in this process (`refusals.Cooldowns`).
- `PoolAccounts`: the pool's least busy usable account for an API key, each reserved while it is tried
  (`services/pool.py`), never one already tried; refusals rest the account, or the model on it, in the store
  (shared with the other replicas, shown by the admin API and `accounts list`); an accepted submit's spend is measured
  and counted on the key.

Both take the refusal policy (`services/refusals.py`) they are given: what a refusal is about and how long it
rests is decided there, once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from ..errors import ApiError, ServiceUnavailable, TooManyRequests
from ..upstream.errors import UpstreamError
from ..upstream.tokens import Account
from .account_chooser import Choice, OverCap
from .apikeys import ApiKeys
from .balances import Balances
from .callers import KeyGrant, Payer, no_account_available
from .idempotency import SpendMark
from .pool import AccountPool
from .refusals import Cooldowns, Refusal, RefusalPolicy, Scope

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Lease:
    """One account handed to the loop: `choice` is the pool's reservation (None for a raw token)."""

    account: Account
    choice: Choice | None = None


class CostBook:
    """What submits cost, measured from pooled submits (balance before and after), never predicted: the smallest
    spend seen per `cost_key`, and the last balance read per pool account."""

    def __init__(self) -> None:
        self._costs: dict[str, int] = {}  # cost_key -> the smallest spend measured for one pooled submit
        self._balance: dict[int, int] = {}  # pool account id -> the last balance read after a pooled submit

    def known(self, cost: str | None) -> int | None:
        """The measured cost of `cost`, or None when none was measured."""
        return self._costs.get(cost) if cost is not None else None

    def measure(self, account_id: int, before: int, after: int, cost: str | None) -> int:
        """The drop since the account's previous reading (else `before`) to `after`, kept as the known cost of
        `cost` when it is the smallest seen (submits of one account that cross inflate a reading)."""
        spent = max(0, self._balance.get(account_id, before) - after)
        self._balance[account_id] = after
        if spent > 0 and cost is not None:
            self._costs[cost] = min(self._costs.get(cost, spent), spent)
        return spent


class AccountSource(Protocol):
    """What the submit loop needs from where its accounts come from."""

    @property
    def policy(self) -> RefusalPolicy:
        """How refusals of these accounts are scoped and how long they rest."""

    @property
    def claim(self) -> bool:
        """Whether an account at zero claims its daily credits before the submit."""

    async def next(self) -> Lease | None:
        """The next account to try (reserved until `release`), or None when none is left."""

    def paying(self, lease: Lease, action: Callable[[Account], Awaitable[T]]) -> Callable[[Account], Awaitable[T]]:
        """`action` as it runs on `lease` once the balance check passed (the pool names who pays)."""

    def release(self, lease: Lease, *, accepted: bool) -> None:
        """The try on `lease` ended (`accepted`: the submit was taken)."""

    async def refused(self, lease: Lease, refusal: Refusal) -> None:
        """`lease` was refused before anything was spent: rest what the refusal is about."""

    async def accepted(self, lease: Lease, before: int) -> int | None:
        """The submit on `lease` was accepted (`before`: the balance checked before it). Returns what it is
        estimated to have cost (the pooled balance drop, else the known price), None when nothing is known."""

    def none_left(self) -> ApiError:
        """The error when no account was there to try at all."""


class RawTokens:
    """The caller's own tokens, in header order with the resting ones last (ordered once, when the loop starts)."""

    def __init__(
        self,
        accounts: Sequence[Account],
        *,
        model: str | None,
        cost: str | None,
        policy: RefusalPolicy,
        cooldowns: Cooldowns,
        balances: Balances,
        costs: CostBook,
    ) -> None:
        self.policy = policy
        self.claim = True
        self._model = model
        self._cost = cost
        self._cooldowns = cooldowns
        self._balances = balances
        self._costs = costs
        self._queue = ordered(accounts, cooldowns, model)

    async def next(self) -> Lease | None:
        return Lease(self._queue.pop(0)) if self._queue else None

    def paying(self, lease: Lease, action: Callable[[Account], Awaitable[T]]) -> Callable[[Account], Awaitable[T]]:
        return action

    def release(self, lease: Lease, *, accepted: bool) -> None:
        return None

    async def refused(self, lease: Lease, refusal: Refusal) -> None:
        self._cooldowns.rest(lease.account.fingerprint, refusal, self._model)
        log.info(
            "account %s cooled down for %g s (%s): %s",
            lease.account.masked,
            refusal.seconds,
            self._model if refusal.scope is Scope.MODEL and self._model else "all models",
            refusal.reason,
        )

    async def accepted(self, lease: Lease, before: int) -> int | None:
        """Take the known cost off the token's known balance (nothing is read) and end its cool-down; the known
        cost is the estimate returned."""
        spent = self._costs.known(self._cost)
        if spent is not None:
            self._balances.charge(lease.account, spent)
        self._cooldowns.end(lease.account.fingerprint)
        return spent

    def none_left(self) -> ApiError:
        return no_account_available()


def ordered(accounts: Sequence[Account], cooldowns: Cooldowns, model: str | None = None) -> list[Account]:
    """`accounts` in header order, except that accounts refused recently (expired session, no credits, risk
    control, for `model` or for all) go last while their cool-down lasts."""
    return sorted(accounts, key=lambda a: cooldowns.of(a.fingerprint, model) is not None)


class PoolAccounts:
    """The pool's accounts an API key may use, least busy first, each tried at most once per submit."""

    def __init__(
        self,
        pool: AccountPool,
        keys: ApiKeys,
        key: KeyGrant,
        *,
        spend: SpendMark,
        model: str | None,
        cost: str | None,
        claim: bool,
        balances: Balances,
        costs: CostBook,
    ) -> None:
        self.policy = pool_policy(pool)
        self.claim = claim
        self._pool = pool
        self._keys = keys
        self._key = key
        self._spend = spend
        self._model = model
        self._cost = cost
        self._balances = balances
        self._costs = costs
        self._tried: set[int] = set()
        self._none_left: ApiError | None = None

    async def next(self) -> Lease | None:
        """The least busy usable account not tried yet that may pay the known cost; 429 TOO_MANY_IN_FLIGHT when
        the key is at its cap."""
        key = self._key
        try:
            choice = await self._pool.choose(
                key.accounts,
                key.owner,
                exclude=frozenset(self._tried),
                cap=key.max_in_flight,
                min_credits=self._costs.known(self._cost) or 1,
                model=self._model,
            )
        except OverCap as exc:
            raise TooManyRequests(
                f"this API key already has {exc.cap} task(s) in flight, its cap; retry when one has finished",
                code="TOO_MANY_IN_FLIGHT",
                retry_after=5,
            ) from None
        if choice is None:
            self._none_left = await self._why_none_left()
            return None
        self._tried.add(choice.account_id)
        return Lease(choice.account, choice)

    def paying(self, lease: Lease, action: Callable[[Account], Awaitable[T]]) -> Callable[[Account], Awaitable[T]]:
        assert lease.choice is not None
        payer = Payer(self._key.owner, lease.choice.account_id)

        async def paid(account: Account) -> T:
            self._spend.payer = payer  # set once the balance check passed: the generate is what spends
            return await action(account)

        return paid

    def release(self, lease: Lease, *, accepted: bool) -> None:
        assert lease.choice is not None
        self._pool.release(lease.choice, accepted=accepted)

    async def refused(self, lease: Lease, refusal: Refusal) -> None:
        choice = lease.choice
        assert choice is not None
        log.info("pool account %s refused (%s); trying another", choice.name, refusal.reason)
        if refusal.scope is Scope.MODEL and self._model is not None:
            model, seconds = self._model, refusal.seconds
            await self._pool.record_model_refusal(choice.account_id, model, refusal.error, seconds=seconds)
        else:
            await self._pool.record_refusal(choice.account_id, refusal.error, seconds=refusal.seconds)

    async def accepted(self, lease: Lease, before: int) -> int | None:
        """Count the use on the key; a failure to record it is logged, never raised (the task is paid for).
        Returns the measured balance drop, else the known price (None when neither is known)."""
        assert lease.choice is not None
        estimate: int | None = None
        try:
            spent = await self._count_use(lease.choice, before)
            estimate = spent if spent > 0 else self._costs.known(self._cost)
            await self._keys.record_use(self._key.id, credits_spent=estimate or 0)  # the task's first stored cost
        except Exception:  # the task is accepted and paid for: its answer must not turn into an error
            log.exception("usage of API key %s on account %s not recorded", self._key.name, lease.choice.name)
        return estimate

    def none_left(self) -> ApiError:
        """503 NO_ACCOUNT_AVAILABLE, naming the refusal of the model when that is what rests the key's accounts
        (decided by `next` when it found none)."""
        return self._none_left or no_account_available()

    async def _why_none_left(self) -> ApiError | None:
        """The 503 naming the refusal of the request's model when the store rests it on an account this key may
        use, else None."""
        model = self._model
        if model is None:
            return None
        resting = await self._pool.model_cooldowns(model)
        allowed = self._key.accounts
        cools = [c for who, cs in resting.items() if allowed is None or who in allowed for c in cs]
        if not cools:
            return None
        return ServiceUnavailable(
            f"every account this key may use was refused {model} recently ({cools[0].message}); other "
            "models still work, or try again later",
            code="NO_ACCOUNT_AVAILABLE",
        )

    async def _count_use(self, choice: Choice, before: int) -> int:
        """Read the balance again (a call that starts now), store it, clear the account's error and keep the
        drop since the previous reading as the known cost (returned). A failed reading counts the spend as
        unknown (0): the task goes on."""
        try:
            after: int | None = (await self._balances.get(choice.account, fresh=True)).total
        except UpstreamError:
            after = None
        spent = self._costs.measure(choice.account_id, before, after, self._cost) if after is not None else 0
        await self._pool.record_success(choice.account_id, after)
        return spent


def pool_policy(pool: AccountPool) -> RefusalPolicy:
    """The refusal policy of the pool: its accounts rest `[accounts] cooldown_seconds` for every refusal."""
    return RefusalPolicy(pool.cooldown_seconds, pool.cooldown_seconds)
