"""The simulator's own facts about the upstream: models by upstream key, image counts and sizes, video
resolutions, durations, benefit types and draft fields, written from docs/protocol.md (§ numbers) and the real
answers of /work/shared/upstream-samples (sample names), one row per fact with its source.

This module is the witness's memory: it never imports the client's catalogue or payload builders
(`upstream.catalog`, `upstream.payloads`, `upstream.video_payloads`, `upstream.discovery`; an import-linter
contract in pyproject.toml forbids it), so a wrong client table is refused here instead of being agreed with.
Where sources conflict and nobody reports a refusal, both forms are accepted (and the row says so); where one
source reports a refusal the simulator refuses as it says (ret 1000 "invalid parameter", sample
`aigc_draft_generate/cn_ret1000_invalid_parameter_2025-04-11.json`).

Other engineers add rows (post-edit tools, result URLs) in modules of their own; rows here are keyed by the
upstream key, never by this project's public model names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ..upstream.regions import Region

CN: Final = frozenset({Region.CN})
ASIA: Final = frozenset({Region.HK, Region.JP, Region.SG})
CN_ASIA: Final = CN | ASIA
INTL: Final = ASIA | {Region.US}
ALL: Final = CN_ASIA | {Region.US}

INVALID_PARAMETER: Final = ("1000", "invalid parameter")
"""The upstream's refusal of a draft it does not understand (sample cn_ret1000_invalid_parameter; NT §19.1)."""


# ---------------------------------------------------------------- images (§6.1, §6.2, §17.1, §17.2, §19.6)


@dataclass(frozen=True, slots=True)
class ImageFact:
    """One image model key: where it is served, its resolutions, the counts it takes and makes.

    `forced_count`: the count the upstream makes whatever is asked (mj82 makes 4, §19.6 measured). `sizes`: which
    size set the key uses ("standard", "nanobanana", "nanobananapro"). `intelligent_ratio`: the key honours
    `intelligent_ratio` (§7.2); `multi_image`: it takes the story scene `ImageMultiGenerate` (§7.5)."""

    key: str
    regions: frozenset[Region]
    resolutions: tuple[str, ...]
    counts: tuple[int, ...]
    default_count: int
    source: str
    forced_count: int | None = None
    sizes: str = "standard"
    intelligent_ratio: bool = False
    multi_image: bool = False
    max_inputs: int = 10


_1_4 = (1, 2, 3, 4)
_1_8 = tuple(range(1, 9))
_OLD = ("1k", "2k", "4k")

IMAGE_FACTS: Final[tuple[ImageFact, ...]] = (
    ImageFact(
        "high_aes_general_v50p_large", CN, ("1.5k", "2k", "4k"), _1_4, 2, "§19.6 PY §11-§12 measured (default 2)"
    ),
    ImageFact(
        "high_aes_general_v50_flash", CN, ("1.5k", "2k"), _1_4, 4, "§19.6 PY §14-§15 (config read 09-23, run measured)"
    ),
    ImageFact(
        "jm_image_model_yc_mj82",
        CN,
        ("1k", "2k"),
        (1, 2, 3, 4),
        4,
        "§19.6 PY §17 (seven runs 10-02): gen_count 1-3 raised to 4 without an error; blend up to 20 inputs",
        forced_count=4,
        max_inputs=20,
    ),
    # 1k is not in the live config of 09-20 (§19.6) but a 1k request is accepted and upscaled (§19.6 CT 04-26).
    ImageFact(
        "high_aes_general_v50", CN_ASIA, _OLD, _1_8, 4, "§19.6 PY §12 (counts 1-8, default 4)", intelligent_ratio=True
    ),
    ImageFact(
        "high_aes_general_v43", CN_ASIA, ("2k", "4k"), _1_8, 4, "§19.6 PY §11 live config", intelligent_ratio=True
    ),
    ImageFact("high_aes_general_v42", CN_ASIA, _OLD, _1_8, 4, "§19.6 PY §11 live config", intelligent_ratio=True),
    ImageFact(
        "high_aes_general_v40l",
        ALL,
        _OLD,
        _1_8,
        4,
        "§19.6; §7.5 story mode",
        intelligent_ratio=True,
        multi_image=True,
    ),
    ImageFact(
        "high_aes_general_v41", ALL, _OLD, _1_8, 4, "§19.6; §7.5 story mode", intelligent_ratio=True, multi_image=True
    ),
    ImageFact(
        "high_aes_general_v40",
        ALL,
        _OLD,
        _1_8,
        4,
        "§19.6; sample cn_success_image_v40_2025-09-13; §7.5 story mode",
        intelligent_ratio=True,
        multi_image=True,
    ),
    ImageFact(
        "high_aes_general_v30l_art_fangzhou:general_v3.0_18b", CN, _OLD, _1_4, 4, "§6.1; §19.6 (counts not declared)"
    ),
    ImageFact("high_aes_general_v30l:general_v3.0_18b", ALL, _OLD, _1_4, 4, "§6.1; §19.6 (counts not declared)"),
    ImageFact("external_model_gemini_flash_image_v25", INTL, _OLD, _1_4, 4, "§6.1 nanobanana", sizes="nanobanana"),
    ImageFact(
        "dreamina_image_lib_1", INTL, _OLD, _1_4, 4, "§6.1 nanobananapro (§19.6 conflict 7)", sizes="nanobananapro"
    ),
)

