"""The operator's model file (`[models] file = "models.toml"`, issue 20): entries that add to or replace the built-in
table (`catalog.py`) without a release. Pure: `parse_model_file` turns the file's text into `ModelSpec` records,
with errors that name the file and the line of the entry at fault.

One table per public model name; every field is optional when `based_on` names a table model to start from:

    ["jimeng-4.7"]                        # replace some facts of a table model
    counts = [1, 2, 3, 4]

    ["jimeng-6.0"]                        # a new model
    kind = "image"
    keys = { cn = "high_aes_general_v60" }
    resolutions = ["2k", "4k"]
    counts = [1, 2, 3, 4]
    default_count = 4

Fields: `kind` ("image" | "video"), `based_on`, `keys` (region -> upstream key), `resolutions`, `counts`,
`default_count`, `forced_count`, `durations` (whole seconds), `vip`, `benefit` (video; `{res}` = resolution),
`min_features`, `draft_mode`, `evidence`.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..config import ConfigError
from . import catalog
from .catalog import RESOLUTIONS, ModelSpec
from .regions import Region

VIDEO_RESOLUTIONS = ("480p", "720p", "1080p", "4k")
_FIELDS = (
    "kind",
    "based_on",
    "keys",
    "resolutions",
    "counts",
    "default_count",
    "forced_count",
    "durations",
    "vip",
    "benefit",
    "min_features",
    "draft_mode",
    "evidence",
)


class ModelFileError(ConfigError):
    """A problem in the operator's model file; the message names the file, the line and the field."""


def _line_of(text: str, name: str) -> int:
    """The line of the `[name]` table header (1-based; 1 when it cannot be found)."""
    pattern = re.compile(r'^[ \t]*\[[ \t]*(?:"' + re.escape(name) + r'"|' + re.escape(name) + r")[ \t]*\]", re.M)
    match = pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else 1


def _ints(value: Any, where: str, low: int, high: int) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where} must be a non-empty list of whole numbers")
    if not all(isinstance(v, int) and not isinstance(v, bool) and low <= v <= high for v in value):
        raise ValueError(f"{where} must hold whole numbers from {low} to {high}, got {value!r}")
    return tuple(sorted(set(value)))


def _strings(value: Any, where: str, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where} must be a list of strings")
    if allowed is not None and any(v not in allowed for v in value):
        raise ValueError(f"{where} must be among {', '.join(allowed)}, got {value!r}")
    return tuple(value)


def _spec(name: str, entry: Mapping[str, Any], table: Mapping[str, ModelSpec]) -> ModelSpec:
    unknown = sorted(set(entry) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown field {unknown[0]}; known fields: {', '.join(_FIELDS)}")
    base_name = entry.get("based_on", name if name in table else None)
    if base_name is not None and base_name not in table:
        raise ValueError(f"based_on {base_name!r} is not a table model")
    base = table.get(base_name) if isinstance(base_name, str) else None
    kind = entry.get("kind", base.kind if base else None)
    if kind not in ("image", "video"):
        raise ValueError(f'kind must be "image" or "video", got {kind!r}')
    if base is not None and base.kind != kind:
        raise ValueError(f"kind {kind!r} differs from {base_name!r} ({base.kind})")
    changes: dict[str, Any] = {"kind": kind, "alias_of": None}
    if "keys" in entry:
        keys = entry["keys"]
        if not isinstance(keys, dict) or not keys:
            raise ValueError("keys must be a table of region = upstream key")
        regions = {r.value: r for r in Region}
        bad = [r for r in keys if r not in regions]
        if bad or not all(isinstance(k, str) and k.strip() for k in keys.values()):
            raise ValueError(f"keys must map regions ({', '.join(regions)}) to upstream keys, got {keys!r}")
        changes["keys"] = {regions[r]: k.strip() for r, k in keys.items()}
    elif base is None:
        raise ValueError("keys is required for a new model (or name a table model in based_on)")
    if "resolutions" in entry:
        allowed = RESOLUTIONS if kind == "image" else VIDEO_RESOLUTIONS
        changes["resolutions"] = _strings(entry["resolutions"], "resolutions", allowed)
    elif base is None and kind == "image":
        raise ValueError("resolutions is required for a new image model")
    if "counts" in entry:
        changes["counts"] = _ints(entry["counts"], "counts", 1, 8)
    for field in ("default_count", "forced_count"):
        if field in entry:
            changes[field] = _ints([entry[field]], field, 1, 8)[0]
    if "durations" in entry:
        changes["durations"] = _ints(entry["durations"], "durations", 1, 180)
    for field in ("vip", "draft_mode"):
        if field in entry:
            if not isinstance(entry[field], bool):
                raise ValueError(f"{field} must be true or false")
            changes[field] = entry[field]
    for field in ("benefit", "evidence"):
        if field in entry:
            if not isinstance(entry[field], str):
                raise ValueError(f"{field} must be a string")
            changes[field] = entry[field]
    if "benefit" in changes:
        try:
            changes["benefit"].format(res="720p")
        except (KeyError, IndexError, ValueError):
            raise ValueError("benefit may hold only {res} (the resolution) in braces") from None
    if "min_features" in entry:
        changes["min_features"] = _strings(entry["min_features"], "min_features")
    spec = dataclasses.replace(base, **changes) if base is not None else ModelSpec(**changes)
    if spec.kind == "image" and spec.default_count not in spec.counts and spec.forced_count is None:
        raise ValueError(f"default_count {spec.default_count} is not among counts {list(spec.counts)}")
    return spec


def parse_model_file(text: str, source: str, table: Mapping[str, ModelSpec]) -> dict[str, ModelSpec]:
    """The entries of a model file as records (based on `table`'s where they name one). Raises ModelFileError
    naming `source`, the line and what to fix."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ModelFileError(f"{source}: invalid TOML: {exc}") from None
    out: dict[str, ModelSpec] = {}
    for name, entry in data.items():
        line = _line_of(text, name)
        if not isinstance(entry, dict):
            raise ModelFileError(f"{source}:{line}: {name!r} must be a table ([\"{name}\"])")
        try:
            out[name] = _spec(name, entry, table)
        except ValueError as exc:
            raise ModelFileError(f"{source}:{line}: model {name!r}: {exc}") from None
    return out


def use_model_file(path: str) -> Callable[[], None]:
    """Read and apply the operator's model file (`[models] file`; nothing when `path` is empty) to the table;
    returns the function that restores the built-in table. Raises ModelFileError (a ConfigError)."""
    if not path:
        return lambda: None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"models.file: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    entries = parse_model_file(text, path, {**catalog.IMAGE_SPECS, **catalog.VIDEO_SPECS})
    return catalog.apply_overrides(entries)
