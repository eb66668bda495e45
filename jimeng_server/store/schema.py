"""The store's one schema history, rendered per dialect (`dialect.render_schema`).

`HISTORY` is every schema step in order. A step written once (`shared`) is PostgreSQL DDL that SQLite runs
with its own type names; the steps from before the backends shared their schema keep each dialect's own text
(SQLite's first four files predate PostgreSQL; PostgreSQL's version 1 is SQLite's version 4 in one step, and
its watch leases exist only there). A dialect's migrations are the steps that have its text, so each keeps
its version numbers: SQLite `user_version` 1-10, PostgreSQL `jimeng_schema.version` 1-8. Append only; a new
table is one `shared(...)` step at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .base import WATCH_SHARDS
from .dialect import Dialect, render_schema

__all__ = ["HISTORY", "Step", "migrations", "shared"]


@dataclass(frozen=True, slots=True)
class Step:
    """One schema change: its script per dialect (None: the dialect has no such step)."""

    sqlite: str | None
    postgres: str | None

    def text(self, dialect: Dialect) -> str | None:
        """The script `dialect` runs for this step, or None."""
        return self.sqlite if dialect is Dialect.SQLITE else self.postgres


def shared(ddl: str) -> Step:
    """A step written once, as PostgreSQL DDL (see `dialect.render_schema`)."""
    return Step(render_schema(ddl, Dialect.SQLITE), render_schema(ddl, Dialect.POSTGRES))


def migrations(dialect: Dialect) -> list[str]:
    """The scripts `dialect` runs, oldest first: entry i brings a database to version i + 1."""
    return [text for step in HISTORY if (text := step.text(dialect)) is not None]


# ------------------------------------------------------------------ before the shared schema: SQLite's own

_SQLITE_1: Final = """
CREATE TABLE tasks (
    history_id      TEXT PRIMARY KEY NOT NULL,
    account_fp      TEXT NOT NULL,
    token           TEXT,
    kind            TEXT NOT NULL,
    model           TEXT NOT NULL,
    submit_id       TEXT NOT NULL,
    status          INTEGER NOT NULL,
    upstream_status INTEGER,
    fail_code       TEXT NOT NULL DEFAULT '',
    fail_reason     TEXT,
    item_count      INTEGER NOT NULL DEFAULT 0,
    results         TEXT,      -- JSON array of URLs, NULL until done
    raw_data        TEXT,      -- JSON object: the last untouched upstream history record
    callback_url    TEXT,
    input_images    INTEGER,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    finished_at     REAL
);
CREATE INDEX tasks_status ON tasks (status);
CREATE INDEX tasks_finished_at ON tasks (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX tasks_account_fp ON tasks (account_fp);

CREATE TABLE idempotency_keys (
    account_fp   TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status       INTEGER,      -- NULL while the first request is in progress
    body         BLOB,
    created_at   REAL NOT NULL,
    expires_at   REAL NOT NULL,
    PRIMARY KEY (account_fp, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);
"""

_SQLITE_2: Final = """
CREATE TABLE webhook_events (
    event_id        TEXT PRIMARY KEY NOT NULL,  -- the webhook-id: stable across retries and redeliveries
    seq             INTEGER NOT NULL,           -- creation order: a task's events are delivered in this order
    history_id      TEXT NOT NULL REFERENCES tasks (history_id) ON DELETE CASCADE,
    account_fp      TEXT NOT NULL,
    type            TEXT NOT NULL,
    body            TEXT NOT NULL,              -- the exact JSON text that is sent and signed
    callback_url    TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivering', 'delivered', 'exhausted', 'stopped')),
    attempts        INTEGER NOT NULL DEFAULT 0, -- attempts made in total
    round_start     INTEGER NOT NULL DEFAULT 0, -- attempts made before the last redelivery (schedule restarts)
    next_attempt_at REAL,
    lease_until     REAL,                       -- a claimed ('delivering') event is reserved until then
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
);
CREATE UNIQUE INDEX webhook_events_seq ON webhook_events (seq);
CREATE INDEX webhook_events_history ON webhook_events (history_id, seq);
CREATE INDEX webhook_events_due ON webhook_events (next_attempt_at) WHERE state IN ('pending', 'delivering');

CREATE TABLE webhook_attempts (
    event_id        TEXT NOT NULL REFERENCES webhook_events (event_id) ON DELETE CASCADE,
    attempt         INTEGER NOT NULL,           -- 1, 2, ... per event
    at              REAL NOT NULL,
    status          INTEGER,                    -- the receiver's HTTP status; NULL when none came
    error           TEXT,                       -- why the attempt failed; NULL on success
    latency_ms      INTEGER NOT NULL,
    next_attempt_at REAL,                       -- when the next attempt is due; NULL when none follows
    PRIMARY KEY (event_id, attempt)
) WITHOUT ROWID;
"""

_SQLITE_3: Final = """
ALTER TABLE tasks ADD COLUMN error TEXT;  -- JSON {"code", "message"} of a failed task
UPDATE tasks SET error = json_object(
    'code', CASE WHEN fail_code = '2038' THEN 'CONTENT_REJECTED' ELSE 'GENERATION_FAILED' END,
    'message', 'the upstream reported the generation as failed'
        || CASE WHEN fail_code != '' THEN ' (fail_code ' || fail_code || ')' ELSE '' END)
WHERE status = 30;
ALTER TABLE tasks DROP COLUMN fail_reason;
"""

_SQLITE_4: Final = """
CREATE TABLE accounts (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    region          TEXT NOT NULL,
    fingerprint     TEXT NOT NULL UNIQUE,      -- Account.fingerprint of the session: one pool entry per session
    masked          TEXT NOT NULL,             -- the display form of the session id
    secret          BLOB NOT NULL,             -- JSON {sessionid, proxy, ...}; a Fernet token when sealed
    sealed          INTEGER NOT NULL,          -- 1: `secret` is encrypted with [accounts] encryption_key
    has_proxy       INTEGER NOT NULL DEFAULT 0,
    enabled         INTEGER NOT NULL DEFAULT 1,
    note            TEXT NOT NULL DEFAULT '',
    last_check_at   REAL,
    last_error_code TEXT,
    last_error      TEXT,
    cooldown_until  REAL,
    credits         INTEGER,                   -- last balance seen
    credits_at      REAL,
    created_at      REAL NOT NULL
);

CREATE TABLE api_keys (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    hash            TEXT NOT NULL UNIQUE,      -- SHA-256 hex of the whole key; the key itself is never stored
    prefix          TEXT NOT NULL,             -- the key's first characters, to tell keys apart in lists
    accounts        TEXT,                      -- JSON array of account ids it may use; NULL = every account
    rate_per_minute INTEGER NOT NULL,
    max_in_flight   INTEGER NOT NULL,
    revoked_at      REAL,
    submits         INTEGER NOT NULL DEFAULT 0,
    credits_spent   INTEGER NOT NULL DEFAULT 0,
    last_used_at    REAL,
    created_at      REAL NOT NULL
);

-- The pool account that pays for a task submitted with an API key (NULL for raw tokens); such a task's
-- account_fp is its owner "key:<id>" and its token stays NULL (the session is resolved from the account).
ALTER TABLE tasks ADD COLUMN account_id INTEGER;
CREATE INDEX tasks_created_at ON tasks (created_at);
"""

# ------------------------------------------------------------------ before the shared schema: PostgreSQL's own

_POSTGRES_1: Final = """
CREATE TABLE tasks (
    history_id      TEXT PRIMARY KEY,
    account_fp      TEXT NOT NULL,
    token           TEXT,
    kind            TEXT NOT NULL,
    model           TEXT NOT NULL,
    submit_id       TEXT NOT NULL,
    status          INTEGER NOT NULL,
    upstream_status INTEGER,
    fail_code       TEXT NOT NULL DEFAULT '',
    error           TEXT,
    item_count      INTEGER NOT NULL DEFAULT 0,
    results         TEXT,
    raw_data        TEXT,
    callback_url    TEXT,
    input_images    INTEGER,
    created_at      DOUBLE PRECISION NOT NULL,
    updated_at      DOUBLE PRECISION NOT NULL,
    finished_at     DOUBLE PRECISION,
    account_id      INTEGER             -- the pool account paying for a task submitted with an API key
);
CREATE INDEX tasks_status ON tasks (status);
CREATE INDEX tasks_created_at ON tasks (created_at);
CREATE INDEX tasks_finished_at ON tasks (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX tasks_account_fp ON tasks (account_fp);

CREATE TABLE idempotency_keys (
    account_fp   TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status       INTEGER,
    body         BYTEA,
    created_at   DOUBLE PRECISION NOT NULL,
    expires_at   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account_fp, key)
);
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);

CREATE TABLE webhook_events (
    event_id        TEXT PRIMARY KEY,
    seq             BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    history_id      TEXT NOT NULL REFERENCES tasks (history_id) ON DELETE CASCADE,
    account_fp      TEXT NOT NULL,
    type            TEXT NOT NULL,
    body            TEXT NOT NULL,
    callback_url    TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivering', 'delivered', 'exhausted', 'stopped')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    round_start     INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION,
    lease_until     DOUBLE PRECISION,
    created_at      DOUBLE PRECISION NOT NULL,
    updated_at      DOUBLE PRECISION NOT NULL
);
CREATE INDEX webhook_events_history ON webhook_events (history_id, seq);
CREATE INDEX webhook_events_due ON webhook_events (next_attempt_at) WHERE state IN ('pending', 'delivering');

CREATE TABLE webhook_attempts (
    event_id        TEXT NOT NULL REFERENCES webhook_events (event_id) ON DELETE CASCADE,
    attempt         INTEGER NOT NULL,
    at              DOUBLE PRECISION NOT NULL,
    status          INTEGER,
    error           TEXT,
    latency_ms      INTEGER NOT NULL,
    next_attempt_at DOUBLE PRECISION,
    PRIMARY KEY (event_id, attempt)
);

CREATE TABLE accounts (
    id              INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    region          TEXT NOT NULL,
    fingerprint     TEXT NOT NULL UNIQUE,
    masked          TEXT NOT NULL,
    secret          BYTEA NOT NULL,
    sealed          BOOLEAN NOT NULL,
    has_proxy       BOOLEAN NOT NULL DEFAULT FALSE,
    enabled         BOOLEAN NOT NULL DEFAULT TRUE,
    note            TEXT NOT NULL DEFAULT '',
    last_check_at   DOUBLE PRECISION,
    last_error_code TEXT,
    last_error      TEXT,
    cooldown_until  DOUBLE PRECISION,
    credits         INTEGER,
    credits_at      DOUBLE PRECISION,
    created_at      DOUBLE PRECISION NOT NULL
);

CREATE TABLE api_keys (
    id              INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    hash            TEXT NOT NULL UNIQUE,
    prefix          TEXT NOT NULL,
    accounts        TEXT,
    rate_per_minute INTEGER NOT NULL,
    max_in_flight   INTEGER NOT NULL,
    revoked_at      DOUBLE PRECISION,
    submits         INTEGER NOT NULL DEFAULT 0,
    credits_spent   INTEGER NOT NULL DEFAULT 0,
    last_used_at    DOUBLE PRECISION,
    created_at      DOUBLE PRECISION NOT NULL
);
"""

_POSTGRES_2: Final = f"""
CREATE TABLE watch_leases (
    shard       INTEGER PRIMARY KEY,
    owner       TEXT,                                  -- the replica polling this shard's tasks; NULL = none
    lease_until DOUBLE PRECISION NOT NULL DEFAULT 0    -- nobody else may take the shard before then
);
INSERT INTO watch_leases (shard) SELECT generate_series(0, {WATCH_SHARDS - 1});

CREATE TABLE watch_replicas (
    owner      TEXT PRIMARY KEY,
    seen_until DOUBLE PRECISION NOT NULL               -- alive while its renewals keep this in the future
);
"""

# ------------------------------------------------------------------ written once

_POST_EDITS: Final = """
-- A post-edit's source task (upscale, outpaint, repair, interpolation of a result); NULL for other tasks.
ALTER TABLE tasks ADD COLUMN parent_history_id TEXT;
CREATE INDEX tasks_parent ON tasks (parent_history_id) WHERE parent_history_id IS NOT NULL;
"""

_RESULT_REFS: Final = """
-- What each settled task's results are re-signed from (issue 21); dropped with its task.
CREATE TABLE result_refs (
    history_id TEXT PRIMARY KEY NOT NULL REFERENCES tasks (history_id) ON DELETE CASCADE,
    refs       TEXT NOT NULL,             -- JSON [[kind, key] | null, ...]: one per result, in order
    created_at DOUBLE PRECISION NOT NULL
);
"""

_KEPT_RESULTS: Final = """
-- One row per result of a settled task that is kept (issue 21, [results] keep = "local"); dropped with its task.
CREATE TABLE kept_results (
    history_id      TEXT NOT NULL REFERENCES tasks (history_id) ON DELETE CASCADE,
    position        INTEGER NOT NULL,           -- the result's index in the task's `results`
    url             TEXT NOT NULL,              -- the upstream URL it was settled with
    state           TEXT NOT NULL CHECK (state IN ('pending', 'keeping', 'kept', 'failed', 'expired')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION,           -- a pending job is due then
    lease_until     DOUBLE PRECISION,           -- a claimed ('keeping') job is reserved until then
    file_id         TEXT,                       -- SHA-256 hex of the kept bytes (the file's name)
    size            BIGINT,
    content_type    TEXT,
    error           TEXT,                       -- why the last attempt failed
    created_at      DOUBLE PRECISION NOT NULL,
    updated_at      DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (history_id, position)
) WITHOUT ROWID;
CREATE INDEX kept_results_due ON kept_results (next_attempt_at) WHERE state IN ('pending', 'keeping');
CREATE INDEX kept_results_file ON kept_results (file_id) WHERE file_id IS NOT NULL;
"""

_MODEL_COOLDOWNS: Final = """
-- A pool account resting for one model after a refusal of that model (1019, 4013; issue 26), shared by every
-- process on the database; a row whose rest_until has passed means nothing and is swept on the next write.
CREATE TABLE model_cooldowns (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    model      TEXT NOT NULL,                  -- the public model name refused
    rest_until DOUBLE PRECISION NOT NULL,      -- the pair is not tried before then
    reason     TEXT NOT NULL,                  -- the refusal's error code
    message    TEXT NOT NULL,                  -- the upstream's reason, as the caller was told
    PRIMARY KEY (account_id, model)
) WITHOUT ROWID;
"""

_TASK_COSTS: Final = """
-- What each task cost (issue 20 item 8, tasks/cost.py): NULL until known; 'estimated' may later be replaced by
-- 'measured' (the upstream's spending record of the task's submit_id), which is final.
ALTER TABLE tasks ADD COLUMN cost_credits INTEGER;
ALTER TABLE tasks ADD COLUMN cost_source TEXT CHECK (cost_source IN ('measured', 'estimated'));
"""

_EVENT_LINKS_EXPIRY: Final = """
-- When a webhook event's result links stop working as its body says (issue 27 item 2), written with the event so
-- the sender need not read the body again to know (webhooks/events.py `links_expire_at`): the earliest x-expires,
-- +Infinity when nothing in it expires, -Infinity when the body cannot tell; NULL for events written before.
ALTER TABLE webhook_events ADD COLUMN links_expire_at DOUBLE PRECISION;
-- Due events in the order a claim takes them (next_attempt_at, then seq): a burst's events share one due time, and
-- with next_attempt_at alone SQLite sorted every due event by seq to take the first few (each claim read them all).
DROP INDEX webhook_events_due;
CREATE INDEX webhook_events_due ON webhook_events (next_attempt_at, seq) WHERE state IN ('pending', 'delivering');
"""

HISTORY: Final[tuple[Step, ...]] = (
    Step(_SQLITE_1, None),
    Step(_SQLITE_2, None),
    Step(_SQLITE_3, None),
    Step(_SQLITE_4, _POSTGRES_1),  # the same schema from here on
    Step(None, _POSTGRES_2),  # replicas' watch leases (PostgreSQL only)
    shared(_POST_EDITS),
    shared(_RESULT_REFS),
    shared(_KEPT_RESULTS),
    shared(_MODEL_COOLDOWNS),
    shared(_TASK_COSTS),
    shared(_EVENT_LINKS_EXPIRY),
)
"""Every schema step, oldest first (see the module docstring)."""
