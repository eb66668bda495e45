"""The pre-generate audits (docs/protocol.md §19.8, NT code; single source) in the simulator:

- `POST /mweb/v1/imagex/submit_audit_job` `{"uri_list": [uri]}`: every uri must be an image the account committed;
  answered with an empty `ret` (`""`), as NT describes.
- `POST /mweb/v1/execute_generate_audit` `{"scene": 2, "model_key", "material_list": [{"uri", "material_type": 1} |
  {"vid", "material_type": 2|3}]}`: every material must be the account's; `data.result_list[].audit_decision` is 1,
  or 2 for an image marked violating (the same marker as the CN content check, `uploads.py`).

Both are journalled like any call, so a test sees whether (and in which order) a client audited. Importing this
module registers the handlers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .web_api import WEB_HANDLERS, Answer, Call

if TYPE_CHECKING:
    from .app import Simulator

SUBMIT_AUDIT = "/mweb/v1/imagex/submit_audit_job"
GENERATE_AUDIT = "/mweb/v1/execute_generate_audit"
_MATERIAL_FIELD = {1: "uri", 2: "vid", 3: "vid"}


async def submit_audit_job(sim: Simulator, call: Call) -> Answer:
    """Accept the account's committed images for auditing; the answer's `ret` is empty."""
    uris = call.body.get("uri_list")
    if not isinstance(uris, list) or not uris or not all(isinstance(u, str) and u for u in uris):
        return sim.fail("1000", "invalid parameter: uri_list must be a non-empty array of uris", call.path)
    for uri in uris:
        if not sim.uploads.committed_by(uri, call.account.sessionid):
            return sim.fail("1000", f"invalid parameter: {uri} was not committed by this account", call.path)
    return Answer(payload={"ret": "", "errmsg": "", "data": {}}, ret="")


def _material_error(sim: Simulator, call: Call, material: Any, n: int) -> str | None:
    if not isinstance(material, dict) or material.get("material_type") not in _MATERIAL_FIELD:
        return f"material_list[{n}] must be an object with material_type 1, 2 or 3"
    ident = material.get(_MATERIAL_FIELD[material["material_type"]])
    if not isinstance(ident, str) or not sim.uploads.committed_by(ident, call.account.sessionid):
        return f"material_list[{n}] names nothing this account committed"
    return None


async def execute_generate_audit(sim: Simulator, call: Call) -> Answer:
    """The audit verdict per material, in order."""
    body = call.body
    materials = body.get("material_list")
    if body.get("scene") != 2 or not isinstance(body.get("model_key"), str) or not isinstance(materials, list):
        return sim.fail("1000", "invalid parameter: scene 2, model_key and material_list are required", call.path)
    results = []
    for n, material in enumerate(materials):
        problem = _material_error(sim, call, material, n)
        if problem is not None:
            return sim.fail("1000", f"invalid parameter: {problem}", call.path)
        risky = material["material_type"] == 1 and sim.uploads.is_risky(material["uri"])
        results.append({"audit_decision": 2 if risky else 1})
    return sim.ok({"result_list": results})


WEB_HANDLERS[SUBMIT_AUDIT] = submit_audit_job
WEB_HANDLERS[GENERATE_AUDIT] = execute_generate_audit
