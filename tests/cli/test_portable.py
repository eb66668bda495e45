"""The portable install (issue 24): sealing secrets at rest is the optional extra `secrets` (`cryptography`),
imported only when an encryption key is configured. Without the package the server and the management commands
run (and never import it); a key configured without it fails at start with a message naming the extra.

The commands run as child processes whose import system refuses `cryptography`, as on an install without the
extra (or the single-file .pyz on an interpreter the package's binary was not built for)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from cryptography.fernet import Fernet
from pool_support import POOL_SESSIONS
from simulate_proc import free_port

ROOT = Path(__file__).resolve().parents[2]

# Runs `python -m jimeng_server ARGS...` with `cryptography` unimportable; prints whether it got imported.
WITHOUT_CRYPTOGRAPHY = """
import runpy, sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name == "cryptography" or name.startswith("cryptography."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, Refuse())
sys.argv = ["jimeng-server", *sys.argv[1:]]
try:
    runpy.run_module("jimeng_server", run_name="__main__", alter_sys=True)
finally:
    print("cryptography imported:", any(m.startswith("cryptography") for m in sys.modules), file=sys.stderr)
"""


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JIMENG_")}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_CRYPTOGRAPHY, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
        check=False,
    )


def config_file(tmp_path: Path) -> Path:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "pool.db"}"\n', encoding="utf-8")
    return cfg


def test_cryptography_is_an_optional_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert not [d for d in project["dependencies"] if d.startswith("cryptography")]
    assert [d for d in project["optional-dependencies"]["secrets"] if d.startswith("cryptography")]


def test_the_pool_commands_run_without_the_extra_when_no_key_is_set(tmp_path: Path) -> None:
    cfg = config_file(tmp_path)
    added = run(["--config", str(cfg), "accounts", "add", "main", POOL_SESSIONS["pa"]])
    assert added.returncode == 0, added.stderr
    assert "added account main" in added.stdout and "stored unencrypted" in added.stdout
    listed = run(["--config", str(cfg), "accounts", "list"])
    assert listed.returncode == 0 and "main" in listed.stdout
    assert "cryptography imported: False" in added.stderr + listed.stderr


def test_a_key_without_the_extra_names_the_extra(tmp_path: Path) -> None:
    cfg = config_file(tmp_path)
    env = {"JIMENG_ACCOUNTS_KEY": Fernet.generate_key().decode()}
    listed = run(["--config", str(cfg), "accounts", "list"], env=env)
    assert listed.returncode == 2, listed.stderr
    assert "pip install 'jimeng-server[secrets]'" in listed.stderr and "Traceback" not in listed.stderr
    assert env["JIMENG_ACCOUNTS_KEY"] not in listed.stdout + listed.stderr
    # The server itself refuses to start, with the same message, before serving anything.
    port = str(free_port())
    served = run(["--config", str(cfg), "--host", "127.0.0.1", "--port", port], env=env)
    assert served.returncode == 2, served.stderr
    assert "pip install 'jimeng-server[secrets]'" in served.stderr and "Traceback" not in served.stderr


def test_the_pyz_check_finds_each_python_and_names_a_missing_one() -> None:
    """bench/pyz.py --pythons (what .ci/run uses): each CPython is found as a real interpreter of that version
    (not a shim), and a version that is not installed fails naming it."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import pyz  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(ROOT / "bench"))
    for version in ("3.11", "3.12", "3.13"):
        try:
            path = pyz.find_python(version)
        except SystemExit as missing:
            assert not os.environ.get("CI"), f"CI must have CPython {version}: {missing}"
            continue
        probe = subprocess.run(
            [path, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True, timeout=60
        )
        assert probe.stdout.strip() == str(tuple(int(n) for n in version.split("."))), path
    try:
        pyz.find_python("3.99")
    except SystemExit as missing:
        assert "3.99" in str(missing) and "install" in str(missing)
    else:
        raise AssertionError("a missing interpreter was not reported")
