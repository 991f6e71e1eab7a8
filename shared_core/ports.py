"""The small Protocols the pure core talks through; adapters in `shared_core.adapters` implement them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from shared_core.core.sql.canonical import QueryAnalysis, analyze_query


class QueryAnalyzer(Protocol):
    """Turns model files into `QueryAnalysis`es; may cache by content key and work in parallel."""

    def analyze_many(self, files: Sequence[tuple[str, str, str]]) -> dict[str, QueryAnalysis]:
        """Analyze `(key, path, text)` triples; returns analyses by key.

        Raises:
            ModelError: for the first file (in the given order) that fails.
        """
        ...


class InlineAnalyzer:
    """The plain analyzer: analyzes each file in this process, no cache."""

    def analyze_many(self, files: Sequence[tuple[str, str, str]]) -> dict[str, QueryAnalysis]:
        results: dict[str, QueryAnalysis] = {}
        for key, path, text in files:
            if key not in results:
                results[key] = analyze_query(text, path)
        return results


class GitSource(Protocol):
    """Reads commits and files of one repository without a checkout."""

    def resolve(self, ref: str) -> str:
        """The full commit SHA of `ref`. Raises SourceError for an unknown ref."""
        ...

    def commit_time(self, sha: str) -> datetime:
        """The commit's committer time (UTC)."""
        ...

    def read_file(self, sha: str, path: str) -> str | None:
        """The text of `path` at commit `sha`, or None when it does not exist."""
        ...

    def list_files(self, sha: str, folder: str, suffix: str) -> list[tuple[str, str]]:
        """`(path, blob_id)` of every file under `folder` ending in `suffix`, sorted by path."""
        ...

    def read_blobs(self, blob_ids: Sequence[str]) -> dict[str, bytes]:
        """The bytes of each blob, by blob id."""
        ...


class BlobStore(Protocol):
    """Byte strings under relative, slash-separated keys (plans, advice, evidence, cached git blobs).

    Keys look like `plans/<plan_id>.json` or `git-blobs/<sha>`; a key with `..`, an empty part or a
    leading `/` is refused with StateError. Every method raises StateUnavailableError when the store
    cannot be reached (safe to retry).
    """

    def get(self, key: str) -> bytes | None:
        """The bytes stored under `key`, or None when there are none."""
        ...

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        """Store `data` under `key`, replacing what was there; readers see the old bytes or the new, never a mix."""
        ...

    def exists(self, key: str) -> bool:
        """Whether something is stored under `key`."""
        ...

    def health(self) -> None:
        """Return when the store is usable; raise StateUnavailableError (one line, no secrets) otherwise."""
        ...
