"""Watcher tests: the history call the watcher polls with, and a real submit to watch."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from support import CN_TOKEN

from jimeng_server.api.appkeys import GENERATION
from jimeng_server.api.params import image_params
from jimeng_server.services.callers import Caller
from jimeng_server.services.generation import Submission
from jimeng_server.services.idempotency import SpendMark
from jimeng_server.upstream.tokens import parse_token

HISTORY = "/get_history_by_ids"
"""The simulator path of the watcher's poll (`sim.calls(HISTORY)`)."""


async def submit(client: TestClient[Any, Any], prompt: str = "a watched cat", token: str = CN_TOKEN) -> Submission:
    """One real text-to-image submit through the generation service (no watching yet)."""
    params = image_params({"prompt": prompt})
    return await client.app[GENERATION].submit_images(Caller((parse_token(token),)), params, spend=SpendMark())
