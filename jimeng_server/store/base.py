"""The store interface every backend implements (`sqlite.SqliteStore`, `postgres.PostgresStore`), and the
backend-neutral types its methods answer with.

Callers (services, the watcher's settler, the webhook sender, the delivery endpoints) depend on `Store`
only; `app.setup_store` picks the backend from `[store] url`. The store owns all of its SQL: no connection
or cursor ever leaves it. To add a group of tables (e.g. accounts), add a Protocol for its operations here and
have `Store` extend it; it is implemented once for both backends (`tables.py`, schema in `schema.py`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol, runtime_checkable

from ..tasks.claims import IdempotencyClaim
from ..tasks.cost import TaskCost
from ..tasks.records import Finish, Progress, Settled, TaskKind, TaskRecord
from ..upstream.links import ResultRef
from .keeping import KeepJob, KeptFile
from .outbox import Attempt, AttemptResult, EventClaim, EventState, OutboxEvent
from .pool import AccountHealth, AccountRow, Cooldown, KeyRow, NewAccount, NewKey

__all__ = [
    "WATCH_SHARDS",
    "IdempotencyStore",
    "KeepStore",
    "ModelCooldownStore",
    "Notice",
    "NoticeKind",
    "OutboxStore",
    "PoolStore",
    "Redelivery",
    "ReplicaStore",
    "ResultRefStore",
    "SchemaVersionError",
    "Store",
    "StoreError",
    "TaskOwnershipError",
    "TaskTable",
    "shard_of",
]

WATCH_SHARDS: Final = 64
"""In-flight tasks are divided among replicas by account: an account's tasks all fall in shard
`shard_of(account_fp)`, and one replica at a time holds each shard's watch lease."""


def shard_of(account_fp: str) -> int:
    """The watch shard of an account (stable across processes and versions)."""
    return int.from_bytes(hashlib.sha256(account_fp.encode()).digest()[:4], "big") % WATCH_SHARDS


class StoreError(Exception):
    """A task-store failure that callers may want to tell apart from database driver errors."""


class SchemaVersionError(StoreError):
    """The database was written by a newer version of this server: it refuses to start on it."""


class TaskOwnershipError(StoreError):
    """A task id is already stored for another account; the message names the id, never a token."""


@dataclass(frozen=True, slots=True)
class Redelivery:
    """What `OutboxStore.redeliver_latest` did: the task's latest event (None when it has none yet) and whether
    it was queued again (False when that event is being delivered right now)."""

    event: OutboxEvent | None
    queued: bool


