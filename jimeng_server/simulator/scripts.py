"""History timelines (scripts) and the prompt markers that select them (docs/protocol.md §14.15–19).

A record follows a `Script`, a list of `Step(status, items, fail_code)`. The step shown at sim-clock time `now`
is `steps[min(len - 1, int((now - created_at) / step_seconds))]` (image step 1.0 s, video step 3.0 s by default).

Prompt markers (anywhere in the prompt, case-sensitive):

- (none)            default image script: 20(0) -> 20(1) -> 42(2) -> 45(4) -> 10(4);
                    blend (image-to-image): 20(0) -> 42(0) -> 10(1)
                    default video script: 20(0) -> 20(0) -> 45(1) -> 10(1)
- `[sim:fail]`      20(0) -> 20(0) -> 30(0), fail_code "2038" (content safety after submission)
- `[sim:partial]`   20(0) -> 20(1) -> 30(1), fail_code "1001"
- `[sim:stuck]`     20(1) forever
- `[sim:stuck0]`    20(0) forever
- `[sim:status50]`  the default script but the final status is 50
- `[sim:unknown]`   99(0) for 3 steps, then 10(4)
- `[sim:empty]`     20(0) -> 50(0)
- `[sim:hidden=N]`  omit the record from get_history_by_ids for its first N polls (default settings.hidden_polls)
- `[sim:expire]`    the account's session expires right after the first poll that includes this record
- `[sim:refuse]`    generate is refused at once with ret "2038" text_security_block (no record, no charge)
- `[sim:precheck]`  20(0) -> 10(0): the JS enum's pre_check_reject (§19.2)
- `[sim:postcheck]` 20(0) -> 20(1) -> 40(0): post_check_reject, rejected after generating (§19.2)
- `[sim:deleted]`   20(0) -> 20(1) -> 100(0): deleted (§19.2)

The first script marker wins; `hidden`, `expire` combine with any script. `Simulator.next_script`, when set,
overrides the script of the next generate. Items are numbered from 0 and only ever grow with the steps given.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import overload

FINAL_STATUSES = frozenset({10, 30, 40, 50, 100})


@dataclass(frozen=True, slots=True)
class Step:
    """One point of a timeline: upstream `status`, how many items are visible, and the `fail_code`."""

    status: int
    items: int
    fail_code: str = ""

    @property
    def final(self) -> bool:
        """True for 10, 30, 40, 50 and 100 (§19.2)."""
        return self.status in FINAL_STATUSES


class Script(Sequence[Step]):
    """An immutable, non-empty timeline of steps. `Script([Step(20, 0), Step(10, 4)])` or `Script(steps=...)`."""

    __slots__ = ("_steps", "name")

    def __init__(self, steps: Iterable[Step], name: str = "custom") -> None:
        self._steps = tuple(steps)
        if not self._steps:
            raise ValueError("a Script needs at least one Step")
        self.name = name

    @overload
    def __getitem__(self, index: int) -> Step: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Step]: ...
    def __getitem__(self, index: int | slice) -> Step | Sequence[Step]:
        return self._steps[index]

    def __len__(self) -> int:
        return len(self._steps)

    def __iter__(self) -> Iterator[Step]:
        return iter(self._steps)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Script):
            return self._steps == other._steps
        if isinstance(other, (list, tuple)):
            return list(self._steps) == list(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._steps)

    def __repr__(self) -> str:
        return f"Script({list(self._steps)!r}, name={self.name!r})"

    @property
    def max_items(self) -> int:
        """The most items any step shows."""
        return max(s.items for s in self._steps)

    @property
    def final_index(self) -> int | None:
        """The index of the first final step (None: the script never ends)."""
        return next((i for i, step in enumerate(self._steps) if step.final), None)

    @property
    def queued_steps(self) -> int:
        """How many leading steps show status 20 with no items: the record's time in the upstream's queue."""
        return next((i for i, step in enumerate(self._steps) if (step.status, step.items) != (20, 0)), len(self))

    def at(self, elapsed: float, step_seconds: float) -> tuple[int, Step]:
        """The step index and step shown `elapsed` seconds after creation."""
        index = 0 if step_seconds <= 0 else int(max(0.0, elapsed) / step_seconds)
        index = min(len(self._steps) - 1, index)
        return index, self._steps[index]


def as_script(value: Script | Sequence[Step]) -> Script:
    """Accept a Script or a plain list of steps."""
    return value if isinstance(value, Script) else Script(value)


DEFAULT_IMAGE_SCRIPT = Script([Step(20, 0), Step(20, 1), Step(42, 2), Step(45, 4), Step(10, 4)], "default")
DEFAULT_BLEND_SCRIPT = Script([Step(20, 0), Step(42, 0), Step(10, 1)], "default-blend")
DEFAULT_VIDEO_SCRIPT = Script([Step(20, 0), Step(20, 0), Step(45, 1), Step(10, 1)], "default-video")

MARKER_SCRIPTS: dict[str, Script] = {
    "fail": Script([Step(20, 0), Step(20, 0), Step(30, 0, "2038")], "fail"),
    "partial": Script([Step(20, 0), Step(20, 1), Step(30, 1, "1001")], "partial"),
    "stuck": Script([Step(20, 1)], "stuck"),
    "stuck0": Script([Step(20, 0)], "stuck0"),
    "status50": Script([Step(20, 0), Step(20, 1), Step(42, 2), Step(45, 4), Step(50, 4)], "status50"),
    "unknown": Script([Step(99, 0), Step(99, 0), Step(99, 0), Step(10, 4)], "unknown"),
    "empty": Script([Step(20, 0), Step(50, 0)], "empty"),
    "precheck": Script([Step(20, 0), Step(10, 0)], "precheck"),
    "postcheck": Script([Step(20, 0), Step(20, 1), Step(40, 0)], "postcheck"),
    "deleted": Script([Step(20, 0), Step(20, 1), Step(100, 0)], "deleted"),
}

_MARKER = re.compile(r"\[sim:([a-z0-9_]+)(?:=(\d+))?\]")


@dataclass(frozen=True, slots=True)
class Markers:
    """What the prompt markers of one prompt ask for."""

    script: Script | None = None
    hidden_polls: int | None = None
    expire: bool = False
    refuse: bool = False


def parse_markers(prompt: str) -> Markers:
    """Read the `[sim:...]` markers of a prompt; unknown markers are ignored."""
    script: Script | None = None
    hidden: int | None = None
    expire = refuse = False
    for match in _MARKER.finditer(prompt):
        name, arg = match.group(1), match.group(2)
        if name in MARKER_SCRIPTS and script is None and arg is None:
            script = MARKER_SCRIPTS[name]
        elif name == "hidden" and arg is not None:
            hidden = int(arg)
        elif name == "expire":
            expire = True
        elif name == "refuse":
            refuse = True
    return Markers(script, hidden, expire, refuse)


def default_script(kind: str, generate_type: str = "", count: int | None = None) -> Script:
    """The script a record of `kind` (and draft `generate_type`) follows when no marker or override picks another.

    Blend (image-to-image) records make 1 image and text-to-image ones 4, unless the body asked for `count`
    images; images then arrive one by one as on the 2026 site (§17.9).
    """
    if kind == "video":
        return DEFAULT_VIDEO_SCRIPT
    if count is None:
        return DEFAULT_BLEND_SCRIPT if generate_type == "blend" else DEFAULT_IMAGE_SCRIPT
    if generate_type == "blend":
        return Script([Step(20, 0), Step(42, 0), Step(10, count)], f"blend-{count}")
    steps = [Step(20, 0), Step(20, min(1, count)), Step(42, min(2, count)), Step(45, count), Step(10, count)]
    return Script(steps, f"images-{count}")
