"""Configuration: a TOML file (tomllib) parsed into frozen dataclasses.

Unknown keys and values of the wrong type are start-up errors that name the key path. Everything the
upstream may change without notice (hosts, versions, timeouts, retries) is here, with the documented
values (docs/protocol.md) as defaults.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

from .integers import INT64_MAX, NumberError, parse_int

MB = 1024 * 1024
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
EVENT_LOOPS = ("auto", "uvloop", "asyncio")
"""`[server] event_loop`: "auto" runs on uvloop when it is installed (the `fast` extra), else on asyncio's own loop."""
ENV_OVERRIDES = {
    "JIMENG_HOST": "server.host",
    "JIMENG_PORT": "server.port",
    "JIMENG_STORE_PATH": "store.path",
    "JIMENG_STORE_URL": "store.url",  # keeps a database password out of the config file
}
"""Environment variables that override one config key each (JIMENG_CONFIG names the file itself)."""


class ConfigError(ValueError):
    """A configuration problem; the message names the key path."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 5100
    max_body_mb: int = 100
    log_level: str = "INFO"
    log_format: str = "text"  # "text" (one readable line) or "json" (one JSON object per line)
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API ("*" = any); empty = no CORS
    max_header_bytes: int = 8190  # longest request line or header; longer ones get a 431 that echoes nothing
    header_timeout: float = 30.0  # seconds a client may take to send a request's line and headers
    body_timeout: float = 60.0  # longest pause while a client sends a request body
    keepalive_timeout: float = 75.0  # an idle keep-alive connection is closed after this many seconds
    shutdown_grace: float = 30.0  # on SIGTERM, in-flight requests and webhook attempts get this long to finish
    event_loop: str = "auto"  # EVENT_LOOPS: the loop the server runs on (uvloop: about a third less CPU per request)

    @property
    def max_body_bytes(self) -> int:
        return self.max_body_mb * MB


REGION_CODES = ("cn", "us", "hk", "jp", "sg")
"""The regions a config must give hosts for (the values of `upstream.regions.Region`; a test keeps them equal)."""


@dataclass(frozen=True, slots=True)
class RegionHosts:
    """Base URLs of one region's upstream hosts (docs/protocol.md §1.2)."""

    web: str
    commerce: str
    imagex: str
    vod: str
    page: str = "https://dreamina.capcut.com"  # the web page host used in some Referer headers


def _default_regions() -> dict[str, RegionHosts]:
    intl = RegionHosts(
        web="https://mweb-api-sg.capcut.com",
        commerce="https://commerce-api-sg.capcut.com",
        imagex="https://imagex-normal-sg.capcutapi.com",
        vod="https://vod.bytedanceapi.com",
    )
    return {
        "cn": RegionHosts(
            web="https://jimeng.jianying.com",
            commerce="https://jimeng.jianying.com",
            imagex="https://imagex.bytedanceapi.com",
            vod="https://vod.bytedanceapi.com",
            page="https://jimeng.jianying.com",
        ),
        "us": RegionHosts(
            web="https://dreamina-api.us.capcut.com",
            commerce="https://commerce.us.capcut.com",
            imagex="https://imagex16-normal-us-ttp.capcutapi.us",
            vod="https://vod.bytedanceapi.com",
        ),
        "hk": intl,
        "jp": intl,
        "sg": intl,
    }


OS_PLATFORMS = {"windows": "Windows", "mac": "Macintosh"}
"""`os` query values and the word the User-Agent must then contain (§17.5: keep them consistent)."""

