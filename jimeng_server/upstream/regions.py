"""Per-region protocol constants (docs/protocol.md §1.2). Hosts are config, not constants."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Region(StrEnum):
    """An upstream site. CN is Jimeng; the others are Dreamina (CapCut-hosted)."""

    CN = "cn"
    US = "us"
    HK = "hk"
    JP = "jp"
    SG = "sg"

    @property
    def is_international(self) -> bool:
        return self is not Region.CN


@dataclass(frozen=True, slots=True)
class RegionConstants:
    """Values that identify a region on the wire."""

    aid: int
    region_param: str
    lan: str
    loc: str
    sigv4_region: str
    imagex_default_service_id: str
    # Which get_upload_token field names the ImageX service: "service_id" (CN) or "space_name".
    imagex_service_field: str
    sends_web_id: bool
    content_check: bool


CN_AID = 513695
INTL_AID = 513641

REGION_CONSTANTS: dict[Region, RegionConstants] = {
    Region.CN: RegionConstants(CN_AID, "cn", "zh-Hans", "cn", "cn-north-1", "tb4s082cfz", "service_id", True, True),
    Region.US: RegionConstants(INTL_AID, "US", "en", "us", "us-east-1", "wopfjsm1ax", "space_name", False, False),
    Region.HK: RegionConstants(
        INTL_AID, "HK", "en", "hk", "ap-southeast-1", "wopfjsm1ax", "space_name", False, False
    ),
    Region.JP: RegionConstants(
        INTL_AID, "JP", "ja", "jp", "ap-southeast-1", "wopfjsm1ax", "space_name", False, False
    ),
    Region.SG: RegionConstants(
        INTL_AID, "SG", "en", "sg", "ap-southeast-1", "wopfjsm1ax", "space_name", False, False
    ),
}


def constants(region: Region) -> RegionConstants:
    """The wire constants of `region`."""
    return REGION_CONSTANTS[region]
