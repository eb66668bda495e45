"""The model catalogue: public model names -> upstream keys per region, the image size table and the
video duration rules (upstream-protocol.md §6). Pure data and pure lookups.

Unlike the reference there are no silent fallbacks: a model a region lacks is an error naming the
models the region has.
"""

from __future__ import annotations

from dataclasses import dataclass

from .regions import Region

_ALL = (Region.CN, Region.US, Region.HK, Region.JP, Region.SG)
_ASIA = (Region.HK, Region.JP, Region.SG)

# public name -> {region: upstream key}
IMAGE_MODELS: dict[str, dict[Region, str]] = {
    "jimeng-5.0": {r: "high_aes_general_v50" for r in (Region.CN, *_ASIA)},
    "jimeng-4.6": {r: "high_aes_general_v42" for r in (Region.CN, *_ASIA)},
    "jimeng-4.5": {r: "high_aes_general_v40l" for r in _ALL},
    "jimeng-4.1": {r: "high_aes_general_v41" for r in _ALL},
    "jimeng-4.0": {r: "high_aes_general_v40" for r in _ALL},
    "jimeng-3.1": {Region.CN: "high_aes_general_v30l_art_fangzhou:general_v3.0_18b"},
    "jimeng-3.0": {r: "high_aes_general_v30l:general_v3.0_18b" for r in _ALL},
    "nanobanana": {r: "external_model_gemini_flash_image_v25" for r in (Region.US, *_ASIA)},
    "nanobananapro": {r: "dreamina_image_lib_1" for r in (Region.US, *_ASIA)},
}
DEFAULT_IMAGE_MODEL = "jimeng-4.5"

VIDEO_MODELS: dict[str, dict[Region, str]] = {
    "jimeng-video-seedance-2.0": {Region.CN: "dreamina_seedance_40_pro"},
    "jimeng-video-seedance-2.0-fast": {Region.CN: "dreamina_seedance_40"},
    "jimeng-video-3.5-pro": {r: "dreamina_ic_generate_video_model_vgfm_3.5_pro" for r in _ALL},
    "jimeng-video-3.0-pro": {r: "dreamina_ic_generate_video_model_vgfm_3.0_pro" for r in (Region.CN, *_ASIA)},
    "jimeng-video-3.0": {r: "dreamina_ic_generate_video_model_vgfm_3.0" for r in _ALL},
    "jimeng-video-3.0-fast": {r: "dreamina_ic_generate_video_model_vgfm_3.0_fast" for r in (Region.CN, *_ASIA)},
    "jimeng-video-2.0": {r: "dreamina_ic_generate_video_model_vgfm_lite" for r in (Region.CN, *_ASIA)},
    "jimeng-video-2.0-pro": {r: "dreamina_ic_generate_video_model_vgfm1.0" for r in (Region.CN, *_ASIA)},
    "jimeng-video-veo3": {r: "dreamina_veo3_generate_video" for r in _ASIA},
    "jimeng-video-veo3.1": {r: "dreamina_veo3.1_generate_video" for r in _ASIA},
    "jimeng-video-sora2": {r: "dreamina_sora2_generate_video" for r in _ASIA},
}
DEFAULT_VIDEO_MODEL = "jimeng-video-3.5-pro"

# Models whose intelligent_ratio flag is honoured (§7.2); others force it to false.
INTELLIGENT_RATIO_MODELS = frozenset({"jimeng-4.0", "jimeng-4.1", "jimeng-4.5", "jimeng-4.6", "jimeng-5.0"})
# Models that switch to multi-image ("story") mode on story keywords (§7.5).
MULTI_IMAGE_MODELS = frozenset({"jimeng-4.0", "jimeng-4.1", "jimeng-4.5"})


class CatalogError(ValueError):
    """A model, ratio, resolution or duration the catalogue does not allow; the message lists what is."""


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


def is_image_model_key(key: str, region: Region) -> bool:
    """True when `key` is an upstream image model key served in `region`."""
    return any(keys.get(region) == key for keys in IMAGE_MODELS.values())


def is_video_model_key(key: str, region: Region) -> bool:
    """True when `key` is an upstream video model key served in `region`."""
    return any(keys.get(region) == key for keys in VIDEO_MODELS.values())


# ---------------------------------------------------------------- image sizes (§6.2)

RATIOS = ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "21:9")
RESOLUTIONS = ("1k", "2k", "4k")
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


def image_size(
    ratio: str, resolution: str, *, model: str = DEFAULT_IMAGE_MODEL, region: Region = Region.CN
) -> ImageSize:
    """Resolve ratio + resolution for a model/region to the wire size. Raises CatalogError."""
    if resolution not in RESOLUTIONS:
        raise CatalogError(f"unsupported resolution '{resolution}'; use one of: {', '.join(RESOLUTIONS)}")
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
    w, h = {"1k": s1k, "2k": s2k, "4k": s4k}[resolution]
    return ImageSize(w, h, code + 100 if resolution == "4k" else code, resolution)


# ---------------------------------------------------------------- video durations (§6.4)


def allowed_durations(model: str) -> tuple[int, ...]:
    """The durations (seconds) a public video model accepts."""
    if "veo3" in model:
        return (8,)
    if "sora2" in model:
        return (4, 8, 12)
    if "3.5-pro" in model or "3.5_pro" in model:
        return (5, 10, 12)
    if "seedance-2.0" in model or "40_pro" in model or "40-pro" in model:
        return tuple(range(4, 16))
    return (5, 10)


def default_duration(model: str) -> int:
    """The duration used when the caller gives none: 5 s, or the only/first allowed value."""
    allowed = allowed_durations(model)
    return 5 if 5 in allowed else allowed[0]


def video_benefit_type(key: str, *, omni: bool = False) -> str:
    """`benefit_type` for an upstream video key (§6.6); omni mode uses the Seedance 2.0 omni values."""
    if omni:
        return "dreamina_video_seedance_20_video_add" if "40_pro" in key else "dreamina_seedance_20_fast_with_video"
    for needle, benefit in (
        ("veo3.1", "generate_video_veo3.1"),
        ("veo3", "generate_video_veo3"),
        ("sora2", "generate_video_sora2"),
        ("40_pro", "dreamina_video_seedance_20_pro"),
        ("40", "dreamina_seedance_20_fast"),
        ("3.5_pro", "dreamina_video_seedance_15_pro"),
        ("3.5", "dreamina_video_seedance_15"),
    ):
        if needle in key:
            return benefit
    return "basic_video_operation_vgfm_v_three"


def video_takes_resolution(key: str) -> bool:
    """Only the 3.0 and 3.0-fast keys carry `resolution` (§6.5)."""
    return "vgfm_3.0" in key and "_pro" not in key
