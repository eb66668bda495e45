"""Per-account browser identifiers (web id, user id), so that accounts are not linked by shared ids.

The reference shares one WEB_ID and USER_ID across every account of a process (§2.6, §15). Here each
account gets its own, derived from a per-installation salt and the account fingerprint: stable for an
account while the salt is kept, unrelated between accounts.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BrowserIdentity:
    web_id: str  # 19 decimal digits starting with 7, like the web client's _tea_web_id
    user_id: str  # 32 lowercase hex characters


def derive_identity(salt: bytes, account_fingerprint: str) -> BrowserIdentity:
    """Derive the identity of one account from `salt` (keep it secret) and its fingerprint."""
    digest = hmac.new(salt, account_fingerprint.encode(), hashlib.sha256).digest()
    number = int.from_bytes(digest[:8], "big") % 10**18
    web_id = str(7 * 10**18 + number)
    return BrowserIdentity(web_id=web_id, user_id=digest[8:24].hex())
