"""What MCP over HTTP would cost the API server if it were mounted in it (an ASGI bridge under /mcp) instead of
running as `jimeng-server mcp --http` in a process of its own: the import time and resident memory of the API
server's modules alone, and of the same plus the MCP SDK's streamable-HTTP stack (mcp.server.mcpserver,
starlette, uvicorn, pydantic). Each figure is measured in a fresh interpreter, `--runs` times (min/median/max).

    .venv/bin/python bench/mcp_transport.py [--runs 3]

The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_PROBE = """
import resource, time
t = time.perf_counter()
import jimeng_server.app
{extra}
took = time.perf_counter() - t
print(took, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
_MCP = "import mcp.server.mcpserver, mcp.server.streamable_http_manager, starlette.applications, uvicorn"


def measure(extra: str) -> tuple[float, int]:
    """(import seconds, peak RSS in KiB) of one fresh interpreter importing the app (and `extra`)."""
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(extra=extra)], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    return float(out[0]), int(out[1])


def summary(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    figures: dict[str, dict[str, dict[str, float]]] = {}
    for name, extra in (("api_only", ""), ("api_plus_mcp_http", _MCP)):
        runs = [measure(extra) for _ in range(args.runs)]
        figures[name] = {
            "import_ms": summary([r[0] * 1000 for r in runs]),
            "rss_mib": summary([r[1] / 1024 for r in runs]),
        }
        imp, rss = figures[name]["import_ms"], figures[name]["rss_mib"]
        print(
            f"{name:18s} import {imp['min']:.0f}/{imp['median']:.0f}/{imp['max']:.0f} ms  "
            f"RSS {rss['min']:.1f}/{rss['median']:.1f}/{rss['max']:.1f} MiB (min/median/max of {args.runs})"
        )
    extra_ms = figures["api_plus_mcp_http"]["import_ms"]["median"] - figures["api_only"]["import_ms"]["median"]
    extra_mib = figures["api_plus_mcp_http"]["rss_mib"]["median"] - figures["api_only"]["rss_mib"]["median"]
    print(f"mounting MCP over HTTP in the API server would add {extra_ms:.0f} ms of start-up and {extra_mib:.1f} MiB")
    print(json.dumps({"runs": args.runs, **figures, "added_ms": extra_ms, "added_mib": extra_mib}))


if __name__ == "__main__":
    main()
