"""Scrubbing: remove personal data and secrets from text, JSON-like data and log records before they leave.

`scrub(text)` is applied to everything IronLayer persists or logs that it did not compute itself: telemetry,
error messages, log records (`ScrubFilter`), stored run details. It replaces, with a label saying what was
there:

- e-mail addresses -> `[email]`; private-key PEM blocks -> `[private-key]`
- the credential of `Bearer <token>` and `Basic <base64>` -> `Bearer [token]`; JWTs (three base64url
  segments starting `eyJ`, the encoding of `{"`, which every JWT header starts with) -> `[jwt]`
- GitHub (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`), Databricks (`dapi...`, `dose...`) and Fernet
  (`gAAAAA...`) tokens -> `[github-token]`, `[databricks-token]`, `[fernet-token]`; AWS access key IDs
  (`AKIA...`) -> `[aws-key]`; Stripe keys (`sk_live_...`, `whsec_...`) -> `[stripe-key]`
- the password of a URL (`postgresql://user:***@host`), and the value of any `key=value`, `"key": "value"`
  or `password: value` pair whose key names a secret (`password`, `pwd`, `secret`, `token`, `AccountKey`,
  `api_key`, `sig`, ...) -> `***`, which also covers Azure storage connection strings and SAS URLs
- 32 or more hex digits right after a word like key/secret/token/signature -> `[secret]`

It must not destroy ordinary text: plan IDs (64 hex digits), commit SHAs (40), model names, dates and
numbers survive unless they stand right after a secret-ish keyword, because they are audit data. A word
alone (`token`, `secret`) is kept: only the value after it goes. Scrubbing is idempotent, so text may be
scrubbed again at every boundary it crosses, and takes time linear in the text's length (no pattern
backtracks across a long run), so hostile input cannot stall a logger. Pure: no I/O.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

MASK = "***"
# A label can complete a match the original text did not offer (`a@b.io.@c.io`); passes repeat until
# nothing changes, which makes scrubbing idempotent. Two passes settle all but contrived input.
_MAX_PASSES = 4

# Words that make the value after them a secret, as the end of a key: `db_password=`, `AccountKey=`.
_SECRET_KEY = (
    r"(?:password|passwd|passphrase|pwd|secret|token|credentials?|sig|signature"
    r"|(?:api|access|account|secret|private|signing|encryption|master|client|fernet|storage|shared[_-]?access)"
    r"[_-]?key|sharedaccesssignature)"
)
# Keys start where a run of [\w.-] starts (never inside one): scanning stays linear on long dotted strings.
_KEY = rf"(?<![\w.-])[\w.-]*?{_SECRET_KEY}"
_COLON_KEY = (
    r"(?<![\w.-])[\w.-]*?(?:password|passwd|passphrase|pwd|secret|(?:api|access|account|private|secret)[_-]?key)"
)


def _mask_tail(match: re.Match[str]) -> str:
    """Keep the `pre` group, mask the rest, keeping the value's quotes if it had them."""
    value = match.group("value")
    quote = value[0] if value[:1] in ("'", '"') and value[-1:] == value[:1] and len(value) >= 2 else ""
    return f"{match.group('pre')}{quote}{MASK}{quote}"


def _keep_git(match: re.Match[str]) -> str:
    text = match.group(0)
    return text if text.lower().startswith("git@") else "[email]"


_RULES: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # Rules that mask "whatever follows" a key come first, so that a later rule's label never becomes
    # the value of a key on the next pass: one pass is then idempotent on all but contrived input.
    (
        re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.DOTALL),
        "[private-key]",
    ),
    (
        # Bounded, so that a long run of `x://a:` without any `@` is not rescanned from every scheme.
        re.compile(r"(?P<pre>(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]{0,256}:)(?P<value>[^\s@]{1,256})(?=@)"),
        _mask_tail,
    ),
    (
        re.compile(
            rf"""(?P<pre>(?P<q>["']){_KEY}(?P=q)\s*:\s*)(?P<value>"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')""",
            re.IGNORECASE,
        ),
        _mask_tail,
    ),
    (
        re.compile(rf"""(?P<pre>{_KEY}\s*=\s*)(?P<value>"[^"\n]*"|'[^'\n]*'|[^\s;&,'"<>]+)""", re.IGNORECASE),
        _mask_tail,
    ),
    (re.compile(rf"""(?P<pre>{_COLON_KEY}\s*:\s*)(?P<value>[^\s,;'"]+)""", re.IGNORECASE), _mask_tail),
    # Shaped credentials, recognisable anywhere.
    (re.compile(r"(?P<pre>\b(?:Bearer|bearer|BEARER)\s+)(?P<value>[A-Za-z0-9._~+/-]{16,}=*)"), r"\g<pre>[token]"),
    (re.compile(r"(?P<pre>\bBasic\s+)(?=[A-Za-z0-9+/]*[0-9+/=])(?P<value>[A-Za-z0-9+/]{8,}={0,2})"), r"\g<pre>[token]"),
    (
        re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+){0,2}"),
        "[jwt]",
    ),
    (re.compile(r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"), "[github-token]"),
    (re.compile(r"(?<![A-Za-z0-9])(?:dapi|dose)[0-9a-f]{32,}(?:-\d+)?(?![A-Za-z0-9])"), "[databricks-token]"),
    (
        re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA|ASCA)[A-Z0-9]{16}(?![A-Z0-9])"),
        "[aws-key]",
    ),
    (re.compile(r"(?<![A-Za-z0-9])(?:(?:sk|rk)_(?:live|test)|whsec)_[A-Za-z0-9]{10,}"), "[stripe-key]"),
    (re.compile(r"(?<![A-Za-z0-9_-])gAAAAA[A-Za-z0-9_-]{20,}={0,2}"), "[fernet-token]"),
    (
        re.compile(
            r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![A-Za-z0-9_-])"
        ),
        _keep_git,
    ),
    (
        re.compile(
            r"""(?P<pre>\b(?:[A-Za-z0-9]*[_.-])?(?:key|secret|token|signature|password|passphrase|hmac|salt)"""
            r"""["']?\s*[:=]?\s*["']?)(?P<value>[0-9a-fA-F]{32,})(?![0-9A-Za-z])""",
            re.IGNORECASE,
        ),
        r"\g<pre>[secret]",
    ),
)

