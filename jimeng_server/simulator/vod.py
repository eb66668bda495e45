"""Simulated VOD video uploads (docs/protocol.md §11.3, §11.4, §14.22–25), on the `vod` vhost, API path `/`.

- `GET ?Action=ApplyUploadInner&Version=2020-11-19&SpaceName=..&FileType=video&IsInner=1&FileSize=..&s=..` and
  `POST ?Action=CommitUploadInner&Version=2020-11-19&SpaceName=..` with the exact body
  `{"SessionKey":"...","Functions":[]}`.
- SigV4 is verified exactly with `uploads.verify_sigv4` (service `vod`; the scope's region must be the SigV4 region
  of the account the credentials were issued to, since one VOD host serves every region). Failures: HTTP 403
  `SignatureDoesNotMatch`; scene-2 (ImageX) credentials: 403 `AccessDenied`; a wrong SpaceName, FileType, IsInner,
  FileSize or SessionKey: 400 `InvalidParameter`.
- Apply answers `Result.InnerUploadAddress.UploadNodes[0]` with `Vid`, `UploadHost` (`<host:port>/upload`, the
  shared upload vhost), `StoreInfos[0].{StoreUri, Auth}`, `SessionKey` and `Type`. The upload vhost checks Auth,
  CRC-32 and size as for images, answers `{"code": 2000, "data": {"crc32": ...}}` and reads the MP4's duration
  and size while the bytes stream past.
- Commit needs a known SessionKey of the same account and space whose upload finished; it answers
  `Results[0].{Vid, VideoMeta}` with the real `Duration` (seconds), `Width` and `Height` read from the upload
  (0 x 0 when the MP4 has no track header), and registers the vid as committed by the account, which the omni
  validator (`video.py`) requires. Bytes that are not a readable MP4 are refused at commit (400 `InvalidMedia`).

Importing this module registers the handler.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from aiohttp import web

from ..upstream.regions import constants
from .hosts import VHost
from .uploads import MAX_FILE_SIZE, IssuedCredentials, service_error, service_ok, verify_sigv4
from .web_api import SERVICE_HANDLERS, Answer

if TYPE_CHECKING:
    from .app import Simulator

VOD_VERSION = "2020-11-19"
APPLY = "ApplyUploadInner"
COMMIT = "CommitUploadInner"
_METHODS = {APPLY: "GET", COMMIT: "POST"}


def _error(status: int, code: str, message: str, action: str, region: str) -> Answer:
    return service_error(status, code, message, action, region, service="vod", version=VOD_VERSION)


def _ok(result: dict[str, object], action: str, region: str) -> Answer:
    return service_ok(result, action, region, service="vod", version=VOD_VERSION)


async def vod_service(sim: Simulator, request: web.Request, vhost: VHost, api_path: str, raw: bytes) -> Answer:
    """ApplyUploadInner / CommitUploadInner on the VOD vhost."""
    query = request.query
    action = query.get("Action", "")
    region = ""  # the SigV4 region, known once the credentials are
    if api_path != "/":
        return Answer(status=404, text="404 page not found", content_type="text/plain")
    if _METHODS.get(action) != request.method:
        return _error(400, "InvalidAction", f"{request.method} {action or '(no Action)'} is not served", action, region)
    if query.get("Version") != VOD_VERSION:
        return _error(400, "InvalidVersion", f"Version must be {VOD_VERSION}", action, region)
    headers = {k.lower(): v for k, v in request.headers.items()}
    verdict = verify_sigv4(sim, request.method, list(query.items()), headers, raw, region=None, service="vod")
    if isinstance(verdict, str):
        return _error(403, "SignatureDoesNotMatch", verdict, action, region)
    creds = verdict
    region = constants(creds.region).sigv4_region
    if creds.scene != 1 or creds.region not in vhost.regions:
        return _error(
            403, "AccessDenied", "these credentials are not for VOD (get_upload_token scene 1)", action, region
        )
    if query.get("SpaceName") != creds.service:
        return _error(400, "InvalidParameter", "SpaceName does not match the upload token", action, region)
    if action == APPLY:
        return _apply(sim, request, creds, region)
    return _commit(sim, creds, raw, region)


def _apply(sim: Simulator, request: web.Request, creds: IssuedCredentials, region: str) -> Answer:
    query = request.query
    size_text = query.get("FileSize", "")
    if not size_text.isdigit() or not 0 < int(size_text) <= MAX_FILE_SIZE:
        return _error(400, "InvalidParameter", f"FileSize must be 1..{MAX_FILE_SIZE}", APPLY, region)
    if query.get("FileType") != "video" or query.get("IsInner") != "1":
        return _error(400, "InvalidParameter", "FileType must be video and IsInner 1", APPLY, region)
    if not query.get("s"):
        return _error(400, "InvalidParameter", "the s parameter is required", APPLY, region)
    store_uri = f"tos-cn-v-{creds.service}/{sim.rng.randbytes(16).hex()}"
    vid = "v0d" + sim.rng.randbytes(16).hex()
    slot = sim.uploads.open_slot(sim.rng, creds, store_uri, int(size_text), vid=vid)
    node = {
        **({"Vid": slot.vid} if sim.settings.vod_apply_vid else {}),  # §19.8: PY sees it; the §18 sample elides it
        "StoreInfos": [{"StoreUri": store_uri, "Auth": slot.auth, "UploadID": sim.rng.randbytes(16).hex()}],
        "UploadHost": f"{request.host}/upload",
        "SessionKey": slot.session_key,
        "Type": "normal",
    }
    return _ok({"InnerUploadAddress": {"UploadNodes": [node]}}, APPLY, region)


def _commit(sim: Simulator, creds: IssuedCredentials, raw: bytes, region: str) -> Answer:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not (
        isinstance(body, dict)
        and list(body) == ["SessionKey", "Functions"]
        and isinstance(body["SessionKey"], str)
        and body["Functions"] == []
    ):
        return _error(400, "InvalidParameter", 'the body must be {"SessionKey":"...","Functions":[]}', COMMIT, region)
    if raw != json.dumps(body, separators=(",", ":")).encode():
        return _error(400, "InvalidParameter", "the body must be compact JSON", COMMIT, region)
    slot = sim.uploads.slots.get(body["SessionKey"])
    if slot is None or not slot.vid or slot.sessionid != creds.sessionid or slot.service_id != creds.service:
        return _error(400, "InvalidParameter", "unknown SessionKey", COMMIT, region)
    if slot.received != slot.file_size:
        return _error(400, "InvalidParameter", "the upload of this SessionKey has not finished", COMMIT, region)
    movie = slot.movie
    if movie is None and slot.audio is not None:  # reference audio goes through VOD too (§17.10)
        slot.committed = True
        sim.uploads.vids[slot.vid] = slot
        audio = {
            "Uri": slot.store_uri,
            "Duration": round(slot.audio.duration, 3),
            "Format": slot.audio.format,
            "Size": slot.file_size,
            "FileType": "audio",
            "Md5": hashlib.md5(slot.store_uri.encode()).hexdigest(),
        }
        return _ok({"Results": [{"Vid": slot.vid, "VideoMeta": audio}]}, COMMIT, region)
    if movie is None:
        return _error(400, "InvalidMedia", "the uploaded bytes are not a readable MP4/MOV, MP3 or WAV", COMMIT, region)
    slot.committed = True
    sim.uploads.vids[slot.vid] = slot
    meta = {
        "Uri": slot.store_uri,
        "Height": movie.height,
        "Width": movie.width,
        "OriginHeight": movie.height,
        "OriginWidth": movie.width,
        "Duration": round(movie.duration, 3),
        "Bitrate": round(slot.file_size * 8 / movie.duration) if movie.duration else 0,
        "Format": "mp4",
        "Codec": "h264",
        "Size": slot.file_size,
        "Md5": hashlib.md5(slot.store_uri.encode()).hexdigest(),
    }
    if not sim.settings.vod_commit_duration:
        del meta["Duration"]  # PY's commit answers carry no Duration (§19.8)
    return _ok({"Results": [{"Vid": slot.vid, "VideoMeta": meta}]}, COMMIT, region)


SERVICE_HANDLERS["vod"] = vod_service
