"""Simulated image uploads (docs/protocol.md §11.1, §11.2, §11.4, §11.5, §14.22–25).

- `POST /mweb/v1/get_upload_token` (web API): per-account temporary credentials that expire after
  `settings.upload_token_ttl` seconds, with `service_id` (CN) or `space_name` (international); `scene` must be
  2 (image) or 1 (video).
- ImageX vhosts (`cn-imagex`, `us-imagex`, `sg-imagex`), API path `/`: `GET ?Action=ApplyImageUpload` and
  `POST ?Action=CommitImageUpload`, `Version=2018-08-01`. SigV4 is verified exactly: the signed-header set,
  the scope's region (the vhost's) and service (`imagex`), `x-amz-date` within `settings.sigv4_skew`, the
  issued security token, `x-amz-content-sha256` = SHA-256 of the commit body, and the signature recomputed
  with the issued secret. Failures: HTTP 403 `{"ResponseMetadata": {"Error": {"Code": "SignatureDoesNotMatch"}}}`;
  a wrong ServiceId, FileSize or SessionKey is HTTP 400 `InvalidParameter`.
- VOD (`vod.py`) shares the credentials, the SigV4 check (`verify_sigv4`) and the upload vhost; its slots carry
  a `vid` and their bytes are scanned as an MP4 (only box headers and the `moov` box are kept).
- The upload vhost `upload`: apply answers `UploadHosts: ["<host:port>/upload"]`, so the client's
  `{scheme}://{UploadHost}/upload/v1/{StoreUri}` lands on `/upload/upload/v1/{StoreUri}`. `Authorization` must
  be the apply's `Auth` for that StoreUri (else 401) and `Content-CRC32` the body's CRC-32 in 8 lowercase hex
  digits (else 400), the size must equal FileSize (else 400). The body is streamed: only its size, CRC, first
  256 KiB (for the image header) and whether it holds the marker `SIM:RISK` are kept.
- Commit needs a known SessionKey of the same account whose upload finished; it answers `Uri`,
  `UriStatus: 2000` and `PluginResult` with the real width/height/format read from the uploaded header.

An image is "violating" for `algo_proxy` when its bytes contain `SIM:RISK` or `Simulator.mark_risky(uri)` was
called. `settings.upload_gate = N` makes every byte upload wait until N uploads were in flight at once (proof of
concurrency; a sequential client fails after `settings.upload_gate_timeout` real seconds).
Importing this module registers the handlers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..audio import HEAD_BYTES as AUDIO_HEAD_BYTES
from ..audio import AudioFacts, audio_facts
from ..checksums import Crc32
from ..imageinfo import ImageInfo, read_info
from ..mp4 import MovieFacts, MovieScanner
from ..upstream.regions import Region, constants
from ..upstream.sigv4 import parse_authorization, sign_headers
from .hosts import VHost
from .web_api import SERVICE_HANDLERS, WEB_HANDLERS, Answer, Call

if TYPE_CHECKING:
    from .app import Simulator

UPLOAD_TOKEN = "/mweb/v1/get_upload_token"
IMAGEX_VERSION = "2018-08-01"
UPLOAD_PREFIX = "/upload/v1/"
RISK_MARKER = b"SIM:RISK"
HEAD_KEEP = 256 * 1024
MAX_MOOV_KEEP = 4 * 1024 * 1024  # the most of an uploaded video's moov box kept to read its duration
MAX_FILE_SIZE = 200 * 1024 * 1024
VOD_SPACE = "dreamina"
_CHUNK = 256 * 1024
_CRC_RE = re.compile(r"[0-9a-f]{8}")


@dataclass
class IssuedCredentials:
    """Credentials handed out by get_upload_token."""

    access_key: str
    secret_key: str
    session_token: str
    sessionid: str
    region: Region
    scene: int
    service: str
    expires_at: float


@dataclass
class UploadSlot:
    """One ApplyImageUpload and what became of it."""

    session_key: str
    store_uri: str
    auth: str
    sessionid: str
    service_id: str
    file_size: int
    received: int | None = None
    crc32: str = ""
    info: ImageInfo | None = None
    risky: bool = False
    committed: bool = False
    vid: str = ""  # VOD slots (ApplyUploadInner) only: the video id; their bytes are read as an MP4
    movie: MovieFacts | None = None  # VOD slots: duration and size read from the uploaded MP4
    audio: AudioFacts | None = None  # VOD slots whose bytes are MP3/WAV audio (omni audio, §17.10)


@dataclass
class UploadStore:
    """The simulator's upload state; tests read `peak_in_flight`, `slots`, `credentials`."""

    credentials: dict[str, IssuedCredentials] = field(default_factory=dict)  # by access key
    slots: dict[str, UploadSlot] = field(default_factory=dict)  # by session key
    by_uri: dict[str, UploadSlot] = field(default_factory=dict)
    vids: dict[str, UploadSlot] = field(default_factory=dict)  # committed VOD videos by vid
    risky_uris: set[str] = field(default_factory=set)
    in_flight: int = 0
    peak_in_flight: int = 0
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    def open_slot(
        self, rng: random.Random, creds: IssuedCredentials, store_uri: str, size: int, *, vid: str = ""
    ) -> UploadSlot:
        """Register a new upload slot for `store_uri` (an apply answer): a fresh session key and upload Auth."""
        slot = UploadSlot(
            session_key=rng.randbytes(24).hex(),
            store_uri=store_uri,
            auth=f"SpaceKey/{creds.service}/1/:version:v2:{rng.randbytes(24).hex()}",
            sessionid=creds.sessionid,
            service_id=creds.service,
            file_size=size,
            vid=vid,
        )
        self.slots[slot.session_key] = slot
        self.by_uri[store_uri] = slot
        return slot

    def committed_by(self, uri: str, sessionid: str) -> bool:
        """True when `uri` (an ImageX URI or a VOD vid) was uploaded and committed by the account `sessionid`."""
        slot = self.by_uri.get(uri) or self.vids.get(uri)
        return slot is not None and slot.committed and slot.sessionid == sessionid

    def is_risky(self, uri: str) -> bool:
        """True for images marked as violating (marker bytes or `mark_risky`)."""
        slot = self.by_uri.get(uri)
        return uri in self.risky_uris or (slot is not None and slot.risky)