class TaskTable(Protocol):
    """Task records. Time stamps come from the store's injected clock."""

    async def insert(self, record: TaskRecord) -> None:
        """Store a new task; `history_id` is the key.

        If the id already exists for the same `account_fp` and the stored task is still processing, its
        submission fields (token, kind, model, submit_id, callback_url, input_images) are refreshed from
        `record` (a None token or callback_url keeps the stored value); progress and result fields are
        never changed by `insert`, and a final task is left as it is. If the id belongs to another
        account, raises `TaskOwnershipError` and changes nothing.
        """
        ...

    async def get(self, history_id: str) -> TaskRecord | None:
        """The task with this id, or None."""
        ...

    async def get_many(self, history_ids: Sequence[str]) -> dict[str, TaskRecord]:
        """The stored tasks among `history_ids` (one query, any count), keyed by id; unknown ids absent."""
        ...

    async def links(self, history_ids: Sequence[str]) -> list[tuple[str, str]]:
        """The `(post-edit, source)` pairs of stored tasks (`parent_history_id`) where either side is one of
        `history_ids`, oldest post-edit first (one query, any count)."""
        ...

    async def recent(self, limit: int) -> list[tuple[TaskRecord, str | None]]:
        """The latest `limit` tasks, newest first, each with the state of its latest webhook event (None when
        it has none): the dashboard's task list."""
        ...

    async def recent_of(self, owners: Sequence[str], kind: TaskKind, limit: int) -> list[TaskRecord]:
        """The latest `limit` tasks of `kind` owned by any of `owners` (`TaskRecord.account_fp` values), newest
        first: a caller's own list (`GET /v1/videos`)."""
        ...

    async def unfinished(self) -> list[TaskRecord]:
        """Every task still processing (tokens included), oldest first: what to resume on start-up."""
        ...

    async def record_cost(self, history_id: str, cost: TaskCost) -> bool:
        """Store what the task cost (tasks/cost.py); True when stored. Nothing changes for an unknown task or
        one whose stored cost is already measured (a measurement is final); an estimate replaces an estimate.
        Replacing a stored cost of an API key's task moves the key's `credits_spent` by the difference (the key
        counted the first figure when the submit was accepted), in the same transaction."""
        ...

    async def costs_of(self, history_ids: Sequence[str]) -> dict[str, TaskCost]:
        """The stored costs among `history_ids` (one query, any count), keyed by id; tasks with none absent."""
        ...

    async def estimated_pool_costs(self, history_ids: Sequence[str]) -> list[tuple[str, int, str]]:
        """`(history_id, account_id, submit_id)` of the final pooled tasks among `history_ids` (a paying
        `account_id`, a `submit_id`) whose stored cost is still `estimated`, by id (one query, any count): what
        the cost reader measures, read without the tasks' records."""
        ...

    async def update_progress(self, updates: Sequence[Progress]) -> None:
        """Record polls of tasks still processing, all in ONE transaction; unknown and final tasks are left
        unchanged."""
        ...

    async def settle(self, finals: Sequence[Finish]) -> list[Settled]:
        """Make processing tasks final, ALL in ONE transaction (a poll's finishes commit together).

        For each `Finish`: store its settlement, stamp `finished_at`, drop the token; then, when the task has
        a callback URL, add its `event` (given, or made from the task's source task and stored cost as this
        transaction reads them) to the webhook outbox (pending, due now) in the same transaction, and
        its `refs` (what its results are re-signed from, `ResultRefStore`) when it carries them. A
        task that is unknown or already final is left alone (one terminal state, one event). Returns what was
        settled now, in order, with whether an event was written. Raises ValueError for a non-final status.
        """
        ...

    async def settle_claiming(
        self, finals: Sequence[Finish], claim: EventClaim
    ) -> tuple[list[Settled], list[OutboxEvent]]:
        """`settle`, where the first `claim.limit` events written are already claimed: stored `delivering`, due
        now, leased until `claim.lease_until`, and returned (oldest first) for the caller's sender to send at once,
        so no claim statement follows. The rest are written pending. A new event is its task's only one (a task
        settles once), so sending it at once keeps a task's events in order."""
        ...

    async def purge_finished(self, *, older_than: float) -> int:
        """Delete final tasks that finished more than `older_than` seconds ago; return how many.

        A task whose webhook event is still pending or being delivered is kept; the events and delivery
        attempts of deleted tasks go with them.
        """
        ...

    async def purge_stale_unfinished(self, *, older_than: float) -> int:
        """Delete tasks still processing but no longer polled (no token) and untouched for `older_than`
        seconds (the watcher gave up on them); return how many."""
        ...


class IdempotencyStore(Protocol):
    """`Idempotency-Key` claims, unique per (account, key) across every process sharing the database."""

    async def claim_idempotency_key(
        self, account_fp: str, key: str, request_hash: str, *, ttl: float = 86400, lease: float | None = None
    ) -> IdempotencyClaim:
        """Claim idempotency key `key` of `account_fp` for a request whose body hashes to `request_hash`.

        Atomically: no live row (none, or expired) -> a new in-progress row valid for `ttl` seconds and
        NEW; a different hash -> MISMATCH; the same hash still in progress -> IN_PROGRESS; the same hash
        completed -> REPLAY with the stored status and body. With `lease`, an in-progress row older than
        `lease` seconds counts as abandoned (its request died with a crashed process) and is claimed anew.
        """
        ...

    async def complete_idempotency_key(self, account_fp: str, key: str, *, status: int, body: bytes) -> None:
        """Store the response of the request that claimed the key; later claims REPLAY it until expiry."""
        ...

    async def release_idempotency_key(self, account_fp: str, key: str) -> None:
        """Forget an in-progress key (the request failed before spending anything) so a retry runs anew.

        A completed key is kept: its response must still be replayed.
        """
        ...

    async def purge_idempotency_keys(self) -> int:
        """Delete expired idempotency keys; return how many."""
        ...


