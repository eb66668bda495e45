"""`payloads.new_uuid`: the submit ids and draft ids of every generate body (made a block at a time)."""

from __future__ import annotations

import threading
import uuid
from collections import Counter

from jimeng_server.randomid import BLOCK
from jimeng_server.upstream.payloads import new_uuid


def test_every_id_is_a_random_rfc_4122_version_4_uuid_in_its_canonical_text() -> None:
    made = [new_uuid() for _ in range(3 * BLOCK + 7)]  # across several blocks
    for text in made:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == text  # lower-case, dashed: what str(uuid.uuid4()) gives
    assert len(set(made)) == len(made)
    # The variant digit keeps two random bits, the version digit's neighbour four.
    assert set(Counter(t[19] for t in made)) == set("89ab")
    assert len({t[15] for t in made}) == 16


def test_threads_taking_ids_at_once_never_get_the_same_one() -> None:
    got: list[list[str]] = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def take(out: list[str]) -> None:
        start.wait()
        out.extend(new_uuid() for _ in range(2 * BLOCK))

    threads = [threading.Thread(target=take, args=(out,)) for out in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [text for out in got for text in out]
    assert len(every) == 8 * BLOCK and len(set(every)) == len(every)
