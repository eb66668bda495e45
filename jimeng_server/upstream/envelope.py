"""The web API's `{"ret", "errmsg", "data"}` envelope (docs/protocol.md §2.8), as a pure function."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .codes import CodeClass
from .errors import UpstreamBadResponse, UpstreamRetError


def _ret_text(ret: Any) -> str | None:
    """`ret` as a canonical decimal string, accepting strings and numbers; None if not numeric."""
    if isinstance(ret, bool):
        return None
    if isinstance(ret, int):
        return str(ret)
    if isinstance(ret, float) and ret.is_integer():
        return str(int(ret))
    if isinstance(ret, str):
        text = ret.strip()
        if text.lstrip("-").isdigit():
            return str(int(text))
    return None


def unwrap(body: Any, *, path: str = "", overrides: Mapping[str, CodeClass] | None = None) -> Any:
    """Return the payload of an envelope or raise UpstreamRetError.

    `ret` may be a string or a number (the reference accepts only the string "0"). A body without a
    numeric `ret` (passport-style `{"message", "data"}`) is returned whole, as the reference does. `overrides`:
    the operator's code classes (`codes.ret_overrides`), carried by the error.
    """
    if not isinstance(body, dict):
        raise UpstreamBadResponse(f"{path}: expected a JSON object, got {type(body).__name__}")
    ret = _ret_text(body.get("ret"))
    if ret is None:
        return body
    if ret == "0":
        return body.get("data")
    errmsg = body.get("errmsg")
    raise UpstreamRetError(
        ret, errmsg if isinstance(errmsg, str) else "", body.get("data"), path=path, overrides=overrides
    )
