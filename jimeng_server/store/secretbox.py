"""Encryption at rest of the pool's account secrets: Fernet (AES-128-CBC + HMAC-SHA256, from the
`cryptography` package) with the key of `[accounts] encryption_key` or the env var JIMENG_ACCOUNTS_KEY.

Without a key secrets are stored in the clear (the app warns at start-up); a blob sealed under a key
cannot be opened without that key (`SecretError`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken

from ..config import AccountsConfig, ConfigError

ENV_VAR = "JIMENG_ACCOUNTS_KEY"


class SecretError(Exception):
    """A stored secret cannot be opened (no key, or another key); the message holds no secret."""


class SecretBox:
    """Seals and opens credential blobs; `key` None stores them as they are."""

    def __init__(self, key: bytes | None) -> None:
        self._fernet = Fernet(key) if key else None

    @property
    def sealing(self) -> bool:
        """True when new secrets are encrypted."""
        return self._fernet is not None

    def seal(self, data: bytes) -> tuple[bytes, bool]:
        """`(blob, sealed)` to store for `data`."""
        if self._fernet is None:
            return data, False
        return self._fernet.encrypt(data), True

    def open(self, blob: bytes, sealed: bool) -> bytes:
        """The plain secret of a stored blob; raises SecretError when it cannot be decrypted."""
        if not sealed:
            return blob
        if self._fernet is None:
            raise SecretError(f"the secret is encrypted: set [accounts] encryption_key or {ENV_VAR}")
        try:
            return self._fernet.decrypt(blob)
        except InvalidToken:
            raise SecretError("the secret was encrypted with another key than the configured one") from None


def secret_box(config: AccountsConfig, environ: Mapping[str, str] | None = None) -> SecretBox:
    """The box for the configured key (env JIMENG_ACCOUNTS_KEY overrides the config); raises ConfigError for a
    key that is not a Fernet key (32 url-safe base64-encoded bytes, e.g. from `Fernet.generate_key()`)."""
    env = os.environ if environ is None else environ
    key = env.get(ENV_VAR) or config.encryption_key
    if not key:
        return SecretBox(None)
    try:
        return SecretBox(key.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ConfigError(
            f"accounts.encryption_key (or {ENV_VAR}) is not a Fernet key: 44 url-safe base64 characters; make "
            "one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
        ) from None
