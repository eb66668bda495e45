"""Issue 20, item 7: the international pre-generate audits (docs/protocol.md §19.8): `imagex/submit_audit_job`
after each image upload and `execute_generate_audit` before a generate with materials; a refused material is a
422 before anything is spent, an outage of the audit is not a failure, CN keeps its own content check, and
`[upstream] intl_audits = false` turns them off. Real HTTP against the simulator."""

from __future__ import annotations

import dataclasses
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from support import CN_TOKEN, US_SESSION, US_TOKEN, bearer, drive, json_of

from jimeng_server.clock import ManualClock
from jimeng_server.config import Config
from jimeng_server.simulator import Fault, FaultKind, Simulator
from jimeng_server.simulator.media import png

Client = TestClient[Any, Any]
CLEAN = png(40, 40, (5, 6, 7))
RISKY = png(8, 8, (1, 2, 3)) + b"SIM:RISK"
SUBMIT_AUDIT = "/imagex/submit_audit_job"
GENERATE_AUDIT = "/execute_generate_audit"
GENERATE = "/aigc_draft/generate"


async def compose(client: Client, clock: ManualClock, token: str, *images: bytes) -> tuple[int, Any]:
    data = aiohttp.FormData()
    data.add_field("prompt", "mix")
    for n, image in enumerate(images):
        data.add_field("images", image, filename=f"{n}.png", content_type="image/png")
    call = client.post("/v1/images/compositions", data=data, headers=bearer(token))
    (resp,) = await drive(client.app, clock, call)
    return resp.status, await json_of(resp)


def web_paths(sim: Simulator) -> list[str]:
    """The web-API calls in order (uploads' own hosts left out)."""
    wanted = (SUBMIT_AUDIT, GENERATE_AUDIT, GENERATE, "/algo_proxy")
    return [next(w for w in wanted if e.path.endswith(w)) for e in sim.journal if e.path.endswith(wanted)]


async def test_intl_composition_is_audited_before_the_generate(
    client: Client, clock: ManualClock, sim: Simulator
) -> None:
    status, body = await compose(client, clock, US_TOKEN, CLEAN, CLEAN)
    assert status == 200, body
    assert web_paths(sim) == [SUBMIT_AUDIT, SUBMIT_AUDIT, GENERATE_AUDIT, GENERATE]
    audit = sim.calls(GENERATE_AUDIT)[0].body
    generate = sim.calls(GENERATE)[0].body
    assert audit["scene"] == 2 and audit["model_key"] == generate["extend"]["root_model"]
    uris = sorted(c.body["uri_list"][0] for c in sim.calls(SUBMIT_AUDIT))  # the two uploads run together
    assert all(m["material_type"] == 1 for m in audit["material_list"])
    assert sorted(m["uri"] for m in audit["material_list"]) == uris and len(set(uris)) == 2


async def test_a_refused_material_is_422_before_anything_is_spent(
    client: Client, clock: ManualClock, sim: Simulator
) -> None:
    before = sim.account(US_SESSION).total
    status, body = await compose(client, clock, US_TOKEN, CLEAN, RISKY)
    assert (status, body["error"]["code"]) == (422, "CONTENT_REJECTED")
    assert "image 2" in body["error"]["message"]
    assert sim.calls(GENERATE) == [] and sim.charges == []
    assert sim.account(US_SESSION).total == before


async def test_an_audit_outage_is_not_a_failure(client: Client, clock: ManualClock, sim: Simulator) -> None:
    sim.inject(GENERATE_AUDIT, Fault(FaultKind.HTTP_500), times=10)
    sim.inject(SUBMIT_AUDIT, Fault(FaultKind.HTTP_500), times=10)
    status, body = await compose(client, clock, US_TOKEN, CLEAN)
    assert status == 200, body
    assert len(sim.calls(GENERATE)) == 1


async def test_audits_can_be_turned_off_and_cn_keeps_its_own_check(
    make_client: Any, config: Config, clock: ManualClock, sim: Simulator
) -> None:
    off = await make_client(upstream=dataclasses.replace(config.upstream, intl_audits=False))
    status, body = await compose(off, clock, US_TOKEN, CLEAN)
    assert status == 200, body
    status, body = await compose(off, clock, CN_TOKEN, CLEAN)
    assert status == 200, body
    assert web_paths(sim) == [GENERATE, "/algo_proxy", GENERATE]


async def test_intl_first_frame_video_is_audited(client: Client, clock: ManualClock, sim: Simulator) -> None:
    data = aiohttp.FormData()
    data.add_field("prompt", "a wave")
    data.add_field("model", "jimeng-video-3.5-pro")
    data.add_field("image_file", RISKY, filename="a.png", content_type="image/png")
    (resp,) = await drive(client.app, clock, client.post("/v1/videos/generations", data=data, headers=bearer(US_TOKEN)))
    body = await json_of(resp)
    assert (resp.status, body["error"]["code"]) == (422, "CONTENT_REJECTED"), body
    assert web_paths(sim) == [SUBMIT_AUDIT, GENERATE_AUDIT]
