"""Simulated image content check `POST /mweb/v1/algo_proxy` (docs/protocol.md §10, §14.26).

CN host only (other regions get ret "4002"). Requires the `babi_param` query (a JSON object with the four
feature keys) and the §10 body; every `file_uri` must be an image this account uploaded and committed.
Answers ret "0" for clean images and `{"ret": "2003", "errmsg": "risk not pass"}` when any image is marked
violating (see `uploads.py`). Unrelated failures come from fault injection (`sim.inject("/algo_proxy", ...)`).
Importing this module registers the handler.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..upstream.regions import Region
from .web_api import WEB_HANDLERS, Answer, Call

if TYPE_CHECKING:
    from .app import Simulator

ALGO_PROXY = "/mweb/v1/algo_proxy"
_BABI_KEYS = ("scenario", "feature_key", "feature_entrance", "feature_entrance_detail")


def _request_error(call: Call) -> str | None:
    try:
        babi: Any = json.loads(call.query.get("babi_param", ""))
    except ValueError:
        return "the babi_param query must be a JSON string"
    if not isinstance(babi, dict) or not all(isinstance(babi.get(k), str) and babi[k] for k in _BABI_KEYS):
        return f"babi_param must be a JSON object with {', '.join(_BABI_KEYS)}"
    body = call.body
    if body.get("scene") != "image_face_ip" or body.get("req_key") != "benchmark_test_user_upload_image_input":
        return "scene must be image_face_ip and req_key benchmark_test_user_upload_image_input"
    if body.get("options") != {"ip_check": True} or not isinstance(body.get("req_params"), dict):
        return 'options must be {"ip_check": true} and req_params an object'
    files = body.get("file_list")
    if not isinstance(files, list) or not files:
        return "file_list must be a non-empty array"
    for n, item in enumerate(files):
        if not isinstance(item, dict) or not isinstance(item.get("file_uri"), str) or not item["file_uri"]:
            return f"file_list[{n}] must be an object with a file_uri string"
    return None


async def algo_proxy(sim: Simulator, call: Call) -> Answer:
    """The content verdict on the listed uploaded images."""
    if call.region is not Region.CN:
        return sim.fail("4002", "param error: algo_proxy is served on the CN host only", call.path)
    problem = _request_error(call)
    if problem is not None:
        return sim.fail("4002", f"param error: {problem}", call.path)
    uris = [item["file_uri"] for item in call.body["file_list"]]
    for uri in uris:
        if not sim.uploads.committed_by(uri, call.account.sessionid):
            return sim.fail("4002", f"param error: {uri} was not uploaded and committed by this account", call.path)
    if any(sim.uploads.is_risky(uri) for uri in uris):
        return sim.fail("2003", "risk not pass", call.path)
    return sim.ok({"check_result": [{"file_uri": uri, "passed": True} for uri in uris]})


WEB_HANDLERS[ALGO_PROXY] = algo_proxy
