"""The API's JSON encoding, and the encoded answers of final tasks kept in memory.

`encode_json` is the one encoder of the query answers (cached or not, the same bytes). `AnswerCache` keeps
the encoded query body of FINAL tasks (`[store] answer_cache_mb`), so a query of a settled task is answered
without the store and without decoding and re-encoding its `raw_data`. Why an entry stays true:

- A final task never changes: the store's settle, progress and insert leave final tasks as they are, a
  redelivery only queues its webhook event again, and a task is final on every replica sharing the store.
- The only change is deletion by retention (`purge_finished`: tasks finished more than `[store]
  retention_days` ago). An entry is served only while its task is younger than that horizon minus
  `CLOCK_MARGIN` (another replica's clock may run ahead of this one's), so a task another replica (or this
  one) may have purged is never answered from here; its query goes to the store as it did before.

Each entry keeps its owner id (`TaskRecord.account_fp`): whoever asks is checked against it exactly as against
the stored row. The cache is bounded by bytes (bodies plus a fixed overhead per entry); the least recently
used entries go first; a body larger than the whole cache is not kept.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..clock import Clock

CLOCK_MARGIN: Final = 600.0
"""Seconds before the retention horizon at which an entry stops being served (clock skew between replicas)."""
ENTRY_OVERHEAD: Final = 200
"""Bytes counted per entry besides its body (key, record, ordering)."""


_ENCODER: Final = json.JSONEncoder(ensure_ascii=False)
"""`json.dumps(value, ensure_ascii=False)`'s encoder, built once (`json.dumps` with an argument builds one per
call)."""


def json_text(value: Any) -> str:
    """The API's JSON text of an answer body: non-ASCII characters kept as they are."""
    return _ENCODER.encode(value)


def encode_json(value: Any) -> bytes:
    """The API's JSON encoding of an answer body: `json_text` in UTF-8."""
    return json_text(value).encode("utf-8")


def encode_batch(bodies: Sequence[bytes], not_found: Sequence[str]) -> bytes:
    """`{"data": [...], "not_found": [...]}` from bodies already encoded by `encode_json`: exactly the bytes
    `encode_json` gives for the decoded whole (its separators are `", "` and `": "` at every depth)."""
    return b'{"data": [' + b", ".join(bodies) + b'], "not_found": ' + encode_json(list(not_found)) + b"}"


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A final task's encoded query body, its owner id and when it finished (None: never purged); `fresh_until`:
    when its links must be re-signed (services/result_links.py), after which it is not served (None: never)."""

    owner: str
    finished_at: float | None
    body: bytes
    fresh_until: float | None = None

    @property
    def size(self) -> int:
        """The bytes it counts for."""
        return len(self.body) + ENTRY_OVERHEAD


class AnswerCache:
    """Encoded answers of final tasks by history id, bounded by `max_bytes` (0: nothing is kept).

    `retention_seconds` is the store's retention (`[store] retention_days` in seconds): an entry of a task
    finished earlier than `retention_seconds - CLOCK_MARGIN` ago is dropped instead of served.
    """

    def __init__(self, max_bytes: int, clock: Clock, *, retention_seconds: float) -> None:
        self.max_bytes = max(0, max_bytes)
        self.clock = clock
        self.serve_for = retention_seconds - CLOCK_MARGIN
        self._entries: OrderedDict[str, CachedAnswer] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def used(self) -> int:
        """The bytes the entries count for (at most `max_bytes`)."""
        return self._bytes

    def get(self, history_id: str) -> CachedAnswer | None:
        """The entry of `history_id` (now the most recently used), or None; an expired entry is dropped."""
        entry = self._entries.get(history_id)
        if entry is None:
            return None
        if not self._servable(entry, self.clock.time()):
            self._drop(history_id)
            return None
        self._entries.move_to_end(history_id)
        return entry

    def put(
        self, history_id: str, owner: str, finished_at: float | None, body: bytes, *, fresh_until: float | None = None
    ) -> None:
        """Keep the encoded answer of a FINAL task (a task past the horizon, or too large, is not kept);
        least recently used entries are dropped to make room. Past `fresh_until` the entry is not served."""
        entry = CachedAnswer(owner, finished_at, body, fresh_until)
        if entry.size > self.max_bytes or not self._servable(entry, self.clock.time()):
            return
        self._drop(history_id)
        self._entries[history_id] = entry
        self._bytes += entry.size
        while self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def forget_all(self, history_ids: Sequence[str]) -> None:
        """Drop the entries of these tasks (their answers changed, e.g. a kept file was removed)."""
        for history_id in history_ids:
            self._drop(history_id)

    def expire(self) -> int:
        """Drop every entry past the horizon (after a purge: frees their memory); returns how many."""
        now = self.clock.time()
        stale = [hid for hid, entry in self._entries.items() if not self._servable(entry, now)]
        for hid in stale:
            self._drop(hid)
        return len(stale)

    def forget(self, history_id: str) -> None:
        """Drop the kept answer of a task whose answer changed after it was final (a post-edit was made from it,
        which its answer lists)."""
        self._drop(history_id)

    def _servable(self, entry: CachedAnswer, now: float) -> bool:
        if entry.fresh_until is not None and now >= entry.fresh_until:
            return False
        return entry.finished_at is None or now - entry.finished_at < self.serve_for

    def _drop(self, history_id: str) -> None:
        entry = self._entries.pop(history_id, None)
        if entry is not None:
            self._bytes -= entry.size