UPSTREAM_MEANINGS: Mapping[str, tuple[str, ...]] = {
    "status_10": ("auto", "done", "failed"),
    "status_45": ("running", "done"),
    "ret_4001": ("quota", "content"),
}
"""`[upstream]`'s disputed meanings (docs/protocol.md §19.2, §19.13): each key's choices, its default first. The
one list: config validation names them, `upstream/codes.py` builds `StatusPolicy` and `ret_overrides` on them."""


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """Upstream constants. The 2026 values and the dates they were observed are in config.example.toml
    (docs/protocol.md §17.5)."""

    appvr: str = "8.4.0"
    pf: str = "7"
    da_version: str = "3.3.28"  # measured 2026-09-24 -> 10 (PY, SB, NT; docs/protocol.md §19.11)
    web_version: str = "7.5.0"
    app_sdk_version: str = "48.0.0"
    aigc_features: str = "app_lip_sync"
    os: str = "windows"  # must match the platform of user_agent (and of a harvested cookie jar)
    commerce_with_input_video: str = "1"  # query value sent on generate when a video material is attached
    draft_version: str = "3.3.9"  # video drafts (Seedance omni still 3.3.9)
    image_draft_version: str = "3.0.2"  # image drafts since 2026-09 (§17.1)
    # Omni-mode benefit types (conflicting sources, §17.10); the reference's values by default.
    omni_benefit_pro: str = "dreamina_video_seedance_20_video_add"
    omni_benefit_fast: str = "dreamina_seedance_20_fast_with_video"
    draft_min_version: str = "3.0.2"
    blend_min_version: str = "3.2.9"
    video_draft_min_version: str = "3.0.5"
    user_agent: str = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/142.0.0.0 Safari/537.36"
    )
    sec_ch_ua: str = '"Google Chrome";v="142", "Chromium";v="142", "Not_A Brand";v="99"'
    timeout: float = 45.0
    connect_timeout: float = 10.0
    read_retries: int = 3
    retry_backoff: float = 1.0
    read_budget: float = 90.0  # total seconds one request may wait on upstream reads, retries included
    credit_cache_seconds: float = 60.0
    account_cooldown_seconds: float = 600.0
    # How web-API calls are sent: "aiohttp", "impersonate" (curl_cffi, Chrome's TLS fingerprint; needs the
    # `browser` extra) or "browser" (generate from inside a headless Chromium page, see [browser]).
    transport: str = "aiohttp"
    impersonate: str = "chrome"  # curl_cffi target; "chrome" follows the User-Agent's Chrome version
    tls_ca_file: str = ""  # a PEM CA bundle trusted instead of the system's for upstream TLS ("" = the system's)
    # A signer or relay for generate (README "Relay contract"); "" = none.
    relay_url: str = ""
    relay_gets_cookies: bool = False  # send the account's Cookie header to the relay too
    relay_timeout: float = 30.0
    risk_cooldown_seconds: float = 3600.0  # an account refused by risk control (1019/4013/1018) is tried last
    discovery_ttl: float = 300.0  # seconds a get_common_config answer is reused (0 = no live discovery)
    regions: dict[str, RegionHosts] = field(default_factory=_default_regions)
    # Disputed upstream meanings (docs/protocol.md §19.2, §19.13): status 10 "auto" (done with items, else the
    # JS enum's pre-check rejection) | "done" | "failed"; status 45 "running" | "done"; ret 4001 "quota" | "content".
    # The choices and defaults are `UPSTREAM_MEANINGS`.
    status_10: str = UPSTREAM_MEANINGS["status_10"][0]
    status_45: str = UPSTREAM_MEANINGS["status_45"][0]
    ret_4001: str = UPSTREAM_MEANINGS["ret_4001"][0]
    # Video benefit types by upstream key where the sources conflict (§19.1, §19.13), e.g.
    # dreamina_seedance_45_pro_draft = "seedance_25_draft_{res}_output"; {res} is the resolution. Empty: the table's.
    video_benefits: dict[str, str] = field(default_factory=dict)
    # International pre-generate audits (§19.8, NT code, single source): `imagex/submit_audit_job` after each image
    # upload and `execute_generate_audit` before a generate with materials; a refusal is a 422 before anything is
    # spent, an outage of the audit is logged and ignored. false = neither is called.
    intl_audits: bool = True
    # A directory where every web-API exchange is saved, redacted (same-length masks, MANIFEST.json), in the
    # samples' layout, to hand in real answers (docs/protocol.md §20); "" = off. Not for production load.
    record_dir: str = ""

    def hosts(self, region: str) -> RegionHosts:
        """The hosts of a region by its code (`Region` is a str enum, so a `Region` works too)."""
        return self.regions[str(region)]


TRANSPORTS = ("aiohttp", "impersonate", "browser")


@dataclass(frozen=True, slots=True)
class BrowserConfig:
    """The headless Chromium of the "browser" transport (a system Chromium: nothing is downloaded)."""

    executable: str = "/usr/bin/chromium"
    idle_timeout: float = 600.0  # seconds an account's page may stay unused before it is closed
    max_contexts: int = 8  # account contexts kept open at once (the least recently used is closed first)
    page_timeout: float = 30.0  # seconds to load the region's page and see its security script


@dataclass(frozen=True, slots=True)
class KindSchedule:
    """When the watcher looks at one kind of task (seconds): first look, interval, and the deadline — how long a
    sync request waits before its 504; past it the watch slows down (see `WatcherConfig.slow_interval`)."""

    first_poll: float
    interval: float
    deadline: float


WATCH_MODES = ("callbacks", "all")
"""`[watcher] watch`: which async tasks the watcher polls in the background (design.md §1, the spec)."""


