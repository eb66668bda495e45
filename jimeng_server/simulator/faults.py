"""Fault injection (docs/protocol.md §14.28): per API-path suffix, for chosen call numbers.

`Simulator.inject(suffix, fault, times=1, skip=0)` adds a rule. Each rule counts the calls whose API path ends with
its suffix on its own: the first `skip` of them pass, the next `times` get the fault. When several rules are due on
one call, the oldest fires and the others keep their turn.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    """What the simulator does instead of (or before) answering normally."""

    HTTP_500 = "http_500"  # HTTP 500 with a non-JSON body
    HTTP_429 = "http_429"  # HTTP 429 with a non-JSON body and Retry-After: 1
    DELAY = "delay"  # answer normally after `delay` real seconds (asyncio.sleep)
    HOLD = "hold"  # answer normally once the fault's `hold` event is set (a call held in flight)
    RESET = "reset"  # close the connection without any response
    RET = "ret"  # HTTP 200 envelope with `ret` / `errmsg`
    MALFORMED_JSON = "malformed_json"  # HTTP 200, application/json, body is not valid JSON
    MISSING_AIGC_DATA = "missing_aigc_data"  # ret "0" with data {}


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault. `ret`/`errmsg` are used by RET, `delay` (real seconds) by DELAY, `hold` by HOLD."""

    kind: FaultKind
    ret: str = "1019"
    errmsg: str = "shark not pass"
    delay: float = 0.0
    hold: asyncio.Event | None = None


@dataclass
class FaultRule:
    """A pending injection."""

    suffix: str
    fault: Fault
    times: int
    skip: int


class FaultPlan:
    """The pending injections, consulted once per request."""

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []

    def add(self, suffix: str, fault: Fault, *, times: int = 1, skip: int = 0) -> None:
        """Queue a rule; `times` < 1 is a no-op."""
        if times > 0:
            self.rules.append(FaultRule(suffix, fault, times, max(0, skip)))

    def take(self, path: str) -> Fault | None:
        """The fault for this call of `path`, if any, advancing every matching rule's counters."""
        fired: Fault | None = None
        for rule in self.rules:
            if not path.endswith(rule.suffix):
                continue
            if rule.skip > 0:
                rule.skip -= 1
            elif fired is None:
                fired = rule.fault
                rule.times -= 1
        self.rules = [r for r in self.rules if r.times > 0]
        return fired
