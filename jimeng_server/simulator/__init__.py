"""The strict fake Jimeng/Dreamina upstream (an aiohttp app on loopback) used by tests and `--simulate`.

    sim = Simulator(clock=ManualClock(), settings=SimSettings(), seed=1)
    app = sim.create_app()
    sim.add_account("sess-abc", region=Region.CN, vip=100)
    hosts = simulator_hosts("http://127.0.0.1:8123")   # base URLs per region for the client

Prompt markers and scripts: `scripts.py`. Request checks and their `ret` codes: `checks.py`.
"""

from __future__ import annotations

from . import persist
from .app import Simulator, seed_demo
from .faults import Fault, FaultKind
from .hosts import simulator_hosts
from .scripts import Script, Step
from .state import JournalEntry, SimAccount, SimRecord, SimSettings

__all__ = [
    "Fault",
    "FaultKind",
    "JournalEntry",
    "Script",
    "SimAccount",
    "SimRecord",
    "SimSettings",
    "Simulator",
    "Step",
    "persist",
    "seed_demo",
    "simulator_hosts",
]
