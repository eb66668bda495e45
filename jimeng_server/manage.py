"""Operator commands on the account pool and API keys, run against the task-store database of the config:

    jimeng-server accounts add NAME (TOKEN | --cookies FILE [--region R] [--user-agent UA]) [--transport T]
                               [--proxy URL] [--note TEXT]
    jimeng-server accounts list | check [NAME ...] | enable NAME | disable NAME | remove NAME | refresh-cookies NAME
    jimeng-server keys create NAME [--accounts A,B] [--rate N] [--max-in-flight N]
    jimeng-server keys list | revoke NAME

They work while a server runs on the same database (SQLite WAL). Errors print one line (never a secret) and
exit 1 (2 for bad input); nothing is written by a command that fails.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from .api.admin_views import account_views, key_view
from .clock import SystemClock
from .config import Config, ConfigError
from .errors import ApiError, BadRequest
from .integers import cli_int
from .services.accounts import AccountService
from .services.apikeys import ApiKeys
from .services.pool import AccountPool
from .store.backends import store_backend
from .store.secretbox import ENV_VAR as ACCOUNTS_KEY_ENV
from .store.secretbox import secret_box
from .upstream.client import JimengClient
from .upstream.errors import UpstreamError
from .upstream.transport import SessionPool
from .upstream.transports import Transports


def add_commands(sub: Any) -> None:
    """Add the `accounts` and `keys` sub-commands to an argparse sub-parser set."""
    accounts = sub.add_parser("accounts", help="manage the server's account pool").add_subparsers(
        dest="action", required=True
    )
    add = accounts.add_parser(
        "add", help="add an account: NAME and a token [proxy@][us-|hk-|jp-|sg-]sessionid, or --cookies FILE"
    )
    add.add_argument("name")
    add.add_argument("token", nargs="?", help="the session id, with an optional region prefix and proxy@ (a secret)")
    add.add_argument(
        "--cookies", metavar="FILE", help="a browser cookie jar: Cookie header, Netscape cookies.txt or JSON export"
    )
    add.add_argument("--region", help="the jar's region: cn (default), us, hk, jp, sg")
    add.add_argument("--user-agent", help="the User-Agent of the browser the jar came from")
    add.add_argument("--transport", help="this account's transport: aiohttp, impersonate or browser")
    add.add_argument("--proxy", help="proxy URL for this account (http, https, socks4, socks5)")
    add.add_argument("--note", default="", help="free text shown in lists")
    accounts.add_parser("list", help="list accounts with health and credits")
    check = accounts.add_parser("check", help="read the balance of accounts now, in parallel (all when none is named)")
    check.add_argument("names", nargs="*")
    accounts.add_parser(
        "refresh-cookies", help="give an account a fresh full cookie jar from a real browser (needs Chromium)"
    ).add_argument("name")
    for action, text in (("enable", "enable an account"), ("disable", "disable an account"), ("remove", "remove")):
        accounts.add_parser(action, help=text).add_argument("name")

    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="action", required=True)
    create = keys.add_parser("create", help="create a key (its text is printed once)")
    create.add_argument("name")
    create.add_argument("--accounts", help="comma list of account names it may use (default: all)")
    create.add_argument(
        "--rate", type=cli_int("--rate", low=1, high=1_000_000), help="requests per minute (default 60)"
    )
    create.add_argument(
        "--max-in-flight",
        type=cli_int("--max-in-flight", low=1, high=1_000_000),
        help="tasks in flight at once (default 20)",
    )
    keys.add_parser("list", help="list keys with usage")
    keys.add_parser("revoke", help="revoke a key").add_argument("name")


async def run(config: Config, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run one management command; returns the exit status."""
    clock = SystemClock()
    store = store_backend(config.store, clock)
    await store.start()
    sessions = SessionPool(connect_timeout=config.upstream.connect_timeout)
    transports = Transports(config.upstream, config.browser, sessions)
    try:
        pool = AccountPool(
            store,
            secret_box(config.accounts),
            clock,
            cooldown_seconds=config.accounts.cooldown_seconds,
            browser=config.browser,
        )
        keys = ApiKeys(store, pool, clock)
        client = JimengClient(config.upstream, sessions, clock, transports=transports)
        claim = config.accounts.claim_daily
        service = AccountService(client, clock, cache_seconds=0, pool=pool, keys=keys, claim_daily=claim)
        await _dispatch(args, pool, keys, service, out, transports)
        return 0
    except ApiError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return 2 if err.status == 400 else 1
    except UpstreamError as err:
        print(f"error: {err.reason}", file=sys.stderr)
        return 1
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        await transports.close()
        await sessions.close()
        await store.close()


