"""The model list: the built-in table (`upstream/catalog.py`) merged with live discovery (`get_common_config`,
docs/protocol.md §17.4), cached per region for `[upstream] discovery_ttl` seconds.

Discovery never makes a request fail: when it fails (or `discovery_ttl` is 0) the built-in table is used and a
warning is logged; a failure is remembered for at most a minute so a broken upstream is not asked on every call.
A model the upstream lists but the table lacks can be used by its upstream key.

Videos (`video_choice`): the allowed resolutions and durations come from discovery when it lists the key with
them, else from the table; a key only discovery lists is requested by its key or its discovered name. Benefit
types from discovery are used only for a key the table has no record of: the list and the page's own submit
name them differently (§19.13 conflict 4), so the table's captured ones win.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..clock import Clock
from ..upstream import catalog
from ..upstream.client import JimengClient
from ..upstream.discovery import DiscoveredModel, default_video
from ..upstream.errors import UpstreamError
from ..upstream.regions import Region
from ..upstream.tokens import Account

log = logging.getLogger(__name__)

FAILURE_TTL = 60.0
"""Longest time a failed discovery is remembered before it is tried again."""


@dataclass(frozen=True, slots=True)
class Drift:
    """How one region's discovered list differs from the built-in table (for `doctor`)."""

    new: tuple[DiscoveredModel, ...]  # listed upstream, not in the table
    missing: tuple[str, ...]  # table models (public names) whose key the upstream does not list
    renamed: tuple[tuple[str, DiscoveredModel], ...]  # a missing table model and a new key that looks like it
    differs: tuple[str, ...] = ()  # "name: what differs" for table models the upstream lists with other facts


def drift_of(region: Region, found: Sequence[DiscoveredModel]) -> Drift:
    """Compare a region's discovered models with the table. "Renamed" is a guess: a missing table model whose
    version (e.g. "4.7" of jimeng-4.7) appears in the display name of a new key of the same kind."""
    listed = {(m.kind, m.key) for m in found if m.available}
    specs = {**catalog.IMAGE_SPECS, **catalog.VIDEO_SPECS}
    new = tuple(m for m in found if m.available and catalog.name_of_key(m.kind, m.key, region) is None)
    missing = tuple(
        name
        for name, spec in specs.items()
        if spec.alias_of is None and region in spec.keys and (spec.kind, spec.keys[region]) not in listed
    )
    renamed = tuple(
        (name, model)
        for name in missing
        for model in new
        if model.kind == specs[name].kind and (version := _version(name)) and version in model.name
    )
    differs = tuple(
        f"{name}: {note}"
        for m in found
        if m.available and (name := catalog.name_of_key(m.kind, m.key, region)) is not None
        for note in fact_differences(name, m)
    )
    return Drift(new, missing, renamed, differs)


def _span(values: Sequence[int]) -> str:
    return f"{min(values)}-{max(values)}" if len(set(values)) > 1 else str(values[0])


def fact_differences(name: str, found: DiscoveredModel) -> list[str]:
    """Where a table model's record and the upstream's listing of its key disagree: offered counts (a fixed
    count counts as the only one offered), the default count, resolutions, and the duration range. Facts the
    listing leaves out are not compared; benefit types are not either (the list and the page's own submit name
    them differently, docs/protocol.md §20)."""
    spec = catalog.spec_of(name)
    if spec is None:
        return []
    notes: list[str] = []
    if spec.kind == "image":
        offered = (spec.forced_count,) if spec.forced_count else spec.counts
        if found.counts and set(found.counts) != set(offered):
            notes.append(f"n {_span(offered)} in the table, {_span(found.counts)} upstream")
        if found.default_count and found.default_count != (spec.forced_count or spec.default_count):
            notes.append(f"default n {spec.default_count} in the table, {found.default_count} upstream")
    if found.resolutions and spec.resolutions and set(found.resolutions) != set(spec.resolutions):
        ours, theirs = ", ".join(spec.resolutions), ", ".join(found.resolutions)
        notes.append(f"resolutions {ours} in the table, {theirs} upstream")
    if spec.kind == "video" and found.durations:
        ours_s = catalog.allowed_durations(name)
        if (min(ours_s), max(ours_s)) != (min(found.durations), max(found.durations)):
            notes.append(f"{_span(ours_s)} s in the table, {_span(found.durations)} s upstream")
    return notes


def _version(name: str) -> str:
    """The version token of a public name: "4.7" of "jimeng-4.7", "2.0" of "jimeng-video-seedance-2.0-vip"."""
    return next((part for part in name.split("-") if part[:1].isdigit()), "")