@dataclass(frozen=True, slots=True)
class WatcherConfig:
    batch_size: int = 100  # history ids per get_history_by_ids call: at most 100, what the upstream takes
    polls_per_account: int = 2  # calls in flight at once for one account whose due backlog needs more than one
    tick: float = 1.0
    not_visible_polls: int = 5
    watch: str = "callbacks"  # "callbacks": watch only tasks with a callback_url or a caller waiting; "all"
    slow_interval: float = 300.0  # past a kind's deadline the interval doubles up to this many seconds
    settle_after: float = 86400.0  # a task with no final status this long after submit is settled as failed
    session_refusal_window: float = 600.0  # a poll refused with ret 1015 fails its tasks only once refused this long
    image: KindSchedule = KindSchedule(first_poll=5.0, interval=4.0, deadline=900.0)
    video: KindSchedule = KindSchedule(first_poll=10.0, interval=8.0, deadline=1200.0)
    # Polls timed by learned completion times (polltiming.py): per kind and model, the seconds from submit to
    # final of the last `learn_samples` finished tasks; with `learn_min_samples` of them a task is polled when
    # its chance of having finished since its last look reaches `poll_at`, and rides along an account's poll
    # from `ride_along`; polls of one account start at least `coalesce` seconds apart. Without enough samples
    # (and past every sample) the kind's first_poll/interval schedule applies.
    adaptive: bool = True
    poll_at: float = 0.8
    ride_along: float = 0.1
    coalesce: float = 0.25
    learn_samples: int = 64
    learn_min_samples: int = 5
    timings_file: str = ""  # where learned times are kept; "" = beside the SQLite store, "off" = not kept
    upstream_interval: bool = False  # true: never poll a task more often than its record's polling_config says
    # With `adaptive`: a task whose last answer (its generate answer, then each poll) carries the upstream's
    # forecast (`forecast_queue_cost` + `forecast_generate_cost`, seconds) is next looked at when that forecast
    # says it ends, believed to within `forecast_slack` seconds either way (the look comes at the `poll_at` point
    # of that window, lowered for an account with many tasks as above); without a forecast, the learned times.
    # Bounds: `coalesce`, a tenth of the task's age and `slow_interval`, as for learned times. Once a profile has
    # `learn_min_samples` finished tasks, its forecasts are scaled by their median ratio of real to forecast seconds.
    use_forecast: bool = True
    forecast_slack: float = 0.5


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    allow_private_networks: bool = False
    max_download_mb: int = 100
    fetch_connect_timeout: float = 10.0
    fetch_timeout: float = 120.0
    max_tokens_per_request: int = 5  # tokens in one Authorization header; more is a 400 before any upstream call
    caller_proxies: bool = True  # false refuses every `proxy@token` prefix
    allowed_proxies: tuple[str, ...] = ()  # "host:port" of the operator's own proxies, usable even when private

    @property
    def max_download_bytes(self) -> int:
        return self.max_download_mb * MB


