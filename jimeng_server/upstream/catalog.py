"""The model catalogue: public model names -> upstream keys per region, with what each model takes (resolutions,
durations, image counts), whether it needs a paid subscription, and the evidence (docs/protocol.md §6, §17).
Pure data and pure lookups.

Unlike the reference there are no silent fallbacks: a model a region lacks is an error naming the models the
region has. Live discovery (`get_common_config`, §17.4) can add to this table at run time
(`services/model_list.py`); this is the built-in fallback.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .regions import Region

_ALL = (Region.CN, Region.US, Region.HK, Region.JP, Region.SG)
_ASIA = (Region.HK, Region.JP, Region.SG)
_CN = (Region.CN,)
_CN_ASIA = (Region.CN, *_ASIA)


def _keys(key: str, regions: tuple[Region, ...]) -> dict[Region, str]:
    return {r: key for r in regions}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One public model: its upstream key per region and what it accepts.

    `resolutions` are what a caller may choose (images: "1k".."4k"; videos: "480p".."4k", empty = the model takes
    no resolution field). `counts` (images) are the allowed `n` and `default_count` what the upstream makes
    without one. `durations` (videos) in seconds. `vip`: needs a paid subscription. `credits`: credits per image
    (images) or per second (videos) by resolution, only where measured (§17.1, §17.3). `alias_of` names the
    current name of a renamed model. `evidence` cites §17.
    """

    kind: str
    keys: Mapping[Region, str]
    resolutions: tuple[str, ...] = ()
    counts: tuple[int, ...] = (1, 2, 3, 4)
    default_count: int = 4
    durations: tuple[int, ...] = ()
    vip: bool = False
    credits: Mapping[str, int] = field(default_factory=dict)
    alias_of: str | None = None
    evidence: str = ""
    # Video draft fields (§19.1): `min_features` entries the draft must carry, and `draft_mode` for a draft
    # ("样片") model (`is_draft_mode`, `min_version` = da_version). `limit_note` explains the duration limit.
    min_features: tuple[str, ...] = ()
    draft_mode: bool = False
    limit_note: str = ""
    # Images: the count the upstream makes whatever is asked (mj82 makes 4, §19.6).
    forced_count: int | None = None
    # Videos: the `benefit_type` ({res} = the resolution; empty: DEFAULT_VIDEO_BENEFIT), and which of the omni
    # benefit types (0 pro, 1 fast; None: no omni mode) applies.
    benefit: str = ""
    omni_index: int | None = None
    # Images: `intelligent_ratio` is honoured (§7.2, PR #171 adds 4.7); story keywords switch to multi-image (§7.5).
    intelligent_ratio: bool = False
    multi_image: bool = False


_IMG_OLD = ("1k", "2k", "4k")
_COUNTS_4X = tuple(range(1, 9))  # 4.0-4.7: n 1-8 in the live config of 2026-09-20 (§19.6, PY §11)
_SEEDANCE_2_SECONDS = tuple(range(4, 16))  # Seedance 2.0: whole seconds 4-15 (§6.4, §17.3, §19.1)
_SEEDANCE_25_SECONDS = tuple(range(4, 31))  # Seedance 2.5: 96-720 frames = 4-30 s (§19.1)
SEEDANCE25_FEATURE = "AIGC_Video_Seedance25ResultAction"
"""`draft_content.min_features` entry of every `seedance_45` key (§19.1)."""
_LONG_VIDEO_NOTE = (
    "clips of 30-180 s (the site's long-video mode) are not supported: their request shape is not known "
    "(docs/protocol.md §19.1)"
)

