"""Issue 20: `doctor --spend` checks what one n=1 image really made and cost against the table (§17.1, §19.6):
a count the upstream ignores (4 made for n=1) or a price other than the measured one fails loudly."""

from __future__ import annotations

import pytest
from doctor_support import doctor

from jimeng_server.doctor import spend_verdict


async def test_healthy_spend_names_the_credits(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = await doctor(capsys)
    assert code == 0, out
    assert "[ok]   generate: jimeng-4.7 made 1 image" in out and "1 credit(s) spent" in out


async def test_four_made_for_n1_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = await doctor(capsys, "count")
    assert code == 1, out
    line = next(x for x in out.splitlines() if x.startswith("[fail] generate"))
    assert "made 4 images for n=1" in line and "the balance fell by 4 credit(s)" in line


async def test_a_changed_price_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = await doctor(capsys, "price")
    assert code == 1, out
    line = next(x for x in out.splitlines() if x.startswith("[fail] generate"))
    assert "made 4" not in line and "the balance fell by 2 credit(s); the table says 1" in line


def test_verdict_without_a_measured_price_judges_the_count_only() -> None:
    assert spend_verdict(1, 9, None) == ""
    assert spend_verdict(4, 9, None) == "the upstream made 4 images for n=1"
