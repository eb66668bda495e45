"""CPU per submit of `concurrency.GroupCommit` (the webhook sender records every delivery attempt through it,
issue 27 item 2): `--submitters` coroutines each submit one item at once, `--waves` times, into a flush that
stores nothing (one event-loop step), so the figure is the batching machinery's own cost: the submit, the wait,
the flushing task's share. CPU time (process_time) per submit, best of `--repeat` runs; `--against FILE` times
another `concurrency.py` (e.g. `git show HEAD~1:jimeng_server/concurrency.py > /tmp/old.py`) alternately with
this checkout's, for a before/after comparison. The baseline (the submitters awaiting a bare event-loop step
instead of a submit) is printed and subtracted.

    PYTHONPATH=. .venv/bin/python bench/group_commit.py [--submitters 2000] [--waves 5] [--repeat 5]
                                                        [--against OLD_CONCURRENCY_PY]

Last line: JSON (µs per submit, baseline subtracted).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import time
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

from jimeng_server import concurrency


def load(path: str) -> ModuleType:
    """A `concurrency.py` from another checkout, as a module of its own."""
    spec = importlib.util.spec_from_file_location("concurrency_against", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _flush(items: list[Any]) -> None:
    await asyncio.sleep(0)


async def run(submit: Callable[[int], Awaitable[None]] | None, submitters: int, waves: int) -> float:
    """CPU µs per submitter of `waves` waves of `submitters` concurrent submits (None: a bare loop step)."""

    async def one(n: int) -> None:
        await asyncio.sleep(0)
        if submit is not None:
            await submit(n)
        else:
            await asyncio.sleep(0)

    started = time.process_time()
    for _ in range(waves):
        await asyncio.gather(*(one(n) for n in range(submitters)))
    return (time.process_time() - started) / (submitters * waves) * 1e6


def measure(module: ModuleType | None, submitters: int, waves: int) -> float:
    async def main() -> float:
        if module is None:
            return await run(None, submitters, waves)
        batch = module.GroupCommit(_flush)
        return await run(batch.submit, submitters, waves)

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submitters", type=int, default=2000)
    parser.add_argument("--waves", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--against", help="another concurrency.py to time alternately")
    args = parser.parse_args()
    modules: dict[str, ModuleType | None] = {"baseline": None, "this": concurrency}
    if args.against:
        modules["against"] = load(args.against)
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        for name, module in modules.items():
            best[name] = min(best.get(name, float("inf")), measure(module, args.submitters, args.waves))
    base = best.pop("baseline")
    print(f"baseline (a bare loop step per submitter): {base:.2f} µs")
    figures = {name: round(value - base, 2) for name, value in best.items()}
    for name, value in figures.items():
        print(f"{name:8s} {value:6.2f} µs CPU per submit")
    print(json.dumps({"submitters": args.submitters, "waves": args.waves, "us_per_submit": figures}))


if __name__ == "__main__":
    main()
