"""Command line: `python -m jimeng_server [--config F] [--host H] [--port P] [--simulate] [--version]`, the
operator commands `jimeng-server [--config F] accounts ...` / `keys ...` (see `manage.py`), and
`jimeng-server doctor [--config F] [--token T] [--spend] [--post-edit] [--record DIR] [--simulate [--drift
version|model|risk|price|count]]` (`doctor.py`).

Settings come from, strongest first: the flags, the environment (JIMENG_HOST, JIMENG_PORT, JIMENG_STORE_PATH;
JIMENG_CONFIG names the file), the config file, the built-in defaults.

`--simulate` starts the strict upstream simulator on loopback, points every region at it, seeds a demo
account and a pool of three demo accounts, and prints a ready-to-paste curl command for each (a raw token and
a demo API key) and the dashboard's admin key: the server then works with no account and no internet.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from aiohttp import web

from . import __version__, gctuning, manage, metrics
from .api.admin import admin_key
from .api.appkeys import ACCOUNT_POOL, API_KEYS, WEBHOOKS
from .api.observability import AccessLogger
from .app import create_app, create_sender_app
from .clock import Clock, SystemClock
from .concurrency import loop_factory
from .config import Config, ConfigError, ResultsConfig, load_config, with_env_overrides
from .doctor import exit_code, run_doctor
from .errors import Conflict
from .integers import cli_int
from .logs import setup_logging
from .runner import ApiRunner, bind
from .services.apikeys import key_digest
from .upstream.regions import Region
from .upstream.tokens import TokenError, parse_token
from .webhooks.processes import ChildSpec, ParentLink, read_spec

log = logging.getLogger("jimeng_server")


HELP_DESCRIPTION = (
    "Serve the Jimeng / Dreamina AI image and video web service as an HTTP API (OpenAI-style endpoints,\n"
    "async tasks, signed webhooks); with --simulate, against a built-in fake upstream that needs no account."
)
HELP_EPILOG = """other commands:
  doctor              check an account end to end and name what drifted upstream
                      (jimeng-server doctor --help; doctor --simulate needs no account)

examples:
  jimeng-server --simulate                      try it with no account and no internet
  jimeng-server --config config.toml            serve (see config.example.toml)
  jimeng-server --config config.toml accounts list"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="jimeng-server",
        description=HELP_DESCRIPTION,
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="path to config.toml (default: $JIMENG_CONFIG, else built-in defaults)")
    parser.add_argument("--host", help="listen address (default: $JIMENG_HOST, else config, else 0.0.0.0)")
    parser.add_argument(
        "--port",
        type=cli_int("--port", low=0, high=65535),
        help="listen port (default: $JIMENG_PORT, else config, else 5100)",
    )
    parser.add_argument("--version", action="version", version=f"jimeng-server {__version__}")
    parser.add_argument(
        "--simulate",
        action="store_true",
        help="serve against the built-in upstream simulator (no account needed); before accounts/keys: act on "
        "the simulator's store (its demo pool and keys)",
    )
    manage.add_commands(parser.add_subparsers(dest="command", title="operator commands"))
    return parser.parse_args(argv)


def with_simulator_hosts(config: Config, hosts: dict[Region, dict[str, str]]) -> Config:
    """`config` with every region's upstream hosts replaced by the simulator's."""
    regions = {
        r.value: dataclasses.replace(config.upstream.hosts(r), **hosts[r])  # `page` too: the web vhost serves the page
        for r in Region
    }
    return dataclasses.replace(config, upstream=dataclasses.replace(config.upstream, regions=regions))


def simulate_store(config: Config) -> Config:
    """`config` with the task store moved to an SQLite file of its own (`<name>-simulate.db`, also when `[store]
    url` names a PostgreSQL database), so simulated tasks never mix with real ones (a real run would otherwise
    try to resume them against the real upstream)."""
    path = Path(config.store.sqlite_path)
    simulated = str(path.with_name(f"{path.stem}-simulate{path.suffix}"))
    store = dataclasses.replace(config.store, url="", path=simulated)
    return dataclasses.replace(config, store=store)


def sim_state_path(config: Config) -> Path:
    """Where `--simulate` saves the simulator's state, beside the simulate store of `config`."""
    return Path(config.store.path).with_suffix(".sim.json")


def simulate_manage_config(config: Config) -> Config:
    """The config of `--simulate accounts|keys ...`: the simulate store (the demo pool and keys) and, when a
    `--simulate` run saved its simulator's port, every region pointed at that simulator (so `accounts check`
    asks it, while that server runs)."""
    from .simulator import persist, simulator_hosts

    config = simulate_store(config)
    saved = persist.load(sim_state_path(config))
    if saved is None:
        return config
    return with_simulator_hosts(config, simulator_hosts(f"http://127.0.0.1:{saved.port}"))
