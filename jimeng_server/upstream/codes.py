"""The upstream's task statuses and failure codes as data (docs/protocol.md §9.4, §19.2, §19.3): one table each,
read by the history parser (`history.parse_record`), the error mapping (`jimeng_server.errors.from_upstream`) and,
through the error codes that mapping gives, the account loops (`services/accounts.py`).

Every row names its source. Where the sources disagree (status 10 and 45, `ret 4001`) the table holds the
best-backed meaning and `[upstream] status_10`, `status_45` and `ret_4001` choose another (`StatusPolicy`,
`ret_overrides`; their choices and defaults are `config.UPSTREAM_MEANINGS`, which config validation names).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from ..config import UPSTREAM_MEANINGS


class StatusMeaning(StrEnum):
    """What a `task.status` value means for a watch."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class StatusFact:
    """One `task.status` value: its name in the site's JS enum, its meaning and the source of that meaning."""

    status: int
    name: str
    meaning: StatusMeaning
    source: str


STATUSES: Final[Mapping[int, StatusFact]] = {
    f.status: f
    for f in (
        StatusFact(0, "init", StatusMeaning.RUNNING, "§19.2 JS enum; PY treats an absent record as 0"),
        # 10: the default "auto" of StatusPolicy decides by the items (see `meaning_of`); DONE is the reference's.
        StatusFact(10, "pre_check_reject", StatusMeaning.DONE, "§9.4 reference (success) vs §19.2 JS enum"),
        StatusFact(20, "submitted", StatusMeaning.RUNNING, "§9.4, §18 real answers"),
        StatusFact(30, "generate_failed", StatusMeaning.FAILED, "§9.4, §18.5 real answer with fail_code 2036"),
        StatusFact(40, "post_check_reject", StatusMeaning.FAILED, "§19.2 JS enum, PY doc and client (uncontested)"),
        StatusFact(42, "thinking", StatusMeaning.RUNNING, "§9.4, §19.2"),
        StatusFact(45, "partial_success", StatusMeaning.RUNNING, "§18.2 real answer (0 of 4 at 4 s), PY client"),
        StatusFact(50, "success", StatusMeaning.DONE, "§9.4, §19.2"),
        StatusFact(100, "deleted", StatusMeaning.FAILED, "§19.2 JS enum, PY doc and client (uncontested)"),
    )
}
"""`task.status` values known today; any other value counts as running (and is logged by the watcher)."""

STATUS_10_CHOICES: Final = UPSTREAM_MEANINGS["status_10"]
"""`[upstream] status_10`: "auto" (decided by the items) or a `StatusMeaning` value."""
STATUS_45_CHOICES: Final = UPSTREAM_MEANINGS["status_45"]
"""`[upstream] status_45`: a `StatusMeaning` value."""


@dataclass(frozen=True, slots=True)
class StatusPolicy:
    """The operator's choice for the disputed statuses (`[upstream] status_10`, `status_45`).

    `status_10`: "auto" (default) = done when the record carries items (the reference's success), else the JS
    enum's `pre_check_reject`, a failure; "done" or "failed" decide regardless of items. `status_45`: "running"
    (default; the real answer of §18.2) or "done" (PY's doc: success with a note)."""

    status_10: str = STATUS_10_CHOICES[0]
    status_45: str = STATUS_45_CHOICES[0]


DEFAULT_STATUSES: Final = StatusPolicy()


def meaning_of(status: int | None, item_count: int, policy: StatusPolicy = DEFAULT_STATUSES) -> StatusMeaning:
    """What `status` means for a record holding `item_count` items, under `policy`."""
    if status == 10:
        if policy.status_10 == "auto":
            return StatusMeaning.DONE if item_count > 0 else StatusMeaning.FAILED
        return StatusMeaning(policy.status_10)
    if status == 45:
        return StatusMeaning(policy.status_45)
    fact = STATUSES.get(status) if status is not None else None
    return fact.meaning if fact is not None else StatusMeaning.RUNNING


@dataclass(frozen=True, slots=True)
class StatusFailure:
    """The failure a final failed status stands for when its record names no fail code of its own."""

    code: str
    message: str
    content: bool
    """True for a refusal of the content (the sync API answers 422)."""


