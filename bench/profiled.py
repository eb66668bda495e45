"""Run the server under cProfile for a window the bench chooses (bench only; `bench/scale.py --profile DIR`).

    python bench/profiled.py OUT.prof -m jimeng_server --config F ...

The server runs as `python -m jimeng_server` would, in this process. SIGUSR1 starts profiling (the main thread:
the event loop), SIGUSR2 stops it and writes the statistics to OUT.prof (`python -m pstats OUT.prof`); a second
SIGUSR1 starts a fresh profile. Nothing is profiled before the first SIGUSR1, so start-up and the submits of a
burst do not blur the window that is measured. The time the cyclic garbage collector took during the window is
written beside it (OUT.prof.gc: collections and seconds per generation), and so is the CPU each thread used in
it (OUT.prof.threads: the event loop's, the SQLite connections', the resolver's).
"""

from __future__ import annotations

import cProfile
import gc
import os
import runpy
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType


def thread_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of each thread of this process, by native thread id (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[int, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return used


def main() -> None:
    out, flag, module, *rest = sys.argv[1:]
    if flag != "-m":
        raise SystemExit("usage: profiled.py OUT.prof -m MODULE [ARGS...]")
    profile: list[cProfile.Profile] = []
    collections: dict[int, list[float]] = {}  # generation -> [count, seconds]
    started: list[float] = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if not profile:
            return
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            tally = collections.setdefault(info["generation"], [0, 0.0])
            tally[0] += 1
            tally[1] += time.perf_counter() - started[0]

    threads_at_start: dict[int, float] = {}

    def start(_sig: int, _frame: FrameType | None) -> None:
        collections.clear()
        threads_at_start.clear()
        threads_at_start.update(thread_cpu())
        profile[:] = [cProfile.Profile()]
        profile[0].enable()

    def stop(_sig: int, _frame: FrameType | None) -> None:
        if profile:
            profile[0].disable()
            profile[0].dump_stats(out)
            lines = [f"gen {g}: {int(n)} collections, {s:.3f} s" for g, (n, s) in sorted(collections.items())]
            Path(out + ".gc").write_text("\n".join(lines) + "\n", encoding="utf-8")
            names = {t.native_id: t.name for t in threading.enumerate()}
            used = {tid: cpu - threads_at_start.get(tid, 0.0) for tid, cpu in thread_cpu().items()}
            lines = [f"{names.get(tid, tid)}: {cpu:.3f} s" for tid, cpu in sorted(used.items(), key=lambda kv: -kv[1])]
            Path(out + ".threads").write_text("\n".join(lines) + "\n", encoding="utf-8")
            profile.clear()

    gc.callbacks.append(on_gc)
    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = [module, *rest]
    sys.path.insert(0, "")
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
