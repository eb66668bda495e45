"""Making the simulator drift the way the real upstream does, for `doctor --simulate --drift ...`:

- `version`: require a newer `da_version` than the default config sends (ret 3018, §2.9, §17.5);
- `model`: list a model the built-in table lacks and stop listing (withdraw, ret 2061) one it has (§17.3-17.4);
- `risk`: refuse every generate with ret 4013 (risk control, §17.6);
- `price`: charge twice the measured price per image (`doctor --spend` must notice);
- `count`: ignore the image count and make the model's default (4 for most, §17.1; `doctor --spend` must notice).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .faults import Fault, FaultKind
from .shark import RISK_ERRMSG
from .web_api import GENERATE

if TYPE_CHECKING:
    from .app import Simulator

DRIFTS = ("version", "model", "risk", "price", "count")
NEWER_DA_VERSION = "3.3.29"  # a value newer than the client's default (3.3.28, §19.11): the site moved on
NEW_MODEL = {"kind": "image", "model_req_key": "high_aes_general_v60", "model_name": "图片 6.0"}
WITHDRAWN_KEY = "dreamina_ic_generate_video_model_vgfm_3.0_pro"


def apply_drift(sim: Simulator, names: Iterable[str]) -> None:
    """Apply each named drift (one of `DRIFTS`); ValueError for an unknown name."""
    for name in names:
        if name == "version":
            sim.settings.min_da_version = NEWER_DA_VERSION
        elif name == "model":
            sim.settings.extra_models.append(dict(NEW_MODEL))
            sim.settings.withdrawn_models.add(WITHDRAWN_KEY)
        elif name == "price":  # the upstream charges twice the measured price per image
            sim.settings.image_cost *= 2
        elif name == "count":  # the upstream ignores the count and makes its default (4)
            sim.settings.ignore_image_count = True
        elif name == "risk":
            sim.inject(GENERATE, Fault(FaultKind.RET, ret="4013", errmsg=RISK_ERRMSG), times=10**6)
        else:
            raise ValueError(f"unknown drift {name!r}; use one of: {', '.join(DRIFTS)}")