IMAGE_SPECS: dict[str, ModelSpec] = {
    "jimeng-5.0-pro": ModelSpec(
        "image",
        _keys("high_aes_general_v50p_large", _CN),
        ("1.5k", "2k", "4k"),
        counts=(1, 2, 3, 4),
        default_count=2,
        evidence="§17.2: key seen in captures of the CN site (2026-08); no generate result reported",
    ),
    "jimeng-5.0-flash": ModelSpec(
        "image",
        _keys("high_aes_general_v50_flash", _CN),
        ("2k", "1.5k"),
        counts=(1, 2, 3, 4),
        default_count=4,
        credits={"2k": 3},
        evidence="§19.6: Seedream 5.0 Flash, config read 2026-09-23 and a measured run (3 credits per 2k image)",
    ),
    "jimeng-mj82": ModelSpec(
        "image",
        _keys("jm_image_model_yc_mj82", _CN),
        ("1k", "2k"),
        counts=(1, 2, 3, 4),
        default_count=4,
        forced_count=4,
        evidence="§19.6: 图片美学模型 V8.2, seven measured runs (2026-10-02): always 4 images; 1k 5, 2k 7 per image",
    ),
    "jimeng-5.0-lite": ModelSpec(
        "image",
        _keys("high_aes_general_v50", _CN_ASIA),
        _IMG_OLD,
        counts=tuple(range(1, 9)),
        evidence="§17.2: v50 renamed '5.0 Lite' on the site (2026-06-24); counts 1-8 (§17.1, medium)",
        intelligent_ratio=True,
    ),
    "jimeng-5.0": ModelSpec(
        "image",
        _keys("high_aes_general_v50", _CN_ASIA),
        _IMG_OLD,
        counts=tuple(range(1, 9)),
        alias_of="jimeng-5.0-lite",
        evidence="the old name of 5.0 Lite, kept for drop-in parity",
        intelligent_ratio=True,
    ),
    "jimeng-4.7": ModelSpec(
        "image",
        _keys("high_aes_general_v43", _CN_ASIA),
        ("2k", "4k"),
        counts=_COUNTS_4X,
        credits={"2k": 1},
        evidence="§17.2: measured (2048x2048 image, 2026-07); §17.1: 1 credit per image at 2k (measured); §19.6 n 1-8",
        intelligent_ratio=True,
    ),
    "jimeng-4.6": ModelSpec(
        "image", _keys("high_aes_general_v42", _CN_ASIA), _IMG_OLD, counts=_COUNTS_4X, intelligent_ratio=True
    ),
    "jimeng-4.5": ModelSpec(
        "image",
        _keys("high_aes_general_v40l", _ALL),
        _IMG_OLD,
        counts=_COUNTS_4X,
        intelligent_ratio=True,
        multi_image=True,
    ),
    "jimeng-4.1": ModelSpec(
        "image",
        _keys("high_aes_general_v41", _ALL),
        _IMG_OLD,
        counts=_COUNTS_4X,
        intelligent_ratio=True,
        multi_image=True,
    ),
    "jimeng-4.0": ModelSpec(
        "image",
        _keys("high_aes_general_v40", _ALL),
        _IMG_OLD,
        counts=_COUNTS_4X,
        intelligent_ratio=True,
        multi_image=True,
    ),
    "jimeng-3.1": ModelSpec("image", _keys("high_aes_general_v30l_art_fangzhou:general_v3.0_18b", _CN), _IMG_OLD),
    "jimeng-3.0": ModelSpec("image", _keys("high_aes_general_v30l:general_v3.0_18b", _ALL), _IMG_OLD),
    "nanobanana": ModelSpec("image", _keys("external_model_gemini_flash_image_v25", (Region.US, *_ASIA)), _IMG_OLD),
    "nanobananapro": ModelSpec("image", _keys("dreamina_image_lib_1", (Region.US, *_ASIA)), _IMG_OLD),
}
DEFAULT_IMAGE_MODEL = "jimeng-4.5"

