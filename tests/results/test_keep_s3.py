"""`[results] keep = "s3"` against a real S3-compatible server (`moto_server`, started here on loopback; issue
21): results kept as objects named by their SHA-256, answered and sent as presigned GET URLs that load after the
upstream's 2 s links died, and two replicas on one PostgreSQL store and one bucket where the keep jobs a killed
replica had claimed are finished by the survivor. The keeper and the sender are driven by hand."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from simulate_proc import free_port
from support import CN_TOKEN, bearer, json_of
from support import finish_task as finish
from support import submit_task as submit
from webhook_support import SECRET, Receiver

from jimeng_server.api.appkeys import KEEPER, STORE, WEBHOOKS
from jimeng_server.app import create_app
from jimeng_server.clock import ManualClock
from jimeng_server.config import Config, ConfigError, ResultsConfig, StoreConfig, WebhookConfig
from jimeng_server.services.file_stores import S3Files

pytestmark = pytest.mark.wall_clock  # presigned URLs are signed with the wall clock

Client = TestClient[Any, Any]
IMAGES = "/v1/async/images/generations"
HOOKS = WebhookConfig(secret=SECRET, jitter=0.0)
BUCKET = "results-test"
KEYS = {"s3_access_key": "testing-key", "s3_secret_key": "testing-secret"}



@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A real `moto_server` process on loopback for this module's tests."""
    exe = Path(sys.executable).with_name("moto_server")
    if not exe.exists():
        pytest.skip("moto_server is not installed (pip install -e '.[test]')")
    port = free_port()
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("moto_server did not start")
            time.sleep(0.1)  # polling a port another process (moto_server) opens
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
async def bucket(moto_endpoint: str) -> AsyncIterator[S3Files]:
    """An empty bucket (created fresh) and a FileStore client to look into it."""
    settings = ResultsConfig(keep="s3", s3_bucket=BUCKET, s3_endpoint=moto_endpoint, **KEYS)
    files = S3Files(settings)
    await files.start()
    client = files._client
    try:
        listing = await client.list_objects_v2(Bucket=BUCKET)
        for obj in listing.get("Contents", []):
            await client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    except client.exceptions.NoSuchBucket:
        await client.create_bucket(Bucket=BUCKET)
    yield files
    await files.close()


async def objects(files: S3Files) -> dict[str, int]:
    listing = await files._client.list_objects_v2(Bucket=BUCKET)
    return {obj["Key"]: obj["Size"] for obj in listing.get("Contents", [])}


@pytest.fixture
def s3_client(
    aiohttp_client: Callable[..., Awaitable[Client]], config: Config, clock: ManualClock, moto_endpoint: str
) -> Callable[..., Awaitable[Client]]:
    async def factory(**overrides: Any) -> Client:
        results = ResultsConfig(
            keep="s3",
            s3_bucket=BUCKET,
            s3_endpoint=moto_endpoint,
            resign_margin=1.0,
            lease_seconds=30.0,
            retries=(5.0,),
            **KEYS,
        )
        cfg = dataclasses.replace(config, webhooks=HOOKS, results=results, **overrides)
        app: web.Application = create_app(cfg, clock=clock, background=False, identity_salt=b"test-salt")
        return await aiohttp_client(app)

    return factory


async def fetch(url: str) -> tuple[int, bytes, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.read(), resp.content_type


async def test_results_are_kept_in_the_bucket_and_answered_as_presigned_urls(
    s3_client: Callable[..., Awaitable[Client]],
    clock: ManualClock,
    bucket: S3Files,
    receiver: tuple[Receiver, TestServer],
) -> None:
    rec, server = receiver
    client = await s3_client()
    hook = str(server.make_url("/hooks/s3"))
    hid = await submit(client, IMAGES, clock, {"prompt": "to the bucket [sim:ttl=2]", "callback_url": hook})
    await finish(client, clock, hid)
    assert await client.app[WEBHOOKS].drain() == 1 and not rec.requests  # held while keeping
    assert await client.app[KEEPER].drain() == 4
    stored = await objects(bucket)
    assert len(stored) == 4 and all(key.startswith("results/") and key.endswith(".png") for key in stored)
    assert await client.app[WEBHOOKS].drain() == 1
    event = json.loads(rec.requests[0].body)
    results = event["data"]["results"]
    assert [r["kept"] for r in results] == [True] * 4
    await clock.advance(3)  # the upstream's links are dead; presigned URLs are not
    for r in results:
        assert "X-Amz-Signature=" in r["url"] and r["expires_at"] > clock.time() + 86400
        status, body, ctype = await fetch(r["url"])
        assert status == 200 and ctype == "image/png"
        assert f"results/{hashlib.sha256(body).hexdigest()}.png" in stored
    query = await client.get(f"/v1/async/tasks/{hid}", headers=bearer(CN_TOKEN))
    assert [r["kept"] for r in (await json_of(query))["results"]] == [True] * 4


async def test_a_killed_replicas_keep_jobs_are_finished_by_the_survivor(
    s3_client: Callable[..., Awaitable[Client]],
    clock: ManualClock,
    bucket: S3Files,
    pg_url: str,
    config: Config,
) -> None:
    store = StoreConfig(url=pg_url)
    a = await s3_client(store=store)
    b = await s3_client(store=store)
    hid = await submit(a, IMAGES, clock, {"prompt": "replicated"})
    await finish(a, clock, hid)
    claimed = await a.app[STORE].claim_keep_jobs(now=clock.time(), lease_seconds=30, limit=10)
    assert len(claimed) == 4  # replica A took them all, then was killed before keeping any
    await a.close()
    assert await b.app[KEEPER].drain() == 0  # A's lease holds
    await clock.advance(31)
    assert await b.app[KEEPER].drain() == 4
    assert len(await objects(bucket)) == 4
    resp = await b.get(f"/v1/async/tasks/{hid}", headers=bearer(CN_TOKEN))
    results = (await json_of(resp))["results"]
    assert [r["kept"] for r in results] == [True] * 4
    assert [(await fetch(r["url"]))[0] for r in results] == [200] * 4


def test_keep_s3_without_a_bucket_is_refused_naming_the_key(config: Config) -> None:
    cfg = dataclasses.replace(config, results=ResultsConfig(keep="s3"))
    with pytest.raises(ConfigError, match=r"results\.s3_bucket"):
        create_app(cfg)


def test_keep_s3_without_the_extra_names_it(tmp_path: Path) -> None:
    # A Python that cannot import aiobotocore (a package of that name that fails to import shadows it).
    (tmp_path / "aiobotocore").mkdir()
    (tmp_path / "aiobotocore" / "__init__.py").write_text("raise ImportError('not installed')\n")
    code = (
        "from jimeng_server.config import ResultsConfig, ConfigError\n"
        "from jimeng_server.services.file_stores import S3Files\n"
        "try:\n    S3Files(ResultsConfig(keep='s3', s3_bucket='b'))\n"
        "except ConfigError as exc:\n    print(exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "results.keep = \"s3\" needs the s3 extra: pip install 'jimeng-server[s3]'"
