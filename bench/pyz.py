"""The single-file build, measured and checked: `python bench/pyz.py jimeng-server.pyz [--runs N] [--request]
[--pythons 3.11,3.12,3.13]`.

Starts `python jimeng-server.pyz --simulate` N times (the first run unpacks the archive into a fresh
SHIV_ROOT: a cold start; later runs reuse it), and prints the file size and the time from launch until
`/healthz` answers. With `--request`, the last run also answers one text-to-image request through the
built-in simulator and checks that the returned URLs serve PNGs (CI runs this). With `--pythons`, all of this
is done once per listed CPython version (each found as `python3.X` on PATH or under ~/.pyenv/versions; a
version that cannot be found is a failure naming it). The archive must hold no compiled module (`.so`, `.pyd`):
one built for a single CPython version is dead weight on the others, so such a file is a failure naming it (the
README's build takes pure-Python wheels only). Exits non-zero on any failure; the last line is JSON.

Standard library only; waits are bounded, and the only pause is between attempts to connect to the port.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import IO

READY_SECONDS = 60.0
REQUEST_SECONDS = 60.0
CONFIG = """
[server]
log_level = "WARNING"
[store]
path = "{store}"
[watcher.image]
first_poll = 0.5
interval = 0.5
deadline = 60.0
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_ready(proc: subprocess.Popen[str], port: int, deadline: float) -> None:
    """Return once `GET /healthz` on 127.0.0.1:`port` answers 200; raise if the server exits or `deadline`
    passes. (The port alone is not enough: the server binds it before it opens the store and serves.)"""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode} before serving")
        try:
            with opener.open(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"/healthz did not answer within {READY_SECONDS:g} s") from None
        time.sleep(0.02)


def demo_token(lines: queue.Queue[str], deadline: float) -> str:
    """The demo token from the `--simulate` banner on stdout."""
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise SystemExit("no demo token was printed") from None
        match = re.search(r"Bearer ([A-Za-z0-9_-]+)", line)
        if match:
            return match.group(1)


def one_request(port: int, token: str) -> float:
    """POST one text-to-image request, check the answer and that each URL serves a PNG; seconds taken."""
    started = time.monotonic()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/images/generations",
        data=json.dumps({"prompt": "a cat in the snow", "size": "1024x1024"}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
    with opener.open(request, timeout=REQUEST_SECONDS) as resp:
        body = json.load(resp)
    urls = [item["url"] for item in body["data"]]
    if not urls:
        raise SystemExit(f"no images in the answer: {body}")
    for url in urls:
        with opener.open(url, timeout=REQUEST_SECONDS) as img:
            if img.read(8) != b"\x89PNG\r\n\x1a\n":
                raise SystemExit(f"{url} is not a PNG")
    return time.monotonic() - started


def _pump(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


PROBE = "import sys; print('%d.%d' % sys.version_info[:2]); print(getattr(sys, '_base_executable', sys.executable))"


def find_python(version: str) -> str:
    """The path of a CPython `version` ("3.12") interpreter: `python3.12` on PATH, else the newest
    ~/.pyenv/versions/3.12.*/bin/python3 (PYENV_ROOT moves ~/.pyenv); raises SystemExit naming the version."""
    if not re.fullmatch(r"3\.\d+", version):
        raise SystemExit(f"--pythons wants versions like 3.12, not {version!r}")
    candidates: list[str] = []
    on_path = shutil.which(f"python{version}")
    if on_path:
        candidates.append(on_path)
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    found = sorted(
        root.glob(f"{version}.*/bin/python3"), key=lambda p: [int(n) for n in re.findall(r"\d+", p.parts[-3])]
    )
    candidates += [str(p) for p in reversed(found)]
    for path in candidates:
        probe = subprocess.run(
            [path, "-c", PROBE],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        found_version, _, executable = probe.stdout.strip().partition("\n")
        if probe.returncode == 0 and found_version == version:
            # The interpreter itself: not a shim script in front of it, nor a virtualenv whose packages could
            # stand in for ones the single file lacks.
            return executable or path
    raise SystemExit(
        f"no CPython {version} found (looked for python{version} on PATH and under {root}); install it, e.g. "
        f"`pyenv install {version}` or `apt-get install python{version}`"
    )


def run_once(
    pyz: Path, work: Path, shiv_root: Path, *, request: bool, python: str = sys.executable
) -> tuple[float, float | None]:
    """Start the server from `pyz`, wait for its port, optionally answer a request, stop it (SIGTERM, exit 0)."""
    config = work / "config.toml"
    config.write_text(CONFIG.format(store=work / "tasks.db"), encoding="utf-8")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIMENG_")} | {"SHIV_ROOT": str(shiv_root)}
    started = time.monotonic()
    proc = subprocess.Popen(
        [python, str(pyz), "--simulate", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    took: float | None = None
    try:
        wait_for_ready(proc, port, started + READY_SECONDS)
        ready = time.monotonic() - started
        if request:
            took = one_request(port, demo_token(lines, time.monotonic() + READY_SECONDS))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise SystemExit("the server did not stop within 30 s of SIGTERM") from None
    if proc.returncode != 0:
        raise SystemExit(f"the server exited with {proc.returncode}:\n{err[-2000:]}")
    return ready, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyz", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--request", action="store_true", help="answer one real request on the last run")
    parser.add_argument(
        "--pythons", default="", help="comma-separated CPython versions to run it on (default: this interpreter)"
    )
    parser.add_argument("--max-mb", type=float, default=4.0, help="fail when the file is larger (default 4 MB)")
    args = parser.parse_args()
    size = args.pyz.stat().st_size
    print(f"{args.pyz.name}: {size / 1e6:.2f} MB ({size} bytes)")
    if size > args.max_mb * 1e6:
        raise SystemExit(f"{args.pyz.name} is {size / 1e6:.2f} MB, over the {args.max_mb:g} MB budget")
    with zipfile.ZipFile(args.pyz) as archive:
        compiled = [n for n in archive.namelist() if n.endswith((".so", ".pyd"))]
    if compiled:
        raise SystemExit(
            f"{args.pyz.name} holds {len(compiled)} compiled module(s), e.g. {compiled[0]}: build it from pure-Python "
            "wheels (--only-binary :all: --platform any --implementation py, as in the README)"
        )
    versions = [v.strip() for v in args.pythons.split(",") if v.strip()]
    pythons = {v: find_python(v) for v in versions} or {f"{sys.version_info[0]}.{sys.version_info[1]}": sys.executable}
    figures: dict[str, object] = {"bytes": size}
    for version, python in pythons.items():
        print(f"CPython {version}: {python}")
        starts: list[float] = []
        with tempfile.TemporaryDirectory(prefix="jimeng-pyz-") as tmp:
            shiv_root = Path(tmp) / "shiv"
            for run in range(args.runs):
                work = Path(tmp) / f"run{run}"
                work.mkdir()
                last = run == args.runs - 1
                ready, took = run_once(args.pyz, work, shiv_root, request=args.request and last, python=python)
                starts.append(ready)
                kind = "cold (unpacks)" if run == 0 else "warm"
                print(f"run {run + 1}: serving after {ready:.2f} s, {kind}")
                if took is not None:
                    print(f"one text-to-image request through the simulator: {took:.2f} s, PNGs served")
        figures[version] = {"start_s": [round(t, 3) for t in starts], "request": args.request}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
