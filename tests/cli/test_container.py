"""The container (issue 24): the Dockerfile's facts (a non-root user, a HEALTHCHECK on /healthz, one volume
holding the store, the port, the entry point), the release workflow (a multi-arch image pushed to ghcr.io on a
version tag), and, where a container engine runs, the image built and answering /healthz with --simulate."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from simulate_proc import free_port

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile's final stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    parsed = [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]
    last_from = max(i for i, (op, _) in enumerate(parsed) if op == "FROM")
    return parsed[last_from:]


def last(op: str) -> str:
    found = [args for name, args in instructions() if name == op]
    assert found, f"the final stage has no {op}"
    return found[-1]


def env() -> dict[str, str]:
    pairs: dict[str, str] = {}
    for name, args in instructions():
        if name == "ENV":
            pairs.update(re.findall(r"(\w+)=(\S+)", args))
    return pairs


def test_the_image_runs_as_a_non_root_user() -> None:
    user = last("USER").split(":")[0]
    assert user not in ("root", "0", "")
    (useradd,) = [args for name, args in instructions() if name == "RUN" and "useradd" in args]
    assert re.search(rf"useradd\b.*\b{re.escape(user)}\b", useradd)


def test_the_image_checks_its_health_on_healthz() -> None:
    check = last("HEALTHCHECK")
    assert "CMD" in check and "/healthz" in check and "JIMENG_PORT" in check
    assert re.search(r"--interval=\d+s", check) and re.search(r"--timeout=\d+s", check)


def test_the_store_lives_on_the_volume_and_the_port_matches() -> None:
    volumes = json.loads(last("VOLUME"))
    settings = env()
    assert any(settings["JIMENG_STORE_PATH"].startswith(v.rstrip("/") + "/") for v in volumes)
    assert last("EXPOSE").split()[0] == settings["JIMENG_PORT"] == "5100"
    assert json.loads(last("ENTRYPOINT")) == ["jimeng-server"]
    assert "secrets" in Path(ROOT / "Dockerfile").read_text(encoding="utf-8")  # the image can seal the pool's secrets


def test_a_version_tag_publishes_a_multi_arch_image_to_ghcr() -> None:
    workflow: dict[Any, Any] = yaml.safe_load((ROOT / ".github/workflows/release.yml").read_text(encoding="utf-8"))
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads a bare `on` as true
    assert any(tag.startswith("v") for tag in triggers["push"]["tags"])
    assert workflow["permissions"]["packages"] == "write"
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    (login,) = [s for s in steps if str(s.get("uses", "")).startswith("docker/login-action")]
    assert login["with"]["registry"] == "ghcr.io"
    (build,) = [s for s in steps if str(s.get("uses", "")).startswith("docker/build-push-action")]
    assert set(build["with"]["platforms"].split(",")) >= {"linux/amd64", "linux/arm64"}
    assert build["with"]["push"] is True


def engine() -> str | None:
    """A container engine whose daemon answers (a client alone cannot build)."""
    for name in ("docker", "podman"):
        path = shutil.which(name)
        if path is None:
            continue
        probe = subprocess.run([path, "info"], capture_output=True, text=True, timeout=30, check=False)
        if probe.returncode == 0:
            return path
    return None


def test_the_image_builds_and_serves_with_simulate() -> None:
    tool = engine()
    if tool is None:
        pytest.skip("no container engine runs here (docker/podman missing or its daemon is not reachable)")
    tag = f"jimeng-server-test:{uuid.uuid4().hex[:8]}"
    built = subprocess.run([tool, "build", "-t", tag, str(ROOT)], capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stderr[-3000:]
    port = free_port()
    name = f"jimeng-test-{uuid.uuid4().hex[:8]}"
    run = [tool, "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:5100", tag, "--simulate"]
    started = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    try:
        user = subprocess.run([tool, "exec", name, "id", "-u"], capture_output=True, text=True, timeout=60)
        assert user.stdout.strip() not in ("", "0")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + 60
        while True:  # a separate process starting up: poll its port, bounded
            try:
                with opener.open(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "the container did not answer /healthz within 60 s"
                time.sleep(0.2)
    finally:
        subprocess.run([tool, "rm", "-f", name], capture_output=True, timeout=60)
        subprocess.run([tool, "rmi", "-f", tag], capture_output=True, timeout=120)