VIDEO_SPECS: dict[str, ModelSpec] = {
    "jimeng-video-seedance-2.5": ModelSpec(
        "video",
        _keys("dreamina_seedance_45_pro", _CN),
        # 720p first: the default. 480p/1080p benefit types follow the 720p one's pattern (TD's SKU list, §19.1).
        ("720p", "480p", "1080p"),
        durations=_SEEDANCE_25_SECONDS,
        vip=True,
        credits={"720p": 12},
        evidence="§17.3/§19.1: measured on a VIP account (2026-09-30): 5 s at 720p cost 60 credits; 4-30 s (TD, PY)",
        min_features=(SEEDANCE25_FEATURE,),
        limit_note=_LONG_VIDEO_NOTE,
        benefit="seedance_25_{res}_output",
    ),
    "jimeng-video-seedance-2.5-draft": ModelSpec(
        "video",
        _keys("dreamina_seedance_45_pro_draft", _CN),
        ("480p",),
        durations=_SEEDANCE_25_SECONDS,
        evidence="§19.1: PY captured the page's draft submit and ran it (5 s 480p, 45 credits, 2026-09-24)",
        min_features=(SEEDANCE25_FEATURE,),
        draft_mode=True,
        limit_note=_LONG_VIDEO_NOTE,
        # §19.13 conflict 4: PY's submit capture; SB's model list says seedance_25_draft_{res}_output
        # ([upstream] video_benefits overrides).
        benefit="seedance_25_draft_{res}_no_input_video_output",
    ),
    "jimeng-video-seedance-2.0-vip": ModelSpec(
        "video",
        _keys("dreamina_seedance_40_pro_vision", _CN),
        ("720p", "1080p", "4k"),
        durations=_SEEDANCE_2_SECONDS,
        vip=True,
        evidence="§17.3: VIP channel; 720p in iptag PR #171, 1080p/4k in zhizinan's table (4k not measured)",
        benefit="seedance_20_pro_{res}_output",
    ),
    "jimeng-video-seedance-2.0-fast-vip": ModelSpec(
        "video",
        _keys("dreamina_seedance_40_vision", _CN),
        ("720p",),
        durations=_SEEDANCE_2_SECONDS,
        vip=True,
        evidence="§17.3: VIP channel; measured end to end (iptag PR #171, 2026-07-02)",
        benefit="seedance_20_fast_{res}_output",  # PR #171; PY captured dreamina_seedance_20_fast_5s (§19.1)
    ),
    "jimeng-video-seedance-2.0-mini": ModelSpec(
        "video",
        _keys("dreamina_seedance_40_mini", _CN),
        ("720p",),
        durations=_SEEDANCE_2_SECONDS,
        evidence="§17.3: measured end to end (iptag PR #171, 2026-07-02)",
        benefit="seedance_20_mini_{res}_output",  # PR #171; PY captured ..._output_5s (§19.1)
    ),
    "jimeng-video-seedance-2.0-lite": ModelSpec(
        "video",
        _keys("seedance_2_0_lite", _CN),
        durations=_SEEDANCE_2_SECONDS,
        evidence="§17.3: works on free accounts (fran0220, 2026-04-24); resolutions not stated",
        benefit="seedance_2_0_lite",
    ),
    "jimeng-video-seedance-2.0": ModelSpec(
        "video",
        _keys("dreamina_seedance_40_pro", _CN),
        durations=_SEEDANCE_2_SECONDS,
        vip=True,
        evidence="§6.3; §17.3: a paid subscription is needed from non-browser clients",
        benefit="dreamina_video_seedance_20_pro",
        omni_index=0,
    ),
    "jimeng-video-seedance-2.0-fast": ModelSpec(
        "video",
        _keys("dreamina_seedance_40", _CN),
        durations=_SEEDANCE_2_SECONDS,
        vip=True,
        evidence="§6.3; §17.3: a paid subscription is needed from non-browser clients",
        benefit="dreamina_seedance_20_fast",
        omni_index=1,
    ),
    "jimeng-video-3.5-pro": ModelSpec(
        "video",
        _keys("dreamina_ic_generate_video_model_vgfm_3.5_pro", _ALL),
        durations=(5, 10, 12),
        benefit="dreamina_video_seedance_15_pro",
    ),
    "jimeng-video-3.0-pro": ModelSpec(
        "video", _keys("dreamina_ic_generate_video_model_vgfm_3.0_pro", _CN_ASIA), durations=(5, 10)
    ),
    "jimeng-video-3.0": ModelSpec(
        "video", _keys("dreamina_ic_generate_video_model_vgfm_3.0", _ALL), ("720p", "1080p"), durations=(5, 10)
    ),
    "jimeng-video-3.0-fast": ModelSpec(
        "video",
        _keys("dreamina_ic_generate_video_model_vgfm_3.0_fast", _CN_ASIA),
        ("720p", "1080p"),
        durations=(5, 10),
    ),
    "jimeng-video-2.0": ModelSpec(
        "video", _keys("dreamina_ic_generate_video_model_vgfm_lite", _CN_ASIA), durations=(5, 10)
    ),
    "jimeng-video-2.0-pro": ModelSpec(
        "video", _keys("dreamina_ic_generate_video_model_vgfm1.0", _CN_ASIA), durations=(5, 10)
    ),
    "jimeng-video-veo3": ModelSpec(
        "video", _keys("dreamina_veo3_generate_video", _ASIA), durations=(8,), benefit="generate_video_veo3"
    ),
    "jimeng-video-veo3.1": ModelSpec(
        "video", _keys("dreamina_veo3.1_generate_video", _ASIA), durations=(8,), benefit="generate_video_veo3.1"
    ),
    "jimeng-video-sora2": ModelSpec(
        "video", _keys("dreamina_sora2_generate_video", _ASIA), durations=(4, 8, 12), benefit="generate_video_sora2"
    ),
}
DEFAULT_VIDEO_MODEL = "jimeng-video-3.5-pro"