# ------------------------------------------------------------------------------------------ get_upload_token


async def get_upload_token(sim: Simulator, call: Call) -> Answer:
    """`POST /mweb/v1/get_upload_token`: fresh temporary credentials for the calling account."""
    scene = call.body.get("scene")
    if scene not in (1, 2) or isinstance(scene, bool):
        return sim.fail("4002", f"param error: scene must be 2 (image) or 1 (video), got {scene!r}", call.path)
    now = sim.clock.time()
    rc = constants(call.region)
    if scene == 2:
        service_field, service = rc.imagex_service_field, rc.imagex_default_service_id
    else:
        service_field, service = "space_name", VOD_SPACE
    creds = IssuedCredentials(
        access_key="AKTP" + sim.rng.randbytes(16).hex().upper(),
        secret_key=sim.rng.randbytes(20).hex(),
        session_token="STS2" + sim.rng.randbytes(48).hex(),
        sessionid=call.account.sessionid,
        region=call.region,
        scene=scene,
        service=service,
        expires_at=now + sim.settings.upload_token_ttl,
    )
    sim.uploads.credentials[creds.access_key] = creds
    data = {
        "access_key_id": creds.access_key,
        "secret_access_key": creds.secret_key,
        "session_token": creds.session_token,
        "expired_time": int(creds.expires_at),
        "current_time": int(now),
        service_field: service,
    }
    return sim.ok(data)


# ------------------------------------------------------------------------------------------ ImageX


def service_error(
    status: int,
    code: str,
    message: str,
    action: str,
    region: str,
    *,
    service: str = "imagex",
    version: str = IMAGEX_VERSION,
) -> Answer:
    """An ImageX/VOD error answer: `ResponseMetadata.Error` with `Code` and `Message`."""
    meta = {**_metadata(action, region, service, version), "Error": {"Code": code, "Message": message}}
    return Answer(status=status, payload={"ResponseMetadata": meta})


def service_ok(
    result: dict[str, Any], action: str, region: str, *, service: str = "imagex", version: str = IMAGEX_VERSION
) -> Answer:
    """An ImageX/VOD success answer: `ResponseMetadata` and `Result`."""
    return Answer(payload={"ResponseMetadata": _metadata(action, region, service, version), "Result": result})


def _metadata(action: str, region: str, service: str, version: str) -> dict[str, Any]:
    return {
        "RequestId": secrets.token_hex(12),
        "Action": action,
        "Version": version,
        "Service": service,
        "Region": region,
    }