def simulate_results(config: Config, secret: bytes) -> Config:
    """With `--simulate` and `[results]` left at its defaults, results are kept and served through the server's
    own port (`keep = "local"`): the simulator's CDN is on a loopback port a container does not publish. The
    link key comes from the simulator's saved CDN secret, so links survive restarts."""
    if config.results != ResultsConfig():
        return config
    key = hashlib.sha256(b"jimeng-simulate-results|" + secret).hexdigest()
    return dataclasses.replace(config, results=dataclasses.replace(config.results, keep="local", link_secret=key))


DEMO_ACCOUNTS = 3
DEMO_NOTE = "simulator demo account"


def demo_keys_path(config: Config) -> Path:
    """Where `--simulate` keeps the text of its demo API key and its generated admin key (mode 0600, beside the
    simulate store), so both survive restarts like the demo tokens."""
    return Path(config.store.path).with_suffix(".keys.json")


def load_demo_keys(path: Path) -> dict[str, str]:
    """The saved `{"api_key", "admin_key"}` (either may be missing); empty for a missing or unreadable file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if k in ("api_key", "admin_key") and isinstance(v, str) and v}


def save_demo_keys(path: Path, keys: dict[str, str]) -> None:
    """Write the demo keys atomically, readable by the owner only."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(keys, f)
    os.replace(tmp, path)


async def seed_demo_pool(app: web.Application, sessions: list[str], saved_key: str = "") -> str:
    """Put the simulator's demo `sessions` into the pool (`demo-<run>-<n>`) and return the text of the demo API
    key: `saved_key` (the one of an earlier run) while it is a demo key that is still valid, else a fresh
    `demo-<run>` key. Demo accounts of these sessions (a restarted simulator keeps its sessions) stay;
    the demo accounts of an earlier simulator are removed (or disabled while tasks of theirs are still
    watched), and other demo keys are revoked."""
    pool, keys = app[ACCOUNT_POOL], app[API_KEYS]
    wanted = {parse_token(session).fingerprint: session for session in sessions}
    for account in await pool.rows():
        if account.note != DEMO_NOTE:
            continue
        if wanted.pop(account.fingerprint, None) is not None:
            continue  # the same simulator account, restored: keep it (and its tasks' ownership)
        try:
            await pool.remove(account.id)
        except Conflict:  # tasks still in flight: keep it out of the pool's choices
            await pool.set_enabled(account.id, False)
    kept = key_digest(saved_key) if saved_key else None
    kept_alive = False
    for key in await keys.rows():
        if key.name.startswith("demo-") and key.revoked_at is None:
            if key.hash == kept:
                kept_alive = True  # the same key across restarts: callers and their tasks keep working
            else:
                await keys.revoke(key.id)
    run = secrets.token_hex(3)  # names stay unique across runs
    for n, session in enumerate(wanted.values(), 1):
        await pool.add(f"demo-{run}-{n}", session, note=DEMO_NOTE)
    if kept_alive:
        return saved_key
    text, _ = await keys.create(f"demo-{run}", rate_per_minute=600, max_in_flight=50)
    return text


async def _start_simulator(config: Config) -> tuple[web.AppRunner, Config, list[str]]:
    """Start the simulator on loopback and return its runner, `config` pointed at it (with the simulate
    store and an admin key) and the demo tokens (the raw demo token, then the pool's). The simulator's state
    lives beside the simulate store (`<store>.sim.json`): a restart keeps the demo accounts, the records and
    the port, so tasks submitted before it still finish."""
    from .simulator import Simulator, persist, seed_demo, simulator_hosts

    config = simulate_store(config)
    state_path = sim_state_path(config)
    state_path.parent.mkdir(parents=True, exist_ok=True)
    saved = persist.load(state_path)
    # A fresh seed per run: new history ids continue from the saved counter, never repeating stored ones.
    sim = Simulator(seed=secrets.randbits(32))
    if saved is not None:
        persist.restore(sim, saved.state)
        tokens = saved.demo_tokens
    else:
        tokens = [seed_demo(sim) for _ in range(1 + DEMO_ACCOUNTS)]
    config = simulate_results(config, sim.cdn_secret)
    listening = {"port": 0}
    app = sim.create_app()
    app.middlewares.append(persist.persisting(state_path, sim, port=lambda: listening["port"], demo_tokens=tokens))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", saved.port if saved is not None else 0).start()
    except OSError as exc:  # the old port is taken: result URLs stored before the restart will not load
        log.warning("simulator: its earlier port is taken (%s); result URLs of earlier tasks will not load", exc)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    listening["port"] = port
    persist.save(state_path, sim, port=port, demo_tokens=tokens)
    if not admin_key(config.admin):  # the generated one is kept for the next run (the dashboard stays logged in)
        saved_keys = load_demo_keys(demo_keys_path(config))
        generated = saved_keys.get("admin_key") or secrets.token_urlsafe(18)
        save_demo_keys(demo_keys_path(config), {**saved_keys, "admin_key": generated})
        config = dataclasses.replace(config, admin=dataclasses.replace(config.admin, key=generated))
    return runner, with_simulator_hosts(config, simulator_hosts(f"http://{host}:{port}")), tokens


