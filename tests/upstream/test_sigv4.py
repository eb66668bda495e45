"""SigV4 (ImageX/VOD variant) and CRC-32 against the vectors of docs/protocol.md §11.4 and §11.5."""

from __future__ import annotations

import pytest
from support import crc32_hex

from jimeng_server.checksums import Crc32
from jimeng_server.upstream.sigv4 import (
    EMPTY_SHA256,
    ParsedAuthorization,
    amz_date,
    canonical_query,
    parse_authorization,
    sign_headers,
)

CREDS = {
    "access_key": "AKTEST",
    "secret_key": "SKTEST",
    "session_token": "TOKEN",
    "region": "cn-north-1",
    "service": "imagex",
    "amz_date": "20260101T000000Z",
}
APPLY_PARAMS = [
    ("Action", "ApplyImageUpload"),
    ("Version", "2018-08-01"),
    ("ServiceId", "tb4s082cfz"),
    ("FileSize", "5"),
    ("s", "abc123xyz0"),
]
COMMIT_PARAMS = [("Action", "CommitImageUpload"), ("Version", "2018-08-01"), ("ServiceId", "tb4s082cfz")]
COMMIT_BODY = b'{"SessionKey":"sk1"}'


def test_get_apply_vector() -> None:
    headers = sign_headers("GET", "/", APPLY_PARAMS, b"", **CREDS)
    assert headers == {
        "authorization": (
            "AWS4-HMAC-SHA256 Credential=AKTEST/20260101/cn-north-1/imagex/aws4_request, "
            "SignedHeaders=x-amz-date;x-amz-security-token, "
            "Signature=bd1247e04388df466ae79fe56c86b3b94e9bd99e0c491dda096bf0a8f23993b9"
        ),
        "x-amz-date": "20260101T000000Z",
        "x-amz-security-token": "TOKEN",
    }


def test_post_commit_vector() -> None:
    headers = sign_headers("POST", "/", COMMIT_PARAMS, COMMIT_BODY, **CREDS)
    assert headers == {
        "authorization": (
            "AWS4-HMAC-SHA256 Credential=AKTEST/20260101/cn-north-1/imagex/aws4_request, "
            "SignedHeaders=x-amz-content-sha256;x-amz-date;x-amz-security-token, "
            "Signature=0bf23110a201b02115482793bfc0c5a5b5b8ef1142466f61434197a970842a21"
        ),
        "x-amz-date": "20260101T000000Z",
        "x-amz-security-token": "TOKEN",
        "x-amz-content-sha256": "46bf8060212541f86573c2d04a09a85e998b83fb5bcac38f6fef26ec3643dab9",
    }


def test_method_case_does_not_matter() -> None:
    lower = sign_headers("post", "/", COMMIT_PARAMS, COMMIT_BODY, **CREDS)
    upper = sign_headers("POST", "/", COMMIT_PARAMS, COMMIT_BODY, **CREDS)
    assert lower == upper


def test_post_without_body_signs_no_content_hash() -> None:
    headers = sign_headers("POST", "/", COMMIT_PARAMS, b"", **CREDS)
    assert "x-amz-content-sha256" not in headers
    assert "SignedHeaders=x-amz-date;x-amz-security-token," in headers["authorization"]


def test_get_body_is_not_hashed() -> None:
    # A GET never signs a body; its payload hash is that of the empty string, so the body is irrelevant.
    a = sign_headers("GET", "/", APPLY_PARAMS, b"", **CREDS)
    b = sign_headers("GET", "/", APPLY_PARAMS, b"ignored", **CREDS)
    assert a == b
    assert EMPTY_SHA256.startswith("e3b0c442") and EMPTY_SHA256.endswith("b855")


def test_no_session_token() -> None:
    creds = {k: v for k, v in CREDS.items() if k != "session_token"}
    headers = sign_headers("GET", "/", APPLY_PARAMS, b"", session_token=None, **creds)
    assert set(headers) == {"authorization", "x-amz-date"}
    assert "SignedHeaders=x-amz-date," in headers["authorization"]


def test_signature_changes_with_secret_and_params() -> None:
    base = sign_headers("GET", "/", APPLY_PARAMS, b"", **CREDS)["authorization"]
    other_secret = sign_headers("GET", "/", APPLY_PARAMS, b"", **{**CREDS, "secret_key": "SKOTHER"})["authorization"]
    other_size = sign_headers("GET", "/", [*APPLY_PARAMS[:3], ("FileSize", "6"), APPLY_PARAMS[4]], b"", **CREDS)[
        "authorization"
    ]
    assert len({base, other_secret, other_size}) == 3