STATUS_FAILURES: Final[Mapping[int, StatusFailure]] = {
    10: StatusFailure(
        "PRE_CHECK_REJECTED",
        "the upstream's pre-check rejected the task before generating (status 10, pre_check_reject); change the "
        "prompt or the images",
        True,
    ),
    40: StatusFailure(
        "REJECTED_AFTER_GENERATION",
        "the upstream's review rejected the results after generating (status 40, post_check_reject); change the "
        "prompt or the images",
        True,
    ),
    100: StatusFailure(
        "DELETED_UPSTREAM",
        "the task was deleted on the upstream (status 100) before its results could be read; generate again",
        False,
    ),
}


class CodeClass(StrEnum):
    """What a `ret` or `fail_code` means for the caller and for the account that got it."""

    RATE_LIMIT = "rate_limit"  # the account is asked to slow down: cool it down, the pool moves on
    QUOTA = "quota"  # the account has no credits (for this): the pool moves on
    RISK = "risk"  # risk control aims at the account: cool it down (longer), the pool moves on
    CONTENT = "content"  # the prompt or images are refused: 422, another account would be refused too
    BUSY = "busy"  # the account cannot take the task now (queue full): the next account is tried
    PARAMS = "params"  # the upstream did not understand our request: a 502 naming the protocol
    SESSION = "session"  # the login is refused
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class CodeFact:
    """One upstream `ret` / `fail_code` value: the site's JS name (or the answer's errmsg), its class, the source."""

    code: str
    name: str
    cls: CodeClass
    source: str


_R, _Q, _K, _C = CodeClass.RATE_LIMIT, CodeClass.QUOTA, CodeClass.RISK, CodeClass.CONTENT
_B, _P, _S, _O = CodeClass.BUSY, CodeClass.PARAMS, CodeClass.SESSION, CodeClass.OTHER
_JS = "§19.3 JS ErrNo enum (PY)"

