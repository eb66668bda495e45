"""The pool's live in-flight counts and reservations: which usable account a submit takes.

Tasks in flight are an account's stored tasks still processing and younger than their kind's deadline
(`in_flight_window`; a task nobody asks about any more stops counting then), plus the submits in progress. A
choice is reserved at once (no await between the count and the reservation), so concurrent submits spread
evenly; the reservation ends when the submit ends, by then its task is stored.

No store writes and no secrets here: the accounts come from `services/account_registry.py`, the filter of
usable ones from `services/pool.py`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..clock import Clock
from ..store.base import Store
from ..store.pool import AccountRow
from ..upstream.tokens import Account


@dataclass(frozen=True, slots=True)
class Choice:
    """A reserved pool account: release it with `AccountChooser.release` when the submit ends."""

    account_id: int
    name: str
    account: Account
    owner: str


COUNT_READS = 3
"""Most store reads of one `AccountChooser.count_in_flight` (see there)."""


class OverCap(Exception):
    """An owner is at its cap on tasks in flight."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"at the cap of {cap} task(s) in flight")
        self.cap = cap


class AccountChooser:
    """Counts tasks in flight per account and per owner (an API key), and reserves the least busy account."""

    def __init__(self, store: Store, clock: Clock, *, in_flight_window: Mapping[str, float] | None = None) -> None:
        self._store = store
        self.clock = clock
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
        self._accepted = 0  # accepted submits ended (to tell whether one ended while the store was read)

    def in_flight(self, account_id: int) -> int:
        """Submits in progress plus accepted tasks not yet final, for one account."""
        recent = sum(1 for _, a, _ in self._recent if a == account_id)
        return self._reserved[account_id] + self._stored[account_id] + recent

    def owner_in_flight(self, owner: str) -> int:
        """The same for one owner (an API key)."""
        recent = sum(1 for _, _, o in self._recent if o == owner)
        return self._reserved_by[owner] + self._stored_by[owner] + recent

    async def count_in_flight(self) -> None:
        """Count the stored tasks in flight again (before showing `owner_in_flight`). A read that an accepted
        submit ended during may or may not hold that task (the store's snapshot is taken somewhere inside the
        await): it is read again (up to `COUNT_READS` reads in all), so a task is not counted twice, as stored
        and as just accepted, which would refuse a submit below the cap. Past that (submits ending all the
        time) the last figures stand: they may count a task twice, never miss one."""
        for _ in range(COUNT_READS):
            now = self.clock.time()
            self._epoch += 1
            epoch = self._epoch  # this count sees every task stored before now
            accepted = self._accepted
            counts = await self._store.pool_tasks_in_flight(
                image_since=now - self.in_flight_window["image"], video_since=now - self.in_flight_window["video"]
            )
            if self._accepted == accepted:
                break
        if epoch < self._applied:
            return  # a count that started later was applied meanwhile: its figures are newer
        self._applied = epoch
        self._stored, self._stored_by = Counter(), Counter()
        for account_id, owner, count in counts:
            self._stored[account_id] += count
            self._stored_by[owner] += count
        self._recent = [r for r in self._recent if r[0] >= epoch]  # the older ones are in these figures

    def least_busy_first(self, candidates: list[tuple[AccountRow, Account]]) -> None:
        """Sort `candidates` in place: fewest tasks in flight first, then the lowest id."""
        candidates.sort(key=lambda pair: (self.in_flight(pair[0].id), pair[0].id))

    def reserve(self, candidates: Sequence[tuple[AccountRow, Account]], owner: str, *, cap: int) -> Choice | None:
        """Reserve the least busy of `candidates` for a submit of `owner`; None when there is none. Raises
        `OverCap` when the owner already has `cap` tasks in flight. Synchronous: the counts read are the counts
        reserved against."""
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
            self._accepted += 1