def _parse_amz_date(value: str) -> float | None:
    try:
        return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def verify_sigv4(
    sim: Simulator,
    method: str,
    params: list[tuple[str, str]],
    headers: dict[str, str],
    body: bytes,
    *,
    region: str | None,
    service: str,
) -> IssuedCredentials | str:
    """The issued credentials a request was correctly signed with, or a description of what is wrong.

    `region` is the SigV4 region the scope must name; None means the region of the account the credentials
    were issued to (VOD: one host for every region).
    """
    try:
        auth = parse_authorization(headers.get("authorization", ""))
    except ValueError as exc:
        return str(exc)
    creds = sim.uploads.credentials.get(auth.access_key)
    if creds is None:
        return "the access key was not issued by get_upload_token"
    if region is None:
        region = constants(creds.region).sigv4_region
    expected = ["x-amz-date", "x-amz-security-token"]
    if method == "POST" and body:
        expected.append("x-amz-content-sha256")
    if list(auth.signed_headers) != sorted(expected):
        return f"SignedHeaders must be exactly {';'.join(sorted(expected))}, got {';'.join(auth.signed_headers)}"
    if auth.region != region or auth.service != service:
        return f"credential scope must be {region}/{service}, got {auth.region}/{auth.service}"
    date = headers.get("x-amz-date", "")
    stamp = _parse_amz_date(date)
    if stamp is None or date[:8] != auth.date:
        return "x-amz-date must be YYYYMMDDTHHMMSSZ and match the credential date"
    now = sim.clock.time()
    if abs(stamp - now) > sim.settings.sigv4_skew:
        return "x-amz-date is too far from the server time"
    if now >= creds.expires_at:
        return "the security token has expired"
    if headers.get("x-amz-security-token") != creds.session_token:
        return "x-amz-security-token is not the issued session token"
    if "x-amz-content-sha256" in expected and headers.get("x-amz-content-sha256") != hashlib.sha256(body).hexdigest():
        return "x-amz-content-sha256 is not the SHA-256 of the body"
    recomputed = sign_headers(
        method,
        "/",
        params,
        body,
        access_key=creds.access_key,
        secret_key=creds.secret_key,
        session_token=creds.session_token,
        region=region,
        service=service,
        amz_date=date,
    )
    if headers.get("authorization", "").strip() != recomputed["authorization"]:
        return "the signature does not match"
    return creds


async def imagex_service(sim: Simulator, request: web.Request, vhost: VHost, api_path: str, raw: bytes) -> Answer:
    """ApplyImageUpload / CommitImageUpload on an ImageX vhost."""
    region = constants(vhost.regions[0]).sigv4_region
    query = request.query
    action = query.get("Action", "")
    if api_path != "/":
        return Answer(status=404, text="404 page not found", content_type="text/plain")
    methods = {"ApplyImageUpload": "GET", "CommitImageUpload": "POST"}
    if methods.get(action) != request.method:
        return service_error(
            400, "InvalidAction", f"{request.method} {action or '(no Action)'} is not served", action, region
        )
    if query.get("Version") != IMAGEX_VERSION:
        return service_error(400, "InvalidVersion", f"Version must be {IMAGEX_VERSION}", action, region)
    headers = {k.lower(): v for k, v in request.headers.items()}
    verdict = verify_sigv4(sim, request.method, list(query.items()), headers, raw, region=region, service="imagex")
    if isinstance(verdict, str):
        return service_error(403, "SignatureDoesNotMatch", verdict, action, region)
    creds = verdict
    if creds.region not in vhost.regions or creds.scene != 2:
        return service_error(403, "AccessDenied", "these credentials are not for this ImageX host", action, region)
    if query.get("ServiceId") != creds.service:
        return service_error(400, "InvalidParameter", "ServiceId does not match the upload token", action, region)
    if action == "ApplyImageUpload":
        return _apply(sim, request, vhost, creds, region)
    return _commit(sim, creds, raw, region)


def _apply(sim: Simulator, request: web.Request, vhost: VHost, creds: IssuedCredentials, region: str) -> Answer:
    action = "ApplyImageUpload"
    query = request.query
    size_text = query.get("FileSize", "")
    if not size_text.isdigit() or not 0 < int(size_text) <= MAX_FILE_SIZE:
        return service_error(400, "InvalidParameter", f"FileSize must be 1..{MAX_FILE_SIZE}", action, region)
    if not query.get("s"):
        return service_error(400, "InvalidParameter", "the s parameter is required", action, region)
    if (query.get("device_platform") == "web") != creds.region.is_international:
        return service_error(
            400, "InvalidParameter", "device_platform=web is sent on international hosts only", action, region
        )
    tag = "cn" if creds.region is Region.CN else "va"
    store_uri = f"tos-{tag}-i-{creds.service}/{sim.rng.randbytes(16).hex()}"
    slot = sim.uploads.open_slot(sim.rng, creds, store_uri, int(size_text))
    host = f"{request.host}/upload"
    address = {
        "StoreInfos": [{"StoreUri": store_uri, "Auth": slot.auth, "UploadID": sim.rng.randbytes(16).hex()}],
        # settings.imagex_host_field: the plural list or PY's singular string (§19.8)
        **({"UploadHost": host} if sim.settings.imagex_host_field == "UploadHost" else {"UploadHosts": [host]}),
        "SessionKey": slot.session_key,
    }
    return service_ok({"UploadAddress": address}, action, region)