class OutboxStore(Protocol):
    """The webhook outbox (events written by `TaskTable.settle`, delivery attempts). Times are passed in by
    the sender (its clock); a claimed event is `delivering` until its lease ends."""

    async def release_event_leases(self, *, now: float) -> int:
        """At a sender's start-up: make claimable again, due at once, the `delivering` events whose sender
        is gone; returns how many. The embedded backend (one process per file) releases every lease; a
        shared backend releases only expired ones (another replica may be sending the rest)."""
        ...

    async def claim_due_events(
        self, *, now: float, limit: int, lease_until: float, exclude: Collection[str] = ()
    ) -> list[OutboxEvent]:
        """Claim up to `limit` due events (oldest due first) and mark them `delivering` until `lease_until`.

        Due: pending (or delivering with an expired lease) with `next_attempt_at <= now`, not in `exclude`
        (events this sender still has in flight), and no earlier active event of the same task (a task's
        events go out in order). Two claimers (in any process) never get the same event while its lease runs.
        """
        ...

    async def next_event_due(self, *, now: float) -> float | None:
        """The earliest `next_attempt_at` later than `now` among pending events (None if there is none):
        when a sender must look again at the latest."""
        ...

    async def claim_and_next_due(
        self, *, now: float, limit: int, lease_until: float, exclude: Collection[str] = ()
    ) -> tuple[list[OutboxEvent], float | None]:
        """`claim_due_events` then `next_event_due` (read after the claim), in one trip to the database where
        the backend can: what a sender's tick asks."""
        ...

    async def record_attempts(self, results: Sequence[AttemptResult]) -> None:
        """Record finished delivery attempts, all in ONE transaction: each `Attempt` row is stored and its event
        moved to the result's state (next attempt due at `next_attempt_at` when pending), its lease released.
        Several attempts finishing together cost one commit (the sender batches them)."""
        ...

    async def unclaim_events(self, event_ids: Collection[str], *, now: float) -> None:
        """Give claimed events back (pending, due now, no attempt recorded): their sends were cancelled."""
        ...

    async def hasten_events(self, event_ids: Collection[str], *, now: float) -> None:
        """Make the pending events among `event_ids` due at `now` at the latest (the sender waited for their
        receiver's first answer and has it); other events are left alone."""
        ...

    async def unclaim_events_due(self, due: Mapping[str, float]) -> None:
        """Give claimed events back, each due at its own time (event id -> when), no attempt recorded, in ONE
        transaction: the sender's host gate holding back the events of busy receivers."""
        ...

    async def redeliver_latest(self, history_id: str, *, now: float) -> Redelivery:
        """Queue the task's latest event again, atomically: pending, due `now`, its retry schedule restarted,
        the event id unchanged. An event being delivered right now is left alone (`queued` False)."""
        ...

    async def events_of(self, history_id: str) -> list[OutboxEvent]:
        """Every event of a task, oldest first."""
        ...

    async def attempts_of(self, history_id: str) -> list[Attempt]:
        """Every recorded attempt for a task's events, in event order, then attempt order."""
        ...

    async def event_state_counts(self) -> dict[EventState, int]:
        """How many events are in each state (states without events are absent)."""
        ...


