"""Issue 26, finding 7a: an API key never travels upstream. `Bearer tok,jk_...` (a key anywhere in a token list,
also behind a proxy or region prefix) is refused with 401 before any upstream call; nothing is cooled down."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from support import CN_TOKEN, json_of

from jimeng_server.api.appkeys import ACCOUNTS
from jimeng_server.simulator import Simulator
from jimeng_server.upstream.regions import Region
from jimeng_server.upstream.tokens import Account

KEY = "jk_" + "A" * 43


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {CN_TOKEN},{KEY}",
        f"Bearer {KEY},{CN_TOKEN}",
        f"Bearer {CN_TOKEN}, {KEY}",
        f"Bearer {CN_TOKEN},us-{KEY}",
        f"Bearer {CN_TOKEN},http://127.0.0.1:9@{KEY}",
    ],
)
async def test_a_key_in_a_token_list_is_refused(client: TestClient[Any, Any], sim: Simulator, header: str) -> None:
    for path, body in (
        ("/v1/async/images/generations", {"prompt": "a cat"}),
        ("/token/points", None),
    ):
        resp = await client.post(path, json=body, headers={"Authorization": header})
        answer = await json_of(resp)
        assert resp.status == 401 and answer["error"]["code"] == "INVALID_API_KEY", (path, answer)
        assert KEY not in str(answer)
    assert not [c for c in sim.journal if c.sessionid == KEY]
    assert client.app[ACCOUNTS].cooldown(Account(sessionid=KEY, region=Region.CN)) is None