IMAGE_BY_KEY: Final[Mapping[str, ImageFact]] = {f.key: f for f in IMAGE_FACTS}

BLEND_DEFAULT_COUNT: Final = 4
"""Images a blend makes (and bills) without `gen_option` (§19.6: SB measured 09-30 "图生图 … 4张"; PY billed 4)."""


def image_fact(key: str, region: Region) -> ImageFact | None:
    """The facts of an image key served in `region`, else None."""
    fact = IMAGE_BY_KEY.get(key)
    return fact if fact is not None and region in fact.regions else None


def discovered_image_fact(key: str) -> ImageFact:
    """The facts assumed for an image key only `get_common_config` lists (a drift): the pre-2026 sizes, 1-4."""
    return ImageFact(key, ALL, _OLD, _1_4, 4, "listed by discovery only (simulator drift)")


@dataclass(frozen=True, slots=True)
class WireSize:
    """One accepted `large_image_info` width, height, `image_ratio` code and `resolution_type`."""

    width: int
    height: int
    ratio_code: int
    resolution_type: str


RATIOS: Final = ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "21:9")

# ratio -> image_ratio code and the 1k, 2k and 4k sizes (§6.2; 1k 4:3/3:4 swapped as the source prints them).
# The 4k sizes are §6.2's set with codes 101-108 (§19.6 conflict 8: the live map's 4693x3520 set is not seen
# accepted by a generate yet).
_STANDARD: Final[Mapping[str, tuple[int, tuple[int, int], tuple[int, int], tuple[int, int]]]] = {
    "1:1": (1, (1024, 1024), (2048, 2048), (4096, 4096)),
    "3:4": (2, (1024, 768), (1728, 2304), (3456, 4608)),
    "16:9": (3, (1024, 576), (2560, 1440), (5120, 2880)),
    "4:3": (4, (768, 1024), (2304, 1728), (4608, 3456)),
    "9:16": (5, (576, 1024), (1440, 2560), (2880, 5120)),
    "2:3": (6, (682, 1024), (1664, 2496), (3328, 4992)),
    "3:2": (7, (1024, 682), (2496, 1664), (4992, 3328)),
    "21:9": (8, (1195, 512), (3024, 1296), (6048, 2592)),
}
# 1.5k sizes (§17.2, 5.0 Pro and Flash); sent with the 2k ratio code.
_SIZES_1_5K: Final[Mapping[str, tuple[int, int]]] = {
    "1:1": (1536, 1536),
    "3:4": (1296, 1728),
    "16:9": (1920, 1080),
    "4:3": (1728, 1296),
    "9:16": (1080, 1920),
    "2:3": (1248, 1872),
    "3:2": (1872, 1248),
    "21:9": (2268, 972),
}
# nanobananapro at 4k: the live map's sizes (§17.2 zhizinan, §19.6).
_NANOBANANAPRO_4K: Final[Mapping[str, tuple[int, int]]] = {
    "1:1": (4096, 4096),
    "3:4": (3520, 4693),
    "16:9": (5404, 3040),
    "4:3": (4693, 3520),
    "9:16": (3040, 5404),
    "2:3": (3328, 4992),
    "3:2": (4992, 3328),
    "21:9": (6197, 2656),
}


def wire_size(fact: ImageFact, ratio: str, resolution: str, region: Region) -> WireSize:
    """The size the upstream takes for `ratio` at `resolution` on `fact`'s key (§6.2, §17.2)."""
    code, s1k, s2k, s4k = _STANDARD[ratio]
    if fact.sizes == "nanobanana":  # one size in the US, the 1k set elsewhere (§6.2 nanobanana note)
        return WireSize(1024, 1024, 1, "2k") if region is Region.US else WireSize(*s1k, code, "1k")
    if fact.sizes == "nanobananapro" and resolution == "4k":
        return WireSize(*_NANOBANANAPRO_4K[ratio], code, "4k")
    width, height = {"1k": s1k, "1.5k": _SIZES_1_5K[ratio], "2k": s2k, "4k": s4k}[resolution]
    return WireSize(width, height, code + 100 if resolution == "4k" else code, resolution)