def _read_jar(path: str) -> str:
    """The text of a cookie-jar file; 400 naming the file when it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequest(f"cannot read the cookie jar file {path}: {exc}", code="INVALID_COOKIES") from None


async def _dispatch(
    args: argparse.Namespace,
    pool: AccountPool,
    keys: ApiKeys,
    service: AccountService,
    out: TextIO,
    transports: Transports,
) -> None:
    def say(text: str) -> None:
        print(text, file=out)

    if args.command == "accounts":
        if args.action == "add":
            cookies = _read_jar(args.cookies) if args.cookies else None
            row = await pool.add(
                args.name,
                args.token,
                cookies=cookies,
                region=args.region,
                user_agent=args.user_agent,
                transport=args.transport,
                proxy=args.proxy,
                note=args.note,
            )
            say(f"added account {row.name} (id {row.id}, {row.region}, session {row.masked})")
            if not pool.box.sealing:
                say(f"warning: stored unencrypted; set [accounts] encryption_key or {ACCOUNTS_KEY_ENV}")
        elif args.action == "list":
            _table(say, await account_views(pool, await pool.rows()), _ACCOUNT_COLUMNS)
        elif args.action == "check":
            names = args.names or [r.name for r in await pool.rows()]
            _table(say, await account_views(pool, await service.check_pooled_all(names)), _ACCOUNT_COLUMNS)
        elif args.action == "refresh-cookies":
            row = await pool.refresh_cookies(
                args.name, lambda account: service.client.harvest_jar(account, transports.browser())
            )
            say(f"refreshed the cookie jar of account {row.name}")
        elif args.action in ("enable", "disable"):
            row = await pool.set_enabled(args.name, args.action == "enable")
            say(f"account {row.name} {args.action}d")
        else:
            row = await pool.remove(args.name)
            say(f"removed account {row.name}")
        return
    if args.action == "create":
        accounts = [a.strip() for a in args.accounts.split(",") if a.strip()] if args.accounts is not None else None
        text, key = await keys.create(
            args.name, accounts=accounts, rate_per_minute=args.rate, max_in_flight=args.max_in_flight
        )
        say(f"created API key {key.name} (id {key.id}). Its text is shown only now:\n\n  {text}\n")
        say(f"Callers send: Authorization: Bearer {text}")
    elif args.action == "list":
        _table(say, [key_view(pool, r) for r in await keys.rows()], _KEY_COLUMNS)
    else:
        key = await keys.revoke(args.name)
        say(f"revoked API key {key.name}")


def _when(ts: Any) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M") if ts else "-"


def _model_rests(cools: Sequence[dict[str, Any]]) -> str:
    """The models an account rests for, as `model until <time> (<reason>)`, comma-separated; "-" for none."""
    return ", ".join(f"{c['model']} until {_when(c['until'])} ({c['reason']})" for c in cools) or "-"


_ACCOUNT_COLUMNS: Sequence[tuple[str, Callable[[dict[str, Any]], Any]]] = (
    ("ID", lambda a: a["id"]),
    ("NAME", lambda a: a["name"]),
    ("REGION", lambda a: a["region"]),
    ("SESSION", lambda a: a["session"]),
    ("STATE", lambda a: a["health"]["state"]),
    ("CREDITS", lambda a: "-" if a["credits"] is None else a["credits"]),
    ("IN FLIGHT", lambda a: a["in_flight"]),
    ("COOL-DOWN UNTIL", lambda a: _when(a["health"]["cooldown_until"])),
    ("MODEL COOL-DOWNS", lambda a: _model_rests(a["health"]["model_cooldowns"])),
    ("LAST ERROR", lambda a: a["health"]["last_error_code"] or "-"),
    ("NOTE", lambda a: a["note"] or "-"),
)
_KEY_COLUMNS: Sequence[tuple[str, Callable[[dict[str, Any]], Any]]] = (
    ("ID", lambda k: k["id"]),
    ("NAME", lambda k: k["name"]),
    ("PREFIX", lambda k: k["prefix"] + "..."),
    ("ACCOUNTS", lambda k: "all" if k["accounts"] is None else ",".join(map(str, k["accounts"]))),
    ("RATE/MIN", lambda k: k["rate_per_minute"]),
    ("MAX IN FLIGHT", lambda k: k["max_in_flight"]),
    ("SUBMITS", lambda k: k["usage"]["submits"]),
    ("CREDITS SPENT", lambda k: k["usage"]["credits_spent"]),
    ("LAST USED", lambda k: _when(k["usage"]["last_used_at"])),
    ("STATE", lambda k: "revoked" if k["revoked"] else "active"),
)


def _table(
    say: Callable[[str], None],
    items: list[dict[str, Any]],
    columns: Sequence[tuple[str, Callable[[dict[str, Any]], Any]]],
) -> None:
    if not items:
        say("(none)")
        return
    rows = [[title for title, _ in columns]] + [[str(get(item)) for _, get in columns] for item in items]
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    for r in rows:
        say("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
