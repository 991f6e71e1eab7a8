"""The small Protocols the pure core talks through; adapters in `shared_core.adapters` implement them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from shared_core.core.project.models import Model
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


class BatchAnalyzer(QueryAnalyzer, Protocol):
    """A `QueryAnalyzer` that can start its workers early and analyze files before the planner asks."""

    parallel_min_files: int  # below this many files to analyze, starting workers does not pay

    @property
    def has_workers(self) -> bool:
        """Whether worker processes are running."""
        ...

    def is_cold(self) -> bool:
        """Whether nothing is cached yet (so a plan will likely analyze many files)."""
        ...

    def start_workers(self) -> None:
        """Start the worker processes now (they load the SQL parser while the caller does other work)."""
        ...

    def prefetch(self, files: Sequence[tuple[str, str, str]]) -> None:
        """Start analyzing `(key, path, text)` triples in the background; `analyze_many` collects them."""
        ...

    def close(self) -> None:
        """Stop the worker processes."""
        ...


class Executor(Protocol):
    """An engine adapter (DuckDB now, Databricks later): runs one batch of a model as one transaction."""

    def run_batch(
        self, model: Model, *, start: datetime | None, end: datetime | None, reset: bool,
        marker: tuple[str, str] | None = None,
    ) -> Any:
        """Run one batch; returns a result with `rows_written` and `tests`. Raises CoreError when it fails."""
        ...

    def committed_batches(self, plan_id: str, step_id: str) -> dict[datetime | None, int]:
        """Rows written by each batch of the step that committed in the warehouse, by batch start."""
        ...

    def committed_plan_batches(self, plan_id: str) -> dict[str, dict[datetime | None, int]]:
        """`committed_batches` of every step of the plan, by step ID."""
        ...

    def close(self) -> None:
        """Release the engine's connection."""
        ...


class StatusPublisher(Protocol):
    """Commit statuses on the pushed commit (GitHub, or the log in local development)."""

    def publish(self, sha: str, state: str, description: str, target_url: str | None = None) -> None:
        """Set the status of `sha`. Raises SourceError when it cannot be set."""
        ...


class Orchestrations(Protocol):
    """Starts, inspects and stops durable job orchestrations (the Durable Functions client)."""

    async def start_new(self, orchestration_function_name: str, instance_id: str | None = None,
                        client_input: Any | None = None) -> str:
        """Start the orchestration under `instance_id` with `client_input`; returns the instance ID."""
        ...

    async def get_status(self, instance_id: str) -> Any:
        """The instance's status; its `runtime_status` is None when no such instance exists."""
        ...

    async def terminate(self, instance_id: str, reason: str) -> None:
        """Stop a running instance."""
        ...