class PoolStore(Protocol):
    """The account pool (`accounts`) and its API keys (`api_keys`). A unique name (or session) taken raises
    `pool.DuplicateError`."""

    async def add_account(self, new: NewAccount, *, now: float) -> AccountRow:
        """Add an account and return it as stored (one transaction)."""
        ...

    async def accounts(self) -> list[AccountRow]:
        """Every account, by id."""
        ...

    async def account_by_id(self, account_id: int) -> AccountRow | None:
        """One account, or None."""
        ...

    async def account_by_name(self, name: str) -> AccountRow | None:
        """One account by its name, or None."""
        ...

    async def set_account_enabled(self, account_id: int, enabled: bool) -> bool:
        """Enable or disable an account (enabling also ends its cool-down and its model cool-downs, one
        transaction); False when there is no such id."""
        ...

    async def update_account_secret(self, account_id: int, secret: bytes, sealed: bool) -> AccountRow | None:
        """Replace an account's credential blob (a refreshed cookie jar); the row as stored now, None when there
        is no such id (one transaction)."""
        ...

    async def delete_account(self, account_id: int) -> bool:
        """Remove an account; False when there is no such id. Its tasks keep their `account_id`."""
        ...

    async def record_account_health(self, account_id: int, health: AccountHealth, *, now: float) -> None:
        """Store the outcome of a use or a check (`AccountHealth`), the balance with it when read (one
        transaction)."""
        ...

    async def pool_tasks_in_flight(self, *, image_since: float, video_since: float) -> list[tuple[int, str, int]]:
        """`(account_id, owner, count)` of the processing tasks paid by pool accounts and submitted after the
        cut-off of their kind."""
        ...

    async def add_key(self, new: NewKey, *, now: float) -> int:
        """Add an API key (its hash, never the key); returns its id. Raises DuplicateError when its name is taken."""
        ...

    async def keys(self) -> list[KeyRow]:
        """Every key, by id."""
        ...

    async def key_by_hash(self, digest: str) -> KeyRow | None:
        """The key whose SHA-256 is `digest`, or None."""
        ...

    async def revoke_key(self, key_id: int, *, now: float) -> bool:
        """Revoke a key (once); False when there is no such id."""
        ...

    async def record_key_use(self, key_id: int, *, credits_spent: int, now: float) -> None:
        """Count one accepted submit of a key and the credits it spent."""
        ...


class ResultRefStore(Protocol):
    """What each settled task's results are re-signed from (issue 21: `upstream.links.ResultRef`, one per result
    in order, None for a result that names none), written by the settle with the task (`TaskTable.settle`,
    `Finish.refs`). Rows go when their task is purged."""

    async def result_refs_of(self, history_ids: Sequence[str]) -> dict[str, tuple[ResultRef | None, ...]]:
        """The stored refs of these tasks (those without any are absent)."""
        ...


class KeepStore(Protocol):
    """Keep jobs (issue 21, `[results] keep = "local"`; records in `keeping.py`): one per result of a settled
    task, claimed under a lease like the webhook outbox (replicas never claim the same job; a keeper that died
    leaves its jobs to be claimed again once their lease ran out), dropped with their task."""

    async def add_keep_jobs(self, jobs: Mapping[str, Sequence[str]], *, now: float) -> None:
        """For each stored task (history id -> its result URLs) one pending job per URL, due `now`, in one
        transaction; positions already there are left as they are, tasks not stored get none."""
        ...

    async def claim_keep_jobs(self, *, now: float, lease_seconds: float, limit: int) -> list[KeepJob]:
        """Claim up to `limit` due jobs (pending ones due by `now`, keeping ones whose lease ran out): each is
        `keeping` until `now + lease_seconds`, its `attempts` counted."""
        ...

    async def finish_keep_job(
        self, history_id: str, position: int, *, file_id: str, size: int, content_type: str, now: float
    ) -> None:
        """Mark a claimed job kept, its bytes stored as `file_id`."""
        ...

    async def retry_keep_job(
        self, history_id: str, position: int, *, error: str, next_attempt_at: float | None, now: float
    ) -> None:
        """A failed attempt: pending again until `next_attempt_at`, or `failed` for good when it is None."""
        ...

    async def keep_jobs_of(self, history_ids: Sequence[str]) -> dict[str, list[KeepJob]]:
        """The jobs of these tasks, by position (tasks without any are absent)."""
        ...

    async def next_keep_due(self, *, now: float) -> float | None:
        """The earliest time after `now` a job becomes claimable, None when none will."""
        ...

    async def kept_file_owners(self, file_id: str) -> frozenset[str]:
        """The owners (`account_fp`) of the tasks whose kept results include this file."""
        ...

    async def wake_held_events(self, history_id: str, *, now: float) -> int:
        """Make the task's pending webhook events that were not tried yet in their round due `now` (they were
        held back while its results were kept); returns how many."""
        ...

    async def kept_files(self) -> list[KeptFile]:
        """Every file some result is kept as, least recently kept first (retention)."""
        ...

    async def expire_kept_files(self, file_ids: Sequence[str], *, now: float) -> list[str]:
        """Mark every kept result of these files `expired` (their files are being removed); returns the ids of
        the tasks they belong to."""
        ...