@dataclass(frozen=True, slots=True)
class UploadConfig:
    """ImageX uploads of input images (docs/protocol.md §11)."""

    concurrency: int = 4  # input images of one request uploaded at the same time
    credentials_ttl: float = 900.0  # seconds upload credentials are trusted when the token gives no expiry
    credentials_margin: float = 60.0  # fetch new credentials this many seconds before they expire
    timeout: float = 300.0  # seconds for one file's byte upload
    temp_dir: str = ""  # where input files are spooled; "" = the system temp directory


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Where tasks, idempotency keys and the webhook outbox live. `url` picks the backend: `sqlite:///PATH`
    (embedded, one process; `sqlite:////abs/path` for an absolute path) or `postgresql://...` (shared by
    replicas); empty means SQLite at `path`. The URL may hold a password: it is kept out of `repr`."""

    url: str = field(default="", repr=False)
    path: str = "data/jimeng.db"
    pool_size: int = 10  # PostgreSQL connections per process
    synchronous: str = "normal"  # SQLite (WAL): "normal" (fsync at checkpoints) or "full" (fsync every commit)
    read_connections: int = 2  # SQLite: connections for reads only, so queries never wait behind writes
    watch_lease_seconds: float = 30.0  # PostgreSQL replicas: a dead replica's tasks are polled again within this
    retention_days: float = 7.0
    purge_interval_minutes: float = 60.0
    idempotency_hours: float = 24.0
    idempotency_lease_minutes: float = 30.0
    answer_cache_mb: float = 16.0  # encoded answers of final tasks kept in memory for queries; 0 = none

    @property
    def answer_cache_bytes(self) -> int:
        """`answer_cache_mb` in bytes."""
        return int(self.answer_cache_mb * MB)

    @property
    def backend(self) -> str:
        """`sqlite` or `postgresql`, from `url` (SQLite when it is empty)."""
        return "postgresql" if self.url.startswith(POSTGRES_URL_PREFIXES) else "sqlite"

    @property
    def sqlite_path(self) -> str:
        """The SQLite file: the path part of a `sqlite:///` URL, else `path`."""
        return self.url[len(SQLITE_URL_PREFIX) :] if self.url.startswith(SQLITE_URL_PREFIX) else self.path


SQLITE_URL_PREFIX = "sqlite:///"
SYNCHRONOUS_MODES = ("normal", "full")
"""`[store] synchronous` for SQLite (WAL): "normal" fsyncs at checkpoints only (a commit survives a crash of the
process; the last commits may be lost on power loss), "full" fsyncs every commit."""
POSTGRES_URL_PREFIXES = ("postgresql://", "postgres://")


DEFAULT_WEBHOOK_SCHEDULE: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
"""Delays (seconds) before each delivery attempt: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h."""


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """Webhook delivery (design.md §3). `secret` is `whsec_<base64>`; env JIMENG_WEBHOOK_SECRET overrides it.

    `schedule[0]` is the delay before the first attempt; after failed attempt n the next one waits
    `schedule[n]` (times 1 +/- `jitter`); after the last one the event is `exhausted`.
    """

    secret: str = field(default="", repr=False)
    timeout: float = 15.0
    schedule: tuple[float, ...] = DEFAULT_WEBHOOK_SCHEDULE
    jitter: float = 0.1
    max_concurrency: int = 64
    lease_seconds: float = 60.0
    poll_interval: float = 1.0
    max_retry_after: float = 86400.0
    max_per_host: int = 8  # sends in flight to one receiver host at once (one slow receiver holds no more)
    breaker_failures: int = 5  # sends in a row without an answer that open a receiver host's circuit
    breaker_seconds: float = 30.0  # how long an open circuit holds a host's deliveries (doubling per failed probe)
    processes: int = 0  # 0: the sender runs in the API process; N >= 1: in N child processes (webhooks/processes.py)


MAX_SENDER_PROCESSES = 32
"""The most webhook sender processes `[webhooks] processes` may ask for."""


@dataclass(frozen=True, slots=True)
class CompatConfig:
    """OpenAI-compatible request handling. `strict_size = true` refuses `size` ("WxH") instead of mapping it
    to the nearest ratio and resolution."""

    strict_size: bool = False


DEFAULT_MODEL_ALIASES: dict[str, str] = {
    "dall-e-2": "jimeng-4.0",
    "dall-e-3": "jimeng-4.5",
    "gpt-image-1": "jimeng-4.5",
    "sora-2": "jimeng-video-3.5-pro",
}
"""The OpenAI model names served by default (Dify's DALL-E tool, LangChain, n8n, gpt-image-1 and Sora clients send
only these): each mapped to a catalogue model that every region has."""


@dataclass(frozen=True, slots=True)
class ModelsConfig:
    """`aliases`: extra model names (e.g. `dall-e-3 = "jimeng-4.5"`) for clients that only send their own; they
    override the built-in `DEFAULT_MODEL_ALIASES`, which `default_aliases = false` turns off."""

    aliases: dict[str, str] = field(default_factory=dict)
    file: str = ""  # an operator's model file adding to or replacing the built-in table (upstream/model_file.py)
    default_aliases: bool = True

    @property
    def all_aliases(self) -> dict[str, str]:
        """Every alias in force: the built-in defaults (unless turned off), then `aliases` over them."""
        return {**(DEFAULT_MODEL_ALIASES if self.default_aliases else {}), **self.aliases}


IMAGE_DEFAULT_COUNTS = ("model", "1", "2", "3", "4")


@dataclass(frozen=True, slots=True)
class ImagesConfig:
    """Image requests. `default_count`: the `n` used when a caller sends none: "model" (send none: the upstream
    makes its own default, 4 for most models and for blends, and bills them, as the reference does) or 1-4.
    `allow_fewer_than_forced`: accept n below a model's fixed count (mj82 makes and bills 4 whatever is asked)."""

    default_count: str = "model"
    allow_fewer_than_forced: bool = False


@dataclass(frozen=True, slots=True)
class AccountsConfig:
    """The server's account pool (issue 12). `encryption_key` (a Fernet key; env JIMENG_ACCOUNTS_KEY overrides it)
    encrypts the stored account secrets; empty stores them in the clear (warned at start-up)."""

    encryption_key: str = field(default="", repr=False)
    claim_daily: bool = False
    cooldown_seconds: float = 600.0
    recheck_seconds: float = 60.0  # how often accounts resting after a failed balance read are read again; 0 = never


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Who may call: `allow_raw_tokens = false` makes API keys (`Bearer jk_...`) mandatory."""

    allow_raw_tokens: bool = True


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """The admin API and dashboard (`/admin`): off while `key` is empty; env JIMENG_ADMIN_KEY overrides it."""

    key: str = field(default="", repr=False)


KEEP_MODES = ("resign", "local", "s3", "none")
"""`[results] keep` values (README "Keeping results")."""
DEFAULT_CDN_HOSTS = ("byteimg.com", "ibyteimg.com", "douyinpic.com", "vlabvod.com", "jimeng.com", "capcut.com")
"""Host suffixes of the upstream's result CDNs (docs/protocol.md §9.5, §18.4, §19.4)."""
DEFAULT_KEEP_RETRIES = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)
"""Delays (seconds) before keeping a result again after failed attempt 1, 2, ...; then it is given up."""