def _commit(sim: Simulator, creds: IssuedCredentials, raw: bytes, region: str) -> Answer:
    action = "CommitImageUpload"
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not (isinstance(body, dict) and list(body) == ["SessionKey"] and isinstance(body["SessionKey"], str)):
        return service_error(400, "InvalidParameter", 'the body must be {"SessionKey":"..."}', action, region)
    if raw != json.dumps(body, separators=(",", ":")).encode():
        return service_error(400, "InvalidParameter", "the body must be compact JSON", action, region)
    slot = sim.uploads.slots.get(body["SessionKey"])
    if slot is None or slot.sessionid != creds.sessionid or slot.service_id != creds.service:
        return service_error(400, "InvalidParameter", "unknown SessionKey", action, region)
    if slot.received != slot.file_size:
        return service_error(400, "InvalidParameter", "the upload of this SessionKey has not finished", action, region)
    slot.committed = True
    info = slot.info
    plugin = {
        "FileName": slot.store_uri.rsplit("/", 1)[-1],
        "SourceUri": slot.store_uri,
        "ImageUri": slot.store_uri,
        "ImageWidth": info.width if info else 0,
        "ImageHeight": info.height if info else 0,
        "ImageMd5": "",
        "ImageFormat": info.format if info else "",
        "ImageSize": slot.file_size,
        "FrameCnt": 1,
    }
    result = {
        "Results": [{"Uri": slot.store_uri, "UriStatus": 2000}],
        "RequestId": secrets.token_hex(12),
        "PluginResult": [plugin],
    }
    return service_ok(result, action, region)


# ------------------------------------------------------------------------------------------ upload host


def _upload_error(status: int, code: int, message: str, received: int = 0) -> Answer:
    return Answer(status=status, payload={"code": code, "apiversion": "v1", "message": message}, body_size=received)


async def upload_service(sim: Simulator, request: web.Request, vhost: VHost, api_path: str, raw: bytes) -> Answer:
    """`POST /upload/v1/{StoreUri}` on the upload vhost: Auth and CRC-32 checks, body streamed."""
    if request.method != "POST" or not api_path.startswith(UPLOAD_PREFIX):
        return _upload_error(404, 4040, "not found")
    slot = sim.uploads.by_uri.get(api_path[len(UPLOAD_PREFIX) :])
    if slot is None:
        return _upload_error(404, 4041, "unknown StoreUri")
    if request.headers.get("Authorization") != slot.auth:
        return _upload_error(401, 4011, "Authorization is not the Auth issued for this StoreUri")
    crc_header = request.headers.get("Content-CRC32", "")
    if not _CRC_RE.fullmatch(crc_header):
        return _upload_error(400, 4003, "Content-CRC32 must be 8 lowercase hex digits")
    store = sim.uploads
    store.in_flight += 1
    store.peak_in_flight = max(store.peak_in_flight, store.in_flight)
    if sim.settings.upload_gate and store.peak_in_flight >= sim.settings.upload_gate:
        store.gate.set()
    try:
        crc, size, head, risky = Crc32(), 0, bytearray(), False
        movie = MovieScanner(max_moov=MAX_MOOV_KEEP) if slot.vid else None
        carry = b""
        async for chunk in request.content.iter_chunked(_CHUNK):
            crc.update(chunk)
            size += len(chunk)
            if movie is not None:
                movie.feed(chunk)
            keep = AUDIO_HEAD_BYTES if movie is not None else HEAD_KEEP
            if len(head) < keep:
                head += chunk[: keep - len(head)]
            window = carry + chunk
            risky = risky or RISK_MARKER in window
            carry = window[-(len(RISK_MARKER) - 1) :]
        if sim.settings.upload_gate:
            try:
                await asyncio.wait_for(store.gate.wait(), sim.settings.upload_gate_timeout)
            except TimeoutError:
                return _upload_error(409, 4090, "upload gate: too few uploads in flight at once", size)
    finally:
        store.in_flight -= 1
    if size != slot.file_size:
        return _upload_error(400, 4005, f"body size {size} does not match FileSize {slot.file_size}", size)
    if crc.hexdigest() != crc_header:
        return _upload_error(400, 4004, "Content-CRC32 does not match the body", size)
    slot.received, slot.crc32 = size, crc_header
    slot.info = read_info(bytes(head)) if movie is None else None
    slot.movie = movie.facts() if movie is not None else None
    slot.audio = audio_facts(bytes(head), size) if movie is not None and slot.movie is None else None
    slot.risky = risky
    data = {"crc32": crc_header, "etag": hashlib.md5(slot.store_uri.encode()).hexdigest()}
    return Answer(payload={"code": 2000, "apiversion": "v1", "message": "Success", "data": data}, body_size=size)


WEB_HANDLERS[UPLOAD_TOKEN] = get_upload_token
SERVICE_HANDLERS["imagex"] = imagex_service
SERVICE_HANDLERS["upload"] = upload_service
