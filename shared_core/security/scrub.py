"""Scrubbing: remove personal data and secrets from text, JSON-like data and log records before they leave.

`scrub(text)` is applied to everything IronLayer persists or logs that it did not compute itself: telemetry,
error messages, log records (`ScrubFilter`), stored run details. It replaces, with a label saying what was
there:

- e-mail addresses -> `[email]`; private-key PEM blocks -> `[private-key]`
- the credential of `Bearer <token>` and `Basic <base64>` -> `Bearer [token]`; JWTs (three base64url
  segments starting `eyJ`, the encoding of `{"`, which every JWT header starts with) -> `[jwt]`
- GitHub (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`), Databricks (`dapi...`, `dose...`, in either
  case), Slack (`xoxb-...`, `xapp-...`, webhook URLs) and Google (`AIza...`, `GOCSPX-...`, `ya29.`) tokens
  and keys, Fernet tokens (`gAAAAA...`) and Fernet keys (44 url-safe base64 characters ending `=`) ->
  `[github-token]`, `[databricks-token]`, `[slack-token]`, `[google-key]`, `[fernet-token]`, `[fernet-key]`;
  AWS access key IDs (`AKIA...`) -> `[aws-key]` and secret access keys (40 base64 characters of mixed case)
  -> `[aws-secret]`; Stripe keys (`sk_live_...`, `whsec_...`) -> `[stripe-key]`
- the password of a URL (`postgresql://user:***@host`, also when the password itself contains `@`), and the
  value of any `key=value`, `"key": "value"` or `key: value` pair whose key names a secret (`password`,
  `pwd`, `token`, `AccountKey`, `api_key`, `sig`, any key containing `secret`, any `..._KEYS` list, ...)
  -> `***`, which also covers Azure storage connection strings and SAS URLs
- 32 or more hex digits right after a word like key/secret/token/signature -> `[secret]`

It must not destroy ordinary text: plan IDs (64 hex digits), commit SHAs (40), model names, dates and
numbers survive unless they stand right after a secret-ish keyword, because they are audit data. A word
alone (`token`, `secret`) is kept: only the value after it goes. Scrubbing is idempotent, so text may be
scrubbed again at every boundary it crosses, and takes time linear in the text's length (no pattern
backtracks across a long run), so hostile input cannot stall a logger.

`scrub_engine_error` goes further for a warehouse error that crosses to a stored or shown run error: such a
message may quote the tenant's data (`Could not convert string 'alice@...'`), so it keeps the error's class
and position and, only for errors about the SQL itself (parser, binder, catalog), the message with just the
names that the SQL contains. Pure: no I/O.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import overload

MASK = "***"
# A label can complete a match the original text did not offer (`a@b.io.@c.io`); passes repeat until
# nothing changes, which makes scrubbing idempotent. Two passes settle all but contrived input.
_MAX_PASSES = 4

# Words that make the value after them a secret, as the end of a key: `db_password=`, `AccountKey=`.
_SECRET_KEY = (
    r"(?:password|passwd|passphrase|pwd|secret[\w.-]{0,32}|token|credentials?|sig|signature"
    r"|(?:api|access|account|secret|private|signing|encryption|master|client|fernet|storage|shared[_-]?access)"
    r"[_-]?key|sharedaccesssignature)"
)
# Keys start where a run of [\w.-] starts (never inside one): scanning stays linear on long dotted strings.
_KEY = rf"(?<![\w.-])[\w.-]*?{_SECRET_KEY}"
# Not right after `/`: in `https://x-access-token:...@host` the URL rule masks the password.
_COLON_KEY = (
    r"(?<![\w./-])[\w.-]*?(?:password|passwd|passphrase|pwd|secret[\w.-]{0,32}|token|credentials?"
    r"|(?:api|access|account|private|secret|signing|client|fernet)[_-]?key)"
)
# A key naming a list of keys (`IRONLAYER_CREDENTIAL_KEYS=k1,k2`): its value runs over commas.
_KEYS_KEY = r"(?<![\w.-])[\w.-]*?[_-]keys"
_B64_RUN = r"A-Za-z0-9_\-"


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
        # The password runs to the `@` that a host follows (so a password may hold `@` itself); bounded, so
        # that a long run of `x://a:` without any `@` is not rescanned from every scheme.
        re.compile(
            r"(?P<pre>(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]{0,256}:)(?P<value>\S{1,256}?)"
            r"(?=@[^\s@/?#]{0,256}(?:[/?#\s]|$))"
        ),
        _mask_tail,
    ),
    (
        re.compile(rf"""(?P<pre>{_KEYS_KEY}\s*[:=]\s*)(?P<value>"[^"\n]*"|'[^'\n]*'|[^\s;&'"<>]+)""", re.IGNORECASE),
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
    (re.compile(r"(?<![A-Za-z0-9])(?i:dapi|dose)[0-9a-fA-F]{32,}(?:-\d+)?(?![A-Za-z0-9])"), "[databricks-token]"),
    (re.compile(r"(?<![A-Za-z0-9-])xox[abposr]-[A-Za-z0-9-]{10,}|(?<![A-Za-z0-9-])xapp-[A-Za-z0-9-]{10,}"),
     "[slack-token]"),
    (re.compile(r"(?<=hooks\.slack\.com/services/)[A-Za-z0-9_/-]{8,}"), "[slack-token]"),
    (re.compile(r"(?<![A-Za-z0-9_-])(?:AIza[0-9A-Za-z_-]{35}|GOCSPX-[0-9A-Za-z_-]{20,}|ya29\.[0-9A-Za-z_-]{20,})"),
     "[google-key]"),
    (
        re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA|ASCA)[A-Z0-9]{16}(?![A-Z0-9])"),
        "[aws-key]",
    ),
    (re.compile(r"(?<![A-Za-z0-9])(?:(?:sk|rk)_(?:live|test)|whsec)_[A-Za-z0-9]{10,}"), "[stripe-key]"),
    (re.compile(r"(?<![A-Za-z0-9_-])gAAAAA[A-Za-z0-9_-]{20,}={0,2}"), "[fernet-token]"),
    (
        # 32 random bytes in url-safe base64; mixed case and a digit, which ordinary words never have.
        re.compile(
            rf"(?<![{_B64_RUN}])(?=[{_B64_RUN}]{{0,42}}[A-Z])(?=[{_B64_RUN}]{{0,42}}[a-z])"
            rf"(?=[{_B64_RUN}]{{0,42}}[0-9])[{_B64_RUN}]{{43}}=(?![{_B64_RUN}=])"
        ),
        "[fernet-key]",
    ),
    (
        # An AWS secret access key: 40 base64 characters of mixed case with a digit or `/`/`+`.
        re.compile(
            r"(?<![A-Za-z0-9/+])(?=[A-Za-z0-9/+]{0,39}[A-Z])(?=[A-Za-z0-9/+]{0,39}[a-z])"
            r"(?=[A-Za-z0-9/+]{0,39}[0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"
        ),
        "[aws-secret]",
    ),
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


#: Engine error classes whose message is about the SQL (names in it), never about the data it read.
SQL_ERROR_CLASSES = ("Parser Error", "Binder Error", "Catalog Error", "Syntax Error")
_ERROR_CLASS = re.compile(r"^([A-Z][A-Za-z ]{0,40}? Error):\s*")
_LINE = re.compile(r"^LINE (\d+): ?(.*)$", re.MULTILINE)
_QUOTED = re.compile(r'"([^"\n]{0,200})"|\'([^\'\n]{0,200})\'')
_HINTS = re.compile(r"\s*(?:Candidate bindings|Did you mean|Candidate functions)\b.*$", re.DOTALL)


def scrub_engine_error(message: str, *, kind: str, sql: str = "") -> str:
    """An engine error reduced to what may cross a tenant boundary: its class, its position, and for errors
    about the SQL itself the first line of the message with only the quoted names that `sql` contains.

    Data values (`Could not convert string 'alice@...'`), the catalog's suggestions (`Did you mean ...`,
    which can name other relations) and the echoed statement are dropped.

    Args:
        message: the engine's message (DuckDB style: `Conversion Error: ...` then `LINE n: ...` and a caret).
        kind: the exception class name (`ConversionException`), used when the message names no class.
        sql: the text the tenant wrote and the engine ran; quoted names found in it are kept.

    Returns:
        One line, scrubbed.

    >>> scrub_engine_error("Conversion Error: Could not convert string 'ann@x.io' to INT32\\n\\nLINE 1: SELECT "
    ...                    "CAST(e AS INT)\\n               ^^^^", kind="ConversionException")
    'Conversion Error at line 1, column 8 (the message may quote data and is withheld)'
    >>> scrub_engine_error('Binder Error: Referenced column "amt" not found in FROM clause!\\nCandidate bindings: '
    ...                    '"amount"', kind="BinderException", sql="SELECT amt FROM t")
    'Binder Error: Referenced column "amt" not found in FROM clause!'
    """
    first = message.strip().split("\n", 1)[0]
    found = _ERROR_CLASS.match(first)
    if found:
        label, detail = found.group(1), first[found.end():]
    else:
        base = kind.removesuffix("Exception").removesuffix("Error")
        label = (re.sub(r"(?<=[a-z])(?=[A-Z])", " ", base) or "Engine") + " Error"
        detail = first
    position = ""
    line = _LINE.search(message)
    if line:
        position = f" at line {line.group(1)}"
        caret_line = message[line.end():].lstrip("\n").split("\n", 1)[0]
        caret = caret_line.find("^")
        prefix = len(f"LINE {line.group(1)}: ")
        if caret >= prefix:
            position += f", column {caret - prefix + 1}"
    if label not in SQL_ERROR_CLASSES:
        return scrub(f"{label}{position} (the message may quote data and is withheld)")
    detail = _HINTS.sub("", detail).strip()

    def keep_if_written(match: re.Match[str]) -> str:
        inner = match.group(1) if match.group(1) is not None else match.group(2)
        return match.group(0) if inner and inner in sql else '"?"'

    detail = _QUOTED.sub(keep_if_written, detail)
    return scrub(f"{label}{position}: {detail}" if detail else f"{label}{position}")


def is_sensitive_name(name: str) -> bool:
    """Whether a mapping key names a secret, so that its whole value is masked.

    >>> [is_sensitive_name(n) for n in ("db_password", "GitHub-Token", "api_key", "key", "unique_key", "plan_id")]
    [True, True, True, True, False, False]
    """
    return bool(_SENSITIVE_NAME.search(name.lower().replace("-", "_").replace(" ", "_")))


@overload
def scrub_mapping(obj: Mapping[str, object]) -> dict[str, object]: ...
@overload
def scrub_mapping(obj: object) -> object: ...
def scrub_mapping(obj: object) -> object:
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
        result: dict[object, object] = {}
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
