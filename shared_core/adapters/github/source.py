"""`GitHubSource`: read commits and model files of a GitHub repository through the REST API.

It implements the `GitSource` port with GitHub's git database endpoints, so it needs no clone:
`/commits/{ref}` and `/git/commits/{sha}` resolve refs and give the committer time, `/git/trees/{sha}`
lists folders, and `/git/blobs/{sha}` returns file bytes. Blobs are content-addressed, so they are kept
in a `BlobStore` under `git-blobs/{sha}` and a file that did not change is never downloaded twice; a
cached blob is checked against its id before use, and a download against the id it was asked for.

Listing walks down to the models folder one tree at a time (the root tree is usually already known
from reading the project file), then lists that folder with `?recursive=1`; when GitHub truncates the
recursive listing (more than 100,000 entries or 7 MB), it lists the folder's subtrees one by one.

HTTP failures become one-line `SourceError`s: unknown repository, ref or blob (404/422), rate limits
(with the reset time in UTC), token problems (401/403) and GitHub being unavailable (5xx, network).
The token is sent only in the `Authorization` header and never appears in messages or logs.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from shared_core.core.errors import SourceError, StateError
from shared_core.ports import BlobStore

logger = logging.getLogger(__name__)

ZERO_SHA = "0" * 40
API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
USER_AGENT = "ironlayer (+https://github.com/ironlayer)"
CACHE_PREFIX = "git-blobs/"
SYMLINK_MODE = "120000"
_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")  # SHA-1, or SHA-256 object ids
_REPOSITORY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*)/[A-Za-z0-9._-]+")
_MEMO_LIMIT = 512  # commits and trees remembered per source (they never change, but memory does)

_T = TypeVar("_T")
Entry = dict[str, Any]  # one entry of a GitHub tree: path, mode, type, sha (and size for blobs)


@dataclass(frozen=True)
class _Commit:
    tree: str
    committed_at: datetime


class GitHubSource:
    """A `GitSource` over one GitHub repository, read with the REST API.

    Args:
        repository: `owner/name`.
        token: a GitHub token (fine-grained or installation token with read access to contents);
            without one, only public repositories can be read, at a low rate limit.
        cache: where downloaded blobs are kept, by id; None downloads every blob asked for.
        base_url: the API root (GitHub Enterprise Server: `https://HOST/api/v3`).
        transport: an httpx transport (tests pass `httpx.MockTransport`).
        timeout: seconds per request.
        max_workers: blobs downloaded at the same time.
    """

    def __init__(
        self,
        repository: str,
        *,
        token: str | None = None,
        cache: BlobStore | None = None,
        base_url: str = API_URL,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        max_workers: int = 8,
    ) -> None:
        if not _REPOSITORY.fullmatch(repository):
            raise SourceError(f"'{repository}' is not a GitHub repository name; give it as 'owner/name'")
        self.repository = repository
        self.cache = cache
        self.max_workers = max(1, max_workers)
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": USER_AGENT,
        }
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(
            base_url=base_url, headers=headers, transport=transport, timeout=timeout, follow_redirects=True
        )
        self._prefix = f"/repos/{repository}"
        self._commits: dict[str, _Commit] = {}
        self._trees: dict[tuple[str, bool], tuple[list[Entry], bool]] = {}
        self._repository_checked = False

    def __repr__(self) -> str:
        return f"GitHubSource({self.repository!r})"

    def __enter__(self) -> GitHubSource:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    # --- GitSource ---------------------------------------------------------------------------------

    def resolve(self, ref: str) -> str:
        """The full commit SHA of `ref` (branch, tag, full or abbreviated SHA); the all-zero SHA passes through."""
        if ref == ZERO_SHA:
            return ZERO_SHA
        if not ref.strip():
            raise SourceError(f"empty git ref for GitHub repository {self.repository}; give a SHA, branch or tag")
        if _SHA.fullmatch(ref.lower()):
            sha = ref.lower()
            self._commit(sha)
            return sha
        data = self._get(f"/commits/{quote(ref, safe='/')}", f"git ref '{ref}'", "check the branch, tag or commit SHA")
        sha = _field(data, str, "sha")
        self._remember(self._commits, sha, self._parse_commit(_field(data, dict, "commit"), sha))
        return sha

    def commit_time(self, sha: str) -> datetime:
        """The committer time (UTC) of commit `sha`, as `git show -s --format=%ct` gives it."""
        return self._commit(self._full_sha(sha)).committed_at

    def read_file(self, sha: str, path: str) -> str | None:
        if sha == ZERO_SHA:
            return None
        parts = [part for part in path.split("/") if part not in ("", ".")]
        if not parts or ".." in parts:
            return None
        entry = self._find(self._commit(self._full_sha(sha)).tree, parts)
        if entry is None or entry.get("type") != "blob":
            return None
        blob = _field(entry, str, "sha")
        try:
            return self.read_blobs([blob])[blob].decode("utf-8")
        except UnicodeDecodeError:
            raise SourceError(f"{path}: not UTF-8 text (at commit {sha[:12]}); save the file as UTF-8") from None

    def list_files(self, sha: str, folder: str, suffix: str) -> list[tuple[str, str]]:
        if sha == ZERO_SHA:
            return []
        tree = self._commit(self._full_sha(sha)).tree
        parts = [part for part in folder.split("/") if part not in ("", ".")]
        prefix = "/".join(parts)
        if parts:
            entry = self._find(tree, parts)
            if entry is None:
                return []
            if entry.get("type") == "blob":  # `folder` names a file, as a git pathspec may
                keep = prefix.endswith(suffix) and entry.get("mode") != SYMLINK_MODE
                return [(prefix, _field(entry, str, "sha"))] if keep else []
            if entry.get("type") != "tree":
                return []
            tree = _field(entry, str, "sha")
        files = []
        for relative, entry in self._walk(tree, prefix):
            path = f"{prefix}/{relative}" if prefix else relative
            if entry.get("type") == "blob" and path.endswith(suffix) and entry.get("mode") != SYMLINK_MODE:
                files.append((path, _field(entry, str, "sha")))
        return sorted(files)

    def read_blobs(self, blob_ids: Sequence[str]) -> dict[str, bytes]:
        """The bytes of each blob: from the cache when it has them, else downloaded (concurrently) and cached."""
        unique = sorted(set(blob_ids))
        for blob in unique:
            if not _SHA.fullmatch(blob):
                raise SourceError(f"'{blob}' is not a git object id (40 or 64 lower-case hex digits)")
        found: dict[str, bytes] = {}
        missing = []
        for blob in unique:
            data = self._cached(blob)
            if data is None:
                missing.append(blob)
            else:
                found[blob] = data
        if missing:
            workers = min(self.max_workers, len(missing))
            if workers == 1:
                downloaded = [self._fetch(blob) for blob in missing]
            else:
                with ThreadPoolExecutor(workers, thread_name_prefix="github-blobs") as pool:
                    futures = [pool.submit(self._fetch, blob) for blob in missing]
                downloaded = [future.result() for future in futures]  # all done: the first failure by id order
            found.update(zip(missing, downloaded, strict=True))
        return {blob: found[blob] for blob in unique}

    # --- commits and trees -------------------------------------------------------------------------

    def _full_sha(self, sha: str) -> str:
        if sha == ZERO_SHA:
            raise SourceError("the all-zero SHA names no commit; there is nothing to read at it")
        return sha.lower() if _SHA.fullmatch(sha.lower()) else self.resolve(sha)

    def _commit(self, sha: str) -> _Commit:
        commit = self._commits.get(sha)
        if commit is None:
            data = self._get(f"/git/commits/{sha}", f"commit {sha}", "check the commit SHA (was it force-pushed away?)")
            commit = self._remember(self._commits, sha, self._parse_commit(data, sha))
        return commit

    def _parse_commit(self, data: dict[str, Any], sha: str) -> _Commit:
        """A commit object as GitHub returns it (`/git/commits/{sha}`, or `commit` of `/commits/{ref}`)."""
        tree = _field(_field(data, dict, "tree"), str, "sha")
        date = _field(_field(data, dict, "committer"), str, "date")
        try:
            when = datetime.fromisoformat(date)
        except ValueError:
            raise SourceError(f"GitHub sent an unreadable committer date for commit {sha}: {date[:40]!r}") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return _Commit(tree, when.astimezone(UTC))

    def _tree(self, sha: str, *, recursive: bool) -> tuple[list[Entry], bool]:
        """The entries of tree `sha` and whether GitHub truncated them."""
        known = self._trees.get((sha, recursive))
        if known is None:
            params = {"recursive": "1"} if recursive else None
            data = self._get(f"/git/trees/{sha}", f"tree {sha}", "check the commit SHA", params=params)
            entries = _field(data, list, "tree")
            known = self._remember(self._trees, (sha, recursive), (entries, bool(data.get("truncated"))))
        return known

    def _find(self, tree: str, parts: list[str]) -> Entry | None:
        """The entry at `parts` below `tree`, walking one folder at a time; None when there is none."""
        entry: Entry | None = None
        for index, part in enumerate(parts):
            if index:
                if entry is None or entry.get("type") != "tree":
                    return None
                tree = _field(entry, str, "sha")
            entries, _ = self._tree(tree, recursive=False)
            entry = next((e for e in entries if e.get("path") == part), None)
        return entry

    def _walk(self, tree: str, folder: str) -> list[tuple[str, Entry]]:
        """Every entry below `tree` with its path relative to it: one recursive listing, or folder by folder."""
        entries, truncated = self._tree(tree, recursive=True)
        if not truncated:
            return [(_field(entry, str, "path"), entry) for entry in entries]
        logger.info("GitHub truncated the listing of '%s' in %s; listing its folders one by one",
                    folder or "/", self.repository)
        walked: list[tuple[str, Entry]] = []
        pending = [("", tree)]
        while pending:
            base, sha = pending.pop(0)
            entries, truncated = self._tree(sha, recursive=False)
            where = "/".join(part for part in (folder, base) if part) or "/"
            if truncated:
                raise SourceError(
                    f"GitHub truncated the listing of folder '{where}' in {self.repository} (too many entries in "
                    "one folder); split it into subfolders"
                )
            for entry in entries:
                path = f"{base}/{_field(entry, str, 'path')}" if base else _field(entry, str, "path")
                walked.append((path, entry))
                if entry.get("type") == "tree":
                    pending.append((path, _field(entry, str, "sha")))
        return walked

    @staticmethod
    def _remember(memo: dict[Any, Any], key: Any, value: Any) -> Any:
        if len(memo) >= _MEMO_LIMIT:
            del memo[next(iter(memo))]
        memo[key] = value
        return value

    # --- blobs ---------------------------------------------------------------------------------------

    def _cached(self, blob: str) -> bytes | None:
        if self.cache is None:
            return None
        try:
            data = self.cache.get(CACHE_PREFIX + blob)
        except StateError as exc:  # the cache only saves downloads: carry on without it
            logger.warning("blob cache unavailable, downloading %s from GitHub: %s", blob, exc)
            return None
        if data is not None and _blob_id(data, blob) != blob:
            logger.warning("cached blob %s does not match its id; downloading it again", blob)
            return None
        return data

    def _store(self, blob: str, data: bytes) -> None:
        if self.cache is None:
            return
        try:
            self.cache.put(CACHE_PREFIX + blob, data)
        except StateError as exc:
            logger.warning("could not cache blob %s: %s", blob, exc)

    def _fetch(self, blob: str) -> bytes:
        """Download one blob and cache it at once (if a later one fails, a retry skips this one)."""
        data = self._download(blob)
        self._store(blob, data)
        return data

    def _download(self, blob: str) -> bytes:
        data = self._get(f"/git/blobs/{blob}", f"blob {blob}", "check the commit SHA (was it force-pushed away?)")
        content = _field(data, str, "content")
        encoding = data.get("encoding")
        if encoding == "base64":
            try:
                raw = base64.b64decode(content)  # GitHub wraps it at 60 characters; the newlines are skipped
            except ValueError:
                raise SourceError(f"GitHub sent blob {blob} of {self.repository} with invalid base64") from None
        elif encoding in ("utf-8", "utf8"):
            raw = content.encode("utf-8")
        else:
            raise SourceError(f"GitHub sent blob {blob} of {self.repository} in unknown encoding {encoding!r}")
        if _blob_id(raw, blob) != blob:
            raise SourceError(
                f"GitHub sent blob {blob} of {self.repository} with content of another id; retry later"
            )
        return raw

    # --- HTTP ----------------------------------------------------------------------------------------

    def _get(self, path: str, what: str, hint: str, *, params: dict[str, str] | None = None) -> dict[str, Any]:
        """GET `path` under the repository; the JSON object, or a SourceError about `what`."""
        response = self._request(self._prefix + path, what, params)
        if response.status_code == 200:
            try:
                data = response.json()
            except ValueError:
                data = None
            if isinstance(data, dict):
                return data
            raise SourceError(f"GitHub sent an unreadable answer for {what} of {self.repository}; retry later")
        if response.status_code == 422:  # "No commit found for SHA: ...": the repository exists, the ref not
            raise SourceError(f"unknown {what} in GitHub repository {self.repository}; {hint}")
        if response.status_code == 404:
            self._check_repository()
            raise SourceError(f"{what} not found in GitHub repository {self.repository}; {hint}")
        raise self._failure(response, what)

    def _request(self, url: str, what: str, params: dict[str, str] | None) -> httpx.Response:
        try:
            return self._client.get(url, params=params)
        except httpx.HTTPError as exc:
            raise SourceError(
                f"GitHub is unreachable ({type(exc).__name__}) reading {what} of {self.repository}; retry later"
            ) from exc

    def _check_repository(self) -> None:
        """After a 404: raise if the repository itself is missing (or hidden from the token)."""
        if self._repository_checked:
            return
        response = self._request(self._prefix, f"repository {self.repository}", None)
        if response.status_code == 404:
            raise SourceError(
                f"GitHub repository {self.repository} not found, or the token cannot see it; check the repository "
                "name and that the token has read access to it"
            )
        if response.status_code != 200:
            raise self._failure(response, f"repository {self.repository}")
        self._repository_checked = True

    def _failure(self, response: httpx.Response, what: str) -> SourceError:
        status = response.status_code
        headers = response.headers
        where = f"reading {what} of {self.repository}"
        if status in (401, 403, 429):
            if headers.get("x-ratelimit-remaining") == "0":
                reset = _reset_time(headers.get("x-ratelimit-reset"))
                return SourceError(
                    f"GitHub API rate limit exhausted {where}; it resets at {reset}; retry then, or use a token "
                    "with a higher limit"
                )
            if status == 429 or "retry-after" in headers:
                wait = headers.get("retry-after", "60")
                return SourceError(f"GitHub rate-limited requests {where} (secondary limit); retry after {wait} s")
            if status == 401:
                return SourceError(
                    f"GitHub rejected the token (401) {where}; check that the GitHub token is set, valid and "
                    "not expired"
                )
            return SourceError(
                f"GitHub refused access (403) {where}; give the token read access to the repository's contents"
            )
        if status >= 500:
            return SourceError(f"GitHub is unavailable (HTTP {status}) {where}; retry later")
        return SourceError(f"GitHub answered HTTP {status} {where}: {_message(response)}")


def _field(data: Any, kind: type[_T], name: str) -> _T:
    """`data[name]`, checked to be a `kind`; a SourceError when GitHub's answer has another shape."""
    value = data.get(name) if isinstance(data, dict) else None
    if not isinstance(value, kind):
        raise SourceError(f"GitHub sent an answer without '{name}'; the API may have changed, retry or report it")
    return value


def _blob_id(data: bytes, like: str) -> str:
    """The git object id of a blob with `data` (SHA-1, or SHA-256 when `like` is a 64-digit id).

    >>> _blob_id(b"", "0" * 40)
    'e69de29bb2d1d6434b8b29ae775ad8c2e48c5391'
    """
    digest = hashlib.sha256 if len(like) == 64 else hashlib.sha1
    return digest(b"blob %d\0" % len(data) + data).hexdigest()


def _reset_time(value: str | None) -> str:
    """`X-RateLimit-Reset` (epoch seconds) as a UTC time.

    >>> _reset_time("1700000000")
    '2023-11-14 22:13:20 UTC'
    """
    try:
        return datetime.fromtimestamp(int(value or ""), tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (ValueError, OverflowError, OSError):
        return "an unknown time"


def _message(response: httpx.Response) -> str:
    """GitHub's `message` from an error answer, on one short line."""
    try:
        data = response.json()
    except ValueError:
        data = None
    text = str(data.get("message", "")) if isinstance(data, dict) else ""
    text = " ".join(text.split())[:200]
    return text or "no message"
