"""The webhook sender in child processes of the server (`[webhooks] processes`, issue 27 item 3).

With `processes = N >= 1` the API process sends no webhook: `SenderProcesses` starts N children (the same
Python, the same `sys.path`, the same config) that each run a `WebhookSender` on the same store, and keeps
them running. The outbox is the only thing they share: each child claims due events with a lease
(`OutboxStore.claim_due_events`: one statement under SQLite's write lock, `FOR UPDATE SKIP LOCKED` on
PostgreSQL), so no event is claimed by two senders and attempts are recorded in the store by whoever sent.

The pipes between the server and a child (nothing else is shared):

- the child's stdin: first the `ChildSpec` (an 8-byte big-endian length, then the pickled spec: the config,
  secrets included, never on a command line or in the environment), then one byte per wake-up (a settle wrote
  events; coalesced: at most one write per loop iteration; the child reads every byte waiting at once and
  wakes its sender once). End of file means the server is gone: the child stops.
- the child's stdout: lines `d <outcome> <seconds>` (one per delivery attempt, for the server's
  `jimeng_webhook_deliveries_total` and duration histogram) and `i <n>` (sends in flight), written together
  once per loop iteration; `r` once the sender runs.
- the child's stderr is the server's: its log lines carry the tag `sender-<n>` (`logs.setup_logging(tag=)`).

A child that exits while the server runs is started again after a back-off (0.25 s doubling to 30 s; reset
after a child lived a minute). Its claimed events stay `delivering` until their lease ends; when no other child
of this server is alive, `release` (the API process's `OutboxStore.release_event_leases`) queues them again at
once: on SQLite (one host) that is every lease, on PostgreSQL only expired ones (other replicas may be sending
the rest). Delivery stays at-least-once. `stop()` sends SIGTERM (a child stops its sender, letting in-flight
attempts finish for the grace time), then SIGKILL after `grace` + `KILL_MARGIN` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from ..clock import Clock
from ..config import Config
from ..jobs import Jobs

log = logging.getLogger(__name__)

PATH_ENV: Final = "JIMENG_SENDER_SYS_PATH"
"""The environment variable that gives a child the server's `sys.path` (a JSON list), so a child finds the same
code as its server (an installed package, a checkout on PYTHONPATH, or a zipapp)."""

KILL_MARGIN: Final = 5.0
"""Seconds past the shutdown grace a child gets to exit after SIGTERM before it is killed."""

BACKOFF_FIRST: Final = 0.25
BACKOFF_MAX: Final = 30.0
HEALTHY_AFTER: Final = 60.0  # a child that lived this long restarts after BACKOFF_FIRST again
_LENGTH_BYTES: Final = 8
RECOUNT: Final = 0.25  # seconds between a child's looks at its sends in flight (reported when changed)


def restart_delay(failures: int) -> float:
    """Seconds to wait before starting a child again after its `failures`-th exit in a row (1-based)."""
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2.0 ** max(0, failures - 1))


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """What a sender child is told: its number (1..N, for its log tag) and the server's config."""

    index: int
    config: Config

    @property
    def tag(self) -> str:
        """The log tag of this child's lines."""
        return tag_of(self.index)


def tag_of(index: int) -> str:
    """The name of sender child `index` (1-based) in log lines and task names."""
    return f"sender-{index}"


def child_command(entry: str) -> list[str]:
    """The argv of a child: this interpreter running `entry` ("package.module:function", called without
    arguments) with the server's `sys.path` taken from `PATH_ENV`."""
    module, _, function = entry.partition(":")
    boot = (
        "import json, os, sys; "
        f"sys.path[:0] = json.loads(os.environ.pop({PATH_ENV!r})); "
        f"from {module} import {function}; {function}()"
    )
    return [sys.executable, "-c", boot]


# ---------------------------------------------------------------------------------------------------------
# The server's side


