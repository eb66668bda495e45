"""Loading the real recorded upstream answers of tests/fixtures/upstream_samples (copied from the shared
upstream-samples; INDEX.md there names each source). Some are not strict JSON: `//` comments, Python reprs and
JS object literals are turned into data here, never edited in the files."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "upstream_samples"
_COMMENT = re.compile(r"(?<=\s)//[^\n]*")
_JS_KEY = re.compile(r"([{,]\s*)([A-Za-z_][A-Za-z0-9_]*)\s*:")


def sample_text(name: str) -> str:
    """The raw text of a sample, e.g. `"get_history_by_ids/cn_status30_fail2036_fragment.txt"`."""
    return (SAMPLES / name).read_text(encoding="utf-8")


def load_sample(name: str) -> Any:
    """A sample as data: JSON, JSON with `//` comments, a Python repr, or a JS object literal."""
    text = _COMMENT.sub("", sample_text(name))
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        pass
    return json.loads(_JS_KEY.sub(r'\1"\2":', text).replace("'", '"'))
