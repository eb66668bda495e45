"""`gctuning.tune()`: the server's pace for the cycle collector, set when `serve` starts."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from jimeng_server import gctuning


@pytest.fixture
def thresholds() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    gc.set_threshold(700, 11, 12)
    yield before
    gc.set_threshold(*before)


def test_only_the_youngest_generation_is_collected_less_often(thresholds: tuple[int, int, int]) -> None:
    gctuning.tune()
    assert gc.get_threshold() == (gctuning.GEN0_THRESHOLD, 11, 12)
    gctuning.tune()
    assert gc.get_threshold() == (gctuning.GEN0_THRESHOLD, 11, 12)
    assert gctuning.GEN0_THRESHOLD > 700
