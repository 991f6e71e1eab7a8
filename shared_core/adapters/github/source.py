"""`GitHubSource`: read commits and model files of a GitHub repository through the REST API.

It implements the `GitSource` port with GitHub's git database endpoints, so it needs no clone:
`/commits/{ref}` and `/git/commits/{sha}` resolve refs and give the committer time, `/git/trees/{sha}`
lists folders, and `/git/blobs/{sha}` returns file bytes. Blobs are content-addressed, so they are kept
in a `BlobStore` under `git-blobs/{sha}` and a file that did not change is never downloaded twice; a
cached blob is checked against its id before use, and a download against the id it was asked for.

Listing walks down to the models folder one tree at a time (the root tree is usually already known
from reading the project file), then lists that folder with `?recursive=1`; when GitHub truncates the
recursive listing (more than 100,000 entries or 7 MB), it lists the folder's subtrees one by one.

Rate limits decide how blobs are fetched. GitHub allows about 900 REST points a minute (secondary
limit; a GET costs one) and 5,000 requests an hour per token, so one request per file would spend a
first plan of a 2,000-model repository's whole minute twice over. `read_blobs` therefore looks at the
blobs missing from the cache: when more than `archive_threshold` (default 50) of them were listed at
the same commit, it downloads that commit's tarball instead (one API request; the download host it
redirects to is not the REST API) and keeps the listed files found in it, each checked against its
blob id (see `archive`). What the archive did not give (files over the size limit, an archive cut
short) is then fetched blob by blob, like a handful of missing blobs always is. Below the threshold
the blob endpoint is cheaper: fifty requests run in well under a second and download only those
files, where an archive holds the whole repository. A one-change plan thus costs the trees of both
commits and the one changed blob: the tree listing plus the cache already name exactly the blobs that
changed. The compare endpoint would not save a request there: it lists changed files without their
modes (a file turned symlink) and at most 300 of them, and compares against the merge base, so a tree
listing would still be needed to trust its answer.

HTTP failures become one-line `SourceError`s: unknown repository, ref or blob (404/422), rate limits
(with the reset time in UTC), token problems (401/403) and GitHub being unavailable (5xx, network); rate
limits and unavailability are `SourceUnavailableError`s (safe to retry).
The token is sent only in the `Authorization` header, only to the API's own host, and never appears
in messages or logs.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from shared_core.adapters.github._api import API_URL, API_VERSION, USER_AGENT, blob_id, failure, field
from shared_core.adapters.github.archive import ArchiveLimits, Extraction, download_files
from shared_core.core.errors import SourceError, SourceUnavailableError, StateError
from shared_core.ports import BlobStore

logger = logging.getLogger(__name__)

ZERO_SHA = "0" * 40
CACHE_PREFIX = "git-blobs/"
ARCHIVE_THRESHOLD = 50  # more missing blobs than this listed at one commit: read that commit's archive
SYMLINK_MODE = "120000"
_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")  # SHA-1, or SHA-256 object ids
_REPOSITORY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*)/[A-Za-z0-9._-]+")
_MEMO_LIMIT = 512  # commits and trees remembered per source (they never change, but memory does)
_LISTED_LIMIT = 16  # commits whose listed files are remembered (to find an archive for missing blobs)

K = TypeVar("K")
V = TypeVar("V")
Entry = dict[str, Any]  # Any: one entry of a GitHub tree as parsed JSON: path, mode, type, sha (and size for blobs)


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
        archive_threshold: when more blobs than this, listed at one commit, are missing from the cache,
            `read_blobs` reads them from the commit's archive; None always reads blob by blob.
        archive_limits: the bounds on reading an archive.
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
        archive_threshold: int | None = ARCHIVE_THRESHOLD,
        archive_limits: ArchiveLimits | None = None,
    ) -> None:
        if not _REPOSITORY.fullmatch(repository):
            raise SourceError(f"'{repository}' is not a GitHub repository name; give it as 'owner/name'")
        self.repository = repository
        self.cache = cache
        self.max_workers = max(1, max_workers)
        self.archive_threshold = archive_threshold
        self.archive_limits = archive_limits or ArchiveLimits()
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
        self._listed: dict[str, dict[str, tuple[str, int | None]]] = {}  # commit -> path -> (blob, size)
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
        sha = field(data, str, "sha")
        self._remember(self._commits, sha, self._parse_commit(field(data, dict, "commit"), sha))
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
        full = self._full_sha(sha)
        entry = self._find(self._commit(full).tree, parts)
        if entry is None or entry.get("type") != "blob":
            return None
        blob = field(entry, str, "sha")
        self._note(full, [("/".join(parts), entry)])
        try:
            return self.read_blobs([blob])[blob].decode("utf-8")
        except UnicodeDecodeError:
            raise SourceError(f"{path}: not UTF-8 text (at commit {sha[:12]}); save the file as UTF-8") from None

    def list_files(self, sha: str, folder: str, suffix: str) -> list[tuple[str, str]]:
        if sha == ZERO_SHA:
            return []
        full = self._full_sha(sha)
        tree = self._commit(full).tree
        parts = [part for part in folder.split("/") if part not in ("", ".")]
        prefix = "/".join(parts)
        if parts:
            entry = self._find(tree, parts)
            if entry is None:
                return []
            if entry.get("type") == "blob":  # `folder` names a file, as a git pathspec may
                if not prefix.endswith(suffix) or entry.get("mode") == SYMLINK_MODE:
                    return []
                self._note(full, [(prefix, entry)])
                return [(prefix, field(entry, str, "sha"))]
            if entry.get("type") != "tree":
                return []
            tree = field(entry, str, "sha")
        found = []
        for relative, entry in self._walk(tree, prefix):
            path = f"{prefix}/{relative}" if prefix else relative
            if entry.get("type") == "blob" and path.endswith(suffix) and entry.get("mode") != SYMLINK_MODE:
                found.append((path, entry))
        self._note(full, found)
        return sorted((path, field(entry, str, "sha")) for path, entry in found)

    def read_blobs(self, blob_ids: Sequence[str]) -> dict[str, bytes]:
        """The bytes of each blob: from the cache when it has them, else downloaded and cached.

        Many missing blobs listed at one commit come from that commit's archive, the others (and
        any the archive did not give) from the blob endpoint, several at a time.
        """
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
        if self.archive_threshold is not None and len(missing) > self.archive_threshold:
            found.update(self._read_archives(missing, self.archive_threshold))
            missing = [blob for blob in missing if blob not in found]
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

    # --- archives ----------------------------------------------------------------------------------

    def _note(self, sha: str, entries: Sequence[tuple[str, Entry]]) -> None:
        """Remember where listed blobs are, so that an archive of commit `sha` (a full SHA) can give them."""
        files = self._listed.get(sha)
        if files is None:
            files = self._remember(self._listed, sha, {}, _LISTED_LIMIT)
        for path, entry in entries:
            size = entry.get("size")
            files[path] = (field(entry, str, "sha"), size if isinstance(size, int) else None)

    def _read_archives(self, missing: Sequence[str], threshold: int) -> dict[str, bytes]:
        """Missing blobs from the archives of the commits listing more than `threshold` of them, most first."""
        remaining = set(missing)
        got: dict[str, bytes] = {}
        tried: set[str] = set()
        while True:
            best: tuple[int, str, dict[str, str]] | None = None
            for commit, files in self._listed.items():
                wanted = {path: blob for path, (blob, size) in files.items()
                          if blob in remaining and (size is None or size <= self.archive_limits.max_file_bytes)}
                count = len(set(wanted.values()))
                if commit not in tried and count > threshold and (best is None or count > best[0]):
                    best = (count, commit, wanted)
            if best is None:
                return got
            count, commit, wanted = best
            tried.add(commit)
            extraction = self._read_archive(commit, wanted)
            got.update(extraction.blobs)
            remaining.difference_update(extraction.blobs)
            if len(extraction.blobs) < count:
                logger.warning("read %d of %d files from the archive of commit %s of %s (%s); reading the rest blob "
                               "by blob", len(extraction.blobs), count, commit, self.repository,
                               extraction.stopped or "the others are not in it as regular files within the limits")
            else:
                logger.info("read %d files from the archive of commit %s of %s", count, commit, self.repository)

    def _read_archive(self, commit: str, wanted: dict[str, str]) -> Extraction:
        """The `wanted` files (path -> blob) from the archive of `commit`, cached as they are verified."""
        stored: list[Future[None]] = []
        with ThreadPoolExecutor(self.max_workers, thread_name_prefix="github-cache") as pool:
            extraction = download_files(  # the cache is written while the archive is still being read
                self._client, f"{self._prefix}/tarball/{commit}", wanted, repository=self.repository,
                commit=commit, limits=self.archive_limits,
                keep=lambda blob, data: stored.append(pool.submit(self._store, blob, data)),
            )
        for future in stored:
            future.result()
        return extraction

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

    def _parse_commit(self, data: dict[str, Any], sha: str) -> _Commit:  # Any: GitHub's parsed JSON
        """A commit object as GitHub returns it (`/git/commits/{sha}`, or `commit` of `/commits/{ref}`)."""
        tree = field(field(data, dict, "tree"), str, "sha")
        date = field(field(data, dict, "committer"), str, "date")
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
            entries = field(data, list, "tree")
            known = self._remember(self._trees, (sha, recursive), (entries, bool(data.get("truncated"))))
        return known

    def _find(self, tree: str, parts: list[str]) -> Entry | None:
        """The entry at `parts` below `tree`, walking one folder at a time; None when there is none."""
        entry: Entry | None = None
        for index, part in enumerate(parts):
            if index:
                if entry is None or entry.get("type") != "tree":
                    return None
                tree = field(entry, str, "sha")
            entries, _ = self._tree(tree, recursive=False)
            entry = next((e for e in entries if e.get("path") == part), None)
        return entry

    def _walk(self, tree: str, folder: str) -> list[tuple[str, Entry]]:
        """Every entry below `tree` with its path relative to it: one recursive listing, or folder by folder."""
        entries, truncated = self._tree(tree, recursive=True)
        if not truncated:
            return [(field(entry, str, "path"), entry) for entry in entries]
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
                path = f"{base}/{field(entry, str, 'path')}" if base else field(entry, str, "path")
                walked.append((path, entry))
                if entry.get("type") == "tree":
                    pending.append((path, field(entry, str, "sha")))
        return walked

    @staticmethod
    def _remember(memo: dict[K, V], key: K, value: V, limit: int = _MEMO_LIMIT) -> V:
        if len(memo) >= limit:
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
        if data is not None and blob_id(data, blob) != blob:
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
        content = field(data, str, "content")
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
        if blob_id(raw, blob) != blob:
            raise SourceError(
                f"GitHub sent blob {blob} of {self.repository} with content of another id; retry later"
            )
        return raw

    # --- HTTP ----------------------------------------------------------------------------------------

    def _get(self, path: str, what: str, hint: str, *, params: dict[str, str] | None = None,
             ) -> dict[str, Any]:  # Any: GitHub's parsed JSON, read through `field`
        """GET `path` under the repository; the JSON object, or a SourceError about `what`."""
        response = self._request(self._prefix + path, what, params)
        if response.status_code == 200:
            try:
                data = response.json()
            except ValueError:
                data = None
            if isinstance(data, dict):
                return data
            raise SourceUnavailableError(
                f"GitHub sent an unreadable answer for {what} of {self.repository}; retry later")
        if response.status_code == 422:  # "No commit found for SHA: ...": the repository exists, the ref not
            raise SourceError(f"unknown {what} in GitHub repository {self.repository}; {hint}")
        if response.status_code == 404:
            self._check_repository()
            raise SourceError(f"{what} not found in GitHub repository {self.repository}; {hint}")
        raise failure(response, what, self.repository)

    def _request(self, url: str, what: str, params: dict[str, str] | None) -> httpx.Response:
        try:
            return self._client.get(url, params=params)
        except httpx.HTTPError as exc:
            raise SourceUnavailableError(
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
            raise failure(response, f"repository {self.repository}", self.repository)
        self._repository_checked = True
