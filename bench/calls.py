"""Python calls per unit of work in a profile written by `bench/scale.py --profile DIR` (bench only).

    python bench/calls.py DIR/submit.prof --per 200          # the submit phase: 200 submits by default
    python bench/calls.py DIR/burst.prof --per 2000 --top 30

A deterministic figure beside the noisy timings of a shared machine: how many Python-level calls (functions,
and C functions called from Python) the server made per submit (or per finished task), grouped by where the
called code lives (this project's modules, each site package, the standard library, C builtins), with the
profiled time next to each group (cProfile's, inflated by the profiler: compare groups, not with timings).
The last line is one JSON object: {"calls_per_unit", "per", "groups": {name: calls per unit}}.
"""

from __future__ import annotations

import argparse
import json
import pstats
from collections import Counter


def group_of(filename: str) -> str:
    """`jimeng_server/<module path>`, `<site package>`, `stdlib/<module>` or `builtins`."""
    if filename == "~":
        return "builtins"
    if "jimeng_server/" in filename:
        return "jimeng_server/" + filename.rsplit("jimeng_server/", 1)[1]
    if "site-packages/" in filename:
        return filename.rsplit("site-packages/", 1)[1].split("/", 1)[0]
    return "stdlib/" + filename.rsplit("/", 1)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", help="a .prof file of bench/scale.py --profile")
    parser.add_argument("--per", type=int, default=200, help="units of work in the profile's window (submits)")
    parser.add_argument("--top", type=int, default=25, help="groups printed")
    args = parser.parse_args()
    stats = pstats.Stats(args.profile).stats  # type: ignore[attr-defined]
    calls: Counter[str] = Counter()
    seconds: Counter[str] = Counter()
    for (filename, _, _), (primitive, _, own, _, _) in stats.items():
        name = group_of(filename)
        calls[name] += primitive
        seconds[name] += own
    total = sum(calls.values())
    print(f"{total / args.per:.1f} Python calls per unit ({total} in the window, {args.per} units)")
    for name, count in calls.most_common(args.top):
        print(f"  {count / args.per:8.1f} calls  {seconds[name] * 1e6 / args.per:8.1f} us (profiled)  {name}")
    groups = {name: round(count / args.per, 1) for name, count in calls.most_common()}
    print(json.dumps({"calls_per_unit": round(total / args.per, 1), "per": args.per, "groups": groups}))


if __name__ == "__main__":
    main()
