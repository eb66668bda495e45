"""The VOD video-upload protocol as pure functions, for omni-reference materials (docs/protocol.md
§11.1, §11.3): `ApplyUploadInner` / `CommitUploadInner` queries and bodies, the byte-upload headers and the
parsing of every answer. Signing is `sigv4.sign_headers` with service `vod` and the account's region; the I/O
lives in `vod_upload.py`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from . import imagex
from .errors import UpstreamBadResponse
from .imagex import UploadCredentials
from .regions import Region

VOD_SERVICE = "vod"
VOD_VERSION = "2020-11-19"
APPLY_ACTION = "ApplyUploadInner"
COMMIT_ACTION = "CommitUploadInner"
VIDEO_SCENE = 1
DEFAULT_SPACE = "dreamina"
UPLOAD_OK = 2000
MAX_VIDEO_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class VodAddress:
    """Where ApplyUploadInner says to put the bytes (`UploadNodes[0]`)."""

    upload_host: str
    store_uri: str
    auth: str
    session_key: str
    vid: str | None = None  # given at apply (§19.8, PY measured); absent in the elided §18 sample: the commit has it


@dataclass(frozen=True, slots=True)
class CommittedVideo:
    """A committed VOD video: its `vid` and the metadata VOD read."""

    vid: str
    width: int
    height: int
    duration: float  # seconds

    @property
    def duration_ms(self) -> int:
        return round(self.duration * 1000)


class VideoTooLong(Exception):
    """A video lasts longer than omni mode allows (not an upstream failure: the input is refused)."""

    def __init__(self, seconds: float, limit: float = MAX_VIDEO_SECONDS) -> None:
        super().__init__(f"the video lasts {seconds:g} s; at most {limit:g} s")
        self.seconds = seconds
        self.limit = limit


def space_name(data: Any) -> str:
    """The VOD space from `get_upload_token` data (`space_name`, default "dreamina")."""
    value = data.get("space_name") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else DEFAULT_SPACE


def parse_upload_token(data: Any, region: Region, *, now: float, default_ttl: float) -> UploadCredentials:
    """Scene-1 credentials from `get_upload_token` data: as for ImageX (§11.1), with `service_id` holding the
    VOD space (`space_name`, default "dreamina", in every region). Raises UpstreamBadResponse when incomplete."""
    creds = imagex.parse_upload_token(data, region, now=now, default_ttl=default_ttl)
    return dataclasses.replace(creds, service_id=space_name(data))


def apply_query(space: str, file_size: int, nonce: str) -> list[tuple[str, str]]:
    """ApplyUploadInner query pairs, in the web client's order."""
    return [
        ("Action", APPLY_ACTION),
        ("Version", VOD_VERSION),
        ("SpaceName", space),
        ("FileType", "video"),
        ("IsInner", "1"),
        ("FileSize", str(file_size)),
        ("s", nonce),
    ]


def commit_query(space: str) -> list[tuple[str, str]]:
    """CommitUploadInner query pairs."""
    return [("Action", COMMIT_ACTION), ("Version", VOD_VERSION), ("SpaceName", space)]


def commit_body(session_key: str) -> bytes:
    """The exact commit body: compact `{"SessionKey":"...","Functions":[]}`."""
    return json.dumps({"SessionKey": session_key, "Functions": []}, separators=(",", ":")).encode()


def upload_headers(auth: str, crc32: str) -> dict[str, str]:
    """The byte-upload headers: as for ImageX, without `Content-Disposition` (§11.3 step 3)."""
    headers = imagex.upload_headers(auth, crc32)
    headers.pop("Content-Disposition", None)
    return headers


def _result(payload: Any, action: str) -> dict[str, Any]:
    problem = imagex.response_error(payload)
    if problem is not None:
        raise UpstreamBadResponse(f"{action}: {problem}")
    result = payload.get("Result") if isinstance(payload, dict) else None
    if not isinstance(result, dict):
        raise UpstreamBadResponse(f"{action}: no Result in the answer")
    return result


def _first(value: Any) -> dict[str, Any] | None:
    return value[0] if isinstance(value, list) and value and isinstance(value[0], dict) else None


def parse_apply(payload: Any) -> VodAddress:
    """The upload address from an ApplyUploadInner answer. Raises UpstreamBadResponse when incomplete."""
    address = _result(payload, APPLY_ACTION).get("InnerUploadAddress")
    node = _first(address.get("UploadNodes")) if isinstance(address, dict) else None
    store = _first(node.get("StoreInfos")) if node else None
    if node is None or store is None:
        raise UpstreamBadResponse(f"{APPLY_ACTION}: no InnerUploadAddress.UploadNodes[0].StoreInfos[0]")
    raw = {
        "upload_host": node.get("UploadHost"),
        "store_uri": store.get("StoreUri"),
        "auth": store.get("Auth"),
        "session_key": node.get("SessionKey"),
    }
    fields = {k: v for k, v in raw.items() if isinstance(v, str) and v}
    missing = [k for k in raw if k not in fields]
    if missing:
        raise UpstreamBadResponse(f"{APPLY_ACTION}: UploadNodes[0] lacks {', '.join(missing)}")
    host = fields["upload_host"]
    if "://" in host or any(c.isspace() for c in host):
        raise UpstreamBadResponse(f"{APPLY_ACTION}: UploadHost is not a bare host")
    vid = node.get("Vid")
    return VodAddress(**fields, vid=vid if isinstance(vid, str) and vid else None)


def check_upload_answer(raw: bytes) -> None:
    """The byte upload must answer JSON with the number `code` 2000."""
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = None
    code = payload.get("code") if isinstance(payload, dict) else None
    if code != UPLOAD_OK or isinstance(code, bool):
        raise UpstreamBadResponse(f"VOD upload: code is {code!r}, not {UPLOAD_OK}")


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def parse_commit(payload: Any, *, vid: str | None = None) -> CommittedVideo:
    """The committed video from a CommitUploadInner answer: `Results[0].Vid` (else the apply's `vid`) and the
    size and `Duration` from `VideoMeta`, or from `Results[0]` itself when it has no `VideoMeta`. A missing
    `Duration` (PY saw none, §19.8) reads as 0: the caller's own reading of the file fills it in."""
    first = _first(_result(payload, COMMIT_ACTION).get("Results"))
    meta = first.get("VideoMeta", first) if first else None
    given = first.get("Vid") if first else None
    vid = given if isinstance(given, str) and given else vid
    if not isinstance(vid, str) or not vid or not isinstance(meta, dict):
        raise UpstreamBadResponse(f"{COMMIT_ACTION}: Results[0] needs a Vid (none came with the apply either)")
    return CommittedVideo(
        vid=vid,
        width=int(_number(meta.get("Width"))),
        height=int(_number(meta.get("Height"))),
        duration=_number(meta.get("Duration")),
    )
