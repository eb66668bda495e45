"""Recording upstream exchanges for the witness (`doctor --record DIR` and `[upstream] record_dir`, issue 20): every
web-API call a transport sends is saved, request and answer, in the layout of the project's upstream samples
(`<endpoint>/<region>_<n>_<status>_ret<ret>.json`), with its secrets replaced by text of the same length and
listed in `MANIFEST.json`.

What is redacted: the account's session id and user/web ids wherever they appear; the values of the `Cookie`,
`Sign`, `Authorization`, `X-Amz-Security-Token` and `X-Storage-U` headers; the `msToken`, `a_bogus`, `X-Bogus` and
`webId` query values; JSON fields named like secrets or ids (`uid`, `user_id`, `sessionid`, `session_token`,
`secret_access_key`, `access_key_id`, `Auth`, `SessionKey`, `sign`, …); URL signatures (`x-signature=`). A
redaction keeps the length (`REDACTED` then zeros), so a parser sees the same shapes. Nothing here logs.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .transport import Outgoing, RawAnswer, Transport

SECRET_HEADERS = frozenset({"cookie", "sign", "authorization", "x-amz-security-token", "x-storage-u"})
SECRET_QUERY = ("msToken", "a_bogus", "X-Bogus", "webId")
SECRET_FIELDS = frozenset(
    {
        "uid",
        "user_id",
        "user_id_str",
        "sessionid",
        "session_token",
        "secret_access_key",
        "access_key_id",
        "auth",
        "sessionkey",
        "sign",
        "did",
        "web_id",
    }
)
_URL_SECRET = re.compile(r"(x-signature=)([^&\"\s\\]+)", re.IGNORECASE)


def mask(value: str) -> str:
    """`value` replaced by text of the same length: `REDACTED` then zeros (shorter values: zeros only)."""
    word = "REDACTED"
    return (word + "0" * len(value))[: len(value)] if len(value) >= len(word) else "0" * len(value)


@dataclass
class Redactor:
    """Redacts one exchange; `known` are literal secrets (the session id, ids) replaced wherever they appear.
    `fields` collects what was redacted (field path and length) for the manifest."""

    known: Sequence[str]
    fields: list[dict[str, Any]] = field(default_factory=list)

    def text(self, value: str, where: str) -> str:
        """`value` with every known secret and URL signature masked."""
        out = value
        for secret in self.known:
            if secret and secret in out:
                out = out.replace(secret, mask(secret))
                self.fields.append({"at": where, "length": len(secret)})
        for match in list(_URL_SECRET.finditer(out)):
            self.fields.append({"at": f"{where} x-signature", "length": len(match.group(2))})
        return _URL_SECRET.sub(lambda m: m.group(1) + mask(m.group(2)), out)

    def value(self, node: Any, where: str) -> Any:
        """A JSON value with secret fields and known secrets masked, same shape and lengths."""
        if isinstance(node, dict):
            out: dict[str, Any] = {}
            for key, item in node.items():
                path = f"{where}.{key}"
                if str(key).lower() in SECRET_FIELDS and isinstance(item, str | int) and not isinstance(item, bool):
                    text = str(item)
                    self.fields.append({"at": path, "length": len(text)})
                    out[key] = mask(text) if isinstance(item, str) else 10 ** (len(text) - 1)  # same digit count
                else:
                    out[key] = self.value(item, path)
            return out
        if isinstance(node, list):
            return [self.value(item, f"{where}[{i}]") for i, item in enumerate(node)]
        if isinstance(node, str):
            return self.text(node, where)
        return node

    def url(self, url: str) -> str:
        """The URL with the secret query values masked."""
        parts = urlsplit(url)
        pairs = []
        for pair in parts.query.split("&") if parts.query else []:
            name, eq, value = pair.partition("=")
            if name in SECRET_QUERY and value:
                self.fields.append({"at": f"query.{name}", "length": len(value)})
                value = mask(value)
            pairs.append(f"{name}{eq}{value}")
        query = "&".join(pairs)
        return self.text(parts._replace(query=query).geturl(), "url")

    def headers(self, headers: Iterable[tuple[str, str]]) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in headers:
            if name.lower() in SECRET_HEADERS:
                self.fields.append({"at": f"headers.{name}", "length": len(value)})
                out[name] = mask(value)
            else:
                out[name] = self.text(value, f"headers.{name}")
        return out


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def endpoint_name(path: str) -> str:
    """The samples' folder of an API path: `/mweb/v1/aigc_draft/generate` -> `aigc_draft_generate`."""
    parts = [p for p in path.split("/") if p and p not in ("mweb", "v1", "commerce", "benefits")]
    return "_".join(parts) or "root"


def _ret_of(body: Any) -> str:
    ret = body.get("ret") if isinstance(body, dict) else None
    return str(ret) if ret not in (None, "") else "none"


class RecordingTransport:
    """A transport that sends through `inner` and saves each exchange, redacted, under `directory`."""

    def __init__(self, inner: Transport, directory: Path, *, known: Sequence[str]) -> None:
        self.inner = inner
        self.name = inner.name
        self.directory = directory
        self.known = [k for k in known if k]
        self.count = 0
        self.manifest: list[dict[str, Any]] = []
        self._writing = asyncio.Lock()

    async def send(self, out: Outgoing) -> RawAnswer:
        answer = await self.inner.send(out)
        async with self._writing:  # one writer at a time: numbering and the manifest stay consistent
            await asyncio.to_thread(self.save, out, answer)
        return answer

    def save(self, out: Outgoing, answer: RawAnswer) -> Path:
        """Write one exchange and update the manifest; returns the file written. The sending account's session id
        is redacted too (a server records many accounts)."""
        self.count += 1
        redactor = Redactor([*self.known, out.account.sessionid])
        body = _json_or_text(answer.body)
        record = {
            "request": {
                "method": "POST",
                "path": out.path,
                "url": redactor.url(out.url),
                "headers": redactor.headers(out.headers),
                "body": redactor.value(_json_or_text(out.body), "request.body") if out.body else None,
            },
            "answer": {"status": answer.status, "body": redactor.value(body, "answer.body")},
        }
        folder = self.directory / endpoint_name(out.path)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{out.account.region.value}_{self.count:03d}_{answer.status}_ret{_ret_of(body)}.json"
        target = folder / name
        target.write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        self.manifest.append({"file": f"{folder.name}/{name}", "redacted": redactor.fields})
        (self.directory / "MANIFEST.json").write_text(
            json.dumps(self.manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        return target

    async def close(self) -> None:
        await self.inner.close()
