"""The one reader of whole numbers that a caller or an operator sends (JSON, multipart, query, path, CLI,
cookie fields).

`str.isdigit()` accepts what `int()` refuses ("²"), `int()` accepts what no caller means (" 1_0", "٣") and
overflows what SQLite stores (20+ digits); every number from outside goes through `parse_int` (which names the
field in its error) or `digits_value` (lenient: None for anything that is not plain ASCII digits).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Final

MAX_DIGITS: Final = 18
"""Digits a whole number from outside may have: every value up to 10**18 - 1 fits a signed 64-bit column."""
INT64_MAX: Final = 2**63 - 1


class NumberError(ValueError):
    """A value that is not a whole number in range; `str()` is the message for the caller, naming `field`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"'{field}' {message}")
        self.field = field


def digits_value(text: str, *, max_digits: int = MAX_DIGITS) -> int | None:
    """`text` as a whole number when it is 1 to `max_digits` ASCII digits (nothing else, not even spaces),
    else None."""
    if not 0 < len(text) <= max_digits or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def _shown(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return repr(text[:40] + ("…" if len(text) > 40 else ""))


def parse_int(value: object, field: str, *, low: int, high: int, floats: bool = False, strings: bool = True) -> int:
    """`value` as a whole number in [low, high], or NumberError naming `field`.

    Accepted: a JSON integer (never a boolean); a string of ASCII digits with at most MAX_DIGITS digits, an
    optional leading '-' when `low` is negative and surrounding whitespace; with `floats`, a finite JSON number
    with no fraction (5.0); `strings=False` refuses text (a JSON field that must be a number). Everything
    else ("²", "1_0", "5.5", "1e3", 20 digits) is refused.
    """
    wanted = f"must be a whole number from {low} to {high}"
    number: int | None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float):
        number = int(value) if floats and math.isfinite(value) and value.is_integer() else None
    elif isinstance(value, str) and strings:
        text = value.strip()
        negative = low < 0 and text.startswith("-")
        digits = digits_value(text[1:] if negative else text)
        number = None if digits is None else -digits if negative else digits
    else:
        number = None
    if number is None:
        raise NumberError(field, f"{wanted}, got {_shown(value)}")
    if not low <= number <= high:
        shown = number if abs(number) < 10**MAX_DIGITS else _shown(value)
        raise NumberError(field, f"must be from {low} to {high}, got {shown}")
    return number


def cli_int(field: str, *, low: int, high: int) -> Callable[[str], int]:
    """An argparse `type=` that reads a whole number in [low, high]; a bad one is a one-line usage error."""

    def convert(text: str) -> int:
        try:
            return parse_int(text, field, low=low, high=high)
        except NumberError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = field  # argparse names the type in "invalid <name> value" when it is not ArgumentTypeError
    return convert