def accepted_sizes(fact: ImageFact, region: Region) -> dict[tuple[int, int, int, str], str]:
    """Every (width, height, image_ratio, resolution_type) the key takes in `region` -> its ratio."""
    out: dict[tuple[int, int, int, str], str] = {}
    for ratio in RATIOS:
        for resolution in fact.resolutions:
            s = wire_size(fact, ratio, resolution, region)
            out.setdefault((s.width, s.height, s.ratio_code, s.resolution_type), ratio)
    return out


# ---------------------------------------------------------------- video (§6.3-§6.6, §17.3, §19.1, §19.7)

SEEDANCE25_FEATURE: Final = "AIGC_Video_Seedance25ResultAction"
"""`draft_content.min_features` entry of every `seedance_45` key (§19.1: PY capture, NT code)."""
SEEDANCE25_DRAFT_MIN_VERSION: Final = "3.3.28"
"""`min_version` of a 2.5 draft: the da_version of the capture (§19.1 PY 09-24); older drafts are refused."""


@dataclass(frozen=True, slots=True)
class VideoFact:
    """One video model key.

    `resolutions`: what `resolution` may be (empty: the body carries none). `seconds`: allowed whole durations.
    `benefits`: resolution ("" for keys without one) -> the accepted `benefit_type` values (more than one where
    the sources conflict and nobody reports a refusal). `omni_benefits`: accepted in omni-reference mode (empty:
    the key takes no omni). `features`: required `draft_content.min_features` entries. `draft_mode`: the key is a
    draft ("样片") model needing `is_draft_mode` and the 2.5 `min_version` (§19.1)."""

    key: str
    regions: frozenset[Region]
    resolutions: tuple[str, ...]
    seconds: tuple[int, ...]
    benefits: Mapping[str, frozenset[str]]
    source: str
    omni_benefits: frozenset[str] = frozenset()
    features: tuple[str, ...] = ()
    draft_mode: bool = False
    vip: bool = False
    listed: bool = True  # False: listed and served only when `Settings.shown_models` names it (discovery tests)


def _per_res(resolutions: tuple[str, ...], *patterns: str) -> dict[str, frozenset[str]]:
    return {r: frozenset(p.format(res=r) for p in patterns) for r in resolutions}


_S2 = tuple(range(4, 16))  # Seedance 2.0: 4-15 s (§17.3, §19.1 TD/PY §16)
_S25 = tuple(range(4, 31))  # Seedance 2.5: 96-720 frames = 4-30 s (§19.1 TD §2.2, PY §16, AG §3.5)
_R25 = ("480p", "720p", "1080p")
_OLD_VIDEO = frozenset({"basic_video_operation_vgfm_v_three"})  # §6.6

