"""What an upstream refusal made before anything was spent is about, and how long it benches what it is about:
the one refusal and cool-down policy of the raw-token and the pooled submit loops (`services/accounts.py`).

A refusal is scoped to its cause:

- **model**: the risk control refusing one model on one account (1019 "wants a browser" for Seedance 2.0, 4013
  for a paid model on a free account). The account keeps serving every other model; the pair (account, model)
  rests for `risk_seconds`. When every account refuses the model, the request ends with the upstream's reason
  and nobody is benched for other models.
- **account**: a refused or expired session (1015), a penalised or blocked account (1018, 1021, `risk_seconds`),
  too few credits, a rate limit or a full queue (the rate-limit class of upstream/codes.py, 5001), or a balance
  read that failed (transport, proxy, HTTP error: the account is unhealthy, the request moves on).
  The whole account rests.

Anything else (content refused, the upstream down for everyone, bad parameters) is no refusal: it ends the
request at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from ..clock import Clock
from ..errors import ACCOUNT_REFUSAL_CODES, RISK_CODES, ApiError
from ..store.pool import Cooldown

__all__ = ["Cooldown", "Cooldowns", "Refusal", "RefusalPolicy", "Scope", "unhealthy"]

MODEL_CODES: Final = frozenset({"UPSTREAM_RISK_CONTROL", "RISK_CONTROL_REJECTED"})
"""Refusals of one model on one account (1019, 4013)."""
ACCOUNT_RISK_CODES: Final = RISK_CODES - MODEL_CODES
"""Refusals of the account by the risk control (1018 penalised, 1021 / −6 blocked): it rests for the risk
cool-down."""
BUSY_CODES: Final = ACCOUNT_REFUSAL_CODES - RISK_CODES
"""The upstream's rate limits and full queue for this account (the rate-limit class of upstream/codes.py, 5001):
the account rests for the ordinary cool-down and the next one is tried."""
SESSION_CODES: Final = frozenset({"TOKEN_EXPIRED", "INVALID_TOKEN", "INSUFFICIENT_CREDITS"})
"""Refusals of the account's session or balance (1015, no credits)."""

SETUP_CODES: Final = frozenset(
    {"UPSTREAM_VERSION_REJECTED", "UPSTREAM_FRAME_REJECTED", "UPSTREAM_PARAM_ERROR", "RELAY_UNAVAILABLE"}
)
"""Failures of the server's configuration (client version, frame, relay): no account is to blame for them."""


class Scope(StrEnum):
    MODEL = "model"
    ACCOUNT = "account"


@dataclass(frozen=True, slots=True)
class Refusal:
    """How a refusal benches what it is about: the scope, for how long, and the error (its code is the reason)."""

    scope: Scope
    seconds: float
    error: ApiError

    @property
    def reason(self) -> str:
        return self.error.code


@dataclass(frozen=True, slots=True)
class RefusalPolicy:
    """Cool-down lengths: `seconds` for session and balance refusals, `risk_seconds` for the risk control."""

    seconds: float
    risk_seconds: float

    def of_submit(self, err: ApiError, model: str | None) -> Refusal | None:
        """The refusal `err` (raised by the balance check or the generate, nothing spent) is, or None when the
        request must end with it. A model refusal without a known model benches the account."""
        if err.code in MODEL_CODES:
            return Refusal(Scope.MODEL if model else Scope.ACCOUNT, self.risk_seconds, err)
        if err.code in ACCOUNT_RISK_CODES:
            return Refusal(Scope.ACCOUNT, self.risk_seconds, err)
        if err.code in SESSION_CODES or err.code in BUSY_CODES:
            return Refusal(Scope.ACCOUNT, self.seconds, err)
        return None

    def of_balance_read(self, err: ApiError) -> Refusal | None:
        """A balance read that failed before the submit (the upstream refused the account, answered an HTTP
        error, or could not be reached through the account's proxy): the account rests; nothing was spent, the
        request moves on. None for failures of the server's own set-up (`SETUP_CODES`), which every account
        would meet."""
        if err.code in SETUP_CODES:
            return None
        return self.of_submit(err, None) or Refusal(Scope.ACCOUNT, self.seconds, err)


def unhealthy(code: str) -> bool:
    """True for the reason of a failed balance read that a later read may cure (transport, proxy, HTTP error,
    timeout): not a refusal of the session, the credits or a model, nor the server's own set-up."""
    known = MODEL_CODES | ACCOUNT_RISK_CODES | SESSION_CODES | BUSY_CODES | SETUP_CODES
    return code not in known | {"SECRET_UNREADABLE"}


class Cooldowns:
    """The cool-downs this process keeps for raw tokens (keyed by the token's fingerprint): the whole token or one
    model on it. They stay in memory because a raw token has no stored account to hang them on, so they are
    this process's alone; pool accounts rest in the store instead (the account's `cooldown_until`, and
    `store.base.ModelCooldownStore` for one model: shared by every replica and shown by `accounts list`).
    Expired entries are dropped as they are read."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._by: dict[str | int, dict[str | None, Cooldown]] = {}  # who -> model (None: all) -> cool-down

    def add(self, who: str | int, model: str | None, seconds: float, err: ApiError) -> Cooldown:
        """Rest `model` (None: the whole account) on `who` for `seconds` because of `err`."""
        cool = Cooldown(model, self.clock.time() + seconds, err.code, err.message)
        self._by.setdefault(who, {})[model] = cool
        return cool

    def rest(self, who: str | int, refusal: Refusal, model: str | None) -> Cooldown:
        """Rest what `refusal` is about: `model` on `who` for a model refusal (with a model), else all of `who`."""
        return self.add(who, model if refusal.scope is Scope.MODEL else None, refusal.seconds, refusal.error)

    def get(self, who: str | int, model: str | None) -> Cooldown | None:
        """The cool-down of `model` on `who` while it lasts (None for no model)."""
        if model is None:
            return None
        return self._live(who, model)

    def of(self, who: str | int, model: str | None = None) -> Cooldown | None:
        """What rests `who` now for a request of `model`: the whole account's cool-down, else the model's."""
        return self._live(who, None) or self.get(who, model)

    def end(self, who: str | int) -> None:
        """End the whole-account cool-down of `who` (it was just accepted); its model cool-downs stay."""
        self._by.get(who, {}).pop(None, None)

    def _live(self, who: str | int, model: str | None) -> Cooldown | None:
        held = self._by.get(who, {})
        cool = held.get(model)
        if cool is None or cool.until > self.clock.time():
            return cool
        del held[model]  # ended: dropped as it is read
        if not held:
            del self._by[who]
        return None