_SENSITIVE_NAME = re.compile(
    r"password|passwd|passphrase|pwd|secret|token|credential|authorization|cookie|signature|fernet"
    r"|(?:api|private|access|account|signing|encryption|master|storage)_?key|^key$|^sig$"
)


def scrub(text: str) -> str:
    """Replace personal data and secrets in `text` with labels; ordinary text is returned unchanged.

    >>> scrub("alice@example.com pushed; DSN postgresql://app:hunter2@db:5432/ironlayer")
    '[email] pushed; DSN postgresql://app:***@db:5432/ironlayer'
    >>> scrub("plan a80a71a0bccb97f80d67611d535463fbf9240a81e588e40052563f0d9d32360c built")
    'plan a80a71a0bccb97f80d67611d535463fbf9240a81e588e40052563f0d9d32360c built'
    """
    for _ in range(_MAX_PASSES):
        scrubbed = text
        for pattern, replacement in _RULES:
            scrubbed = pattern.sub(replacement, scrubbed)
        if scrubbed == text:
            break
        text = scrubbed
    return text


def is_sensitive_name(name: str) -> bool:
    """Whether a mapping key names a secret, so that its whole value is masked.

    >>> [is_sensitive_name(n) for n in ("db_password", "GitHub-Token", "api_key", "key", "unique_key", "plan_id")]
    [True, True, True, True, False, False]
    """
    return bool(_SENSITIVE_NAME.search(name.lower().replace("-", "_").replace(" ", "_")))


def scrub_mapping(obj: Any) -> Any:
    """Scrub JSON-like data: every string through `scrub`, and the value of every secret-named key masked.

    Mappings become dicts, lists and tuples keep their type; other values (numbers, None, ...) pass as they
    are. A masked value that was None or empty stays so, telling "not set" apart from "set". String keys
    are scrubbed too (an e-mail address used as a key); two keys that scrub alike keep both values.

    >>> scrub_mapping({"user": "bob@example.com", "password": "hunter2", "steps": [{"token": None}]})
    {'user': '[email]', 'password': '***', 'steps': [{'token': None}]}
    """
    if isinstance(obj, str):
        return scrub(obj)
    if isinstance(obj, Mapping):
        result: dict[Any, Any] = {}
        for key, value in obj.items():
            masked = isinstance(key, str) and is_sensitive_name(key) and value not in (None, "")
            new_key = scrub(key) if isinstance(key, str) else key
            if new_key in result:
                new_key = f"{new_key} ({len(result)})"
            result[new_key] = MASK if masked else scrub_mapping(value)
        return result
    if isinstance(obj, list):
        return [scrub_mapping(item) for item in obj]
    if isinstance(obj, tuple):
        return tuple(scrub_mapping(item) for item in obj)
    return obj


class ScrubFilter(logging.Filter):
    """A logging filter that scrubs each record's message, arguments, exception text and stack.

    The message is rendered with its arguments first and the arguments are then cleared, so that an
    argument's `str()` (an exception carrying a connection string, say) is scrubbed as well. Never drops a
    record and never raises: a record whose arguments do not fit its format keeps its (scrubbed) format
    string. Attach it to handlers (`handler.addFilter(ScrubFilter())`) to cover every logger.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a format that does not fit its arguments, or an argument whose str() fails
            try:
                message = f"{record.msg} {record.args!r}"
            except Exception:  # logging must not raise from a filter
                message = "<unprintable log message>"
        record.msg = scrub(message)
        record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True
