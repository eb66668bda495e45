"""The account pool: the stored accounts (`services/account_registry.py`: CRUD, secrets, health) and the choice
of one for a submit (`services/account_chooser.py`: in-flight counts, reservations), joined by the rule of
which accounts are usable.

Selection (`choose`): an account the key may use, enabled, not cooling down (nor resting for the request's
model), not known to hold fewer credits than the request's known cost, secret readable, with the fewest tasks
in flight (then the lowest id). The JSON views of accounts and keys are the API layer's (`api/admin_views.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ..clock import Clock
from ..config import BrowserConfig
from ..errors import ApiError, Conflict
from ..store.base import Store
from ..store.pool import AccountRow
from ..store.secretbox import SecretBox, SecretError
from ..upstream.cookies import JarError
from ..upstream.tokens import Account
from .account_chooser import AccountChooser, Choice
from .account_registry import AccountRegistry
from .refusals import Cooldown

log = logging.getLogger(__name__)


class AccountPool(AccountRegistry):
    """The registry of stored accounts, with a chooser (`chooser`); its (account, model) cool-downs are kept in
    the store (`store.base.ModelCooldownStore`), so every replica and the CLI see the same ones. A CLI process
    uses the same object for management only."""

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
        """`claim_daily`: an account known to be at zero stays usable (its daily claim is tried);
        `in_flight_window`: by task kind, how long a stored task counts as in flight."""
        super().__init__(store, box, clock, cooldown_seconds=cooldown_seconds, browser=browser)
        self.claim_daily = claim_daily
        self.chooser = AccountChooser(store, clock, in_flight_window=in_flight_window)

    async def rows(self) -> list[AccountRow]:
        """Every stored account, after a fresh count of their tasks in flight."""
        await self.chooser.count_in_flight()
        return await super().rows()

    async def remove(self, ref: str | int) -> AccountRow:
        """Delete an account; its finished tasks stay queryable. 409 while it has tasks in flight."""
        row = await self.find(ref)
        if busy := self.in_flight(row.id):
            raise Conflict(
                f"account {row.name!r} has {busy} task(s) in flight; disable it and remove it once they have finished",
                code="ACCOUNT_BUSY",
            )
        await self.delete(row.id)
        return row

    async def record_model_refusal(self, account_id: int, model: str, err: ApiError, *, seconds: float) -> None:
        """Rest `model` on the account for `seconds` (every other model stays usable; every replica sees it) and
        keep the reason."""
        now = self.clock.time()
        await self._store.rest_model(account_id, Cooldown(model, now + seconds, err.code, err.message), now=now)
        await self.record_refusal(account_id, err, cool=False)

    async def model_cooldowns(self, model: str | None = None) -> dict[int, list[Cooldown]]:
        """The (account, model) cool-downs lasting now (of `model` only when given), by account id, soonest end
        first."""
        return await self._store.model_cooldowns(now=self.clock.time(), model=model)

    def in_flight(self, account_id: int) -> int:
        """`AccountChooser.in_flight`."""
        return self.chooser.in_flight(account_id)

    def owner_in_flight(self, owner: str) -> int:
        """`AccountChooser.owner_in_flight`."""
        return self.chooser.owner_in_flight(owner)

    async def count_in_flight(self) -> None:
        """`AccountChooser.count_in_flight`."""
        await self.chooser.count_in_flight()

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
        resting = await self.model_cooldowns(model) if model is not None else {}
        found: list[tuple[AccountRow, Account]] = []
        for row in await self.rows():
            if row.id in exclude or (allowed is not None and row.id not in allowed):
                continue
            short = _known_short(row, now, self.cooldown_seconds, min_credits, claim_daily=self.claim_daily)
            if not row.enabled or row.cooling(now) or short or row.id in resting:
                continue
            try:
                found.append((row, self.account_of(row)))
            except (SecretError, JarError) as exc:
                log.warning("pool account %s skipped: %s", row.name, exc)
        self.chooser.least_busy_first(found)
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
        return self.chooser.reserve(candidates, owner, cap=cap)  # no await between the counts and the reservation

    def release(self, choice: Choice, *, accepted: bool = False) -> None:
        """`AccountChooser.release`."""
        self.chooser.release(choice, accepted=accepted)


def _known_short(row: AccountRow, now: float, within: float, need: int, *, claim_daily: bool) -> bool:
    """True when a recent balance reading says the account cannot pay `need` (and no daily claim may help)."""
    if row.credits is None or row.credits_at is None or now - row.credits_at >= within:
        return False
    if row.credits <= 0 and claim_daily:
        return False
    return row.credits < need
