"""The simulator's state: settings, accounts with credit buckets, history records and the request journal.

Credits (docs/protocol.md §14.9–11): a charge takes vip -> gift -> purchase; the daily claim is keyed by the
calendar day in Asia/Shanghai (a fixed UTC+8 offset; China has had no DST since 1991), whatever `time_zone` says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from ..upstream.regions import Region
from .facts import PAID_VIDEO_KEYS
from .scripts import Script

SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
CREDIT_BUCKETS = ("vip_credit", "gift_credit", "purchase_credit")  # charge order
SEEDANCE_20_KEYS = frozenset({"dreamina_seedance_40_pro", "dreamina_seedance_40"})
PAID_KEYS = PAID_VIDEO_KEYS
"""The keys needing a paid subscription (Seedance 2.0 / fast, the VIP channels, 2.5): `facts.VIDEO_FACTS`."""


@dataclass
class SimSettings:
    """Tunables of the simulator. Mutable so a test can flip one field on a running simulator."""

    sign_skew: float = 300.0  # allowed |Device-Time - sim clock| in seconds
    min_appvr: str = "8.4.0"
    min_da_version: str = "3.3.9"
    receive_quota: int = 60
    image_cost: int = 1  # credits per image made, 1k-2k (§17.1: 1 per image measured for 4.7 at 2k)
    image_cost_4k: int = 2  # credits per image made at 4k
    video_cost_per_second: int = 5
    refund_on_failure: bool = False
    image_step_seconds: float = 1.0
    # > 0: every CDN item image is padded to exactly this many bytes (media.item_png), e.g. 5 MB results for
    # the memory bench of streamed b64_json answers; 0 serves the small plain PNG.
    item_image_bytes: int = 0
    video_step_seconds: float = 3.0
    hidden_polls: int = 0  # default number of polls a new record is omitted from get_history_by_ids
    passport_style: bool = False  # passport answers {"message", "data"} without `ret`
    upload_token_ttl: float = 900.0  # seconds get_upload_token credentials stay valid
    sigv4_skew: float = 900.0  # allowed |x-amz-date - sim clock| in seconds
    upload_gate: int = 0  # > 0: each byte upload waits until this many were in flight at once
    upload_gate_timeout: float = 5.0  # real seconds an upload waits at the gate before failing (409)
    # Risk control on generate (shark.py): model keys that need the page's a_bogus or a full jar (1019), and
    # model keys an account marked `free` may not use (4013): the catalogue's paid keys (vip, §17.3).
    shark_models: frozenset[str] = SEEDANCE_20_KEYS
    paid_models: frozenset[str] = PAID_KEYS
    withdrawn_models: set[str] = field(default_factory=set)  # upstream keys answered ret "2061" (§17.3)
    shown_models: set[str] = field(default_factory=set)  # facts' optional video keys listed and served (facts.py)
    queue_ahead: int = 0  # extra places a new record starts behind in the queue (besides unfinished records)
    # > 0: each new record's steps last its kind's step seconds times its own factor exp(N(0, step_spread))
    # (drawn from the seeded rng), a realistic spread of generation times (bench/latency.py); 0: no spread.
    step_spread: float = 0.0
    # The forecast fields (history.queue_info) are the record's own seconds to its finish times this factor: 1 =
    # exact (within whole-second rounding); > 1 an upstream whose forecasts run long, to test calibration.
    forecast_factor: float = 1.0
    # Video items carry `video.video_model` with the watermark-free URL (§18.4). Off by default so the
    # get_local_item_list path stays exercised; the real items of 2026 carry it.
    video_model_urls: bool = False
    # Drift: models get_common_config lists beyond the catalogue, raw entries plus "kind" ("image"/"video");
    # generate accepts the image ones by key.
    extra_models: list[dict[str, Any]] = field(default_factory=list)
    # Answer shapes the sources disagree on (§19.8): the ImageX apply's host as "UploadHosts" (a list, §11.2, NT,
    # SB) or "UploadHost" (a string, PY measured); whether the VOD apply names the Vid (PY) or not (the elided §18
    # sample); whether the VOD commit gives Duration (NT, §18 sample) or not (PY).
    imagex_host_field: str = "UploadHosts"
    vod_apply_vid: bool = True
    vod_commit_duration: bool = True
    # Video items' `transcoded_video` keyed by resolution name ("360p", "720p"; §19.12, PY's real answer) instead
    # of `origin` (§18.4).
    transcoded_by_resolution: bool = False
    ignore_image_count: bool = False  # drift "count": every image generate makes its model's default count
    # Seconds a result URL (x-expires) stays valid from the answer that gave it (links.py, §19.4: "a few hours";
    # a prompt's `[sim:ttl=N]` overrides it per record).
    result_url_ttl: float = 10800.0
    # False: video CDN URLs carry no x-expires (like the real vlabvod URLs; only `video_model.url_expire` says
    # when they die, §18.4), so a client must estimate their lifetime.
    video_url_expires: bool = True
    # Seconds after a record's final step before its spending record shows in `user_credit_history` (§19.10:
    # records settle late); 0 = as soon as it finished. A record whose script never ends never settles.
    spend_settle_seconds: float = 0.0


@dataclass
class SimAccount:
    """One upstream account, keyed by its raw sessionid (no region prefix)."""

    sessionid: str
    region: Region
    user_id: int
    gift_credit: int = 0
    purchase_credit: int = 0
    vip_credit: int = 100
    expired: bool = False
    free: bool = False  # a free account: paid model keys are refused with 4013
    gift_expires_at: int | None = None  # when the claimed gift credits expire (set by the daily claim, §17.13)
    received_days: set[str] = field(default_factory=set)

    @property
    def total(self) -> int:
        """The sum of the three buckets."""
        return self.gift_credit + self.purchase_credit + self.vip_credit

    def charge(self, amount: int) -> dict[str, int] | None:
        """Deduct `amount` vip -> gift -> purchase; return what each bucket gave, or None (unchanged) if too poor."""
        if amount > self.total:
            return None
        taken: dict[str, int] = {}
        left = amount
        for bucket in CREDIT_BUCKETS:
            have = int(getattr(self, bucket))
            take = min(have, left)
            if take:
                setattr(self, bucket, have - take)
                taken[bucket] = take
                left -= take
        return taken

    def refund(self, taken: dict[str, int]) -> None:
        """Give back what `charge` took, to the same buckets."""
        for bucket, amount in taken.items():
            setattr(self, bucket, int(getattr(self, bucket)) + amount)


@dataclass
class SimRecord:
    """One generation task (a history record) and how far it has been observed."""

    history_id: str
    sessionid: str
    kind: str  # "image" or "video"
    submit_id: str
    model_key: str
    prompt: str
    script: Script
    created_at: float
    polls: int = 0
    charged: int = 0
    hidden_polls: int = 0
    expire_after_first_poll: bool = False
    width: int = 0
    height: int = 0
    resolution_type: str = ""
    charge_taken: dict[str, int] = field(default_factory=dict)
    refunded: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # room for video / blend details


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One request as the simulator saw it, with what it answered.

    `status` is the HTTP status sent (0 when the connection was reset without an answer); `ret` is the envelope
    `ret` when a JSON envelope was sent; `path` is the API path without the vhost prefix.
    """

    time: float
    method: str
    vhost: str
    path: str
    query: dict[str, str]
    raw_query: str
    headers: dict[str, str]
    body: Any
    body_size: int
    status: int
    ret: str | None
    sessionid: str | None
    peer: str = ""  # "ip:port" of the connection the request came on (proxy checks)


def shanghai_day(ts: float) -> str:
    """The calendar day (YYYY-MM-DD) in Asia/Shanghai at Unix time `ts`."""
    return datetime.fromtimestamp(ts, UTC).astimezone(SHANGHAI).date().isoformat()


def next_day_end(ts: float) -> int:
    """The last second of the next Asia/Shanghai day after Unix time `ts` (when claimed gift credits expire:
    a claim logged on 2025-11-07 expired at 2025-11-08 23:59:59 +08:00, §17.13)."""
    day = datetime.fromtimestamp(ts, UTC).astimezone(SHANGHAI).date() + timedelta(days=2)
    return int(datetime(day.year, day.month, day.day, tzinfo=SHANGHAI).timestamp()) - 1
