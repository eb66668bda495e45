"""AWS Signature V4 as ImageX and VOD use it, plus the `Content-CRC32` checksum.

Pure functions, usable both for signing (client) and verifying (simulator).
Facts: docs/protocol.md §11.4 (SigV4 variant) and §11.5 (CRC-32).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

ALGORITHM = "AWS4-HMAC-SHA256"
SCOPE_TERMINATOR = "aws4_request"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

_AMZ_DATE_RE = re.compile(r"^\d{8}T\d{6}Z$")


def amz_date(epoch_seconds: float) -> str:
    """Format a Unix time as the SigV4 `x-amz-date`: UTC `YYYYMMDDTHHMMSSZ` (sub-seconds dropped)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(int(epoch_seconds)))


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    """Canonical query of §11.4: decoded pairs sorted by key (code-unit order), `k=v` joined by `&`.

    Values are written as given, without re-encoding; pairs with equal keys are ordered by value.
    """
    return "&".join(f"{k}={v}" for k, v in sorted(params))


def payload_hash(method: str, body: bytes) -> str:
    """Hex SHA-256 of the body for POST with a non-empty body, else that of the empty string."""
    if _signs_body(method, body):
        return hashlib.sha256(body).hexdigest()
    return EMPTY_SHA256


def _signs_body(method: str, body: bytes) -> bool:
    return method.upper() == "POST" and len(body) > 0


def signed_header_values(method: str, body: bytes, *, session_token: str | None, amz_date: str) -> dict[str, str]:
    """The `x-amz-*` headers that take part in the signature (lower-case names), per §11.4 item 4."""
    headers = {"x-amz-date": amz_date}
    if session_token:
        headers["x-amz-security-token"] = session_token
    if _signs_body(method, body):
        headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    return headers


def canonical_request(
    method: str,
    path: str,
    params: Iterable[tuple[str, str]],
    headers: dict[str, str],
    body: bytes,
) -> str:
    """Build the canonical request string from the signed headers (`headers`, lower-case names)."""
    names = sorted(headers)
    canonical_headers = "".join(f"{name}:{headers[name].strip()}\n" for name in names)
    return "\n".join(
        [
            method.upper(),
            path or "/",
            canonical_query(params),
            canonical_headers,
            ";".join(names),
            payload_hash(method, body),
        ]
    )


def credential_scope(date: str, region: str, service: str) -> str:
    """`{date}/{region}/{service}/aws4_request`, date being the 8-digit day."""
    return f"{date}/{region}/{service}/{SCOPE_TERMINATOR}"


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    """The SigV4 string to sign for a canonical request."""
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """HMAC-SHA256 key chain `"AWS4"+secret` -> date -> region -> service -> `aws4_request`."""
    key = ("AWS4" + secret_key).encode("utf-8")
    for part in (date, region, service, SCOPE_TERMINATOR):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def sign_headers(
    method: str,
    path: str,
    params: Sequence[tuple[str, str]],
    body: bytes,
    *,
    access_key: str,
    secret_key: str,
    session_token: str | None,
    region: str,
    service: str,
    amz_date: str,
) -> dict[str, str]:
    """Sign one ImageX/VOD request and return the headers to send.

    Keys (lower case): `authorization`, `x-amz-date`, `x-amz-security-token` (when a token is given)
    and `x-amz-content-sha256` (POST with a non-empty body only). `params` are the decoded query
    pairs; `path` is the URL path. Deterministic, so a verifier can recompute and compare.
    Raises ValueError if `amz_date` is not `YYYYMMDDTHHMMSSZ`.
    """
    if not _AMZ_DATE_RE.match(amz_date):
        raise ValueError(f"x-amz-date must look like 20260101T000000Z, got {amz_date!r}")
    headers = signed_header_values(method, body, session_token=session_token, amz_date=amz_date)
    canonical = canonical_request(method, path, params, headers, body)
    date = amz_date[:8]
    scope = credential_scope(date, region, service)
    key = signing_key(secret_key, date, region, service)
    signature = hmac.new(key, string_to_sign(amz_date, scope, canonical).encode("utf-8"), hashlib.sha256)
    authorization = (
        f"{ALGORITHM} Credential={access_key}/{scope}, "
        f"SignedHeaders={';'.join(sorted(headers))}, Signature={signature.hexdigest()}"
    )
    return {"authorization": authorization, **headers}


@dataclass(frozen=True)
class ParsedAuthorization:
    """The parts of a SigV4 `Authorization` header value."""

    access_key: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 "
    r"Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)


def parse_authorization(value: str) -> ParsedAuthorization:
    """Parse `AWS4-HMAC-SHA256 Credential=AK/date/region/service/aws4_request, SignedHeaders=a;b, Signature=hex`.

    Raises ValueError (with a message naming the defect) on anything malformed: wrong algorithm,
    missing parts, a scope that is not 5 parts ending in `aws4_request`, a non-8-digit date, empty
    signed-header names, or a signature that is not 64 lowercase hex digits.
    """
    match = _AUTH_RE.match(value.strip())
    if match is None:
        raise ValueError(
            "authorization must be 'AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=<64 hex>'"
        )
    parts = match["credential"].split("/")
    if len(parts) != 5 or parts[4] != SCOPE_TERMINATOR or not all(parts):
        raise ValueError("credential must be '<access key>/<yyyymmdd>/<region>/<service>/aws4_request'")
    access_key, date, region, service, _ = parts
    if not (len(date) == 8 and date.isdigit()):
        raise ValueError(f"credential date must be 8 digits, got {date!r}")
    signed = tuple(match["signed"].split(";"))
    if not all(signed):
        raise ValueError("SignedHeaders must be non-empty names joined by ';'")
    return ParsedAuthorization(
        access_key=access_key,
        date=date,
        region=region,
        service=service,
        signed_headers=signed,
        signature=match["signature"],
    )