class ModelCooldownStore(Protocol):
    """Pool accounts resting for one model (table `model_cooldowns`, issue 26): one row per (account id, model),
    shared by every process on the database, so a refusal one replica saw benches the pair on all of them and
    `accounts list` shows it. A row whose `until` has passed is ignored by every read and swept on the next
    write; rows go with their account, and enabling an account ends them (`PoolStore.set_account_enabled`)."""

    async def rest_model(self, account_id: int, cool: Cooldown, *, now: float) -> None:
        """Rest `cool.model` (set) on the account until `cool.until`, replacing the pair's earlier cool-down, and
        sweep every cool-down ended by `now` (one transaction). An account that is gone is ignored."""
        ...

    async def model_cooldowns(self, *, now: float, model: str | None = None) -> dict[int, list[Cooldown]]:
        """The cool-downs lasting after `now` (of `model` only when given), by account id, soonest end first."""
        ...


class Store(
    TaskTable, IdempotencyStore, OutboxStore, PoolStore, ResultRefStore, KeepStore, ModelCooldownStore, Protocol
):
    """A whole store backend: tasks, idempotency keys, the webhook outbox and the account pool, with its life
    cycle.

    Build it unstarted, `await start()` (connect, migrate; `SchemaVersionError` on a newer schema), use it,
    `await close()` (idempotent).
    """

    @property
    def schema_version(self) -> int:
        """The schema version this code writes."""
        ...

    async def start(self) -> None:
        """Connect and bring the schema up to `schema_version`."""
        ...

    async def close(self) -> None:
        """Wait for the operations in flight, then release the connections. Idempotent."""
        ...

    async def ping(self) -> None:
        """One round trip to the database (readiness); raises when it cannot answer."""
        ...


class NoticeKind(StrEnum):
    """What a replica tells the others (PostgreSQL LISTEN/NOTIFY)."""

    NEW_TASK = "new"  # a task was stored: replicas adopt it if it is a background task
    SETTLED = "settled"  # a task became final: waiters on any replica may answer
    EVENTS = "events"  # webhook events became due: senders on every replica should look


@dataclass(frozen=True, slots=True)
class Notice:
    """One notification; `history_id` is "" for EVENTS."""

    kind: NoticeKind
    history_id: str = ""


@runtime_checkable
class ReplicaStore(Protocol):
    """What a store shared by several server processes adds (the PostgreSQL backend): watch leases per shard
    and notifications between replicas. Committed writes notify by themselves (tasks stored, settled, events
    due); notices are at-most-once hints, so every receiver also looks on its own schedule."""

    async def renew_watch_leases(self, owner: str, *, now: float, lease_seconds: float) -> frozenset[int]:
        """Renew `owner`'s unexpired shard leases until `now + lease_seconds` and rebalance, atomically: with
        N live replicas (each renews within its lease) an owner holds at most ceil(WATCH_SHARDS / N) shards; it
        takes expired or free ones (`FOR UPDATE SKIP LOCKED`) up to that share and gives extras up (they stay
        untakeable until their lease would have ended). Returns the shards `owner` now holds."""
        ...

    async def release_watch_leases(self, owner: str) -> None:
        """Give up every lease of `owner` at once, and its replica registration (a clean shutdown)."""
        ...

    async def listen(self, on_notice: Callable[[Notice], None]) -> None:
        """Deliver every notice from any replica (this one included) to `on_notice` until `unlisten()`."""
        ...

    async def unlisten(self) -> None:
        """Stop delivering notices and close the listening connection. Idempotent."""
        ...

    @property
    def listening(self) -> bool:
        """False once the listening connection is gone (e.g. the database restarted): `listen()` again."""
        ...