@dataclass(frozen=True, slots=True)
class VideoChoice:
    """A video model resolved for one region: its name in answers, upstream key and what it takes."""

    name: str  # the table's public name, or the upstream key of a model only discovery lists
    key: str
    resolutions: tuple[str, ...]  # empty: the body carries no `resolution`
    durations: tuple[int, ...]
    source: str  # "table", "table+discovery" or "discovery"
    benefits: Mapping[str, str]  # discovery's per-resolution benefit types, only for a key the table lacks
    default_duration: int | None = None  # discovery's default, when it names one


def video_choice(model: str, region: Region, found: Sequence[DiscoveredModel] | None) -> VideoChoice | None:
    """`model` (a table name, a discovered key or a discovered display name) in `region`, merging the table with
    the region's discovered list (`found`; None: discovery did not answer). None when neither knows it there.

    Resolutions from discovery only where the table's record takes one (or has no record): a key the table
    sends without `resolution` keeps that body shape; the first (the default) is discovery's `default_val_idx`,
    else the table's default when discovery still offers it. Durations from discovery when it lists any."""
    videos = [m for m in found or [] if m.kind == "video" and m.available]
    keys = catalog.VIDEO_MODELS.get(model)
    if keys is not None:
        if region not in keys:
            return None
        key = keys[region]
        listed = next((m for m in videos if m.key == key), None)
        spec = catalog.spec_of(model)
        table_res = catalog.video_resolutions(model)
        resolutions = table_res
        if listed is not None and listed.resolutions and table_res:
            # The default first: discovery's `default_val_idx`, else the table's default when still offered.
            first = listed.default_resolution or (table_res[0] if table_res[0] in listed.resolutions else None)
            head = (first,) if first else ()
            resolutions = head + tuple(r for r in listed.resolutions if r != first)
        durations = listed.durations if listed is not None and listed.durations else catalog.allowed_durations(model)
        return VideoChoice(
            model,
            key,
            resolutions,
            durations,
            "table+discovery" if listed is not None else "table",
            {} if spec is not None else dict(listed.benefits) if listed is not None else {},
            listed.default_duration if listed is not None else None,
        )
    listed = next((m for m in videos if m.key == model), None) or next(
        (m for m in videos if m.name and m.name == model), None
    )
    if listed is None:
        return None
    table_name = catalog.name_of_key("video", listed.key, region)
    if table_name is not None:  # asked by the discovered name of a table model
        return video_choice(table_name, region, found)
    return VideoChoice(
        listed.key,
        listed.key,
        listed.resolutions,
        listed.durations or catalog.allowed_durations(listed.key),
        "discovery",
        dict(listed.benefits),
        listed.default_duration,
    )


def discovered_default(region: Region, found: Sequence[DiscoveredModel] | None, *, not_key: str = "") -> str | None:
    """The model to use when none is named and the table's default is withdrawn: the site's default video model
    in the region's discovered list (its table name when the table knows its key), never `not_key`."""
    rest = [m for m in found or [] if m.key != not_key]
    chosen = default_video(rest)
    if chosen is None:
        return None
    return catalog.name_of_key("video", chosen.key, region) or chosen.key


def default_withdrawn(region: Region, found: Sequence[DiscoveredModel] | None) -> bool:
    """True when discovery answered with video models and the table's default video key is not among them."""
    keys = catalog.VIDEO_MODELS.get(catalog.DEFAULT_VIDEO_MODEL, {})
    videos = [m for m in found or [] if m.kind == "video" and m.available]
    return bool(videos) and region in keys and all(m.key != keys[region] for m in videos)