class StartupError(Exception):
    """The server could not start; the message is the one line printed before exiting non-zero."""


async def serve(config: Config, *, simulate: bool) -> None:
    """Run until SIGINT/SIGTERM. The listening socket is bound first and the store opened next, so a taken
    port or an unusable store fails (StartupError) before any task is resumed or any request served.

    The signal handlers are installed before the socket is bound: a SIGINT/SIGTERM at any moment after that
    (while the simulator, the store or the app are still starting) cancels the start-up and cleans up what
    had started, and the process exits 0 like a stop after the start."""
    gctuning.tune()  # a server's pace for the cycle collector (gctuning.py)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await _serve_until(config, stop, simulate=simulate)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


async def _serve_until(config: Config, stop: asyncio.Event, *, simulate: bool) -> None:
    try:
        sock = bind(config.server.host, config.server.port)
    except OSError as exc:
        where = f"{config.server.host}:{config.server.port}"
        raise StartupError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    runners: list[web.AppRunner] = []
    starting = asyncio.create_task(_start(config, runners, sock, simulate=simulate))
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():  # stopped while starting: nothing is served yet, abandon the start-up
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        else:
            starting.result()  # a StartupError or ConfigError surfaces here
            await stopped
    finally:
        stopped.cancel()
        for r in reversed(runners):
            await r.cleanup()
        sock.close()


async def _start(config: Config, runners: list[web.AppRunner], sock: socket.socket, *, simulate: bool) -> None:
    """Start the simulator (with `simulate`) and the app on `sock`; each runner joins `runners` as soon as it
    exists, so whoever cancels this still cleans it up."""
    demo_tokens: list[str] = []
    if simulate:
        sim_runner, config, demo_tokens = await _start_simulator(config)
        runners.append(sim_runner)
    app = create_app(config)
    runner = ApiRunner(app, config.server, access_log_class=AccessLogger)
    runners.append(runner)
    try:
        await runner.setup()
    except Exception as exc:  # the store (opened first) is what usually fails: unreadable, not a database
        raise StartupError(f"{type(exc).__name__}: {exc} (task store {config.store.path})") from None
    demo_key = ""
    if simulate:
        saved_keys = load_demo_keys(demo_keys_path(config))
        demo_key = await seed_demo_pool(app, demo_tokens[1:], saved_keys.get("api_key", ""))
        save_demo_keys(demo_keys_path(config), {**saved_keys, "api_key": demo_key})
    await web.SockSite(runner, sock).start()
    _announce(config, demo_tokens[0] if simulate else None, demo_key)


def _announce(config: Config, demo_token: str | None, demo_key: str) -> None:
    shown = "127.0.0.1" if config.server.host in ("0.0.0.0", "::") else config.server.host
    base = f"http://{shown}:{config.server.port}"
    log.info("jimeng-server listening on %s:%d", config.server.host, config.server.port)
    if demo_token is not None:
        banner = simulate_banner(
            base, demo_token, demo_key, admin_key(config.admin), private_ok=config.security.allow_private_networks
        )
        print(banner, flush=True)


LOCAL_RECEIVER = "http://127.0.0.1:8000/hook"
"""The callback URL of the banner: the README's webhook receiver (`python receiver.py`) on this machine."""


