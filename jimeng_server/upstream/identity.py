"""Per-account browser identity: identifiers (web id, user id), so that accounts are not linked by shared ids,
and the browser claims (User-Agent, `os`, client hints) that must agree with each other and with a cookie jar.

The reference shares one WEB_ID and USER_ID across every account of a process (§2.6, §15). Here each
account gets its own, derived from a per-installation salt and the account fingerprint: stable for an
account while the salt is kept, unrelated between accounts.
"""

from __future__ import annotations

import hashlib
import hmac
import re
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


@dataclass(frozen=True, slots=True)
class BrowserProfile:
    """What a request claims about the browser: User-Agent, the `os` query value and the client hints.

    Every field is optional: a claim that is not known is not sent, so it can never contradict a cookie jar.
    """

    user_agent: str | None
    os: str | None
    hints: tuple[tuple[str, str], ...]  # Sec-Ch-Ua, Sec-Ch-Ua-Mobile, Sec-Ch-Ua-Platform, in that order


_CHROME = re.compile(r"\bChrome/(\d+)\.")
_EDGE = re.compile(r"\bEdg/(\d+)\.")
# (marker in the UA, Sec-Ch-Ua-Platform, the web client's `os` value); first match wins.
_PLATFORMS = (
    ("Windows NT", "Windows", "windows"),
    ("Macintosh", "macOS", "mac"),
    ("CrOS", "Chrome OS", "linux"),
    ("Linux", "Linux", "linux"),
)


def chrome_major(user_agent: str) -> int | None:
    """The Chrome (Chromium) major version a User-Agent claims, or None for other browsers."""
    match = _CHROME.search(user_agent)
    return int(match.group(1)) if match else None


def profile_for(user_agent: str | None) -> BrowserProfile:
    """The claims consistent with `user_agent`: its platform as `os`, and client hints when it is a Chromium.

    Chromium browsers send `Sec-Ch-Ua*`; Firefox and Safari send none. An unknown platform sends no `os`.
    """
    if not user_agent:
        return BrowserProfile(None, None, ())
    platform = next(((hint, os) for marker, hint, os in _PLATFORMS if marker in user_agent), None)
    major = chrome_major(user_agent)
    if major is None or "Android" in user_agent or "Mobile" in user_agent:
        return BrowserProfile(user_agent, platform[1] if platform else None, ())
    edge = _EDGE.search(user_agent)
    brand = f'"Microsoft Edge";v="{edge.group(1)}"' if edge else f'"Google Chrome";v="{major}"'
    hints = [("Sec-Ch-Ua", f'{brand}, "Chromium";v="{major}", "Not_A Brand";v="99"'), ("Sec-Ch-Ua-Mobile", "?0")]
    if platform is not None:
        hints.append(("Sec-Ch-Ua-Platform", f'"{platform[0]}"'))
    return BrowserProfile(user_agent, platform[1] if platform else None, tuple(hints))
