"""VOD video uploads for an account, for omni-reference materials (docs/protocol.md §11.1, §11.3, §11.4).

`VideoUploader.upload(account, file)`: scene-1 credentials from `get_upload_token` (cached like ImageX's),
`ApplyUploadInner` (signed GET), the byte upload to `{scheme}://{UploadHost}/upload/v1/{StoreUri}` (scheme of
the VOD base URL; `Authorization` = the apply's `Auth` verbatim, `Content-CRC32`, no `Content-Disposition`; the
answer's `code` must be 2000), then `CommitUploadInner` (signed POST) -> `CommittedVideo` with the vid and the
metadata VOD read. SigV4 service `vod`, the account region's SigV4 region; the host is the configured
`upstream.regions.<r>.vod` base URL. Every hop goes through the account's proxy and the bytes stream from the
spooled file. All of that is `uploader.UploadPlumbing`, shared with the ImageX uploader.

A video longer than `vod.MAX_VIDEO_SECONDS` is refused with `vod.VideoTooLong`: before anything is sent when our
own reading of the file's `moov` says so, and after the commit when VOD's `VideoMeta.Duration` does.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from ..mp4 import MovieFacts, movie_facts
from ..net.spool import Download
from . import imagex, vod
from .imagex import UploadCredentials
from .tokens import Account
from .uploader import UploadPlumbing
from .vod import CommittedVideo, VideoTooLong, VodAddress

_ANSWER_BYTES = 64 * 1024  # the upload answer is JSON to check; read at most this much of it


async def read_movie(file: Download) -> MovieFacts | None:
    """Duration and size from the spooled file's `moov` (headers only, in a worker thread); None when the file
    is not a readable MP4/MOV."""

    def read() -> MovieFacts | None:
        with file.path.open("rb") as f:
            return movie_facts(f)

    return await asyncio.to_thread(read)


class VideoUploader(UploadPlumbing):
    """Uploads spooled videos to VOD for accounts; `upload()` returns the committed video."""

    label = "VOD"
    service = vod.VOD_SERVICE
    scene = vod.VIDEO_SCENE

    def base(self, account: Account) -> str:
        """The region's configured VOD base URL."""
        return self.client.config.hosts(account.region).vod

    def parse_credentials(self, data: Any, account: Account, now: float) -> UploadCredentials:
        """Scene-1 credentials whose `service_id` is the VOD space."""
        return vod.parse_upload_token(data, account.region, now=now, default_ttl=self.config.credentials_ttl)

    async def upload(
        self, account: Account, file: Download, *, max_seconds: float = vod.MAX_VIDEO_SECONDS
    ) -> CommittedVideo:
        """Apply, upload and commit one video for `account`.

        Raises VideoTooLong (nothing sent when our own reading finds it too long), or UpstreamError subclasses.
        When VOD gives no usable size or duration, our own reading of the file fills them in.
        """
        local = await read_movie(file)
        if local is not None and local.duration > max_seconds:
            raise VideoTooLong(local.duration, max_seconds)
        creds, address = await self.with_credentials(account, lambda c: self._apply(account, c, file.size))
        url = imagex.upload_url(self.base(account), address.upload_host, address.store_uri)
        answer = await self.put_file(
            account, url, vod.upload_headers(address.auth, file.crc32), file, answer_bytes=_ANSWER_BYTES
        )
        vod.check_upload_answer(answer)
        video = await self._commit(account, creds, address)
        if local is not None:
            video = dataclasses.replace(
                video,
                width=video.width or local.width,
                height=video.height or local.height,
                duration=video.duration or local.duration,
            )
        if video.duration > max_seconds:
            raise VideoTooLong(video.duration, max_seconds)
        return video

    async def _apply(self, account: Account, creds: UploadCredentials, size: int) -> VodAddress:
        params = vod.apply_query(creds.service_id, size, imagex.random_nonce())
        return vod.parse_apply(await self.signed_call(account, creds, vod.APPLY_ACTION, "GET", params))

    async def _commit(self, account: Account, creds: UploadCredentials, address: VodAddress) -> CommittedVideo:
        params = vod.commit_query(creds.service_id)
        body = vod.commit_body(address.session_key)
        answer = await self.signed_call(account, creds, vod.COMMIT_ACTION, "POST", params, body)
        return vod.parse_commit(answer, vid=address.vid)
