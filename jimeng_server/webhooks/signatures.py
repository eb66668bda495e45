"""Standard Webhooks signing: the `whsec_` secret, `webhook-signature`, and a delivery's headers."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Mapping
from typing import Final

from ..config import ConfigError, WebhookConfig

SECRET_ENV: Final = "JIMENG_WEBHOOK_SECRET"
SECRET_PREFIX: Final = "whsec_"


class WebhookSecretError(ConfigError):
    """The configured webhook secret is not `whsec_<base64>`; the message never contains the secret."""


def parse_secret(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret (the prefix is optional). Raises WebhookSecretError."""
    text = secret.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookSecretError(
            "the webhook secret must be whsec_ followed by base64, e.g. whsec_"
            + base64.b64encode(b"32 random bytes, not this text!!").decode()
        ) from None
    if not key:
        raise WebhookSecretError("the webhook secret is empty after whsec_")
    return key


def secret_key(config: WebhookConfig, environ: Mapping[str, str] | None = None) -> bytes | None:
    """The HMAC key in force: env JIMENG_WEBHOOK_SECRET if set and non-empty, else `[webhooks] secret`;
    None when neither is set (deliveries go unsigned). Raises WebhookSecretError for a malformed secret."""
    env = os.environ if environ is None else environ
    from_env = env.get(SECRET_ENV, "").strip()
    chosen = from_env or config.secret.strip()
    if not chosen:
        return None
    try:
        return parse_secret(chosen)
    except WebhookSecretError as exc:
        source = SECRET_ENV if from_env else "webhooks.secret"
        raise WebhookSecretError(f"{source}: {exc}") from None


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "msg_id.timestamp.body">` (a `webhook-signature` entry)."""
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def delivery_headers(event_id: str, timestamp: int, body: bytes, key: bytes | None) -> dict[str, str]:
    """The headers of one delivery attempt; `webhook-signature` only when a key is configured."""
    headers = {
        "Content-Type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
    }
    if key is not None:
        headers["webhook-signature"] = sign(key, event_id, timestamp, body)
    return headers
