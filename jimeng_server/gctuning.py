"""The cyclic garbage collector's pace in a long-running server (base layer, one call at start-up).

CPython looks for reference cycles among the youngest objects every 700 net allocations of container objects
(`gc.get_threshold()[0]`), and every look walks them all; a tenth of those looks also walk the middle generation.
A burst of finished tasks allocates hundreds of thousands of short-lived containers (decoded records, answers,
events, requests): with the default pace the collector ran about 300 times in a 2,000-task burst and took
0.2-0.3 s of it (`bench/scale.py --profile`, which writes the collector's time beside the profile); at 20,000 it
ran 3-4 times, 0.03-0.1 s. A burst's young objects mostly live until their settle and send are done (decoded
records, finishes, events in flight), so each look walks about as many objects as the threshold: at 100,000 a
5,000-task burst takes 2 looks of the youngest generation and none of the middle one (58-77 ms in all, profiled)
instead of 7-8 and one (76-95 ms), and about 0.01 ms less server CPU per finished task. Objects still die by
reference counting at once, as before; only garbage in cycles waits longer (a few MB at most: the server's RSS
with 10,000 tasks watched stays at 85 MB). The older generations keep their thresholds."""

from __future__ import annotations

import gc
from typing import Final

GEN0_THRESHOLD: Final = 100_000
"""Net container allocations between two collections of the youngest generation (CPython's default: 700)."""


def tune() -> None:
    """Set the youngest generation's threshold to `GEN0_THRESHOLD` (the other two unchanged). Idempotent."""
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, middle, oldest)