class ModelRegistry:
    """Per-region discovery cache over one client."""

    def __init__(self, client: JimengClient, clock: Clock, *, ttl: float) -> None:
        self.client = client
        self.clock = clock
        self.ttl = ttl
        self._cache: dict[Region, tuple[float, list[DiscoveredModel] | None]] = {}
        self._locks: dict[Region, asyncio.Lock] = {}

    def cached(self, region: Region) -> list[DiscoveredModel] | None:
        """The region's discovered models while fresh, else None."""
        hit = self._cache.get(region)
        if hit is None or hit[1] is None or self.clock.time() - hit[0] >= self.ttl:
            return None
        return hit[1]

    async def refresh(self, account: Account) -> list[DiscoveredModel] | None:
        """The models of the account's region: from cache while fresh, else asked with this account (one call
        at a time per region). None when discovery is off or failed (the table is then used)."""
        if self.ttl <= 0:
            return None
        region = account.region
        lock = self._locks.setdefault(region, asyncio.Lock())
        async with lock:
            hit = self._cache.get(region)
            now = self.clock.time()
            if hit is not None and now - hit[0] < (self.ttl if hit[1] is not None else min(self.ttl, FAILURE_TTL)):
                return hit[1]
            try:
                found: list[DiscoveredModel] | None = await self.client.discover_models(account)
            except UpstreamError as exc:
                log.warning("model discovery failed for region %s, using the built-in table: %s", region, exc.reason)
                found = None
            self._cache[region] = (now, found)
            return found

    def find(self, region: Region, kind: str, key: str) -> DiscoveredModel | None:
        """A fresh discovered model of `kind` with upstream `key` in `region`, else None."""
        return next((m for m in self.cached(region) or [] if m.kind == kind and m.key == key), None)

    async def for_video(self, account: Account, model: str, named: bool) -> list[DiscoveredModel] | None:
        """The account's region's discovered list for a video request: asked (cached) when a named model is not
        a table name but has an upstream key's shape (it may be a key only discovery lists); else only what is
        already cached, so a table model or a mistyped name costs no upstream call (a discovered display name is
        resolved from the cache; a withdrawn default is found by the upstream's ret 2061: `VideoService`)."""
        if named and model not in catalog.VIDEO_MODELS and catalog.looks_like_key(model):
            return await self.refresh(account)
        return self.cached(account.region)

    @staticmethod
    def choose_video(
        region: Region, found: Sequence[DiscoveredModel] | None, model: str, named: bool
    ) -> VideoChoice | None:
        """`video_choice` of `model`, or, when the caller named none and discovery answered without the table's
        default, of the discovered default (the site's default model)."""
        if not named and default_withdrawn(region, found):
            model = discovered_default(region, found) or model
        return video_choice(model, region, found)

    def names(self, kind: str, region: Region) -> list[str]:
        """What a caller may send as `model` in `region`: the table's names, then discovered keys it lacks."""
        names = catalog.models_for(kind, region)
        extra = [
            m.key
            for m in self.cached(region) or []
            if m.kind == kind and m.available and catalog.name_of_key(kind, m.key, region) is None
        ]
        return names + extra


def listing(discovered: dict[Region, list[DiscoveredModel]]) -> list[dict[str, Any]]:
    """The `/v1/models` entries: every table model with what it takes, its `evidence` (§17) and `source`
    ("table", or "table+discovery" when an asked region's upstream lists its key: a video's resolutions and
    durations are then the merged ones of `video_choice` for the first such region), then each model only
    discovery found (`source` "discovery", id = its upstream key; videos with their `benefit_types`)."""
    data: list[dict[str, Any]] = []
    for name, spec in [*catalog.IMAGE_SPECS.items(), *catalog.VIDEO_SPECS.items()]:
        regions = [r for r in Region if r in spec.keys]
        confirmed = [r.value for r in regions if any(m.key == spec.keys[r] for m in discovered.get(r, []))]
        entry: dict[str, Any] = {
            "id": name,
            "object": "model",
            "owned_by": "jimeng-server",
            "type": spec.kind,
            "regions": [r.value for r in regions],
            "upstream_keys": {r.value: spec.keys[r] for r in regions},
            "resolutions": list(spec.resolutions),
            "vip": spec.vip,
            "credits": dict(spec.credits) or None,
            "source": "table+discovery" if confirmed else "table",
            "discovered_in": confirmed,
            "evidence": spec.evidence or None,
        }
        if spec.kind == "image":
            entry.update(counts=list(spec.counts), default_count=spec.default_count)
        else:
            entry["durations"] = list(catalog.allowed_durations(name))
            merged = next(
                (c for r in regions if r.value in confirmed and (c := video_choice(name, r, discovered[r]))), None
            )
            if merged is not None:  # discovery's resolutions and durations win where it lists them
                entry.update(resolutions=list(merged.resolutions), durations=list(merged.durations))
        if spec.alias_of:
            entry["alias_of"] = spec.alias_of
        data.append(entry)
    for region, found in discovered.items():
        for m in found:
            if not m.available or catalog.name_of_key(m.kind, m.key, region) is not None:
                continue
            entry = {
                "id": m.key,
                "object": "model",
                "owned_by": "jimeng-server",
                "type": m.kind,
                "name": m.name,
                "regions": [region.value],
                "upstream_keys": {region.value: m.key},
                "resolutions": list(m.resolutions),
                "vip": None,
                "credits": None,
                "source": "discovery",
                "discovered_in": [region.value],
            }
            if m.kind == "image":
                entry.update(counts=list(m.counts), default_count=m.default_count)
            else:
                entry.update(
                    durations=list(m.durations),
                    benefit_types=dict(m.benefits),
                    ratios=list(m.ratios),
                    inputs=list(m.inputs),
                )
            data.append(entry)
    return data
