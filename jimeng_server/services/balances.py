"""Account balances as this process knows them, so a submit does not ask the upstream for the balance first.

- A reading (`get_credits`) is reused while younger than `max_age` seconds (`[upstream] credit_cache_seconds`);
  after that the next lookup reads again.
- A known charge (`charge`: a submit accepted whose cost was measured before) is taken off the reading, vip ->
  gift -> purchase as the upstream spends (docs/protocol.md §14.9-11); a charge that would use up the
  reading drops it instead, so "no credits" is only ever concluded from a real reading.
- `forget` drops the reading (a refusal for credits or of the session, a daily claim): the next lookup reads.
- Concurrent lookups of one account share ONE call in flight; a lookup asked for `fresh` (or after `forget`)
  starts its own call, and only the newest call's answer becomes the reading.

The calls run as shielded jobs of this object's `jobs` owner (a caller that goes away does not cancel a call others
wait for; a call that fails with nobody waiting is logged there); `close()` cancels and awaits them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..clock import Clock
from ..jobs import Job, Jobs
from ..upstream.client import Credits
from ..upstream.tokens import Account


@dataclass(frozen=True, slots=True)
class _Reading:
    read_at: float  # when the call that read it started
    credits: Credits  # less the known charges since


@dataclass(slots=True)
class _Lookup:
    generation: int
    call: Job[Credits]


def deduct(credits: Credits, amount: int) -> Credits:
    """`credits` less `amount`, taken vip -> gift -> purchase (never below zero)."""
    vip = min(credits.vip, amount)
    gift = min(credits.gift, amount - vip)
    purchase = min(credits.purchase, amount - vip - gift)
    return dataclasses.replace(
        credits, vip=credits.vip - vip, gift=credits.gift - gift, purchase=credits.purchase - purchase
    )


class Balances:
    """`get(account)` -> its balance (see the module doc); `read` is the upstream lookup (`get_credits`)."""

    def __init__(
        self,
        read: Callable[[Account], Awaitable[Credits]],
        clock: Clock,
        *,
        max_age: float,
        jobs: Jobs | None = None,
    ) -> None:
        self.read = read
        self.clock = clock
        self.max_age = max_age
        self._readings: dict[str, _Reading] = {}  # account fingerprint -> its reading
        self._generation: dict[str, int] = {}  # account fingerprint -> bumped by `forget`
        self._lookups: dict[str, _Lookup] = {}  # account fingerprint -> its call in flight
        self._jobs = jobs or Jobs("balances")

    async def get(self, account: Account, *, fresh: bool = False) -> Credits:
        """The account's balance: the reading while younger than `max_age`, else the account's call in flight
        or a new one; with `fresh`, a call that starts now. Raises the client's UpstreamError."""
        key = account.fingerprint
        if fresh:
            self.forget(account)
        else:
            reading = self._readings.get(key)
            if reading is not None and self.clock.time() - reading.read_at < self.max_age:
                return reading.credits
        generation = self._generation.get(key, 0)
        lookup = self._lookups.get(key)
        if lookup is None or lookup.generation != generation:
            call = self._jobs.shield(self._read(account, generation), name="jimeng-balance-lookup")
            lookup = self._lookups[key] = _Lookup(generation, call)
        return await lookup.call

    def charge(self, account: Account, amount: int) -> None:
        """Take a known charge off the account's reading (none: nothing to do); one that would use it up drops
        it."""
        key = account.fingerprint
        reading = self._readings.get(key)
        if reading is None or amount <= 0:
            return
        if amount >= reading.credits.total:
            self.forget(account)
            return
        self._readings[key] = dataclasses.replace(reading, credits=deduct(reading.credits, amount))

    def forget(self, account: Account) -> None:
        """Drop the account's reading; a call already in flight no longer sets it."""
        key = account.fingerprint
        self._readings.pop(key, None)
        self._generation[key] = self._generation.get(key, 0) + 1

    def lookups_in_flight(self) -> int:
        """How many calls are in flight (tests)."""
        return self._jobs.live

    async def close(self) -> None:
        """Cancel the calls in flight and wait for them."""
        await self._jobs.stop(0.0)

    async def _read(self, account: Account, generation: int) -> Credits:
        key = account.fingerprint
        started = self.clock.time()
        try:
            credits = await self.read(account)
        finally:
            lookup = self._lookups.get(key)
            if lookup is not None and lookup.generation == generation:
                del self._lookups[key]
        if self._generation.get(key, 0) == generation:
            self._readings[key] = _Reading(started, credits)
        return credits
