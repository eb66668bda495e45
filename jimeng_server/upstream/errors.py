"""Exceptions raised by the upstream client. `jimeng_server.errors.from_upstream` maps them to API errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .codes import CodeClass, classify


class UpstreamError(Exception):
    """Base class: the upstream failed or refused. `reason` never contains a session token."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UpstreamRetError(UpstreamError):
    """A well-formed envelope with a non-zero `ret`. `cls` is its class in the code table (`codes.classify`,
    with the operator's `overrides` such as `[upstream] ret_4001`)."""

    def __init__(
        self,
        ret: str,
        errmsg: str,
        data: Any = None,
        *,
        path: str = "",
        overrides: Mapping[str, CodeClass] | None = None,
    ) -> None:
        super().__init__(f"{path} ret={ret} {errmsg}".strip())
        self.ret = ret
        self.errmsg = errmsg
        self.data = data
        self.path = path
        self.cls = classify(ret, overrides)


class UpstreamHttpError(UpstreamError):
    """An HTTP status >= 400 from the upstream."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class UpstreamUnavailable(UpstreamError):
    """The connection failed (refused, reset, DNS, proxy)."""


class UpstreamTimeout(UpstreamError):
    """No answer within the configured timeout."""


class UpstreamBadResponse(UpstreamError):
    """An answer that is not the JSON the protocol promises."""


class RelayUnavailable(UpstreamError):
    """The configured relay or signer (`[upstream] relay_url`) failed or answered nonsense."""


class BrowserUnavailable(UpstreamError):
    """The browser transport could not run the call (Chromium would not start, crashed, or the page failed)."""
