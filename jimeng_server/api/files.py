"""`GET /v1/files/{file_id}`: a result kept by the server (`[results] keep = "local"`, README "Keeping results");
and `sync_links`, the kept links of a sync `url` answer.

Opened by the signed link a task query or webhook gave (`?expires=&sig=`, `services/file_links.py`), or by the
`Authorization` of an owner of a task that kept it. Served with Range requests, conditional GETs and HEAD
(aiohttp's file response), with the content type its id names. Refusals: 403 LINK_EXPIRED / LINK_INVALID for a
link, 401 without either, 404 FILE_NOT_FOUND for a file the caller does not own, that was never kept or that is
gone (retention), and when the server keeps no files here (`keep` is not "local").
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from ..errors import Forbidden, NotFound, Unauthorized
from ..services.file_links import FILE_ID, content_type_of, file_path, link_problem
from ..services.file_stores import DiskFiles
from .appkeys import CLOCK, CONFIG, KEEPER, RESULT_LINKS, TASK_RECORDS
from .request import caller_of

routes = web.RouteTableDef()


async def sync_links(request: web.Request, history_id: str, urls: Sequence[str]) -> Sequence[str]:
    """The links a sync `url` answer carries: with results kept (`[results] keep = "local"` / `"s3"`), the kept
    ones, after waiting up to `[results] sync_wait` seconds for the keeping (a result not kept by then keeps its
    upstream link); else `urls` as they are."""
    keeper, links = request.app.get(KEEPER), request.app.get(RESULT_LINKS)
    wait = request.app[CONFIG].results.sync_wait
    if keeper is None or links is None or not urls or wait <= 0:
        return urls
    await keeper.wait_kept(history_id, wait)
    row = await request.app[TASK_RECORDS].find(history_id)
    items = await links.items(row) if row is not None and row.final else None
    return [item["url"] for item in items] if items is not None and len(items) == len(urls) else urls


def _not_found(file_id: str) -> NotFound:
    return NotFound(f"file {file_id!r} was not found; query its task for a current link", code="FILE_NOT_FOUND")


@routes.get("/v1/files/{file_id}")
async def kept_file(request: web.Request) -> web.StreamResponse:
    """A kept result file (see the module doc)."""
    file_id = request.match_info["file_id"]
    links = request.app.get(RESULT_LINKS)
    disk = links.local.files if links is not None and links.local is not None else None
    if not isinstance(disk, DiskFiles) or not FILE_ID.match(file_id):
        raise _not_found(file_id)
    expires, sig = request.query.get("expires"), request.query.get("sig")
    if expires is not None or sig is not None:
        problem = link_problem(disk.key, file_id, expires or "", sig or "", request.app[CLOCK].time())
        if problem is not None:
            raise Forbidden(problem, code="LINK_EXPIRED" if "expired" in problem else "LINK_INVALID")
    elif "Authorization" not in request.headers:
        raise Unauthorized(
            "open the file with the signed link its task query gave, or send the Authorization of the task's owner",
            code="MISSING_AUTHORIZATION",
        )
    else:
        caller = await caller_of(request)
        if not caller.owners & await request.app[TASK_RECORDS].kept_file_owners(file_id):
            raise _not_found(file_id)
    path = file_path(disk.root, file_id)
    if not path.is_file():
        raise _not_found(file_id)
    return web.FileResponse(
        path, headers={"Content-Type": content_type_of(file_id), "Cache-Control": "private, max-age=3600"}
    )
