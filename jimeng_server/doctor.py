"""`jimeng-server doctor`: check one account end to end against the upstream and name what drifted.

Checks, in order (each `ok`, `warn` or `fail`, with the remedy: which config key to change, to what):
1. session: alive (passport info) and its region;
2. version: a plain web read accepted with the configured `appvr` / `da_version` (ret 3018 otherwise);
3. credits: the balance and the next expiry;
4. models: the live model list (`get_common_config`) against the built-in table: new, missing, renamed;
5. uploads: ImageX upload credentials are issued;
6. with `spend`: the cheapest image (one image, `n=1`) generated, polled to the end and downloaded;
7. with `post_edit`: the free upscale (`normal_hd`, §19.5) run once, on the image of step 6 when it ran (an item of
   the account), else on a small uploaded picture: drift when it is refused, does not double the size or costs.

A refusal by risk control (1019, 4013), a refused session or version, or a failed generation is `fail`; model
drift and a zero balance are `warn`. The exit code is 0 only when nothing failed. The session token is shown
masked only.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from .clock import Clock
from .config import Config
from .errors import from_upstream
from .imageinfo import solid_png
from .net.spool import spool_chunks
from .services.model_list import drift_of
from .upstream import catalog
from .upstream.client import JimengClient, SingleTransport
from .upstream.errors import UpstreamError
from .upstream.history import HistoryRecord, parse_record
from .upstream.payloads import DraftVersions, ImageJob, ImageRef, build_image_generate, history_image_info
from .upstream.postedit_payloads import (
    OwnItem,
    PostEditJob,
    PostEditTool,
    build_postedit_generate,
    check_region,
    item_image_size,
)
from .upstream.recorder import RecordingTransport
from .upstream.regions import Region
from .upstream.tokens import Account
from .upstream.transport import AiohttpTransport, SessionPool
from .upstream.uploader import ImageUploader

NEWEST_DA_VERSION = "3.3.28"
"""The newest `da_version` seen on the live site (2026-09-30, docs/protocol.md §17.5)."""
SPEND_MODELS = {Region.CN: "jimeng-4.7", Region.HK: "jimeng-4.7", Region.JP: "jimeng-4.7", Region.SG: "jimeng-4.7"}
"""The cheapest image model per region (1 credit per image at 2k, measured for 4.7, §17.1); else jimeng-4.5."""
_TRANSPORTS = '[upstream] transport = "impersonate" (then "browser"), or [upstream] relay_url'
POLL_SECONDS = 5.0
POLL_LIMIT = 120  # polls before the spend check gives up (10 minutes)
SAMPLE_SIDE = 256  # the picture the post-edit check uploads when no image was made


@dataclass(frozen=True, slots=True)
class Check:
    """One check's verdict."""

    name: str
    status: str  # "ok", "warn" or "fail"
    detail: str
    remedy: str = ""

    def line(self) -> str:
        """`[ok]   name: detail` (+ `-> remedy`)."""
        text = f"[{self.status}]{' ' * (5 - len(self.status))}{self.name}: {self.detail}"
        return f"{text}\n       -> {self.remedy}" if self.remedy else text


def _refusal(name: str, exc: UpstreamError, config: Config) -> Check:
    """The check of a failed call, with the remedy its refusal calls for."""
    err = from_upstream(exc)
    if err.code == "UPSTREAM_VERSION_REJECTED":
        name = "version"  # whichever call met it, the version gate refused it
    up = config.upstream
    remedy = {
        "TOKEN_EXPIRED": "sign in on the web site again and use the fresh sessionid",
        "UPSTREAM_VERSION_REJECTED": (
            f"raise [upstream] da_version (now {up.da_version}) to the web site's current value "
            f"(newest seen: {NEWEST_DA_VERSION}); if that is not enough, raise appvr (now {up.appvr})"
        ),
        "UPSTREAM_RISK_CONTROL": f"give the account its full browser cookie jar, or set {_TRANSPORTS}",
        "RISK_CONTROL_REJECTED": (
            "use a model without vip (GET /v1/models) or an account with a subscription; else give the account "
            f"its full browser cookie jar, or set {_TRANSPORTS}"
        ),
        "REGION_NOT_ALLOWED": "use a proxy in the account's region (token form proxy@sessionid)",
        "UPSTREAM_FRAME_REJECTED": "check [upstream] regions.<region>.page (Referer) and appvr",
    }.get(err.code, "see the message; the upstream protocol may have changed (docs/protocol.md §17)")
    return Check(name, "fail", f"{err.code}: {err.message}", remedy)


