"""Simulator state that survives a restart of `--simulate`: the demo accounts, every account's credits, the
history records, the charges, the CDN signing secret, the next history id and the port the simulator listened
on (result URLs name it).

The state is one JSON file (mode 0600), replaced atomically after every POST the simulator answers, before the
answer leaves: once the server has seen a generate accepted, a restart (even after kill -9) finds the record.
Records progress by wall-clock time since their creation, so a task submitted before a restart finishes after
it. Uploads in flight and the request journal are not kept.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from ..upstream.regions import Region
from .app import Simulator
from .scripts import Script, Step
from .state import SimAccount, SimRecord

log = logging.getLogger(__name__)

VERSION = 1


@dataclass(frozen=True, slots=True)
class SavedState:
    """What a restarted `--simulate` needs to continue: the port, the demo tokens and the simulator's state."""

    port: int
    demo_tokens: list[str]
    state: dict[str, Any]


def snapshot(sim: Simulator) -> dict[str, Any]:
    """The simulator's durable state as JSON-able data."""
    return {
        "cdn_secret": sim.cdn_secret.hex(),
        "next_history": sim._next_history,
        "accounts": [
            {**asdict(a), "region": a.region.value, "received_days": sorted(a.received_days)}
            for a in sim.accounts.values()
        ],
        "records": [_record_data(r) for r in sim.records.values()],
        "charges": [list(c) for c in sim.charges],
    }


def _record_data(record: SimRecord) -> dict[str, Any]:
    data = {f.name: getattr(record, f.name) for f in fields(record) if f.name != "script"}
    data["script"] = {
        "name": record.script.name,
        "steps": [[s.status, s.items, s.fail_code] for s in record.script],
    }
    return data


def restore(sim: Simulator, state: dict[str, Any]) -> None:
    """Put a `snapshot` back into a fresh simulator. Raises KeyError/TypeError/ValueError on a malformed one."""
    sim.cdn_secret = bytes.fromhex(state["cdn_secret"])
    sim._next_history = int(state["next_history"])
    for data in state["accounts"]:
        account = SimAccount(
            **{**data, "region": Region(data["region"]), "received_days": set(data["received_days"])}
        )
        sim.accounts[account.sessionid] = account
    for data in state["records"]:
        script = Script([Step(*s) for s in data["script"]["steps"]], name=data["script"]["name"])
        record = SimRecord(**{**data, "script": script})
        sim.records[record.history_id] = record
    sim.charges.extend((str(a), str(h), int(n)) for a, h, n in state["charges"])


def load(path: Path) -> SavedState | None:
    """The saved state at `path`; None when there is none or it cannot be used (logged)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != VERSION:
            raise ValueError(f"version {data.get('version')!r}, expected {VERSION}")
        tokens = [str(t) for t in data["demo_tokens"]]
        return SavedState(port=int(data["port"]), demo_tokens=tokens, state=data["state"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("simulator state %s cannot be used (%s); starting a fresh simulator", path, exc)
        return None


def save(path: Path, sim: Simulator, *, port: int, demo_tokens: list[str]) -> None:
    """Write the state atomically (a temporary file renamed over `path`), readable by the owner only."""
    data = {"version": VERSION, "port": port, "demo_tokens": demo_tokens, "state": snapshot(sim)}
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, ensure_ascii=False)
    os.replace(tmp, path)


def persisting(path: Path, sim: Simulator, *, port: Callable[[], int], demo_tokens: list[str]) -> Middleware:
    """A simulator-app middleware that saves the state after every POST, before its answer is sent.
    `port` gives the listening port (known once the site has started)."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        finally:
            if request.method == "POST":
                try:
                    save(path, sim, port=port(), demo_tokens=demo_tokens)
                except OSError as exc:  # a full disk must not break the simulated upstream
                    log.warning("simulator state %s could not be saved (%s)", path, exc)

    return middleware
