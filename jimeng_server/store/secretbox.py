"""Encryption at rest of the pool's account secrets: Fernet (AES-128-CBC + HMAC-SHA256, from the
`cryptography` package) with the key of `[accounts] encryption_key` or the env var JIMENG_ACCOUNTS_KEY.

`cryptography` is the optional extra `secrets` (`pip install 'jimeng-server[secrets]'`): it is imported only
when a key is configured, so the core install and the single-file `.pyz` (pure Python apart from optional
speed-ups) run without it; a key configured without the extra fails at start-up with a ConfigError naming it.

Without a key secrets are stored in the clear (the app warns at start-up); a blob sealed under a key
cannot be opened without that key (`SecretError`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..config import AccountsConfig, ConfigError

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

ENV_VAR = "JIMENG_ACCOUNTS_KEY"
EXTRA = "secrets"
MISSING_EXTRA = (
    f"accounts.encryption_key (or {ENV_VAR}) is set but the package that encrypts secrets is not installed: "
    f"pip install 'jimeng-server[{EXTRA}]' (it adds `cryptography`), or leave the key empty to store secrets "
    "in the clear"
)


class SecretError(Exception):
    """A stored secret cannot be opened (no key, or another key); the message holds no secret."""


def _fernet(key: str) -> Fernet:
    """The Fernet of `key`, importing `cryptography` now; ConfigError when the extra is missing or the key is
    not a Fernet key (32 url-safe base64-encoded bytes, e.g. from `Fernet.generate_key()`)."""
    try:
        from cryptography.fernet import Fernet
    except ImportError:
        raise ConfigError(MISSING_EXTRA) from None
    try:
        return Fernet(key.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ConfigError(
            f"accounts.encryption_key (or {ENV_VAR}) is not a Fernet key: 44 url-safe base64 characters; make "
            "one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
        ) from None


class SecretBox:
    """Seals and opens credential blobs; `key` None stores them as they are. Raises ConfigError for a key
    that is not a Fernet key, or when the `secrets` extra is not installed."""

    def __init__(self, key: str | None) -> None:
        self._fernet = _fernet(key) if key else None

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
        from cryptography.fernet import InvalidToken  # importable: a Fernet exists

        try:
            return self._fernet.decrypt(blob)
        except InvalidToken:
            raise SecretError("the secret was encrypted with another key than the configured one") from None


def secret_box(config: AccountsConfig, environ: Mapping[str, str] | None = None) -> SecretBox:
    """The box for the configured key (env JIMENG_ACCOUNTS_KEY overrides the config); raises ConfigError for a
    key that is not a Fernet key (32 url-safe base64-encoded bytes, e.g. from `Fernet.generate_key()`), or when
    a key is set but the `secrets` extra (`cryptography`) is not installed."""
    env = os.environ if environ is None else environ
    key = env.get(ENV_VAR) or config.encryption_key
    if not key:
        return SecretBox(None)
    return SecretBox(key)