# public name -> {region: upstream key}
IMAGE_MODELS: dict[str, dict[Region, str]] = {name: dict(spec.keys) for name, spec in IMAGE_SPECS.items()}
VIDEO_MODELS: dict[str, dict[Region, str]] = {name: dict(spec.keys) for name, spec in VIDEO_SPECS.items()}

INTELLIGENT_RATIO_MODELS = frozenset(name for name, spec in IMAGE_SPECS.items() if spec.intelligent_ratio)
"""Models whose intelligent_ratio flag is honoured (their records' `intelligent_ratio`); others force it to false."""
MULTI_IMAGE_MODELS = frozenset(name for name, spec in IMAGE_SPECS.items() if spec.multi_image)
"""Models that switch to multi-image ("story") mode on story keywords (their records' `multi_image`, §7.5)."""
MAX_IMAGE_COUNT = 8
"""The most images one request may ask for on any model (§17.1)."""
BLEND_DEFAULT_COUNT = 4
"""Images a blend makes (and bills) when no count is sent (§19.6: measured by SB and PY)."""


def apply_overrides(entries: Mapping[str, ModelSpec]) -> Callable[[], None]:
    """Add or replace table entries in place (the operator's model file, `model_file.py`; applied once at start)
    and re-derive the name sets; returns the function that restores the built-in table."""
    global INTELLIGENT_RATIO_MODELS, MULTI_IMAGE_MODELS
    saved = (dict(IMAGE_SPECS), dict(VIDEO_SPECS), dict(IMAGE_MODELS), dict(VIDEO_MODELS))
    sets = (INTELLIGENT_RATIO_MODELS, MULTI_IMAGE_MODELS)
    for name, spec in entries.items():
        specs, models = (IMAGE_SPECS, IMAGE_MODELS) if spec.kind == "image" else (VIDEO_SPECS, VIDEO_MODELS)
        specs[name] = spec
        models[name] = dict(spec.keys)
    INTELLIGENT_RATIO_MODELS = frozenset(name for name, spec in IMAGE_SPECS.items() if spec.intelligent_ratio)
    MULTI_IMAGE_MODELS = frozenset(name for name, spec in IMAGE_SPECS.items() if spec.multi_image)

    def restore() -> None:
        global INTELLIGENT_RATIO_MODELS, MULTI_IMAGE_MODELS
        for specs, before_specs in ((IMAGE_SPECS, saved[0]), (VIDEO_SPECS, saved[1])):
            specs.clear()
            specs.update(before_specs)
        for models, before_models in ((IMAGE_MODELS, saved[2]), (VIDEO_MODELS, saved[3])):
            models.clear()
            models.update(before_models)
        INTELLIGENT_RATIO_MODELS, MULTI_IMAGE_MODELS = sets

    return restore


class CatalogError(ValueError):
    """A model, ratio, resolution or duration the catalogue does not allow; the message lists what is."""


def spec_of(name: str) -> ModelSpec | None:
    """The spec of a public image or video model name, else None."""
    return IMAGE_SPECS.get(name) or VIDEO_SPECS.get(name)


def models_for(kind: str, region: Region) -> list[str]:
    """Public model names of `kind` ("image" or "video") available in `region`, in catalogue order."""
    table = IMAGE_MODELS if kind == "image" else VIDEO_MODELS
    return [name for name, keys in table.items() if region in keys]


def image_model_key(name: str, region: Region) -> str:
    """The upstream key of image model `name` in `region`. Raises CatalogError listing the region's models."""
    return _lookup(IMAGE_MODELS, "image", name, region)


def video_model_key(name: str, region: Region) -> str:
    """The upstream key of video model `name` in `region`. Raises CatalogError listing the region's models."""
    return _lookup(VIDEO_MODELS, "video", name, region)


def _lookup(table: dict[str, dict[Region, str]], kind: str, name: str, region: Region) -> str:
    keys = table.get(name)
    if keys is None or region not in keys:
        where = "is not available" if keys is not None else "is unknown"
        listed = ", ".join(models_for(kind, region))
        raise CatalogError(f"{kind} model '{name}' {where} in region {region.value}; use one of: {listed}")
    return keys[region]


