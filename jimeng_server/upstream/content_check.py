"""The CN image content check (`algo_proxy`, docs/protocol.md §10) as pure functions.

A verdict is "risk" only when the upstream says so (ret 2003, or an errmsg naming the risk); every other
failure of the check is an outage the caller logs and ignores.
"""

from __future__ import annotations

import json
from typing import Any

RISK_RET = "2003"
_RISK_PHRASES = ("risk not pass", "detected risk")


def babi_param() -> str:
    """The `babi_param` query value: a JSON string naming the feature that asks for the check."""
    return json.dumps(
        {
            "scenario": "image_video_generation",
            "feature_key": "aigc_to_image",
            "feature_entrance": "to-generate",
            "feature_entrance_detail": "to-generate-algo_proxy",
        },
        separators=(",", ":"),
    )


def check_body(image_uri: str) -> dict[str, Any]:
    """The algo_proxy body for one committed ImageX URI."""
    return {
        "scene": "image_face_ip",
        "options": {"ip_check": True},
        "req_key": "benchmark_test_user_upload_image_input",
        "file_list": [{"file_uri": image_uri}],
        "req_params": {},
    }


def is_risk(ret: str, errmsg: str) -> bool:
    """True when a non-zero answer is the content verdict "violation" rather than an error of the check."""
    text = errmsg.lower()
    return ret == RISK_RET or any(phrase in text for phrase in _RISK_PHRASES)