def simulate_banner(base: str, token: str, api_key: str, admin: str, *, private_ok: bool = False) -> str:
    """What `--simulate` prints: ready-to-paste sync, async-submit, query and callback examples, the demo
    API key and the dashboard. The callback example posts to the README's receiver on this machine, and says
    what to set when the SSRF guard would refuse it (`private_ok` False)."""
    receiver = "  # or have the final task POSTed to the README's webhook receiver here (python receiver.py)\n"
    if not private_ok:
        receiver += "  # (a receiver on this machine or network needs [security] allow_private_networks = true)\n"
    auth = f"-H 'Authorization: Bearer {token}'"
    json_h = "-H 'Content-Type: application/json'"
    return (
        "\nSimulator mode: every region points at the built-in fake upstream; its state (demo accounts, tasks,\n"
        "result URLs) survives restarts. Try:\n\n"
        "  # wait for the images\n"
        f"  curl -s {base}/v1/images/generations {json_h} {auth} \\\n"
        f'    -d \'{{"prompt": "a cat in the snow", "model": "jimeng-4.5"}}\'\n\n'
        "  # submit and get a history_id at once\n"
        f"  curl -s {base}/v1/async/images/generations {json_h} {auth} \\\n"
        f'    -d \'{{"prompt": "a cat in the snow"}}\'\n\n'
        "  # query it (?wait=30 long-polls until it is final)\n"
        f"  curl -s '{base}/v1/async/tasks/HISTORY_ID?wait=30' {auth}\n\n"
        f"{receiver}"
        f"  curl -s {base}/v1/async/images/generations {json_h} {auth} \\\n"
        f'    -d \'{{"prompt": "a cat in the snow", "callback_url": "{LOCAL_RECEIVER}"}}\'\n\n'
        f"The same with the demo API key (the pool of {DEMO_ACCOUNTS} demo accounts picks the account):\n\n"
        f"  curl -s {base}/v1/async/images/generations {json_h} -H 'Authorization: Bearer {api_key}' \\\n"
        f'    -d \'{{"prompt": "a cat in the snow", "model": "jimeng-4.5"}}\'\n\n'
        f"Dashboard: {base}/admin  (admin key: {admin})\n"
    )


def parse_doctor_args(argv: list[str]) -> argparse.Namespace:
    from .simulator.drift import DRIFTS

    parser = argparse.ArgumentParser(
        prog="jimeng-server doctor", description="check an account end to end and name what drifted upstream"
    )
    parser.add_argument("--config", help="path to config.toml (default: $JIMENG_CONFIG, else built-in defaults)")
    parser.add_argument("--token", help="the account's token (default: $JIMENG_TOKEN); shown masked only")
    parser.add_argument("--spend", action="store_true", help="also generate one cheapest image (spends credits)")
    parser.add_argument(
        "--post-edit", action="store_true", help="also run the free upscale once (normal_hd) and report its drift"
    )
    parser.add_argument("--simulate", action="store_true", help="check against the built-in simulator")
    parser.add_argument(
        "--drift", action="append", choices=DRIFTS, default=[], help="with --simulate: make the simulator drift"
    )
    parser.add_argument(
        "--record", metavar="DIR", help="save every upstream exchange, redacted, under DIR (to hand in as samples)"
    )
    return parser.parse_args(argv)