def name_of_key(kind: str, key: str, region: Region) -> str | None:
    """The first public name of `kind` whose key in `region` is `key` (the current name before an alias)."""
    table = IMAGE_MODELS if kind == "image" else VIDEO_MODELS
    return next((name for name, keys in table.items() if keys.get(region) == key), None)


def is_video_model_key(key: str, region: Region) -> bool:
    """True when `key` is an upstream video model key served in `region`."""
    return name_of_key("video", key, region) is not None


KEY_PATTERN = r"[a-z0-9][a-z0-9.:]*(?:_[a-z0-9.:]+)+"
"""The shape of an upstream model key (`looks_like_key`), as a regular expression."""
_KEY = re.compile(KEY_PATTERN)


def looks_like_key(value: str) -> bool:
    """True for an upstream model key shape (`high_aes_general_v60`): such a `model` is resolved by live
    discovery when the table lacks it."""
    return _KEY.fullmatch(value) is not None


def image_counts(name: str) -> tuple[int, ...]:
    """The image counts (`n`) a model allows by the built-in table: its own list, else 1-4 (§17.1)."""
    spec = IMAGE_SPECS.get(name)
    return spec.counts if spec is not None else (1, 2, 3, 4)


def forced_image_count(name: str) -> int | None:
    """The count the upstream makes for `name` whatever is asked (mj82: 4, §19.6), else None."""
    spec = IMAGE_SPECS.get(name)
    return spec.forced_count if spec is not None else None


def default_image_count(name: str) -> int:
    """How many images the upstream makes for `name` when no count is sent (§17.1)."""
    spec = IMAGE_SPECS.get(name)
    return spec.default_count if spec is not None else 4


# ---------------------------------------------------------------- image sizes (§6.2, §17.2)

RATIOS = ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "21:9")
RESOLUTIONS = ("1k", "1.5k", "2k", "4k")
DEFAULT_RATIO = "1:1"
DEFAULT_RESOLUTION = "2k"


@dataclass(frozen=True, slots=True)
class ImageSize:
    """Width, height, the `image_ratio` code and the `resolution_type` sent upstream."""

    width: int
    height: int
    ratio_code: int
    resolution_type: str


# ratio -> (code, 1k size, 2k size, 4k size). 1k 4:3/3:4 are swapped as in the source (§6.2 note).
_SIZE_TABLE: dict[str, tuple[int, tuple[int, int], tuple[int, int], tuple[int, int]]] = {
    "1:1": (1, (1024, 1024), (2048, 2048), (4096, 4096)),
    "4:3": (4, (768, 1024), (2304, 1728), (4608, 3456)),
    "3:4": (2, (1024, 768), (1728, 2304), (3456, 4608)),
    "16:9": (3, (1024, 576), (2560, 1440), (5120, 2880)),
    "9:16": (5, (576, 1024), (1440, 2560), (2880, 5120)),
    "3:2": (7, (1024, 682), (2496, 1664), (4992, 3328)),
    "2:3": (6, (682, 1024), (1664, 2496), (3328, 4992)),
    "21:9": (8, (1195, 512), (3024, 1296), (6048, 2592)),
}
# 1.5k (5.0 Pro only, §17.2). The sources give no `image_ratio` code for 1.5k: the 2k code is sent.
_SIZE_1_5K: dict[str, tuple[int, int]] = {
    "1:1": (1536, 1536),
    "4:3": (1728, 1296),
    "3:4": (1296, 1728),
    "16:9": (1920, 1080),
    "9:16": (1080, 1920),
    "3:2": (1872, 1248),
    "2:3": (1248, 1872),
    "21:9": (2268, 972),
}
_NANOBANANAPRO_4K: dict[str, tuple[int, int]] = {
    "1:1": (4096, 4096),
    "4:3": (4693, 3520),
    "3:4": (3520, 4693),
    "16:9": (5404, 3040),
    "9:16": (3040, 5404),
    "3:2": (4992, 3328),
    "2:3": (3328, 4992),
    "21:9": (6197, 2656),
}


def image_resolutions(model: str) -> tuple[str, ...]:
    """The resolutions image model `model` takes (the pre-2026 three for a model the table lacks)."""
    spec = IMAGE_SPECS.get(model)
    return spec.resolutions if spec is not None else _IMG_OLD