class Doctor:
    """Runs the checks for one account with its own client (sessions closed by `close()`)."""

    def __init__(
        self,
        config: Config,
        account: Account,
        clock: Clock,
        *,
        spend: bool = False,
        post_edit: bool = False,
        record: Path | None = None,
    ) -> None:
        """`record`: a directory where every web-API exchange is saved, redacted (`upstream/recorder.py`)."""
        self.config = config
        self.account = account
        self.clock = clock
        self.spend = spend
        self.post_edit = post_edit
        self.made: tuple[OwnItem, tuple[int, int]] | None = None  # the image the spend check made
        self.pool = SessionPool(connect_timeout=config.upstream.connect_timeout)
        self.client = JimengClient(config.upstream, self.pool, clock)
        if record is not None:
            ident = self.client.identity(account)
            known = [account.sessionid, self.client.web_id(account), ident.web_id, ident.user_id]
            recorder = RecordingTransport(AiohttpTransport(self.pool), record, known=known)
            self.client = JimengClient(config.upstream, self.pool, clock, transports=SingleTransport(recorder))

    async def close(self) -> None:
        await self.pool.close()

    async def run(self) -> list[Check]:
        """Every check in order; a failed session or version check ends the run (the rest would fail alike)."""
        checks: list[Check] = []
        steps: list[Callable[[], Awaitable[Check]]] = [self.session, self.version, self.credits, self.models]
        steps += [self.uploads] + ([self.generate] if self.spend else [])
        steps += [self.upscale] if self.post_edit else []
        for step in steps:
            check = await step()
            checks.append(check)
            if check.status == "fail" and check.name in ("session", "version"):
                break
        return checks

    async def session(self) -> Check:
        try:
            user_id = await self.client.account_user_id(self.account)
        except UpstreamError as exc:
            return _refusal("session", exc, self.config)
        if user_id is None:
            return Check("session", "fail", "the upstream did not accept the session", "send a fresh sessionid")
        return Check("session", "ok", f"live, region {self.account.region.value} ({self.account.masked})")

    async def version(self) -> Check:
        up = self.config.upstream
        try:
            await self.client.get_history(self.account, ["0"])  # a harmless read that passes the version gate
        except UpstreamError as exc:
            return _refusal("version", exc, self.config)
        return Check("version", "ok", f"appvr {up.appvr}, da_version {up.da_version}, web_version {up.web_version}")

    async def credits(self) -> Check:
        try:
            credits = await self.client.get_credits(self.account)
        except UpstreamError as exc:
            return _refusal("credits", exc, self.config)
        points = credits.as_points()
        detail = f"{credits.total} credits (gift {credits.gift}, purchase {credits.purchase}, vip {credits.vip})"
        if points["nextExpiry"]:
            detail += f"; {points['nextExpiry']['amount']} expire at unix {points['nextExpiry']['expiresAt']}"
        if credits.total <= 0:
            return Check("credits", "warn", detail, "claim the daily credits with POST /token/receive or top up")
        return Check("credits", "ok", detail)

    async def models(self) -> Check:
        try:
            found = await self.client.discover_models(self.account)
        except UpstreamError as exc:
            reason = from_upstream(exc).message
            return Check("models", "warn", f"live discovery failed ({reason}); the built-in table is used")
        drift = drift_of(self.account.region, found)
        notes = []
        if drift.new:
            notes.append("new: " + ", ".join(f"{m.key} ({m.name or m.kind})" for m in drift.new))
        if drift.missing:
            notes.append("not listed any more: " + ", ".join(drift.missing))
        if drift.renamed:
            notes.append("renamed?: " + ", ".join(f"{name} -> {m.key}" for name, m in drift.renamed))
        if drift.differs:
            notes.append("differs: " + "; ".join(drift.differs))
        if not notes:
            return Check("models", "ok", f"{len(found)} models listed, all in the built-in table")
        return Check(
            "models",
            "warn",
            "; ".join(notes),
            "new keys work as 'model' by their key already; add them (and drop withdrawn ones) in "
            "upstream/catalog.py; set [upstream] discovery_ttl > 0 to keep using the live list",
        )

    async def uploads(self) -> Check:
        try:
            token = await self.client.get_upload_token(self.account, scene=2)
        except UpstreamError as exc:
            return _refusal("uploads", exc, self.config)
        if not token.get("access_key_id") or not token.get("session_token"):
            return Check("uploads", "fail", "get_upload_token answered without credentials", "see §11.1")
        return Check("uploads", "ok", "ImageX upload credentials issued")

    async def generate(self) -> Check:
        """One image (n=1) of the region's cheapest model, polled to the end, its URL downloaded; then what was
        made and paid is checked (`spend_verdict`): exactly one image, and the balance lower by the model's
        measured price (when the table has one)."""
        region = self.account.region
        model = SPEND_MODELS.get(region, "jimeng-4.5")
        up = self.config.upstream
        try:
            before = (await self.client.get_credits(self.account)).total
        except UpstreamError as exc:
            return _refusal("generate", exc, self.config)
        job = ImageJob(
            model_key=catalog.image_model_key(model, region),
            prompt="a small red apple on a white table",
            size=catalog.image_size("1:1", "2k", model=model, region=region),
            count=1,
        )
        body = build_image_generate(
            job,
            region=region,
            versions=DraftVersions(up.image_draft_version, up.draft_min_version, up.blend_min_version),
            now_ms=int(self.clock.time() * 1000),
            seed=random.randrange(2_500_000_000, 2_600_000_000),
        )
        try:
            history_id = await self.client.generate(self.account, body, kind="image")
            record = await self._wait(history_id)
        except UpstreamError as exc:
            return _refusal("generate", exc, self.config)
        if record is None or not record.final:
            return Check("generate", "fail", f"task {history_id} did not finish in time", "try again later")
        if record.failed or not record.image_urls:
            return Check("generate", "fail", f"the upstream failed the task (fail_code {record.fail_code})", "retry")
        items = record.raw.get("item_list") or []
        made_size = item_image_size(items[0]) if items and isinstance(items[0], dict) else None
        if record.item_ids and made_size is not None:
            self.made = (OwnItem(record.item_ids[0], history_id), made_size)
        try:
            async with self.pool.get(self.account.proxy).get(record.image_urls[0]) as resp:
                size = len(await resp.read()) if resp.status == 200 else 0
        except aiohttp.ClientError as exc:
            return Check("generate", "fail", f"the result could not be downloaded ({type(exc).__name__})")
        if not size:
            return Check("generate", "fail", "the result URL did not give an image")
        try:
            after = (await self.client.get_credits(self.account)).total
        except UpstreamError as exc:
            return _refusal("generate", exc, self.config)
        spec = catalog.spec_of(model)
        price = spec.credits.get("2k") if spec is not None else None
        made = max(record.item_count, len(record.image_urls))
        problem = spend_verdict(made, before - after, price)
        if problem:
            return Check(
                "generate",
                "fail",
                f"{model}, n=1, task {history_id}: {problem}",
                "the upstream's count or price changed: compare docs/protocol.md §17.1/§19.6 and update "
                "upstream/catalog.py (counts, credits) or [images] default_count",
            )
        spent = f", {before - after} credit(s) spent" if price is not None else ""
        return Check("generate", "ok", f"{model} made 1 image ({size} bytes downloaded){spent}, task {history_id}")

    async def _wait(self, history_id: str) -> HistoryRecord | None:
        """Poll one image task until it is final (or POLL_LIMIT polls): its last record."""
        record = None
        for _ in range(POLL_LIMIT):
            await self.clock.sleep(POLL_SECONDS)
            data = await self.client.get_history(self.account, [history_id], image_info=history_image_info())
            raw = data.get(history_id)
            record = parse_record(raw, self.client.statuses) if isinstance(raw, dict) else None
            if record is not None and record.final:
                break
        return record

    async def _upscale_source(self) -> tuple[ImageRef | OwnItem, tuple[int, int]]:
        """The spend check's image (an item of the account), else a small picture uploaded now."""
        if self.made is not None:
            return self.made
        data = solid_png(SAMPLE_SIDE, SAMPLE_SIDE, (200, 120, 40))

        async def chunks() -> AsyncIterator[bytes]:
            yield data

        download = await spool_chunks(chunks(), max_bytes=len(data), content_type="image/png")
        try:
            image = await ImageUploader(self.client, self.config.uploads).upload(self.account, download)
        finally:
            download.cleanup()
        return ImageRef(image.uri, image.width, image.height, image.format), (SAMPLE_SIDE, SAMPLE_SIDE)

    async def upscale(self) -> Check:
        """The free upscale once: accepted, finished, twice the size, and nothing charged."""
        up = self.config.upstream
        remedy = "see docs/protocol.md (§19.5) and upstream/postedit_payloads.py"
        try:
            check_region(PostEditTool.NORMAL_HD.value, self.account.region)
        except ValueError as exc:
            return Check("post-edit", "warn", str(exc))
        try:
            source, (width, height) = await self._upscale_source()
            before = (await self.client.get_credits(self.account)).total
            job = PostEditJob(PostEditTool.NORMAL_HD, source)
            body = build_postedit_generate(
                job, region=self.account.region, version=up.da_version, now_ms=int(self.clock.time() * 1000)
            )
            history_id = await self.client.generate(self.account, body, kind="image")
            record = await self._wait(history_id)
            after = (await self.client.get_credits(self.account)).total
        except UpstreamError as exc:
            return _refusal("post-edit", exc, self.config)
        if record is None or not record.final:
            return Check("post-edit", "fail", f"upscale task {history_id} did not finish in time", "try again later")
        if record.failed:
            return Check("post-edit", "fail", f"the upstream failed the upscale (fail_code {record.fail_code})", remedy)
        items = record.raw.get("item_list") or []
        size = item_image_size(items[0]) if items and isinstance(items[0], dict) else None
        drift = []
        if size != (2 * width, 2 * height):
            drift.append(f"made {size} from {width}x{height}, not twice the size")
        if after < before:
            drift.append(f"charged {before - after} credit(s); it was free")
        if drift:
            return Check("post-edit", "warn", "normal_hd drifted: " + "; ".join(drift), remedy)
        return Check("post-edit", "ok", f"normal_hd made {2 * width}x{2 * height} for free, task {history_id}")



def spend_verdict(made: int, spent: int, price: int | None) -> str:
    """Why a one-image spend does not match what was asked and what the table says it costs ("" when it does):
    more or fewer images than 1 (e.g. the upstream's default of 4), or a balance change other than `price`
    (None: not measured for the model, only the count is judged)."""
    problems = []
    if made != 1:
        problems.append(f"the upstream made {made} images for n=1")
    if price is not None and spent != price:
        problems.append(f"the balance fell by {spent} credit(s); the table says {price} for one image")
    return "; ".join(problems)


async def run_doctor(
    config: Config,
    account: Account,
    clock: Clock,
    *,
    spend: bool = False,
    post_edit: bool = False,
    record: Path | None = None,
) -> list[Check]:
    """Run every check for `account` and close the doctor's sessions (`record`: save the exchanges there)."""
    doctor = Doctor(config, account, clock, spend=spend, post_edit=post_edit, record=record)
    try:
        return await doctor.run()
    finally:
        await doctor.close()


def exit_code(checks: list[Check]) -> int:
    """0 when no check failed, else 1."""
    return 1 if any(c.status == "fail" for c in checks) else 0
