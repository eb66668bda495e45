"""Turning a watcher outcome into what a sync caller receives: URLs or base64, or the right API error."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import aiohttp

from ..errors import ApiError, BadGateway, ContentRejected, GatewayTimeout, PayloadTooLarge, Unauthorized
from ..net.errors import TooLargeError
from ..net.spool import Download, spool_chunks
from ..tasks import answer
from ..tasks.records import Outcome, TaskStatus
from ..upstream.codes import STATUS_FAILURES
from ..upstream.tokens import Account
from ..upstream.transport import SessionPool

_FETCH_FAILED = "RESULT_FETCH_FAILED"

_ERRORS: dict[str, type[ApiError]] = {
    answer.CONTENT_REJECTED: ContentRejected,
    answer.TOKEN_EXPIRED: Unauthorized,
    answer.TIMEOUT: GatewayTimeout,
    **{f.code: ContentRejected for f in STATUS_FAILURES.values() if f.content},
}
"""The HTTP error of a failure code; anything else is a 502 with that code."""


def require_results(outcome: Outcome) -> tuple[str, ...]:
    """The result URLs of a finished task, or raise the API error that explains why there are none.

    Maps an outcome exactly as the async API settles it (tasks/answer.py): a task whose wait ran out is a
    504 TASK_TIMEOUT with the task's `history_id` as a field of the error (the task goes on; query it later with
    it); a failed task that still produced items yields
    those items (see `partial_note`); any other failure raises its failure code with its HTTP status.
    """
    hid = outcome.history_id
    if outcome.status is TaskStatus.PROCESSING:
        raise GatewayTimeout(
            f"task {hid} did not finish in time ({outcome.detail}); query it later with GET /v1/async/tasks/{hid}",
            code="TASK_TIMEOUT",
            extra={"history_id": hid},
        )
    settled = answer.settlement_of(outcome)
    if settled.results:
        return settled.results
    raise failure_error(hid, settled.error)


def failure_error(history_id: str, failure: Mapping[str, str] | None) -> ApiError:
    """The API error a sync caller gets for a failed task with no results: its failure `{"code", "message"}`
    (a task body's `error`) with that code's HTTP status (422 content rejected, 401 session refused, 504 timeout,
    else 502)."""
    failure = failure or {"code": answer.GENERATION_FAILED, "message": "the task failed"}
    error = _ERRORS.get(failure["code"], BadGateway)
    return error(f"task {history_id}: {failure['message']}", code=failure["code"])


def partial_note(outcome: Outcome) -> str | None:
    """A note for results of a task the upstream marked failed after some items were made."""
    if outcome.status is TaskStatus.FAILED and outcome.urls:
        return (
            f"the upstream marked task {outcome.history_id} failed (fail_code {outcome.fail_code or 'none'}) "
            f"after {len(outcome.urls)} result(s); these are returned"
        )
    return None


async def spool_result(pool: SessionPool, account: Account, url: str, *, max_bytes: int, seconds: float) -> Download:
    """Download an upstream result (through the account's proxy) to a temporary file, with a byte cap."""
    session = pool.get(account.proxy)
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=seconds)) as resp:
            if resp.status >= 400:
                raise BadGateway(f"the result file could not be fetched (HTTP {resp.status})", code=_FETCH_FAILED)
            return await spool_chunks(
                resp.content.iter_chunked(64 * 1024),
                max_bytes=max_bytes,
                content_type=resp.headers.get("Content-Type"),
            )
    except TooLargeError:
        raise PayloadTooLarge(f"the result is larger than {max_bytes} bytes; use response_format=url") from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise BadGateway(f"the result file could not be fetched ({type(exc).__name__})", code=_FETCH_FAILED) from None


async def spool_results(
    pool: SessionPool, account: Account, urls: Sequence[str], *, max_bytes: int, seconds: float
) -> list[Download]:
    """Download every result to its own temporary file (`spool_result`, all at once), in `urls` order.

    All or nothing: when one download fails, the others are stopped, every file already written is deleted and
    that download's error (413 or 502) is raised; on cancellation too, no file is left behind. The caller owns
    the files returned."""
    done: dict[int, Download] = {}

    async def one(n: int, url: str) -> None:
        done[n] = await spool_result(pool, account, url, max_bytes=max_bytes, seconds=seconds)

    try:
        async with asyncio.TaskGroup() as group:
            for n, url in enumerate(urls):
                group.create_task(one(n, url))
    except BaseException as exc:
        for download in done.values():
            download.cleanup()
        if isinstance(exc, BaseExceptionGroup):
            raise exc.exceptions[0] from None  # the first failure; the others were cancelled because of it
        raise
    return [done[n] for n in range(len(urls))]
