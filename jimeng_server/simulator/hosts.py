"""Virtual hosts of the simulator: every upstream host is a path prefix on one loopback server.

`POST {root}/cn-web/mweb/v1/aigc_draft/generate` is API path `/mweb/v1/aigc_draft/generate` on the CN web host
(docs/protocol.md §1.2, §14.1).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..upstream.regions import Region

_ASIA = (Region.HK, Region.JP, Region.SG)


@dataclass(frozen=True, slots=True)
class VHost:
    """One simulated upstream host: its prefix, the regions it serves and which API families it accepts."""

    name: str
    regions: tuple[Region, ...]
    web: bool = False  # non-`/commerce/` web API paths
    commerce: bool = False  # `/commerce/` paths
    service: str = "web"  # "web", "imagex", "vod" or "upload" (see web_api.SERVICE_HANDLERS)
    streaming: bool = False  # the body is not read before dispatch; the service handler streams it


VHOSTS: dict[str, VHost] = {
    v.name: v
    for v in (
        # CN serves commerce from the web host, as upstream does.
        VHost("cn-web", (Region.CN,), web=True, commerce=True),
        VHost("us-web", (Region.US,), web=True),
        VHost("sg-web", _ASIA, web=True),
        VHost("us-commerce", (Region.US,), commerce=True),
        VHost("sg-commerce", _ASIA, commerce=True),
        VHost("cn-imagex", (Region.CN,), service="imagex"),
        VHost("us-imagex", (Region.US,), service="imagex"),
        VHost("sg-imagex", _ASIA, service="imagex"),
        VHost("vod", (Region.CN, Region.US, *_ASIA), service="vod"),
        # Byte uploads: ImageX apply answers UploadHosts ["<host:port>/upload"].
        VHost("upload", (Region.CN, Region.US, *_ASIA), service="upload", streaming=True),
    )
}


def simulator_hosts(root: str) -> dict[Region, dict[str, str]]:
    """Base URLs ("web", "commerce", "imagex", "vod", "page") per region for a simulator served at `root`.

    `root` is like `http://127.0.0.1:8123` (a trailing slash is tolerated).
    """
    root = root.rstrip("/")
    out: dict[Region, dict[str, str]] = {}
    for region in Region:
        if region is Region.CN:
            web, commerce, imagex = "cn-web", "cn-web", "cn-imagex"
        elif region is Region.US:
            web, commerce, imagex = "us-web", "us-commerce", "us-imagex"
        else:
            web, commerce, imagex = "sg-web", "sg-commerce", "sg-imagex"
        out[region] = {
            "web": f"{root}/{web}",
            "commerce": f"{root}/{commerce}",
            "imagex": f"{root}/{imagex}",
            "vod": f"{root}/vod",
            "page": f"{root}/{web}",  # the web vhost also serves the page (GET /{web}/) and its script
        }
    return out
