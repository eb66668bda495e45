"""When to look at a task again: completion times learned from this server's own finished tasks.

`CompletionTimes` keeps, per profile (`"image:jimeng-4.5"`: kind and model), the seconds from submit to the
final status of the last `samples` tasks that finished, and answers with the empirical distribution (linear
interpolation between the sorted samples). The watcher asks `next_look(profile, checked, ...)`: given that
the task was not final `checked` seconds after submit (0 before its first poll), the elapsed time at which the
chance that it has finished since reaches `poll_at` (when its own poll is due) and `ride_along` (from when it
joins a poll that another task of the same account triggers, at no extra call). None while the profile has
fewer than `min_samples` samples, or once the task has outlived every sample: the caller then uses its
configured schedule.

`finish_estimate()` turns what a poll saw into one sample: the upstream's own finish time (whole seconds,
`task.finish_time - created_time`) clipped into the window the polls prove (after the last look that saw it
running, no later than the look that saw it final).

`forecast_look()` is the same answer from the upstream's own forecast (the seconds a running record's answer
says it still takes, `upstream.history.forecast_left`), scaled by what this server saw of that profile's
forecasts: `learn_forecast()` keeps, beside the profile's times, the ratios of real to forecast seconds, and
`forecast_scale()` is their median (1 until `min_samples` of them), so an upstream whose forecasts run long or
short is corrected. `choose_look()` is the one decision the watcher asks:
the forecast when the task's last answer carried one (`[watcher] use_forecast`), else the learned times, each
looked at sooner when the account has many tasks in flight.

Pure data and arithmetic; `dumps()`/`loads()` give the JSON kept across restarts (`[watcher] timings_file`).
"""

from __future__ import annotations

import bisect
import json
import logging
from collections import deque
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

FORMAT = 1
"""Version of the JSON written by `dumps()`; `loads()` ignores other versions (learning starts again)."""
MAX_SCALE = 16.0
"""`forecast_scale()` stays within [1/MAX_SCALE, MAX_SCALE]."""


class CompletionTimes:
    """Learned submit-to-final seconds per profile (see the module doc). Not thread-safe (one event loop)."""

    def __init__(self, *, samples: int = 64, min_samples: int = 5) -> None:
        if samples < 1 or min_samples < 1:
            raise ValueError("samples and min_samples must be at least 1")
        self.samples = samples
        self.min_samples = min_samples
        self._recent: dict[str, deque[float]] = {}
        self._sorted: dict[str, list[float]] = {}  # cache of sorted(self._recent[p]); dropped when it changes
        self.learned = 0
        """Samples added since start (the watcher saves the file every so many)."""

    def learn(self, profile: str, seconds: float) -> None:
        """Add one finished task's submit-to-final seconds (negative or non-finite values are ignored)."""
        if not seconds >= 0.0 or seconds == float("inf"):
            return
        recent = self._recent.get(profile)
        if recent is None:
            recent = self._recent[profile] = deque(maxlen=self.samples)
        recent.append(seconds)
        self._sorted.pop(profile, None)
        self.learned += 1

    def known(self, profile: str) -> list[float] | None:
        """The profile's samples sorted, or None with fewer than `min_samples`."""
        xs = self._sorted.get(profile)
        if xs is None:
            recent = self._recent.get(profile)
            if recent is None or len(recent) < self.min_samples:
                return None
            xs = self._sorted[profile] = sorted(recent)
        return xs

    def next_look(self, profile: str, checked: float, poll_at: float, ride_along: float) -> tuple[float, float] | None:
        """`(ride, due)`: elapsed seconds since submit at which a task not final at `checked` has reached a
        `ride_along` and a `poll_at` chance of having finished since `checked` (0 < ride_along <= poll_at < 1).
        None when the profile is not known well enough or the task has outlived every sample."""
        xs = self.known(profile)
        if xs is None:
            return None
        base = _cdf(xs, checked)
        if base >= 1.0:
            return None
        due = _quantile(xs, base + poll_at * (1.0 - base))
        ride = _quantile(xs, base + ride_along * (1.0 - base))
        return max(ride, checked), max(due, checked)

    def learn_forecast(self, profile: str, at: float, left: float, finished: float) -> None:
        """Add one ratio of real to forecast seconds: the answer `at` seconds after submit forecast `left` more
        seconds, and the task finished `finished` seconds after submit. Forecasts under a second are too coarse
        to count (the upstream gives whole seconds)."""
        if left >= 1.0:
            self.learn(forecast_profile(profile), max(0.0, finished - at) / left)

    def forecast_scale(self, profile: str) -> float:
        """The median learned ratio of real to forecast seconds of `profile` ("" or fewer than `min_samples`
        ratios: 1.0), kept within [1/16, 16]."""
        xs = self.known(forecast_profile(profile)) if profile else None
        return 1.0 if xs is None else min(MAX_SCALE, max(1.0 / MAX_SCALE, _quantile(xs, 0.5)))

    def dumps(self) -> str:
        """The samples as JSON (profile -> seconds, oldest first)."""
        data = {"format": FORMAT, "samples": {p: [round(s, 3) for s in xs] for p, xs in self._recent.items()}}
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    def loads(self, text: str) -> int:
        """Take the samples of a `dumps()` text (the newest `samples` per profile); returns how many profiles.
        A text that is not such JSON is ignored with a warning (learning starts again)."""
        try:
            data = json.loads(text)
        except ValueError:
            log.warning("learned completion times unreadable; learning again")
            return 0
        samples = data.get("samples") if isinstance(data, dict) and data.get("format") == FORMAT else None
        if not isinstance(samples, Mapping):
            log.warning("learned completion times in an unknown format; learning again")
            return 0
        taken = 0
        for profile, values in samples.items():
            if isinstance(profile, str) and isinstance(values, list):
                for value in values:
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        self.learn(profile, float(value))
                taken += 1
        self.learned = 0
        return taken


