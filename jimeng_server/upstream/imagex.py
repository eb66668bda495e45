"""The ImageX image-upload protocol as pure functions (docs/protocol.md §11.1, §11.2).

Upload credentials from `get_upload_token`, the ApplyImageUpload / CommitImageUpload queries and bodies,
the upload URL and headers, and parsing of every answer. Signing is `sigv4.sign_headers`; the I/O lives
in `uploader.py`.
"""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from yarl import URL

from .errors import UpstreamBadResponse
from .payloads import ImageRef
from .regions import Region, constants

IMAGEX_SERVICE = "imagex"
IMAGEX_VERSION = "2018-08-01"
APPLY_ACTION = "ApplyImageUpload"
COMMIT_ACTION = "CommitImageUpload"
API_PATH = "/"  # the canonical URI of every ImageX call (the host root)
IMAGE_SCENE = 2  # get_upload_token scene for ImageX images (1 is VOD video)
URI_STATUS_OK = 2000
_BASE36 = string.digits + string.ascii_lowercase


@dataclass(frozen=True, slots=True)
class UploadCredentials:
    """Temporary STS credentials and the ImageX service id (for VOD: the space) they are for. Secrets: never log."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    service_id: str
    expires_at: float

    def valid_at(self, now: float, margin: float) -> bool:
        """True while at least `margin` seconds of validity are left at `now`."""
        return now + margin < self.expires_at


@dataclass(frozen=True, slots=True)
class UploadAddress:
    """Where ApplyImageUpload says to put the bytes (index 0 of each list, as the web client uses)."""

    store_uri: str
    auth: str
    upload_host: str
    session_key: str


# What CommitImageUpload yields: the image URI for generate payloads and the size/format ImageX read
# (0/0/"" when absent) — the same value generate payloads take.
CommittedImage = ImageRef


def _nonempty_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and value else None


def parse_expiry(value: Any) -> float | None:
    """An expiry given as Unix seconds (number or digit string) or an ISO-8601 time with offset; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value > 0 else None
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.isdigit():
            return float(text)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed.timestamp() if parsed.tzinfo is not None else None
    return None


def parse_upload_token(data: Any, region: Region, *, now: float, default_ttl: float) -> UploadCredentials:
    """Credentials from `get_upload_token` data (§11.1).

    The service is `service_id` on CN and `space_name` elsewhere, falling back to the region's default.
    The expiry is `expired_time` (or `expire_time`) when present and parseable, else `now + default_ttl`.
    Raises UpstreamBadResponse when a credential field is missing.
    """
    if not isinstance(data, dict):
        raise UpstreamBadResponse("get_upload_token: data is not an object")
    ak = _nonempty_str(data, "access_key_id")
    sk = _nonempty_str(data, "secret_access_key")
    token = _nonempty_str(data, "session_token")
    if ak is None or sk is None or token is None:
        raise UpstreamBadResponse("get_upload_token: access_key_id, secret_access_key and session_token are required")
    rc = constants(region)
    service = _nonempty_str(data, rc.imagex_service_field) or rc.imagex_default_service_id
    expiry = parse_expiry(data.get("expired_time", data.get("expire_time")))
    return UploadCredentials(ak, sk, token, service, expiry if expiry is not None else now + default_ttl)


def random_nonce(length: int = 10) -> str:
    """The `s` query value: a random base-36 string (the web client's cache buster)."""
    return "".join(secrets.choice(_BASE36) for _ in range(length))


def apply_query(service_id: str, file_size: int, nonce: str, region: Region) -> list[tuple[str, str]]:
    """ApplyImageUpload query pairs, in the web client's order; international adds `device_platform=web`."""
    params = [
        ("Action", APPLY_ACTION),
        ("Version", IMAGEX_VERSION),
        ("ServiceId", service_id),
        ("FileSize", str(file_size)),
        ("s", nonce),
    ]
    if region.is_international:
        params.append(("device_platform", "web"))
    return params


def commit_query(service_id: str) -> list[tuple[str, str]]:
    """CommitImageUpload query pairs."""
    return [("Action", COMMIT_ACTION), ("Version", IMAGEX_VERSION), ("ServiceId", service_id)]


def commit_body(session_key: str) -> bytes:
    """The exact commit body: compact JSON `{"SessionKey":"..."}`."""
    return json.dumps({"SessionKey": session_key}, separators=(",", ":")).encode()


def api_url(imagex_base: str) -> str:
    """The URL of ImageX (and VOD) calls: the configured base with the API path `/` appended."""
    return imagex_base.rstrip("/") + API_PATH


def upload_url(imagex_base: str, upload_host: str, store_uri: str) -> str:
    """`{scheme}://{UploadHost}/upload/v1/{StoreUri}`, the scheme being that of the ImageX (or VOD) base URL.

    `upload_host` is a bare host (optionally `host:port` and a path prefix, as the simulator gives).
    """
    scheme = URL(imagex_base).scheme or "https"
    return f"{scheme}://{upload_host.strip('/')}/upload/v1/{store_uri}"


