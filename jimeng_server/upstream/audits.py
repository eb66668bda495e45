"""The pre-generate audits of the international site (docs/protocol.md §19.8, NT code, ~2026-10; single source),
as pure functions: `imagex/submit_audit_job` after every ImageX commit, and `execute_generate_audit` before an
omni, blend or first/last-frame generate, whose `result_list[].audit_decision` other than 1 refuses that material.
`[upstream] intl_audits` turns both off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SUBMIT_AUDIT_PATH = "/mweb/v1/imagex/submit_audit_job"
GENERATE_AUDIT_PATH = "/mweb/v1/execute_generate_audit"
AUDIT_SCENE = 2
PASSED = 1
"""The `audit_decision` of a material that passed; any other value is a refusal (§19.8)."""


@dataclass(frozen=True, slots=True)
class AuditMaterial:
    """One material of a generate: an ImageX `uri` (type 1) or a VOD `vid` of a video (2) or an audio (3)."""

    ident: str
    material_type: int  # 1 image, 2 video, 3 audio

    def as_dict(self) -> dict[str, Any]:
        field = "uri" if self.material_type == 1 else "vid"
        return {field: self.ident, "material_type": self.material_type}


def submit_audit_body(image_uri: str) -> dict[str, Any]:
    """The body of `imagex/submit_audit_job` for one committed image."""
    return {"uri_list": [image_uri]}


def generate_audit_body(model_key: str, materials: Sequence[AuditMaterial]) -> dict[str, Any]:
    """The body of `execute_generate_audit` for a generate of `model_key` with `materials` (in their order)."""
    return {"scene": AUDIT_SCENE, "model_key": model_key, "material_list": [m.as_dict() for m in materials]}


def refused_materials(data: Any) -> list[int]:
    """The positions of the materials the audit refused (`audit_decision` other than 1). An answer without a
    `result_list` refuses nothing (the caller treats it as an outage of the audit, not a verdict)."""
    results = data.get("result_list") if isinstance(data, dict) else None
    refused: list[int] = []
    for index, entry in enumerate(results if isinstance(results, list) else []):
        decision = entry.get("audit_decision") if isinstance(entry, dict) else None
        if decision is not None and decision != PASSED:
            refused.append(index)
    return refused
