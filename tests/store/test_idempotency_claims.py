"""Claims of one new idempotency key racing on both backends (`store` is parametrized: SQLite and PostgreSQL): a
new key is claimed by one statement on its own, so exactly one of the racers gets it and the others are told it
is in progress (or, with another request hash, that it was used for another request)."""

from __future__ import annotations

import asyncio

from record_support import ACCOUNT, OTHER

from jimeng_server.store.base import Store
from jimeng_server.tasks.claims import ClaimState


async def test_one_of_many_racing_claims_of_a_new_key_wins(store: Store) -> None:
    claims = await asyncio.gather(
        *(store.claim_idempotency_key(ACCOUNT, "race", "hash-a") for _ in range(6)),
        *(store.claim_idempotency_key(ACCOUNT, "race", "hash-b") for _ in range(2)),
        store.claim_idempotency_key(OTHER, "race", "hash-a"),
    )
    mine = [c.state for c in claims[:8]]
    assert mine.count(ClaimState.NEW) == 1
    winner_hash = "hash-a" if mine.index(ClaimState.NEW) < 6 else "hash-b"
    for state, digest in zip(mine, ["hash-a"] * 6 + ["hash-b"] * 2, strict=True):
        if state is not ClaimState.NEW:
            assert state is (ClaimState.IN_PROGRESS if digest == winner_hash else ClaimState.MISMATCH)
    assert claims[8].state is ClaimState.NEW  # the key is per account


async def test_a_released_key_is_claimed_anew_by_the_next_request(store: Store) -> None:
    assert (await store.claim_idempotency_key(ACCOUNT, "k", "hash-a")).state is ClaimState.NEW
    await store.release_idempotency_key(ACCOUNT, "k")
    assert (await store.claim_idempotency_key(ACCOUNT, "k", "hash-b")).state is ClaimState.NEW
    assert (await store.claim_idempotency_key(ACCOUNT, "k", "hash-b")).state is ClaimState.IN_PROGRESS