def browser_headers(origin: str, *, user_agent: str, sec_ch_ua: str, accept_language: str) -> dict[str, str]:
    """The browser headers every upload hop carries (§11.2), with the same identity as the web calls."""
    return {
        "Accept": "*/*",
        "Accept-Language": accept_language,
        "Origin": origin,
        "Referer": f"{origin}/ai-tool/generate",
        "Sec-Ch-Ua": sec_ch_ua,
        "Sec-Ch-Ua-Mobile": "?0",
        "Sec-Ch-Ua-Platform": '"Windows"',
        "Sec-Fetch-Dest": "empty",
        "Sec-Fetch-Mode": "cors",
        "Sec-Fetch-Site": "cross-site",
        "User-Agent": user_agent,
    }


def upload_headers(auth: str, crc32: str) -> dict[str, str]:
    """Headers of the byte upload: the apply `Auth` verbatim and the body's CRC-32 (§11.2 step 3, §11.5)."""
    return {
        "Authorization": auth,
        "Content-CRC32": crc32,
        "Content-Type": "application/octet-stream",
        "Content-Disposition": 'attachment; filename="undefined"',
    }


def response_error(payload: Any) -> str | None:
    """`Code: Message` of a `ResponseMetadata.Error`, or None when the answer carries no error."""
    if not isinstance(payload, dict):
        return None
    meta = payload.get("ResponseMetadata")
    error = meta.get("Error") if isinstance(meta, dict) else None
    if not isinstance(error, dict) or not error:
        return None
    code = error.get("Code") or "Error"
    message = error.get("Message") or ""
    return f"{code}: {message}" if message else str(code)


def _result(payload: Any, action: str) -> dict[str, Any]:
    problem = response_error(payload)
    if problem is not None:
        raise UpstreamBadResponse(f"{action}: {problem}")
    result = payload.get("Result") if isinstance(payload, dict) else None
    if not isinstance(result, dict):
        raise UpstreamBadResponse(f"{action}: no Result in the answer")
    return result


def parse_apply(payload: Any) -> UploadAddress:
    """The upload address from an ApplyImageUpload answer: the host from `UploadHosts[0]` or, when that list is
    absent, the singular `UploadHost` (both are seen, §19.8). Raises UpstreamBadResponse when incomplete."""
    result = _result(payload, APPLY_ACTION)
    address = result.get("UploadAddress")
    if not isinstance(address, dict):
        raise UpstreamBadResponse(f"{APPLY_ACTION}: no UploadAddress")
    stores, hosts = address.get("StoreInfos"), address.get("UploadHosts")
    if not (isinstance(hosts, list) and hosts) and isinstance(address.get("UploadHost"), str):
        hosts = [address["UploadHost"]]  # the singular form of a measured CN answer (§19.8 PY)
    session_key = address.get("SessionKey")
    if not (isinstance(stores, list) and stores and isinstance(stores[0], dict)):
        raise UpstreamBadResponse(f"{APPLY_ACTION}: no StoreInfos")
    if not (isinstance(hosts, list) and hosts and isinstance(hosts[0], str) and hosts[0].strip()):
        raise UpstreamBadResponse(f"{APPLY_ACTION}: no UploadHosts (or UploadHost)")
    store_uri, auth = stores[0].get("StoreUri"), stores[0].get("Auth")
    if not (isinstance(store_uri, str) and store_uri and isinstance(auth, str) and auth):
        raise UpstreamBadResponse(f"{APPLY_ACTION}: StoreInfos[0] needs StoreUri and Auth")
    if not isinstance(session_key, str) or not session_key:
        raise UpstreamBadResponse(f"{APPLY_ACTION}: no SessionKey")
    host = hosts[0].strip()
    if "://" in host or any(c.isspace() for c in host):
        raise UpstreamBadResponse(f"{APPLY_ACTION}: UploadHosts[0] is not a bare host")
    return UploadAddress(store_uri=store_uri, auth=auth, upload_host=host, session_key=session_key)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def parse_commit(payload: Any) -> CommittedImage:
    """The committed image from a CommitImageUpload answer; `UriStatus` must be the number 2000."""
    result = _result(payload, COMMIT_ACTION)
    results = result.get("Results")
    if not (isinstance(results, list) and results and isinstance(results[0], dict)):
        raise UpstreamBadResponse(f"{COMMIT_ACTION}: no Results")
    first = results[0]
    uri, status = first.get("Uri"), first.get("UriStatus")
    if not isinstance(uri, str) or not uri:
        raise UpstreamBadResponse(f"{COMMIT_ACTION}: no Uri")
    if status != URI_STATUS_OK or isinstance(status, bool):
        raise UpstreamBadResponse(f"{COMMIT_ACTION}: UriStatus is {status!r}, not {URI_STATUS_OK}")
    plugins = result.get("PluginResult")
    info = plugins[0] if isinstance(plugins, list) and plugins and isinstance(plugins[0], dict) else {}
    fmt = info.get("ImageFormat")
    return CommittedImage(
        uri=uri,
        width=_int(info.get("ImageWidth")),
        height=_int(info.get("ImageHeight")),
        format=fmt if isinstance(fmt, str) else "",
    )
