"""What the GitHub source's modules share about GitHub's REST API: constants, answer checks, error mapping.

HTTP failures become one-line `SourceError`s: rate limits (with the reset time in UTC) and GitHub being
unavailable (5xx) as `SourceUnavailableError` (safe to retry), token problems (401/403) and anything else
with GitHub's own message. The token is only ever in a request's `Authorization` header, so it cannot
show up in these messages.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from shared_core.core.errors import SourceError, SourceUnavailableError

API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
USER_AGENT = "ironlayer (+https://github.com/ironlayer)"

_T = TypeVar("_T")


def field(data: Any, kind: type[_T], name: str) -> _T:  # Any: parsed JSON, checked here
    """`data[name]`, checked to be a `kind`; a SourceError when GitHub's answer has another shape."""
    value = data.get(name) if isinstance(data, dict) else None
    if not isinstance(value, kind):
        raise SourceError(f"GitHub sent an answer without '{name}'; the API may have changed, retry or report it")
    return value


def blob_id(data: bytes, like: str) -> str:
    """The git object id of a blob with `data` (SHA-1, or SHA-256 when `like` is a 64-digit id).

    >>> blob_id(b"", "0" * 40)
    'e69de29bb2d1d6434b8b29ae775ad8c2e48c5391'
    """
    digest = hashlib.sha256 if len(like) == 64 else hashlib.sha1
    return digest(b"blob %d\0" % len(data) + data).hexdigest()


def failure(response: httpx.Response, what: str, repository: str) -> SourceError:
    """The SourceError for an unsuccessful answer (not 404/422, which need the caller's context).

    Args:
        response: GitHub's answer; its body must have been read.
        what: what was being read, e.g. "blob 1234abcd...".
        repository: `owner/name`.
    """
    status = response.status_code
    headers = response.headers
    where = f"reading {what} of {repository}"
    if status in (401, 403, 429):
        if headers.get("x-ratelimit-remaining") == "0":
            reset = reset_time(headers.get("x-ratelimit-reset"))
            return SourceUnavailableError(
                f"GitHub API rate limit exhausted {where}; it resets at {reset}; retry then, or use a token "
                "with a higher limit"
            )
        if status == 429 or "retry-after" in headers:
            wait = headers.get("retry-after", "60")
            return SourceUnavailableError(
                f"GitHub rate-limited requests {where} (secondary limit); retry after {wait} s")
        if status == 401:
            return SourceError(
                f"GitHub rejected the token (401) {where}; check that the GitHub token is set, valid and not expired"
            )
        return SourceError(
            f"GitHub refused access (403) {where}; give the token read access to the repository's contents"
        )
    if status >= 500:
        return SourceUnavailableError(f"GitHub is unavailable (HTTP {status}) {where}; retry later")
    return SourceError(f"GitHub answered HTTP {status} {where}: {message(response)}")


def reset_time(value: str | None) -> str:
    """`X-RateLimit-Reset` (epoch seconds) as a UTC time.

    >>> reset_time("1700000000")
    '2023-11-14 22:13:20 UTC'
    >>> reset_time("soon")
    'an unknown time'
    """
    try:
        return datetime.fromtimestamp(int(value or ""), tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (ValueError, OverflowError, OSError):
        return "an unknown time"


def message(response: httpx.Response) -> str:
    """GitHub's `message` from an error answer, on one short line."""
    try:
        data = response.json()
    except ValueError:
        data = None
    text = str(data.get("message", "")) if isinstance(data, dict) else ""
    text = " ".join(text.split())[:200]
    return text or "no message"