def forecast_look(checked: float, left: float, slack: float, poll_at: float, ride_along: float) -> tuple[float, float]:
    """`(ride, due)` like `CompletionTimes.next_look`, from a forecast: a task seen running `checked` seconds after
    submit, whose answer then said it takes `left` more seconds, is taken to end uniformly within `slack` seconds
    either side of `checked + left` (never before `checked`); `ride` and `due` are the `ride_along` and `poll_at`
    points of that window (0 <= ride_along <= poll_at <= 1). With `slack` 0 both are the forecast end."""
    low = checked + max(0.0, left - slack)
    high = checked + left + slack
    return low + ride_along * (high - low), low + poll_at * (high - low)


def choose_look(
    times: CompletionTimes,
    profile: str,
    checked: float,
    forecast: float | None,
    *,
    crowd: int,
    poll_at: float,
    ride_along: float,
    slack: float,
) -> tuple[float, float] | None:
    """The one decision of when to look at a running task next, as `(ride, due)` seconds after submit: from the
    upstream's `forecast` (seconds left as of `checked`, the last answer's; `forecast_look`, scaled by
    `forecast_scale(profile)`) when there is one,
    else from the learned times of `profile` ("" = none; `CompletionTimes.next_look`); None when neither knows
    (the caller's fixed schedule applies). With `crowd` (k >= 1) watches on one account, each is looked at when
    its own chance reaches 1 - (1 - poll_at)^(1/k), so that one of them has probably ended by then."""
    share = 1.0 - (1.0 - poll_at) ** (1.0 / max(1, crowd))
    ride = min(ride_along, share)
    if forecast is not None:
        return forecast_look(checked, forecast * times.forecast_scale(profile), slack, share, ride)
    if not profile:
        return None
    return times.next_look(profile, checked, share, ride)


def profile_of(kind: str, model: str) -> str:
    """The key completion times are learned under: the task's kind and model."""
    return f"{kind}:{model}"


def forecast_profile(profile: str) -> str:
    """The key a profile's ratios of real to forecast seconds are kept under (beside its times, same file)."""
    return f"{profile}|forecast"


def finish_estimate(raw: Mapping[str, Any], checked: float, seen: float) -> float:
    """Submit-to-final seconds of a task first seen final `seen` seconds after submit, last seen running at
    `checked`: the upstream's `task.finish_time - created_time` (whole seconds, so +0.5) clipped into
    [`checked`, `seen`]; `seen` when the record gives no usable times."""
    task = raw.get("task")
    finish = task.get("finish_time") if isinstance(task, Mapping) else None
    created = raw.get("created_time")
    finished, started = _positive(finish), _positive(created)
    if finished is not None and started is not None:
        return min(seen, max(checked, finished + 0.5 - started))
    return seen


def _positive(value: Any) -> float | None:
    """`value` as a float when it is a positive number (not a bool), else None."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def _quantile(xs: list[float], p: float) -> float:
    """The empirical `p` quantile of sorted `xs` (linear between order statistics)."""
    if len(xs) == 1:
        return xs[0]
    pos = min(max(p, 0.0), 1.0) * (len(xs) - 1)
    i = int(pos)
    if i >= len(xs) - 1:
        return xs[-1]
    return xs[i] + (xs[i + 1] - xs[i]) * (pos - i)


def _cdf(xs: list[float], t: float) -> float:
    """The inverse of `_quantile`: the share of sorted `xs` at or below `t` (linear between order statistics)."""
    if t < xs[0]:
        return 0.0
    if t >= xs[-1]:
        return 1.0
    i = bisect.bisect_right(xs, t) - 1  # xs[i] <= t < xs[i + 1]
    span = xs[i + 1] - xs[i]
    frac = (t - xs[i]) / span if span > 0 else 0.0
    return (i + frac) / (len(xs) - 1)
