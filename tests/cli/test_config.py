"""Configuration: the documented example, strict parsing with key paths in errors, env var, CLI exit code."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from jimeng_server.cli import simulate_store
from jimeng_server.config import (
    Config,
    ConfigError,
    KindSchedule,
    RegionHosts,
    UpstreamConfig,
    load_config,
    parse_config,
    with_env_overrides,
)
from jimeng_server.upstream.regions import Region

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.toml"


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_example_file_parses_to_the_defaults() -> None:
    assert load_config(EXAMPLE) == Config()
    assert load_config(str(EXAMPLE)) == Config()


def _missing_keys(cls: type[Any], data: dict[str, Any], path: str) -> list[str]:
    missing: list[str] = []
    defaults = (
        cls()
        if all(
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            for f in dataclasses.fields(cls)
        )
        else None
    )
    for f in dataclasses.fields(cls):
        key = f"{path}.{f.name}" if path else f.name
        if f.name not in data:
            missing.append(key)
            continue
        value = data[f.name]
        default = getattr(defaults, f.name, None) if defaults is not None else None
        if f.name == "regions":
            for region in Region:
                if region.value not in value:
                    missing.append(f"{key}.{region.value}")
                else:
                    missing += _missing_keys(RegionHosts, value[region.value], f"{key}.{region.value}")
        elif dataclasses.is_dataclass(default):
            missing += _missing_keys(type(default), value, key)
    return missing


def test_every_config_key_is_documented_in_the_example() -> None:
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert _missing_keys(Config, data, "") == []
    # The walk reaches the nested tables (so the check above can fail).
    assert "watcher.image.deadline" in _missing_keys(Config, {**data, "watcher": {"image": {}}}, "")
    assert "upstream.regions.jp.page" in _missing_keys(
        Config, {**data, "upstream": {**data["upstream"], "regions": {**data["upstream"]["regions"], "jp": {}}}}, ""
    )


def test_example_has_every_section() -> None:
    # Every section header is present (the key walk above checks the keys inside them).
    text = EXAMPLE.read_text(encoding="utf-8")
    sections = ("server", "upstream", "watcher", "watcher.image", "watcher.video", "security", "store")
    for section in sections:
        assert f"[{section}]" in text


def test_empty_file_is_the_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")) == Config()


def test_values_are_read(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            """
[server]
port = 8080
max_body_mb = 5
[upstream]
appvr = "9.9.9"
timeout = 30        # an integer where a float is expected is fine
[watcher]
batch_size = 7
[watcher.video]
first_poll = 1.0
interval = 2.0
deadline = 3.0
[security]
allow_private_networks = true
""",
        )
    )
    assert cfg.server.port == 8080 and cfg.server.max_body_bytes == 5 * 1024 * 1024
    assert cfg.upstream.appvr == "9.9.9" and cfg.upstream.timeout == 30.0
    assert isinstance(cfg.upstream.timeout, float)
    assert cfg.watcher.batch_size == 7
    assert cfg.watcher.video == KindSchedule(first_poll=1.0, interval=2.0, deadline=3.0)
    assert cfg.watcher.image == Config().watcher.image
    assert cfg.security.allow_private_networks is True
    assert cfg.store == Config().store


def test_partial_kind_schedule_keeps_other_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[watcher.image]\ndeadline = 600.0\n"))
    default = Config().watcher.image
    assert cfg.watcher.image == dataclasses.replace(default, deadline=600.0)


def test_partial_region_override_keeps_other_hosts(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[upstream.regions.us]\nweb = "https://us.example.test"\n'))
    default = UpstreamConfig()
    us = cfg.upstream.hosts(Region.US)
    assert us.web == "https://us.example.test"
    assert us == dataclasses.replace(default.hosts(Region.US), web="https://us.example.test")
    for region in (Region.CN, Region.HK, Region.JP, Region.SG):
        assert cfg.upstream.hosts(region) == default.hosts(region)


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ("bogus = 1", "bogus"),
        ("[server]\nprot = 1", "server.prot"),
        ("[upstream]\nappvr_x = '1'", "upstream.appvr_x"),
        ("[watcher.image]\nfirst_pol = 1.0", "watcher.image.first_pol"),
        ("[upstream.regions.cn]\nweeb = 'https://x.test'", "upstream.regions.cn.weeb"),
    ],
)
def test_unknown_keys_are_errors_naming_the_path(tmp_path: Path, toml: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, toml))
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ("[server]\nport = '5100'", "server.port"),
        ("[server]\nport = 51.5", "server.port"),
        ("[server]\nport = true", "server.port"),
        ("[server]\nhost = 1", "server.host"),
        ("[upstream]\ntimeout = 'fast'", "upstream.timeout"),
        ("[upstream]\ntimeout = false", "upstream.timeout"),
        ("[security]\nallow_private_networks = 'yes'", "security.allow_private_networks"),
        ("[security]\nallow_private_networks = 1", "security.allow_private_networks"),
        ("server = 5", "server"),
        ("[watcher]\nimage = 3", "watcher.image"),
        ("[upstream]\nregions = 'cn'", "upstream.regions"),
        ("[upstream.regions]\ncn = 'https://x.test'", "upstream.regions.cn"),
    ],
)
def test_wrong_types_are_errors_naming_the_path(tmp_path: Path, toml: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, toml))
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ("[server]\nmax_body_mb = -1", "server.max_body_mb"),
        ("[server]\nport = 0", "server.port"),
        ("[server]\nport = 70000", "server.port"),
        ("[upstream]\ntimeout = -1.0", "upstream.timeout"),
        ("[upstream]\nread_retries = -1", "upstream.read_retries"),
        ("[watcher]\nbatch_size = 0", "watcher.batch_size"),
        ("[watcher]\nbatch_size = 101", "watcher.batch_size"),
        ("[watcher]\npolls_per_account = 0", "watcher.polls_per_account"),
        ("[store]\nread_connections = -1", "store.read_connections"),
        ("[store]\nsynchronous = \"off\"", "store.synchronous"),
        ("[watcher]\nnot_visible_polls = -2", "watcher.not_visible_polls"),
        ("[watcher.video]\ninterval = 0.0", "watcher.video.interval"),
        ("[watcher.image]\ndeadline = -5.0", "watcher.image.deadline"),
        ("[security]\nmax_download_mb = -10", "security.max_download_mb"),
        ("[store]\nretention_days = -1.0", "store.retention_days"),
    ],
)
def test_out_of_range_numbers_are_errors_naming_the_path(tmp_path: Path, toml: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, toml))
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("jimeng.jianying.com", "web"),
        ("ftp://jimeng.jianying.com", "commerce"),
        ("https://", "imagex"),
        ("", "vod"),
        ("http:///nohost", "page"),
    ],
)
def test_bad_urls_are_errors_naming_the_path(tmp_path: Path, value: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, f'[upstream.regions.sg]\n{key} = "{value}"\n'))
    assert f"upstream.regions.sg.{key}" in str(info.value)


def test_unknown_region_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, '[upstream.regions.eu]\nweb = "https://eu.test"\n'))
    assert "upstream.regions.eu" in str(info.value)
    assert "cn" in str(info.value)  # the known regions are named


def test_bad_log_level_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, '[server]\nlog_level = "LOUD"\n'))
    assert "server.log_level" in str(info.value)
    assert load_config(write(tmp_path, '[server]\nlog_level = "debug"\n')).server.log_level == "debug"


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(write(tmp_path, "[server\nport = 1"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_parse_config_direct() -> None:
    assert parse_config({}) == Config()
    with pytest.raises(ConfigError, match=r"server\.port"):
        parse_config({"server": {"port": "x"}})


def test_jimeng_config_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "[server]\nport = 6100\n")
    monkeypatch.setenv("JIMENG_CONFIG", str(path))
    assert load_config().server.port == 6100
    # An explicit path wins over the environment.
    other = write(tmp_path, "[server]\nport = 6200\n", "other.toml")
    assert load_config(other).server.port == 6200
    monkeypatch.setenv("JIMENG_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        load_config()
    monkeypatch.delenv("JIMENG_CONFIG")
    assert load_config() == Config()


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m jimeng_server ARGS` in the repository, with `env`; returns its exit code and output."""
    return subprocess.run(
        [sys.executable, "-m", "jimeng_server", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_bad_config_exits_2_with_message(tmp_path: Path) -> None:
    bad = write(tmp_path, "[server]\nport = 'eighty'\n", "bad.toml")
    env = {k: v for k, v in os.environ.items() if k != "JIMENG_CONFIG"}
    proc = run_cli("--config", str(bad), env=env)
    assert proc.returncode == 2
    assert "server.port" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_cli_env_bad_config_exits_2(tmp_path: Path) -> None:
    bad = write(tmp_path, "[nope]\n", "bad.toml")
    env = {**os.environ, "JIMENG_CONFIG": str(bad)}
    proc = run_cli(env=env)
    assert proc.returncode == 2
    assert "nope" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_bad_webhook_secret_exits_2_without_traceback(tmp_path: Path) -> None:
    store = tmp_path / "t.db"
    cfg = write(tmp_path, f'[store]\npath = "{store}"\n', "ok.toml")
    env = {**os.environ, "JIMENG_WEBHOOK_SECRET": "whsec_!!not-base64", "JIMENG_CONFIG": str(cfg)}
    proc = run_cli("--port", "1", env=env)
    assert proc.returncode == 2
    assert "JIMENG_WEBHOOK_SECRET" in proc.stderr and "Traceback" not in proc.stderr
    assert "!!not-base64" not in proc.stderr  # the secret itself is never echoed


def test_region_codes_match_the_protocol_regions() -> None:
    from jimeng_server.config import REGION_CODES
    from jimeng_server.upstream.regions import Region

    assert set(REGION_CODES) == {r.value for r in Region}


@pytest.mark.parametrize(
    ("url", "backend", "sqlite_path"),
    [
        ("", "sqlite", "data/jimeng.db"),  # no url: [store] path, as before
        ("sqlite:///var/lib/jimeng/tasks.db", "sqlite", "var/lib/jimeng/tasks.db"),
        ("sqlite:////var/lib/jimeng/tasks.db", "sqlite", "/var/lib/jimeng/tasks.db"),
        ("postgresql://jimeng:pw@db.internal:5432/jimeng", "postgresql", "data/jimeng.db"),
        ("postgres://db.internal/jimeng", "postgresql", "data/jimeng.db"),
    ],
)
def test_store_url_picks_the_backend(tmp_path: Path, url: str, backend: str, sqlite_path: str) -> None:
    cfg = load_config(write(tmp_path, f'[store]\nurl = "{url}"\n'))
    assert (cfg.store.backend, cfg.store.sqlite_path) == (backend, sqlite_path)


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ('url = "mysql://root:hunter2@db/jimeng"', "store.url: must start with sqlite:/// or postgresql://"),
        ('url = "sqlite:///"', "store.url: sqlite:/// needs a file path"),
        ("pool_size = 0", "store.pool_size: must be at least 1"),
        ("answer_cache_mb = 5000", "store.answer_cache_mb: must be 0-4096"),
    ],
)
def test_bad_store_settings_are_errors(tmp_path: Path, toml: str, needle: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config(write(tmp_path, f"[store]\n{toml}\n"))
    assert needle in str(excinfo.value)
    assert "hunter2" not in str(excinfo.value)  # a URL's password is never echoed


def test_store_url_is_kept_out_of_repr() -> None:
    cfg = parse_config({"store": {"url": "postgresql://jimeng:hunter2@db/jimeng"}})
    assert "hunter2" not in repr(cfg)


def test_store_url_from_the_environment_and_never_echoed() -> None:
    url = "postgresql://jimeng:hunter2@db.internal/jimeng"
    cfg = with_env_overrides(Config(), {"JIMENG_STORE_URL": url})
    assert (cfg.store.backend, cfg.store.url) == ("postgresql", url)
    with pytest.raises(ConfigError) as excinfo:
        with_env_overrides(Config(), {"JIMENG_STORE_URL": "mysql://root:hunter2@db/x"})
    assert "JIMENG_STORE_URL" in str(excinfo.value) and "hunter2" not in str(excinfo.value)


def test_simulate_never_uses_the_shared_database() -> None:
    cfg = parse_config({"store": {"url": "postgresql://db.internal/jimeng", "path": "data/x.db"}})
    simulated = simulate_store(cfg).store
    assert (simulated.backend, simulated.sqlite_path) == ("sqlite", "data/x-simulate.db")
