"""The test tree as docs/architecture.md ("Tests") describes it: every basename unique (pytest imports test
modules by name), and shared helpers only in `tests/helpers/` or `conftest.py`: no test module imports another."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _test_modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("test_*.py") if "helpers" not in p.relative_to(TESTS).parts)


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_test_module_imports_another() -> None:
    modules = {p.stem for p in _test_modules()}
    crossing = {
        str(p.relative_to(TESTS)): sorted(
            n for n in _imported(p) if n.split(".")[0] in modules or n.split(".")[0] == "tests"
        )
        for p in _test_modules()
    }
    assert {k: v for k, v in crossing.items() if v} == {}, "move the shared helpers into tests/helpers/"


def test_test_basenames_are_unique() -> None:
    counts = Counter(p.name for p in _test_modules())
    assert [name for name, n in counts.items() if n > 1] == []
