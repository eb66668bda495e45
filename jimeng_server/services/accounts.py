"""Choosing an account for a submit: credit check with daily auto-claim (upstream-protocol.md §4.3),
a short balance cache, fail-over to the next token when one is expired or out of credits, and a cool-down
that tries such an account last for a while (the reference picks a token at random, with no memory).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from ..clock import Clock
from ..errors import ApiError, InsufficientCredits, Unauthorized, from_upstream
from ..upstream.client import Credits, JimengClient
from ..upstream.errors import UpstreamError
from ..upstream.tokens import Account

log = logging.getLogger(__name__)

T = TypeVar("T")


class AccountService:
    """Balance lookups (cached for `cache_seconds`) and the submit-with-fail-over loop."""

    def __init__(
        self, client: JimengClient, clock: Clock, *, cache_seconds: float, cooldown_seconds: float = 600.0
    ) -> None:
        self.client = client
        self.clock = clock
        self.cache_seconds = cache_seconds
        self.cooldown_seconds = cooldown_seconds
        self._cache: dict[str, tuple[float, Credits]] = {}
        self._cooldown: dict[str, float] = {}  # account fingerprint -> until when it is tried last

    async def credits(self, account: Account, *, fresh: bool = False) -> Credits:
        """The account's balance; served from cache when younger than `cache_seconds`."""
        now = self.clock.time()
        hit = self._cache.get(account.fingerprint)
        if hit is not None and not fresh and now - hit[0] < self.cache_seconds:
            return hit[1]
        credits = await self.client.get_credits(account)
        self._cache[account.fingerprint] = (now, credits)
        return credits

    def forget(self, account: Account) -> None:
        """Drop the cached balance (after a spend or a refusal)."""
        self._cache.pop(account.fingerprint, None)

    async def ensure_credits(self, account: Account) -> None:
        """Raise InsufficientCredits unless the account has credits, claiming the daily ones if it has none."""
        credits = await self.credits(account)
        if credits.total > 0:
            return
        try:
            granted = await self.client.receive_credits(account)
        except UpstreamError as exc:
            raise InsufficientCredits(
                f"the account has no credits and the daily claim failed ({exc.reason}); top up or try tomorrow"
            ) from None
        self.forget(account)
        if granted <= 0 and (await self.credits(account, fresh=True)).total <= 0:
            raise InsufficientCredits("the account has no credits and the daily claim granted none; top up")

    def ordered(self, accounts: Sequence[Account]) -> list[Account]:
        """`accounts` in header order, except that accounts refused recently (expired session, no credits)
        go last while their cool-down lasts: they are still tried when nothing else works."""
        now = self.clock.time()
        return sorted(accounts, key=lambda a: self._cooldown.get(a.fingerprint, 0.0) > now)

    async def submit(self, accounts: Sequence[Account], action: Callable[[Account], Awaitable[T]]) -> tuple[Account, T]:
        """Run `action` (which spends credits) with the first usable account (see `ordered`).

        An account whose session is refused or whose credits are too low is skipped for the next one, and
        cooled down for `cooldown_seconds`; those refusals happen before anything is spent. Any other error
        ends the attempt at once.
        """
        last: ApiError | None = None
        for account in self.ordered(accounts):
            try:
                await self.ensure_credits(account)
                result = await action(account)
            except UpstreamError as exc:
                err = from_upstream(exc)
                if not isinstance(err, Unauthorized | InsufficientCredits):
                    raise err from None
                last = err
            except (Unauthorized, InsufficientCredits) as err:
                last = err
            else:
                self.forget(account)
                self._cooldown.pop(account.fingerprint, None)
                return account, result
            self.forget(account)
            self._cooldown[account.fingerprint] = self.clock.time() + self.cooldown_seconds
            if len(accounts) > 1:
                log.info("account %s skipped: %s", account.masked, last.code if last else "")
        assert last is not None
        raise last