@dataclass(eq=False)
class _Child:
    index: int
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    failures: int = 0
    in_flight: int = 0
    ready: bool = False
    wake_pending: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class SenderProcesses:
    """Starts, watches, wakes and stops the sender children of this server (see the module docstring).

    `on_delivery(outcome, seconds)` is called in this process for every delivery attempt a child reports (the
    server's metrics). `release()` queues claimed events again when no child is alive (before the first start
    and before a restart). `restarts` counts the children started again after an exit.
    """

    def __init__(
        self,
        config: Config,
        clock: Clock,
        *,
        entry: str,
        release: Callable[[], Awaitable[int]],
        on_delivery: Callable[[str, float], None],
        jobs: Jobs | None = None,
    ) -> None:
        """`jobs`: the owner of each child's supervising task (`stop()` ends them itself: it lets a child that
        is stopping report to the end)."""
        self._jobs = jobs or Jobs("webhook-senders")
        self._config = config
        self._clock = clock
        self._command = child_command(entry)
        self._release = release
        self._on_delivery = on_delivery
        self._children = [_Child(i) for i in range(1, config.webhooks.processes + 1)]
        self._stopping = False
        self._started = False
        self.restarts = 0
        self._changed = asyncio.Event()

    @property
    def count(self) -> int:
        """How many children this server runs."""
        return len(self._children)

    @property
    def stopping(self) -> bool:
        """True once `stop()` was called: children that exit are not started again."""
        return self._stopping

    @property
    def pids(self) -> list[int | None]:
        """The process id of each child (None while it is not running)."""
        return [c.proc.pid if c.proc is not None and c.proc.returncode is None else None for c in self._children]

    @property
    def running(self) -> bool:
        """True while every child is alive and its sender runs."""
        return self._started and not self._stopping and all(self._alive(c) and c.ready for c in self._children)

    @property
    def in_flight(self) -> int:
        """Sends in flight in all children, as last reported."""
        return sum(c.in_flight for c in self._children if self._alive(c))

    async def start(self) -> None:
        """Queue claimed events again (no child runs yet) and start every child. Idempotent."""
        if self._started:
            return
        self._started = True
        await self._release_leases()
        for child in self._children:
            try:
                await self._spawn(child)
            except Exception:
                log.exception("webhook sender process %d: starting it failed", child.index)
            child.tasks.append(self._jobs.spawn(self._supervise(child), name=f"jimeng-{tag_of(child.index)}"))

    async def wait_ready(self) -> None:
        """Wait until every child's sender runs (tests and benches; the server never waits for it)."""
        while not self.running:
            self._changed.clear()
            await self._changed.wait()

    def wake(self) -> None:
        """Tell every child to look for due events now: one byte each, written once per loop iteration however
        many wakes it had, and not while bytes for the child wait in this process's buffer."""
        for child in self._children:
            if child.wake_pending or not self._alive(child):
                continue
            proc = child.proc
            assert proc is not None and proc.stdin is not None
            transport = proc.stdin.transport
            if transport.is_closing() or transport.get_write_buffer_size():
                continue  # the child has bytes to read already: it wakes anyway
            child.wake_pending = True
            asyncio.get_running_loop().call_soon(self._send_wake, child)

    async def stop(self, *, grace: float) -> None:
        """SIGTERM every child, wait up to `grace` + `KILL_MARGIN` seconds for them to exit (their last reports
        read), kill the rest. A child waiting for its restart is not started again."""
        self._stopping = True
        watching: list[asyncio.Task[None]] = []
        for child in self._children:
            if self._alive(child):
                assert child.proc is not None
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGTERM)
                watching.extend(child.tasks)
            else:  # waiting to be started again (or starting): nothing to wait for
                for task in child.tasks:
                    task.cancel()
        if watching:
            _, late = await asyncio.wait(watching, timeout=grace + KILL_MARGIN)
            for child in self._children:
                if self._alive(child):
                    assert child.proc is not None
                    pid = child.proc.pid
                    log.warning("webhook sender process %d (pid %d) did not stop in time: killed", child.index, pid)
                    with contextlib.suppress(ProcessLookupError):
                        child.proc.kill()
            if late:
                await asyncio.wait(late)
        for child in self._children:
            for task in child.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            child.tasks.clear()
            if child.proc is not None and child.proc.stdin is not None:
                child.proc.stdin.close()

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _alive(child: _Child) -> bool:
        return child.proc is not None and child.proc.returncode is None

    def _send_wake(self, child: _Child) -> None:
        child.wake_pending = False
        if self._alive(child):
            assert child.proc is not None and child.proc.stdin is not None
            if not child.proc.stdin.transport.is_closing():
                child.proc.stdin.write(b"w")

    async def _release_leases(self) -> None:
        try:
            released = await self._release()
        except Exception:
            log.exception("webhook senders: could not queue interrupted deliveries again (their leases expire)")
            return
        if released:
            log.info("webhook senders: %d interrupted delivery(ies) queued again", released)

    async def _spawn(self, child: _Child) -> None:
        env = {**os.environ, PATH_ENV: json.dumps(sys.path)}
        proc = await asyncio.create_subprocess_exec(
            *self._command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,  # a terminal's Ctrl-C reaches the server only; the server stops its children
        )
        assert proc.stdin is not None
        spec = pickle.dumps(ChildSpec(child.index, self._config), protocol=pickle.HIGHEST_PROTOCOL)
        proc.stdin.write(len(spec).to_bytes(_LENGTH_BYTES, "big") + spec)
        child.proc, child.started_at, child.in_flight, child.ready = proc, self._clock.time(), 0, False
        log.info("webhook sender process %d started (pid %d)", child.index, proc.pid)

    async def _supervise(self, child: _Child) -> None:
        """Read the child's reports until it exits; start it again (after a back-off) unless stopping."""
        while True:
            proc = child.proc
            if proc is not None:
                assert proc.stdout is not None
                await self._read_reports(child, proc.stdout)
                code = await proc.wait()
                child.ready = False
                self._changed.set()
                if self._stopping:
                    return
                lived = self._clock.time() - child.started_at
                child.failures = 1 if lived >= HEALTHY_AFTER else child.failures + 1
                what = f"(pid {proc.pid}) exited ({_exit_text(code)})"
            else:
                child.failures += 1
                what = "could not be started"
            delay = restart_delay(child.failures)
            log.warning("webhook sender process %d %s; starting it again in %.2f s", child.index, what, delay)
            await self._clock.sleep(delay)
            if self.stopping:  # stop() was called meanwhile
                return
            if not any(self._alive(c) for c in self._children):
                await self._release_leases()
            try:
                await self._spawn(child)
            except Exception:
                log.exception("webhook sender process %d: starting it failed", child.index)
                child.proc = None
                continue
            self.restarts += 1

    async def _read_reports(self, child: _Child, stdout: asyncio.StreamReader) -> None:
        while line := await stdout.readline():
            kind, _, rest = line.decode("ascii", "replace").strip().partition(" ")
            try:
                if kind == "d":
                    outcome, _, seconds = rest.partition(" ")
                    self._on_delivery(outcome, float(seconds))
                elif kind == "i":
                    child.in_flight = int(rest)
                elif kind == "r":
                    child.ready = True
                    self._changed.set()
            except ValueError:
                log.warning("webhook sender process %d: unreadable report %r", child.index, line[:80])


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