def image_size(
    ratio: str, resolution: str, *, model: str = DEFAULT_IMAGE_MODEL, region: Region = Region.CN
) -> ImageSize:
    """Resolve ratio + resolution for a model/region to the wire size. Raises CatalogError."""
    allowed = image_resolutions(model)
    if resolution not in allowed:
        raise CatalogError(f"resolution '{resolution}' is not offered by {model}; use one of: {', '.join(allowed)}")
    if ratio not in _SIZE_TABLE:
        raise CatalogError(f"unsupported ratio '{ratio}'; use one of: {', '.join(RATIOS)}")
    code, s1k, s2k, s4k = _SIZE_TABLE[ratio]
    if model == "nanobanana":
        if region is Region.US:
            return ImageSize(1024, 1024, 1, "2k")
        w, h = s1k
        return ImageSize(w, h, code, "1k")
    if model == "nanobananapro" and resolution == "4k":
        w, h = _NANOBANANAPRO_4K[ratio]
        return ImageSize(w, h, code, "4k")
    w, h = {"1k": s1k, "1.5k": _SIZE_1_5K[ratio], "2k": s2k, "4k": s4k}[resolution]
    return ImageSize(w, h, code + 100 if resolution == "4k" else code, resolution)


# ---------------------------------------------------------------- video durations, resolutions, benefits (§17.3)


def allowed_durations(model: str) -> tuple[int, ...]:
    """The durations (seconds) a public video model accepts (5 and 10 for a model the table lacks)."""
    spec = VIDEO_SPECS.get(model)
    return spec.durations if spec is not None and spec.durations else (5, 10)


def default_duration(model: str) -> int:
    """The duration used when the caller gives none: 5 s, or the only/first allowed value."""
    allowed = allowed_durations(model)
    return 5 if 5 in allowed else allowed[0]


def video_resolutions(model: str) -> tuple[str, ...]:
    """The resolutions a public video model takes; empty when it takes no `resolution` field."""
    spec = VIDEO_SPECS.get(model)
    return spec.resolutions if spec is not None else ()


DEFAULT_VIDEO_BENEFIT = "basic_video_operation_vgfm_v_three"
"""The benefit type of the older video keys (§6.6) and of a key the table lacks."""
_REFERENCE_FALLBACK = (("3.5", "dreamina_video_seedance_15"),)
"""The reference's rule for a key the table lacks (a key only discovery lists, §6.6): by substring."""


def video_spec_by_key(key: str) -> ModelSpec | None:
    """The table's record of an upstream video key (in any region), else None."""
    return next((spec for spec in VIDEO_SPECS.values() if key in spec.keys.values()), None)


OMNI_BENEFITS = ("dreamina_video_seedance_20_video_add", "dreamina_seedance_20_fast_with_video")
"""Omni-mode benefit types of Seedance 2.0 (pro, fast): the reference's values (iptag addf0f0). Conflicting
(§17.10: wwwzhouhui and fran0220 send `dreamina_video_seedance_20_pro_with_video` for pro), so they are config:
`[upstream] omni_benefit_pro` / `omni_benefit_fast`."""


def video_benefit_type(
    key: str, resolution: str | None = None, *, omni: bool = False, omni_benefits: tuple[str, str] = OMNI_BENEFITS
) -> str:
    """`benefit_type` for an upstream video key at `resolution`: its record's `benefit` (§6.6, §17.3, §19.1;
    `{res}` = the resolution, 720p when none is given); omni mode uses the record's entry of `omni_benefits`
    (pro, fast: config, §17.10)."""
    spec = video_spec_by_key(key)
    if omni:
        index = spec.omni_index if spec is not None and spec.omni_index is not None else 1
        return omni_benefits[index]
    if spec is not None:
        return spec.benefit.format(res=resolution or "720p") if spec.benefit else DEFAULT_VIDEO_BENEFIT
    return next((benefit for needle, benefit in _REFERENCE_FALLBACK if needle in key), DEFAULT_VIDEO_BENEFIT)


def video_takes_resolution(key: str) -> bool:
    """True for the keys whose body carries `resolution`: those whose record offers resolutions (the 3.0 and
    3.0-fast keys, §6.5, and the Seedance 2.x keys whose benefit type names one, §17.3)."""
    spec = video_spec_by_key(key)
    return spec is not None and bool(spec.resolutions)