VIDEO_FACTS: Final[tuple[VideoFact, ...]] = (
    VideoFact(
        "dreamina_seedance_45_pro",
        CN,
        _R25,
        _S25,
        # 720p captured by SB from the live model list; the no-input-video variant is TD's SKU list (§19.1).
        _per_res(_R25, "seedance_25_{res}_output", "seedance_25_{res}_no_input_video_output"),
        "§19.1 (TD §2.2, SB §4 measured, PY §16)",
        features=(SEEDANCE25_FEATURE,),
        vip=True,
    ),
    VideoFact(
        "dreamina_seedance_45_pro_draft",
        CN,
        ("480p",),
        _S25,
        # §19.13 conflict 4: PY's submit capture (no_input_video) and SB's model list; nobody reports a refusal.
        _per_res(("480p",), "seedance_25_draft_{res}_no_input_video_output", "seedance_25_draft_{res}_output"),
        "§19.1 PY capture 09-24 (measured, 45 credits) + NT code (ret 1000 without the draft fields)",
        features=(SEEDANCE25_FEATURE,),
        draft_mode=True,
    ),
    VideoFact(
        "dreamina_seedance_40_pro_vision",
        CN,
        ("720p", "1080p", "4k"),
        _S2,
        _per_res(("720p", "1080p", "4k"), "seedance_20_pro_{res}_output"),
        "§17.3; §19.1 PY capture (720p 5 s, 70 credits)",
        vip=True,
    ),
    VideoFact(
        "dreamina_seedance_40_vision",
        CN,
        ("720p",),
        _S2,
        # §19.13 conflict 3: PR #171 (measured 07-02) and PY's capture (09-20); nobody reports a refusal.
        _per_res(("720p",), "seedance_20_fast_{res}_output", "dreamina_seedance_20_fast_5s"),
        "§17.3 PR #171; §19.1 PY capture",
        vip=True,
    ),
    VideoFact(
        "dreamina_seedance_40_mini",
        CN,
        ("720p",),
        _S2,
        _per_res(("720p",), "seedance_20_mini_{res}_output", "seedance_20_mini_{res}_output_5s"),
        "§17.3 PR #171; §19.1 PY capture (…_5s also for 4 s)",
    ),
    VideoFact("seedance_2_0_lite", CN, (), _S2, {"": frozenset({"seedance_2_0_lite"})}, "§17.3 fran0220"),
    VideoFact(
        "dreamina_seedance_40_pro",
        CN,
        (),
        _S2,
        {"": frozenset({"dreamina_video_seedance_20_pro"})},
        "§6.3, §6.6; omni §17.10 (conflicting: both accepted)",
        omni_benefits=frozenset({"dreamina_video_seedance_20_video_add", "dreamina_video_seedance_20_pro_with_video"}),
        vip=True,
    ),
    VideoFact(
        "dreamina_seedance_40",
        CN,
        (),
        _S2,
        {"": frozenset({"dreamina_seedance_20_fast"})},
        "§6.3, §6.6; omni §17.10",
        omni_benefits=frozenset({"dreamina_seedance_20_fast_with_video"}),
        vip=True,
    ),
    VideoFact(
        "dreamina_ic_generate_video_model_vgfm_3.5_pro",
        ALL,
        (),
        (5, 10, 12),
        {"": frozenset({"dreamina_video_seedance_15_pro"})},
        "§6.3, §6.6; §19.7 TD (Seedance 1.5 Pro, 5-12 s)",
    ),
    VideoFact(
        "dreamina_ic_generate_video_model_vgfm_3.0_pro", CN_ASIA, (), (5, 10), {"": _OLD_VIDEO}, "§6.3; §19.7 TD"
    ),
    VideoFact(
        "dreamina_ic_generate_video_model_vgfm_3.0",
        ALL,
        ("720p", "1080p"),
        (5, 10),
        {"720p": _OLD_VIDEO, "1080p": _OLD_VIDEO},
        "§6.3, §6.5",
    ),
    VideoFact(
        "dreamina_ic_generate_video_model_vgfm_3.0_fast",
        CN_ASIA,
        ("720p", "1080p"),
        (5, 10),
        {"720p": _OLD_VIDEO, "1080p": _OLD_VIDEO},
        "§6.3, §6.5; §19.7 TD (Seedance 1.0 Fast)",
    ),
    VideoFact("dreamina_ic_generate_video_model_vgfm_lite", CN_ASIA, (), (5, 10), {"": _OLD_VIDEO}, "§6.3"),
    VideoFact("dreamina_ic_generate_video_model_vgfm1.0", CN_ASIA, (), (5, 10), {"": _OLD_VIDEO}, "§6.3"),
    VideoFact("dreamina_veo3_generate_video", ASIA, (), (8,), {"": frozenset({"generate_video_veo3"})}, "§6.3, §6.6"),
    VideoFact(
        "dreamina_veo3.1_generate_video", ASIA, (), (8,), {"": frozenset({"generate_video_veo3.1"})}, "§6.3, §6.6"
    ),
    VideoFact("dreamina_sora2_generate_video", ASIA, (), (4, 8, 12), {"": frozenset({"generate_video_sora2"})}, "§6.3"),
    VideoFact(
        "dreamina_wan_30",
        CN,
        ("720p", "1080p"),
        tuple(range(4, 16)),
        # Key, resolutions (written 720P/1080P there) and 4-15 s: §19.7 TD (code). Its benefit type is not
        # captured: the one below is the simulator's own stand-in, served in its model list (a key the client's
        # table lacks, known only by discovery).
        _per_res(("720p", "1080p"), "dreamina_wan_30_{res}_output"),
        "§19.7 TD (third-party video key; benefit type not captured)",
        listed=False,
    ),
)

VIDEO_BY_KEY: Final[Mapping[str, VideoFact]] = {f.key: f for f in VIDEO_FACTS}

PAID_VIDEO_KEYS: Final = frozenset(f.key for f in VIDEO_FACTS if f.vip)
"""Keys an account without a subscription is refused (4013) from a non-browser client (§17.3, §19.1)."""

OPTIONAL_VIDEO_KEYS: Final = frozenset(f.key for f in VIDEO_FACTS if not f.listed)
"""Keys listed and served only when `Settings.shown_models` names them (a model the client's table lacks)."""


def video_fact(key: str, region: Region) -> VideoFact | None:
    """The facts of a video key served in `region`, else None."""
    fact = VIDEO_BY_KEY.get(key)
    return fact if fact is not None and region in fact.regions else None
