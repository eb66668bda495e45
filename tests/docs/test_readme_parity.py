"""README.zh.md says it matches README.md (issue 24): the same sections in the same order, byte-identical code
blocks, and in each section the same inline code (commands, config keys, fields, error codes), so a passage
missing from one of them is caught."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```[^\n]*\n.*?^```", re.DOTALL | re.MULTILINE)


def text(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def sections(markdown: str) -> list[tuple[str, str]]:
    """(heading level marks, body) of each `##`/`###` section, code blocks removed (headings inside them too)."""
    prose = FENCE.sub("", markdown)
    parts = re.split(r"^(#{2,3}) .*$", prose, flags=re.MULTILINE)
    return list(zip(parts[1::2], parts[2::2], strict=True))


def inline_code(body: str) -> set[str]:
    """The inline code spans of a section, whitespace removed (line wrapping differs between the languages)."""
    return {re.sub(r"\s+", "", span) for span in re.findall(r"`([^`\n]+(?:\n[^`\n]+)*)`", body)}


def test_the_same_sections_in_the_same_order() -> None:
    english, chinese = sections(text("README.md")), sections(text("README.zh.md"))
    assert [level for level, _ in english] == [level for level, _ in chinese]


def test_the_same_code_blocks_byte_for_byte() -> None:
    assert FENCE.findall(text("README.md")) == FENCE.findall(text("README.zh.md"))


def test_each_section_names_the_same_inline_code() -> None:
    english, chinese = sections(text("README.md")), sections(text("README.zh.md"))
    for n, ((_, en), (_, zh)) in enumerate(zip(english, chinese, strict=True)):
        only_en, only_zh = inline_code(en) - inline_code(zh), inline_code(zh) - inline_code(en)
        assert not only_en and not only_zh, f"section {n}: only in README.md {only_en}, only in README.zh {only_zh}"