# ---------------------------------------------------------------------------------------------------------
# The child's side


def read_spec(fd: int = 0) -> ChildSpec:
    """The `ChildSpec` the server wrote first on `fd` (the child's stdin); read exactly, so the wake bytes after
    it stay in the pipe. Raises EOFError when the server went away first."""
    size = int.from_bytes(_read_exactly(fd, _LENGTH_BYTES), "big")
    spec: object = pickle.loads(_read_exactly(fd, size))  # from the parent server only (its pipe)
    if not isinstance(spec, ChildSpec):
        raise TypeError(f"not a sender child spec: {type(spec).__name__}")
    return spec


def _read_exactly(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            raise EOFError("the server closed the pipe")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class ParentLink:
    """A child's end of the pipes: wake-ups and the server's end of file in, reports out.

    `attach(wake)` calls `wake()` for every byte batch read from stdin, sets `gone` at end of file and starts
    looking at the sends in flight (`in_flight()`) every `RECOUNT` seconds (reported when changed).
    `delivery(outcome, seconds)` (the metrics tap) queues one report; reports queued in one loop iteration go
    out in one write, with the sends in flight as of then.
    """

    def __init__(self, in_flight: Callable[[], int], *, fd_in: int = 0, fd_out: int = 1) -> None:
        self._fd_in = fd_in
        self._fd_out = fd_out
        self._in_flight = in_flight
        self._pending: list[str] = []
        self._scheduled = False
        self._reported = 0
        self._recount: asyncio.TimerHandle | None = None
        self.gone = asyncio.Event()

    def attach(self, wake: Callable[[], None]) -> None:
        """Start reading wake-ups and counting sends (call in the running loop)."""
        loop = asyncio.get_running_loop()
        os.set_blocking(self._fd_in, False)

        def readable() -> None:
            try:
                data = os.read(self._fd_in, 4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if data:
                wake()
            else:
                loop.remove_reader(self._fd_in)
                self.gone.set()

        loop.add_reader(self._fd_in, readable)
        self._recount = loop.call_later(RECOUNT, self._recounted)

    def detach(self) -> None:
        """Stop reading wake-ups and counting; write what is queued (and no sends in flight)."""
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._fd_in)
        if self._recount is not None:
            self._recount.cancel()
            self._recount = None
        self._scheduled = False
        lines, self._pending = self._pending, []
        self._write("".join([*lines, "i 0\n"]))

    def ready(self) -> None:
        """Tell the server the sender runs."""
        self._write("r\n")

    def delivery(self, outcome: str, seconds: float) -> None:
        """One delivery attempt, reported with the next write."""
        self._pending.append(f"d {outcome} {seconds:.6f}\n")
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write the queued reports and the sends in flight now."""
        self._scheduled = False
        lines, self._pending = self._pending, []
        self._reported = self._in_flight()
        lines.append(f"i {self._reported}\n")
        self._write("".join(lines))

    def _recounted(self) -> None:
        self._recount = asyncio.get_running_loop().call_later(RECOUNT, self._recounted)
        if self._in_flight() != self._reported and not self._scheduled:
            self.flush()

    def _write(self, text: str) -> None:
        data = text.encode("ascii")
        try:
            while data:
                data = data[os.write(self._fd_out, data) :]
        except OSError:  # the server is gone: `gone` is set by the reader
            pass