CODES: Final[Mapping[str, CodeFact]] = {
    f.code: f
    for f in (
        # Rate limits: back off; the account is cooled down and the next one tried.
        CodeFact("1", "rate_limit", _R, _JS),
        CodeFact("1010", "concurrency_limit", _R, _JS),
        CodeFact("1057", "rate_limit", _R, _JS),
        CodeFact("1310", "exceed_model_parallel_max", _R, "§19.3 CT 04-26 (measured, video submit)"),
        CodeFact("2014", "access_limit", _R, _JS),
        CodeFact("2020", "rate_limit", _R, _JS),
        CodeFact("10020", "rate_limit_non_commercial_region", _R, _JS),
        # Quota.
        CodeFact("1006", "credit_not_enough", _Q, _JS + "; measured on 3.0/3.1 image keys (PY)"),
        CodeFact("5000", "credit not enough", _Q, "§2.9 reference"),
        CodeFact("4001", "external_no_credits", _Q, _JS + "; §2.9 maps it to content (ret_4001 chooses)"),
        CodeFact("121101", "reached_daily_generation_limit", _Q, _JS),
        # Risk aimed at the account: cool it down.
        CodeFact("1018", "punish_limit_aigenerate", _K, _JS + "; sample cn_ret1018_account_punish_limit"),
        CodeFact("1019", "risk_not_pass", _K, _JS + "; §17.6"),
        CodeFact("1021", "commercial_shark_block", _K, _JS),
        CodeFact("4013", "web_risk_control_message_reject_generation", _K, "sample cn_ret4013_risk_reject_video"),
        CodeFact("-4", "shark check reject", _K, "sample intl_hk_ret-4_shark_check_reject (daily claim)"),
        CodeFact("-6", "shark not pass reject", _K, "upstream-samples INDEX lead R8 (wrapper only)"),
        # Content and copyright: the same content fails on every account. The JS security blocks of text, image
        # and video (2035-2043) are PY's "risk" class, but they judge the content (§19.3: 2038 comes with
        # "你输入的文字不符合平台规则，请修改后重试"), so they are content refusals here: moving on would cool down
        # every account of a pool for one bad prompt.
        CodeFact("1063", "text_audit_not_pass", _C, _JS),
        CodeFact("1159", "copyright", _C, _JS),
        CodeFact("2003", "pre_img_risk", _C, _JS),
        CodeFact("2004", "post_img_risk", _C, _JS),
        CodeFact("2005", "pre_text_risk", _C, _JS),
        CodeFact("2035", "security_not_pass", _C, _JS),
        CodeFact("2038", "text_security_block", _C, _JS + "; PY measured with status 30"),
        CodeFact("2039", "image_security_block", _C, _JS),
        CodeFact("2040", "content risk", _C, "§17.9"),
        CodeFact("2041", "image_security_block", _C, _JS),
        CodeFact("2042", "video_security_block", _C, _JS),
        CodeFact("2043", "security_not_retry", _C, _JS),
        CodeFact("2047", "content violation", _C, "§19.3 jimeng-free-api-all #33 (single source, Seedance 2.0 fast)"),
        CodeFact("2048", "image_copyright_block", _C, _JS),
        CodeFact("2050", "text_copyright_block", _C, _JS),
        # The account's queue is full: try the next account.
        CodeFact("5001", "credit prededuct failed", _B, "sample cn_ret5001_credit_prededuct_failed (too many queued)"),
        # Our request was not understood.
        CodeFact("1000", "invalid parameter", _P, "sample cn_ret1000_invalid_parameter"),
        CodeFact("1001", "invalid_params", _P, _JS),
        CodeFact("1002", "common_error", _P, _JS + "; PY measured (draft_content as an object)"),
        CodeFact("1161", "mix_cn_en", _P, _JS),
        CodeFact("1162", "unsupported_lang", _P, _JS),
        CodeFact("2008", "empty get_history body", _P, "§19.3 PY measured"),
        CodeFact("3021", "unsupported_by_beta", _P, _JS),
        CodeFact("4002", "invalid parameter", _P, "§2.9"),
        CodeFact("4003", "no_permission", _P, _JS),
        CodeFact("4010", "compliance_confirmation_required", _P, _JS + "; §19.7 official CLI"),
        # Session, frame, version, region, model.
        CodeFact("1015", "login_error", _S, _JS + "; samples cn_ret1015_*"),
        CodeFact("1014", "sign_error", _O, _JS + "; SB: 'system busy' on a wrong Referer (§17.5)"),
        CodeFact("2002", "generate_error", _O, _JS),
        CodeFact("2036", "GenerateFail", _O, "sample cn_status30_fail2036_fragment"),
        CodeFact("2061", "model withdrawn", _O, "§19.7 SB (measured)"),
        CodeFact("3000", "region not allowed", _O, "§2.9"),
        CodeFact("3018", "permission denied", _O, "sample intl_ret3018_permission_denied"),
        CodeFact("3020", "download file failed", _O, "sample cn_ret3020_download_file_failed"),
    )
}
"""Every upstream code whose meaning is known, one row each. Codes not listed are `OTHER`."""

RET_4001_CHOICES: Final = UPSTREAM_MEANINGS["ret_4001"]
"""`[upstream] ret_4001`: the JS enum's `external_no_credits` (quota, the default) or §2.9's content filter."""


def ret_overrides(ret_4001: str) -> dict[str, CodeClass]:
    """The classes the operator's config changes (today only `ret 4001`)."""
    return {"4001": CodeClass(ret_4001)}


def classify(code: str, overrides: Mapping[str, CodeClass] | None = None) -> CodeClass:
    """The class of an upstream `ret` or `fail_code` (a decimal string), `overrides` first."""
    if overrides and code in overrides:
        return overrides[code]
    fact = CODES.get(code)
    return fact.cls if fact is not None else CodeClass.OTHER


def content_codes() -> frozenset[str]:
    """The codes that mean the content was refused (for a failed record's `fail_code`)."""
    return frozenset(c for c, f in CODES.items() if f.cls is CodeClass.CONTENT)


def code_name(code: str) -> str:
    """The JS name (or errmsg) of a code, or "" when unknown."""
    fact = CODES.get(code)
    return fact.name if fact is not None else ""