def test_param_order_does_not_matter() -> None:
    a = sign_headers("GET", "/", APPLY_PARAMS, b"", **CREDS)
    b = sign_headers("GET", "/", list(reversed(APPLY_PARAMS)), b"", **CREDS)
    assert a == b


def test_canonical_query_order() -> None:
    params = [*APPLY_PARAMS, ("device_platform", "web")]
    assert canonical_query(params) == (
        "Action=ApplyImageUpload&FileSize=5&ServiceId=tb4s082cfz&Version=2018-08-01&device_platform=web&s=abc123xyz0"
    )
    keys = [pair.split("=")[0] for pair in canonical_query(reversed(params)).split("&")]
    assert keys == ["Action", "FileSize", "ServiceId", "Version", "device_platform", "s"]


def test_canonical_query_does_not_reencode() -> None:
    assert canonical_query([("b", "x y/z"), ("a", "1")]) == "a=1&b=x y/z"
    assert canonical_query([]) == ""


def test_amz_date() -> None:
    assert amz_date(1767225600) == "20260101T000000Z"
    assert amz_date(1767225600.999) == "20260101T000000Z"
    assert amz_date(0) == "19700101T000000Z"


def test_bad_amz_date_is_refused() -> None:
    with pytest.raises(ValueError, match="x-amz-date"):
        sign_headers("GET", "/", APPLY_PARAMS, b"", **{**CREDS, "amz_date": "2026-01-01"})


def test_parse_authorization_round_trip() -> None:
    for method, params, body in (("GET", APPLY_PARAMS, b""), ("POST", COMMIT_PARAMS, COMMIT_BODY)):
        headers = sign_headers(method, "/", params, body, **CREDS)
        parsed = parse_authorization(headers["authorization"])
        expected_signed = tuple(sorted(k for k in headers if k != "authorization"))
        assert parsed == ParsedAuthorization(
            access_key="AKTEST",
            date="20260101",
            region="cn-north-1",
            service="imagex",
            signed_headers=expected_signed,
            signature=headers["authorization"].rsplit("=", 1)[1],
        )


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Bearer abc",
        "AWS4-HMAC-SHA1 Credential=AK/20260101/cn-north-1/imagex/aws4_request, "
        "SignedHeaders=x-amz-date, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=AK/20260101/cn-north-1/imagex, SignedHeaders=x-amz-date, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=AK/20260101/cn-north-1/imagex/aws3_request, "
        "SignedHeaders=x-amz-date, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=AK/2026010/cn-north-1/imagex/aws4_request, "
        "SignedHeaders=x-amz-date, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=AK//cn-north-1/imagex/aws4_request, "
        "SignedHeaders=x-amz-date, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=AK/20260101/cn-north-1/imagex/aws4_request, "
        "SignedHeaders=x-amz-date;;x, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=AK/20260101/cn-north-1/imagex/aws4_request, "
        "SignedHeaders=x-amz-date, Signature=xyz",
        "AWS4-HMAC-SHA256 Credential=AK/20260101/cn-north-1/imagex/aws4_request, SignedHeaders=x-amz-date",
        "AWS4-HMAC-SHA256 SignedHeaders=x-amz-date, Signature=" + "0" * 64,
    ],
)
def test_parse_authorization_malformed(value: str) -> None:
    with pytest.raises(ValueError):
        parse_authorization(value)


def test_crc32_vectors() -> None:
    assert crc32_hex(b"hello") == "3610a686"
    assert crc32_hex(b"") == "00000000"
    assert Crc32().hexdigest() == "00000000"


def test_crc32_zero_padded() -> None:
    # Find a short input whose CRC has a leading zero nibble and check the padding.
    sample = next(bytes([i, j]) for i in range(256) for j in range(256) if crc32_hex(bytes([i, j]))[0] == "0")
    digest = crc32_hex(sample)
    assert len(digest) == 8 and digest == digest.lower()


def test_crc32_incremental_equals_one_shot() -> None:
    data = bytes(range(256)) * 1000
    crc = Crc32()
    for start in range(0, len(data), 4097):
        crc.update(data[start : start + 4097])
    assert crc.hexdigest() == crc32_hex(data)
    crc.update(b"")
    assert crc.hexdigest() == crc32_hex(data)
