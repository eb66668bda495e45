"""The API error hierarchy, the upstream-error mapping and the one error middleware.

Every error leaves the server as `{"error": {"message", "type", "code"}}` with a real HTTP status.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from .upstream.codes import CodeClass
from .upstream.errors import (
    BrowserUnavailable,
    RelayUnavailable,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamHttpError,
    UpstreamRetError,
    UpstreamTimeout,
    UpstreamUnavailable,
)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error with an HTTP status, an error type and a stable UPPER_SNAKE code."""

    status = 500
    type = "api_error"
    code = "INTERNAL_ERROR"
    extra: tuple[tuple[str, str], ...] = ()
    """More fields of the error object beside message/type/code (e.g. a timed-out task's `history_id`)."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if extra:
            self.extra = tuple((k, v) for k, v in extra.items() if k not in ("message", "type", "code"))

    def body(self) -> dict[str, dict[str, str]]:
        return {"error": {"message": self.message, "type": self.type, "code": self.code, **dict(self.extra)}}

    @property
    def headers(self) -> dict[str, str]:
        """Extra response headers (e.g. `Retry-After`); none by default."""
        return {}


class BadRequest(ApiError):
    status, type, code = 400, "invalid_request_error", "INVALID_REQUEST"


class Unauthorized(ApiError):
    status, type, code = 401, "authentication_error", "INVALID_TOKEN"


class Forbidden(ApiError):
    status, type, code = 403, "permission_error", "FORBIDDEN"


class InsufficientCredits(ApiError):
    status, type, code = 402, "insufficient_credits_error", "INSUFFICIENT_CREDITS"


class NotFound(ApiError):
    status, type, code = 404, "invalid_request_error", "NOT_FOUND"


class Conflict(ApiError):
    status, type, code = 409, "invalid_request_error", "CONFLICT"


class PayloadTooLarge(ApiError):
    status, type, code = 413, "invalid_request_error", "PAYLOAD_TOO_LARGE"


class Unprocessable(ApiError):
    status, type, code = 422, "invalid_request_error", "UNPROCESSABLE"


class ContentRejected(ApiError):
    status, type, code = 422, "content_policy_error", "CONTENT_REJECTED"


class TooManyRequests(ApiError):
    status, type, code = 429, "rate_limit_error", "RATE_LIMITED"

    def __init__(self, message: str, *, code: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


class ServiceUnavailable(ApiError):
    status, type, code = 503, "service_unavailable_error", "SERVICE_UNAVAILABLE"


class BadGateway(ApiError):
    status, type, code = 502, "upstream_error", "UPSTREAM_ERROR"


class GatewayTimeout(ApiError):
    status, type, code = 504, "upstream_error", "UPSTREAM_TIMEOUT"


def from_upstream(exc: UpstreamError) -> ApiError:
    """Map an upstream failure to the API error a caller sees (design.md §2)."""
    if isinstance(exc, UpstreamRetError):
        return _from_ret(exc)
    if isinstance(exc, UpstreamTimeout):
        return GatewayTimeout(f"the upstream did not answer in time ({exc.reason}); try again later")
    if isinstance(exc, UpstreamHttpError):
        if exc.status == 429:
            return TooManyRequests("the upstream is rate limiting this account (HTTP 429); slow down and retry")
        return BadGateway(f"the upstream answered HTTP {exc.status} ({exc.reason})", code="UPSTREAM_HTTP_ERROR")
    if isinstance(exc, RelayUnavailable):
        return BadGateway(
            f"the relay ([upstream] relay_url) failed ({exc.reason}); nothing was sent to the upstream, try again "
            "once the relay works",
            code="RELAY_UNAVAILABLE",
        )
    if isinstance(exc, BrowserUnavailable):
        return BadGateway(
            f"the browser transport failed ({exc.reason}); check [browser] executable, or try again",
            code="BROWSER_UNAVAILABLE",
        )
    if isinstance(exc, UpstreamUnavailable):
        return BadGateway(
            f"the upstream could not be reached ({exc.reason}); try again later", code="UPSTREAM_UNAVAILABLE"
        )
    if isinstance(exc, UpstreamBadResponse):
        return BadGateway(f"the upstream sent an unexpected answer ({exc.reason})", code="UPSTREAM_BAD_RESPONSE")
    return BadGateway(str(exc))


_BROWSER_REMEDIES = (
    "give the account its full browser cookie jar (with the browser's User-Agent), set [upstream] transport = "
    '"impersonate", set transport = "browser", or set [upstream] relay_url (README: "When the upstream says 1019 '
    'or 4013")'
)

RISK_CODES = frozenset({"UPSTREAM_RISK_CONTROL", "RISK_CONTROL_REJECTED", "ACCOUNT_PENALISED", "ACCOUNT_RISK_BLOCKED"})
"""Codes of refusals aimed at the account (not the request): it is cooled down and the next one is tried."""
RATE_LIMIT_CODE = "UPSTREAM_RATE_LIMITED"
ACCOUNT_REFUSAL_CODES = RISK_CODES | {RATE_LIMIT_CODE, "UPSTREAM_BUSY"}
"""Codes of refusals made before anything was spent that concern the account, not the request (risk control,
rate limits, a full queue: the classes of upstream/codes.py): the account is cooled down (risk control for
longer) and the next one is tried."""


def _from_ret(exc: UpstreamRetError) -> ApiError:
    said = f"ret {exc.ret}: {exc.errmsg}" if exc.errmsg else f"ret {exc.ret}"
    match exc.ret:
        case "1015":
            return Unauthorized(
                f"the upstream refused the session ({said}); sign in again and send a fresh sessionid",
                code="TOKEN_EXPIRED",
            )
        case "3018":
            return BadGateway(
                f"the upstream rejected our client version ({said}); raise [upstream] da_version (or appvr) in the "
                "config to the web site's current value; `python -m jimeng_server doctor` names it",
                code="UPSTREAM_VERSION_REJECTED",
            )
        case "3000":
            return BadGateway(
                f"the upstream refused the request's network region ({said}); use a proxy in the account's region "
                "(token form proxy@sessionid)",
                code="REGION_NOT_ALLOWED",
            )
        case "1019":
            return BadGateway(
                f"the upstream's risk control refused the request ({said}); it wants a browser. Remedies, cheapest "
                f"first: {_BROWSER_REMEDIES}; then retry later or with another account",
                code="UPSTREAM_RISK_CONTROL",
            )
        case "4013":
            return BadGateway(
                f"the upstream's risk control rejected the generation ({said}). Likely causes: a paid model on an "
                "account without a subscription (pick a model without 'vip' in GET /v1/models, or subscribe), or a "
                f"client that does not look like a browser: {_BROWSER_REMEDIES}. The account is cooled down; do not "
                "retry it at once",
                code="RISK_CONTROL_REJECTED",
            )
        case "-4" if exc.path.endswith("/aigc_draft/generate"):  # the generate refused, not a daily claim
            return BadGateway(
                f"the upstream's risk control refused the request ({said}: shark check reject); it wants a browser. "
                f"Remedies, cheapest first: {_BROWSER_REMEDIES}; then retry later or with another account",
                code="UPSTREAM_RISK_CONTROL",
            )
        case "-4":
            return BadGateway(
                f"the upstream's risk control refused the daily claim ({said}); accounts made in bulk are refused: "
                "this is not 'claimed already'; the claim is not retried for this account today",
                code="CLAIM_RISK_REJECTED",
            )
        case "1018":
            return BadGateway(
                f"the upstream penalised this account ({said}); it is cooled down: use another account",
                code="ACCOUNT_PENALISED",
            )
        case "5001":
            return BadGateway(
                f"the upstream could not reserve credits ({said}); usually too many tasks queued on the account, not "
                "too few credits: another account is tried; when none is left, retry later",
                code="UPSTREAM_BUSY",
            )
        case "1014":
            return BadGateway(
                f"the upstream refused the request frame ({said}): a wrong Referer or Sign; check [upstream] "
                "regions.<region>.page and appvr, and the server's clock",
                code="UPSTREAM_FRAME_REJECTED",
            )
        case "2061":
            return BadRequest(
                f"the upstream no longer offers this model ({said}); GET /v1/models lists the current ones",
                code="MODEL_WITHDRAWN",
            )
        case "4010":
            return BadGateway(
                f"the upstream wants this account to confirm its compliance terms first ({said}); sign in on the web "
                "site with it, do one generation there, then retry",
                code="UPSTREAM_PARAM_ERROR",
            )
        case _:
            return _from_class(exc, said)


def _from_class(exc: UpstreamRetError, said: str) -> ApiError:
    """The API error of a `ret` by its class in the code table (upstream/codes.py; `[upstream] ret_4001`)."""
    match exc.cls:
        case CodeClass.QUOTA:
            return InsufficientCredits(
                f"the account has too few credits for this generation ({said}); claim the daily credits "
                "with POST /token/receive or top up"
            )
        case CodeClass.CONTENT:
            return ContentRejected(f"the upstream refused the content ({said}); change the prompt or the images")
        case CodeClass.RATE_LIMIT:
            return TooManyRequests(
                f"the upstream is rate limiting the account ({said}); it is cooled down and another account is "
                "tried; when none is left, retry later",
                code=RATE_LIMIT_CODE,
                retry_after=60,
            )
        case CodeClass.RISK:
            return BadGateway(
                f"the upstream's risk control blocked this account ({said}); it is cooled down: use another account",
                code="ACCOUNT_RISK_BLOCKED",
            )
        case CodeClass.PARAMS:
            return BadGateway(
                f"the upstream rejected the request parameters ({said}); the upstream protocol may have changed",
                code="UPSTREAM_PARAM_ERROR",
            )
        case _:
            return BadGateway(f"the upstream reported an error ({said})", code="UPSTREAM_ERROR")


MAX_MESSAGE_CHARS = 2000
_FALLBACK = b'{"error": {"message": "internal server error", "type": "api_error", "code": "INTERNAL_ERROR"}}'


def _safe_text(text: object, limit: int) -> str:
    """`text` as printable UTF-8-encodable text of at most `limit` characters: lone surrogates and control
    characters (possibly echoed from hostile input) become backslash escapes."""
    raw = str(text)[: limit + 1]
    clean = raw.encode("utf-8", "backslashreplace").decode("utf-8")
    clean = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in clean)
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


def render_error(err: ApiError) -> web.Response:
    """The JSON error answer for `err`. Cannot fail on the message's content: whatever an error echoes
    (lone surrogates, control characters, megabytes of text) is escaped and shortened first."""
    status = err.status if 400 <= err.status <= 599 else 500
    try:
        body = {
            "error": {
                "message": _safe_text(err.message, MAX_MESSAGE_CHARS),
                "type": _safe_text(err.type, 100),
                "code": _safe_text(err.code, 100),
                **{_safe_text(k, 100): _safe_text(v, 200) for k, v in err.extra},
            }
        }
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    except Exception:  # pragma: no cover - a last line of defence; the escaping above leaves nothing to fail on
        log.exception("an error answer could not be rendered")
        data = _FALLBACK
    return web.Response(
        body=data, status=status, headers=err.headers, content_type="application/json", charset="utf-8"
    )


def make_error_middleware(max_body_bytes: int) -> Middleware:
    """The one error middleware: every failure becomes the error shape; unexpected ones are logged
    (method and path only: never bodies or tokens) and answered 500 without a traceback."""

    @web.middleware
    async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as err:
            return render_error(err)
        except UpstreamError as exc:
            return render_error(from_upstream(exc))
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return render_error(_from_http(request, exc, max_body_bytes))
        except web.RequestPayloadError:
            # Raised while reading the body: e.g. `Content-Encoding: gzip` on bytes that are not gzip. The rest of
            # the body cannot be read: answer, then close the connection cleanly (`Connection: close`), without
            # aiohttp draining the broken stream after the answer (which logged a traceback and reset the
            # connection under the next request).
            request.content.feed_eof()
            response = render_error(_from_body_error(request))
            response.force_close()
            return response
        except ConnectionResetError:  # the client went away (or was cut off as too slow) mid-request
            log.info("connection lost during %s %s", request.method, request.path)
            return render_error(BadRequest("the connection was lost during the request", code="CONNECTION_LOST"))
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return render_error(ApiError("internal server error; the server log has the details"))

    return error_middleware


def _from_body_error(request: web.Request) -> ApiError:
    encoding = request.headers.get("Content-Encoding")
    if encoding:
        return BadRequest(
            f"the request body cannot be decoded as its Content-Encoding {encoding!r} says; send the body "
            "uncompressed or encoded as declared",
            code="INVALID_BODY",
        )
    return BadRequest("the request body cannot be read (malformed HTTP framing)", code="INVALID_BODY")


def body_too_large(max_body_bytes: int) -> PayloadTooLarge:
    """The 413 for a request body over `[server] max_body_mb`."""
    return PayloadTooLarge(
        f"the request body is larger than the limit of {max_body_bytes // (1024 * 1024)} MB "
        f"({max_body_bytes} bytes); send smaller files or raise [server] max_body_mb"
    )


def _from_http(request: web.Request, exc: web.HTTPException, max_body_bytes: int) -> ApiError:
    if exc.status == 404:
        return NotFound(f"no route for {request.method} {request.path}; GET / lists the endpoints")
    if exc.status == 405:
        return ApiError(f"{request.method} is not allowed on {request.path}", code="METHOD_NOT_ALLOWED", status=405)
    if exc.status == 413:
        return body_too_large(max_body_bytes)
    return ApiError(exc.reason, code="HTTP_ERROR", status=exc.status)