@dataclass(frozen=True, slots=True)
class ResultsConfig:
    """What happens to result links that expire (README "Keeping results").

    `keep = "resign"`: a query or a webhook (re)delivery whose result URL expires within `resign_margin` seconds
    gets a freshly signed one from the upstream (on the task's own account). `"local"`: on settle each result is
    downloaded (only from `cdn_hosts` or the upstream's own hosts, through the SSRF guard, at most
    `max_file_bytes`) into `path` (content-addressed) and answered as a signed `/v1/files/{id}` link under
    `public_base_url` that lives `link_seconds` (HMAC key `link_secret`, env JIMENG_RESULTS_SECRET); until then,
    and for a result that could not be kept, the re-signed upstream link. Keep jobs are stored, claimed for
    `lease_seconds`, `concurrency` at a time, retried after `retries`; with `webhook_after_keep` a task's webhook
    waits until its results are kept (or given up), and a sync `url` answer waits up to `sync_wait` seconds for
    them (0: it answers the upstream's links at once). Every `sweep_interval` seconds files kept longer than
    `keep_days` ago (0: forever) and, beyond `max_total_mb` (0: no quota), the least recently kept ones are
    removed; their results are marked expired (answered with the re-signed upstream link and `keep_error`).
    `"s3"`: the same into the S3-compatible bucket `s3_bucket` (at `s3_endpoint`, keys under `s3_prefix`;
    credentials `s3_access_key` / `s3_secret_key`, env JIMENG_S3_ACCESS_KEY / JIMENG_S3_SECRET_KEY, else the
    AWS chain); links are presigned GET URLs, or `public_base_url/<key>`. `"none"`: links as the upstream gave
    them.
    """

    keep: str = "resign"
    resign_margin: float = 600.0
    path: str = ""
    public_base_url: str = ""
    link_seconds: float = 7 * 86400.0
    link_secret: str = field(default="", repr=False)
    max_file_bytes: int = 500 * MB
    concurrency: int = 4
    lease_seconds: float = 300.0
    retries: tuple[float, ...] = DEFAULT_KEEP_RETRIES
    webhook_after_keep: bool = True
    cdn_hosts: tuple[str, ...] = DEFAULT_CDN_HOSTS
    keep_days: float = 30.0
    max_total_mb: int = 0
    sweep_interval: float = 3600.0
    sync_wait: float = 30.0
    s3_bucket: str = ""
    s3_endpoint: str = ""
    s3_region: str = "us-east-1"
    s3_prefix: str = "results/"
    s3_access_key: str = field(default="", repr=False)
    s3_secret_key: str = field(default="", repr=False)
    s3_path_style: bool = True


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = ServerConfig()
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    watcher: WatcherConfig = WatcherConfig()
    security: SecurityConfig = SecurityConfig()
    store: StoreConfig = StoreConfig()
    webhooks: WebhookConfig = WebhookConfig()
    uploads: UploadConfig = UploadConfig()
    compat: CompatConfig = CompatConfig()
    models: ModelsConfig = field(default_factory=ModelsConfig)
    accounts: AccountsConfig = AccountsConfig()
    auth: AuthConfig = AuthConfig()
    admin: AdminConfig = AdminConfig()
    browser: BrowserConfig = BrowserConfig()
    images: ImagesConfig = ImagesConfig()
    results: ResultsConfig = ResultsConfig()


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load `path` (or $JIMENG_CONFIG, or defaults when neither is set). Raises ConfigError."""
    chosen = path if path is not None else os.environ.get("JIMENG_CONFIG")
    if not chosen:
        return Config()
    p = Path(chosen)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except OSError as exc:  # a directory (e.g. a bind mount of a missing file), no permission
        raise ConfigError(f"cannot read config file {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from None
    return parse_config(data)


def with_env_overrides(config: Config, environ: Mapping[str, str]) -> Config:
    """`config` with each set (non-empty) variable of ENV_OVERRIDES applied. Raises ConfigError naming the
    variable when its value is unusable (e.g. a port that is not a number)."""
    for name, key in ENV_OVERRIDES.items():
        raw = environ.get(name, "").strip()
        if not raw:
            continue
        section, attr = key.split(".")
        table = getattr(config, section)
        value: Any = raw
        if isinstance(getattr(table, attr), int):
            try:
                value = parse_int(raw, name, low=-INT64_MAX, high=INT64_MAX)
            except NumberError:
                raise ConfigError(f"{name}: expected an integer for {key}, got {raw[:40]!r}") from None
        try:
            table = _build(type(table), dataclasses.asdict(table) | {attr: value}, section)
        except ConfigError as exc:
            raise ConfigError(f"{name}: {exc}") from None
        config = dataclasses.replace(config, **{section: table})
    return config


def parse_config(data: dict[str, Any]) -> Config:
    """Build a Config from parsed TOML data. Raises ConfigError naming the bad key."""
    cfg = _build(Config, data, "")
    assert isinstance(cfg, Config)
    if cfg.watcher.watch not in WATCH_MODES:
        raise ConfigError(f"watcher.watch: must be one of {', '.join(WATCH_MODES)}, got {cfg.watcher.watch!r}")
    if cfg.results.keep not in KEEP_MODES:
        raise ConfigError(f"results.keep: must be one of {', '.join(KEEP_MODES)}, got {cfg.results.keep!r}")
    base = urlsplit(cfg.results.public_base_url) if cfg.results.public_base_url else None
    if base is not None and (base.scheme not in ("http", "https") or not base.netloc or base.query):
        raise ConfigError(
            f"results.public_base_url: must be an http(s) URL such as https://files.example.com, "
            f"got {cfg.results.public_base_url!r}"
        )
    if cfg.results.concurrency < 1:
        raise ConfigError(f"results.concurrency: must be at least 1, got {cfg.results.concurrency}")
    missing = [r for r in REGION_CODES if r not in cfg.upstream.regions]
    if missing:
        raise ConfigError(f"upstream.regions: missing region(s) {', '.join(missing)}")
    if cfg.webhooks.processes and cfg.store.backend == "sqlite" and cfg.store.sqlite_path in ("", ":memory:"):
        raise ConfigError(
            "webhooks.processes: sender processes share the task store, so it must be a database file or "
            "PostgreSQL ([store] path or url), not an in-memory database"
        )
    return cfg


def _validate_poll_timing(obj: WatcherConfig, prefix: str) -> None:
    if not 0 < obj.ride_along <= obj.poll_at < 1:
        raise ConfigError(
            f"{prefix}ride_along, {prefix}poll_at: need 0 < ride_along <= poll_at < 1, got {obj.ride_along} and "
            f"{obj.poll_at}"
        )
    if obj.coalesce < 0:
        raise ConfigError(f"{prefix}coalesce: must be 0 or more seconds, got {obj.coalesce}")
    if not 0 <= obj.forecast_slack <= 3600:
        raise ConfigError(f"{prefix}forecast_slack: must be 0 to 3600 seconds, got {obj.forecast_slack}")
    if not 1 <= obj.learn_min_samples <= obj.learn_samples <= 10000:
        raise ConfigError(
            f"{prefix}learn_min_samples, {prefix}learn_samples: need 1 <= learn_min_samples <= learn_samples <= "
            f"10000, got {obj.learn_min_samples} and {obj.learn_samples}"
        )


def _build(cls: type[Any], data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a table")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(f"unknown config key {where}{unknown[0]}; known keys: {', '.join(fields)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{path}.{name}" if path else name
        default = fields[name].default
        if dataclasses.is_dataclass(default) and not isinstance(default, type) and isinstance(value, dict):
            # A partial table keeps the defaults of the keys it leaves out (e.g. [watcher.image] deadline only).
            value = dataclasses.asdict(default) | value
        if cls is ImagesConfig and name == "default_count" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # `default_count = 1` and `default_count = "model"` both read
        if name == "regions" and cls is UpstreamConfig:
            kwargs[name] = _build_regions(value, key)
        else:
            kwargs[name] = _coerce(hints[name], value, key)
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{path or 'config'}: {exc}") from None
    _validate(obj, path)
    return obj


def _build_regions(value: Any, path: str) -> dict[str, RegionHosts]:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a table of regions")
    regions = _default_regions()
    for name, hosts in value.items():
        if name not in REGION_CODES:
            raise ConfigError(f"unknown region {path}.{name}; known regions: cn, us, hk, jp, sg")
        base = dataclasses.asdict(regions[name])
        if not isinstance(hosts, dict):
            raise ConfigError(f"{path}.{name}: expected a table")
        merged = {**base, **hosts}
        regions[name] = _build(RegionHosts, merged, f"{path}.{name}")
    return regions


def _coerce(hint: Any, value: Any, path: str) -> Any:
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _build(hint, value, path)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        return _coerce(args[0], value, path)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a table, got {value!r}")
        key_hint, item_hint = get_args(hint)
        return {_coerce(key_hint, k, path): _coerce(item_hint, v, f"{path}.{k}") for k, v in value.items()}
    if origin is tuple:
        # A tuple comes from a default merged into a partial table; TOML itself gives lists.
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        (item,) = get_args(hint)[:1]
        return tuple(_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    raise ConfigError(f"{path}: unsupported value {value!r}")


def _validate(obj: Any, path: str) -> None:
    prefix = f"{path}." if path else ""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float) and value < 0:
            raise ConfigError(f"{prefix}{f.name}: must not be negative, got {value}")
    if isinstance(obj, UpstreamConfig):
        platform = OS_PLATFORMS.get(obj.os)
        if platform is None:
            raise ConfigError(f"{prefix}os: must be one of {', '.join(OS_PLATFORMS)}, got {obj.os!r}")
        if platform not in obj.user_agent:
            raise ConfigError(
                f"{prefix}os: {obj.os!r} does not match user_agent (no {platform!r} in it); the upstream's risk "
                "control expects both to name the same platform: change one of them"
            )
    if isinstance(obj, ServerConfig) and not 0 < obj.port < 65536:
        raise ConfigError(f"{prefix}port: must be 1-65535, got {obj.port}")
    if isinstance(obj, ServerConfig) and obj.max_header_bytes < 1024:
        raise ConfigError(f"{prefix}max_header_bytes: must be at least 1024, got {obj.max_header_bytes}")
    if isinstance(obj, SecurityConfig):
        _validate_security(obj, prefix)
    if isinstance(obj, StoreConfig):
        _validate_store(obj, prefix)
    if isinstance(obj, UploadConfig) and obj.concurrency < 1:
        raise ConfigError(f"{prefix}concurrency: must be at least 1, got {obj.concurrency}")
    if isinstance(obj, WatcherConfig) and not 1 <= obj.batch_size <= 100:
        raise ConfigError(f"{prefix}batch_size: must be 1-100 (the upstream takes at most 100), got {obj.batch_size}")
    if isinstance(obj, WatcherConfig) and not 1 <= obj.polls_per_account <= 8:
        raise ConfigError(f"{prefix}polls_per_account: must be 1-8, got {obj.polls_per_account}")
    if isinstance(obj, WatcherConfig):
        _validate_poll_timing(obj, prefix)
    if isinstance(obj, KindSchedule) and obj.interval <= 0:
        raise ConfigError(f"{prefix}interval: must be positive, got {obj.interval}")
    if isinstance(obj, WebhookConfig):
        _validate_webhooks(obj, prefix)
    if isinstance(obj, UpstreamConfig):
        _validate_upstream(obj, prefix)
    if isinstance(obj, ImagesConfig) and obj.default_count not in IMAGE_DEFAULT_COUNTS:
        raise ConfigError(f'{prefix}default_count: must be "model" or 1-4, got {obj.default_count!r}')
    if isinstance(obj, BrowserConfig) and obj.max_contexts < 1:
        raise ConfigError(f"{prefix}max_contexts: must be at least 1, got {obj.max_contexts}")
    if isinstance(obj, ServerConfig) and obj.log_level.upper() not in _LOG_LEVELS:
        raise ConfigError(f"{prefix}log_level: must be one of {', '.join(_LOG_LEVELS)}, got {obj.log_level!r}")
    if isinstance(obj, ServerConfig) and obj.log_format not in LOG_FORMATS:
        raise ConfigError(f"{prefix}log_format: must be one of {', '.join(LOG_FORMATS)}, got {obj.log_format!r}")
    if isinstance(obj, ServerConfig) and obj.event_loop not in EVENT_LOOPS:
        raise ConfigError(f"{prefix}event_loop: must be one of {', '.join(EVENT_LOOPS)}, got {obj.event_loop!r}")
    if isinstance(obj, ServerConfig):
        for i, origin in enumerate(obj.cors_origins):
            if origin != "*" and (not origin.startswith(("http://", "https://")) or origin.rstrip("/") != origin):
                raise ConfigError(
                    f'{prefix}cors_origins[{i}]: must be "*" or an origin like "https://app.example.com" '
                    f"(scheme and host, no path), got {origin!r}"
                )
    if isinstance(obj, ModelsConfig):
        for alias, target in obj.aliases.items():
            if not alias.strip() or not target.strip():
                raise ConfigError(f"{prefix}aliases: names must not be empty, got {alias!r} = {target!r}")
    if isinstance(obj, RegionHosts):
        for f in dataclasses.fields(obj):
            url = getattr(obj, f.name)
            if not url.startswith(("http://", "https://")) or not urlsplit(url).hostname:
                raise ConfigError(f"{prefix}{f.name}: must be an http(s) URL with a host, got {url!r}")


def _validate_upstream(obj: UpstreamConfig, prefix: str) -> None:
    if obj.transport not in TRANSPORTS:
        raise ConfigError(f"{prefix}transport: must be one of {', '.join(TRANSPORTS)}, got {obj.transport!r}")
    relay = obj.relay_url
    if relay and (not relay.startswith(("http://", "https://")) or not urlsplit(relay).hostname):
        raise ConfigError(f"{prefix}relay_url: must be an http(s) URL with a host, got {obj.relay_url!r}")
    if obj.relay_url and obj.transport == "browser":
        raise ConfigError(
            f'{prefix}relay_url: a relay sends generate itself; it cannot be combined with transport = "browser"'
        )
    if obj.relay_timeout <= 0:
        raise ConfigError(f"{prefix}relay_timeout: must be positive, got {obj.relay_timeout}")
    _validate_upstream_meanings(obj, prefix)


def _validate_upstream_meanings(obj: UpstreamConfig, prefix: str) -> None:
    for key, choices in UPSTREAM_MEANINGS.items():
        value = getattr(obj, key)
        if value not in choices:
            raise ConfigError(f"{prefix}{key}: must be one of {', '.join(choices)}, got {value!r}")
    for key, template in obj.video_benefits.items():
        try:
            ok = bool(template.strip()) and template.format(res="720p") != ""
        except (KeyError, IndexError, ValueError):
            ok = False
        if not ok:
            raise ConfigError(
                f"{prefix}video_benefits.{key}: must be a benefit type, with {{res}} where the resolution goes, "
                f"got {template!r}"
            )


def _validate_security(obj: SecurityConfig, prefix: str) -> None:
    if obj.max_tokens_per_request < 1:
        raise ConfigError(f"{prefix}max_tokens_per_request: must be at least 1, got {obj.max_tokens_per_request}")
    for i, entry in enumerate(obj.allowed_proxies):
        if proxy_address(entry) is None:
            raise ConfigError(f"{prefix}allowed_proxies[{i}]: expected host:port or a proxy URL, got {entry!r}")


def proxy_address(text: str) -> tuple[str, int] | None:
    """`(host, port)` of "host:port", "[v6]:port" or "scheme://[user:pass@]host:port" (host lower-cased);
    None when it names no host and port."""
    parsed = urlsplit(text if "://" in text else f"//{text}")
    try:
        port = parsed.port
    except ValueError:
        return None
    if not parsed.hostname or port is None or not 0 < port < 65536:
        return None
    return parsed.hostname.lower(), port


def _validate_store(obj: StoreConfig, prefix: str) -> None:
    if obj.url and not obj.url.startswith((SQLITE_URL_PREFIX, *POSTGRES_URL_PREFIXES)):
        # The URL itself is not echoed: it may carry a password.
        raise ConfigError(f"{prefix}url: must start with sqlite:/// or postgresql://")
    if obj.url.startswith(SQLITE_URL_PREFIX) and not obj.sqlite_path:
        raise ConfigError(f"{prefix}url: sqlite:/// needs a file path, e.g. sqlite:///data/jimeng.db")
    if obj.pool_size < 1:
        raise ConfigError(f"{prefix}pool_size: must be at least 1, got {obj.pool_size}")
    if obj.watch_lease_seconds < 3:
        raise ConfigError(f"{prefix}watch_lease_seconds: must be at least 3, got {obj.watch_lease_seconds}")
    if obj.synchronous not in SYNCHRONOUS_MODES:
        raise ConfigError(
            f"{prefix}synchronous: must be one of {', '.join(SYNCHRONOUS_MODES)}, got {obj.synchronous!r}"
        )
    if not 0 <= obj.read_connections <= 16:
        raise ConfigError(f"{prefix}read_connections: must be 0-16, got {obj.read_connections}")
    if not 0 <= obj.answer_cache_mb <= 4096:
        raise ConfigError(f"{prefix}answer_cache_mb: must be 0-4096, got {obj.answer_cache_mb}")


def _validate_webhooks(obj: WebhookConfig, prefix: str) -> None:
    if not obj.schedule:
        raise ConfigError(f"{prefix}schedule: needs at least one delay (e.g. [0] for a single attempt)")
    for i, delay in enumerate(obj.schedule):
        if delay < 0:
            raise ConfigError(f"{prefix}schedule[{i}]: must not be negative, got {delay}")
    if obj.jitter >= 1:
        raise ConfigError(f"{prefix}jitter: must be a fraction below 1 (e.g. 0.1 for +/-10%), got {obj.jitter}")
    if obj.timeout <= 0:
        raise ConfigError(f"{prefix}timeout: must be positive, got {obj.timeout}")
    if obj.max_concurrency < 1:
        raise ConfigError(f"{prefix}max_concurrency: must be at least 1, got {obj.max_concurrency}")
    if obj.lease_seconds <= obj.timeout:
        raise ConfigError(
            f"{prefix}lease_seconds: must be longer than timeout ({obj.timeout:g} s), got {obj.lease_seconds:g}"
        )
    if obj.poll_interval <= 0:
        raise ConfigError(f"{prefix}poll_interval: must be positive, got {obj.poll_interval}")
    if not 0 <= obj.processes <= MAX_SENDER_PROCESSES:
        raise ConfigError(
            f"{prefix}processes: must be 0 (send from the API process) to {MAX_SENDER_PROCESSES}, got {obj.processes}"
        )