async def _fresh_simulator(
    config: Config, clock: Clock, drift: Sequence[str]
) -> tuple[web.AppRunner, Config, str]:
    """A throw-away simulator for `doctor --simulate` (nothing saved, unlike `--simulate`'s): started on loopback
    with `drift` applied and a demo account; returns its runner, `config` pointed at it and the demo token."""
    from .simulator import Simulator, seed_demo, simulator_hosts
    from .simulator.drift import apply_drift

    sim = Simulator(clock=clock, seed=secrets.randbits(32))
    apply_drift(sim, drift)
    token = seed_demo(sim)
    runner = web.AppRunner(sim.create_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, with_simulator_hosts(config, simulator_hosts(f"http://{host}:{port}")), token


async def doctor_command(
    config: Config,
    token: str | None,
    *,
    spend: bool = False,
    simulate: bool = False,
    drift: Sequence[str] = (),
    clock: Clock | None = None,
    post_edit: bool = False,
    record: str | None = None,
) -> int:
    """Run the doctor (against a fresh simulator with `simulate`), print one line per check, return the exit
    code (0: nothing failed, 1: something failed, 2: no usable token)."""
    clock = clock or SystemClock()
    runner: web.AppRunner | None = None
    if simulate:
        runner, config, token = await _fresh_simulator(config, clock, drift)
    try:
        if not token:
            print("doctor: give the account's token with --token or $JIMENG_TOKEN (or use --simulate)")
            return 2
        try:
            account = parse_token(token)
        except TokenError as exc:
            print(f"doctor: {exc}")
            return 2
        checks = await run_doctor(
            config, account, clock, spend=spend, post_edit=post_edit, record=Path(record) if record else None
        )
    finally:
        if runner is not None:
            await runner.cleanup()
    for check in checks:
        print(check.line())
    failed = [c.name for c in checks if c.status == "fail"]
    print(f"doctor: {'FAILED: ' + ', '.join(failed) if failed else 'nothing failed'}", flush=True)
    return exit_code(checks)


def doctor_main(argv: list[str]) -> int:
    """`jimeng-server doctor ...`: the exit code."""
    args = parse_doctor_args(argv)
    try:
        config = with_env_overrides(load_config(args.config), os.environ)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    setup_logging("WARNING")
    token = args.token or os.environ.get("JIMENG_TOKEN")
    return asyncio.run(
        doctor_command(
            config,
            token,
            spend=args.spend,
            simulate=args.simulate,
            drift=args.drift,
            post_edit=args.post_edit,
            record=args.record,
        )
    )


def mcp_main(argv: list[str]) -> int:
    """`jimeng-server mcp ...` (mcp_server.py); the MCP SDK is the optional `[mcp]` extra, imported only here.
    `--in-process` serves the tools from this process's own app (`local_api`)."""
    try:
        from . import mcp_server
    except ImportError as exc:
        print(f"jimeng-server mcp needs the mcp extra: pip install 'jimeng-server[mcp]' ({exc})", file=sys.stderr)
        return 2
    try:
        return mcp_server.main(argv, local=local_api)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2


@contextlib.asynccontextmanager
async def local_api(config_path: str | None) -> AsyncIterator[str]:
    """The server app of `config_path` (and the JIMENG_* environment), with its store, pool and watcher, served
    on an ephemeral loopback port for the in-process MCP tools: its base URL. Logs go to stderr (stdout carries
    the MCP protocol)."""
    config = with_env_overrides(load_config(config_path), os.environ)
    setup_logging(config.server.log_level, config.server.log_format)
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def sender_main() -> None:
    """A webhook sender process of `[webhooks] processes`, started by the server (`webhooks/processes.py`): read
    the spec from stdin, log with the `sender-<n>` tag, send until SIGTERM or the server's end of file."""
    try:
        spec = read_spec()
    except EOFError:
        raise SystemExit(1) from None
    setup_logging(spec.config.server.log_level, spec.config.server.log_format, tag=spec.tag)
    try:
        asyncio.run(run_sender_process(spec))
    except ConfigError as exc:
        log.error("config error: %s", exc)
        raise SystemExit(2) from None


async def run_sender_process(spec: ChildSpec) -> None:
    """Run the sender app of `spec` until SIGTERM/SIGINT or until the server closes the pipe; the sender stops
    as in the server (in-flight attempts get `[server] shutdown_grace`)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    app = create_sender_app(spec.config)
    sender = app[WEBHOOKS]
    link = ParentLink(lambda: sender.in_flight)
    metrics.tap_webhook_deliveries(link.delivery)
    link.attach(sender.wake)
    runner = web.AppRunner(app, handle_signals=False)
    try:
        await runner.setup()
        link.ready()
        waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(link.gone.wait())}
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for waiting in pending:
            waiting.cancel()
    finally:
        await runner.cleanup()
        metrics.tap_webhook_deliveries(None)
        link.detach()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["doctor"]:
        raise SystemExit(doctor_main(argv[1:]))
    if argv[:1] == ["mcp"]:
        raise SystemExit(mcp_main(argv[1:]))
    args = parse_args(argv)
    try:
        config = with_env_overrides(load_config(args.config), os.environ)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    server = dataclasses.replace(
        config.server,
        host=args.host if args.host is not None else config.server.host,
        port=args.port if args.port is not None else config.server.port,
    )
    config = dataclasses.replace(config, server=server)
    setup_logging(config.server.log_level, config.server.log_format)
    if args.command is not None:
        if args.simulate:
            config = simulate_manage_config(config)
        try:
            raise SystemExit(asyncio.run(manage.run(config, args)))
        except ConfigError as exc:  # e.g. a malformed [accounts] encryption_key
            print(f"config error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    try:
        factory = loop_factory(config.server.event_loop)
    except ImportError:
        print(
            'config error: [server] event_loop = "uvloop" but uvloop is not installed: '
            "pip install 'jimeng-server[fast]', or set event_loop = \"auto\"",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    try:
        with asyncio.Runner(loop_factory=factory) as loop_runner:
            loop_runner.run(serve(config, simulate=args.simulate))
    except ConfigError as exc:  # found while building the app (e.g. a malformed webhook secret)
        print(f"config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except StartupError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
