"""`CachedAnalyzer`: a content-addressed cache of query analyses, filled in parallel on a miss.

An analysis depends only on a file's bytes and the canonicalizer version (`content_key`), so it is
stored once under that key (`<dir>/<version>/<k[:2]>/<k>.json`, written atomically) and shared by
every commit, branch and repository that holds the same file. Misses are analyzed in worker
processes when there are enough of them to pay for the workers (the workers also write the cache
files); results do not depend on how the work was split, and an error is reported for the first
failing file in the caller's order.

A caller that knows early which files it will ask for can `prefetch` them: their analysis starts in
the background and `analyze_many` later collects it. `start_workers` forks the worker processes
ahead of time (they import the SQL parser while the caller does other work), and `close` stops them.
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from shared_core.core.errors import ModelError, UnsafeSqlError
from shared_core.core.sql.canonical import CANONICALIZER_VERSION, QueryAnalysis, analyze_query

PARALLEL_MIN_FILES = 48
CHUNK_MAX_FILES = 64  # files per task: small enough that the workers finish together

# Any: an outcome crosses the worker-process boundary as plain data:
# ("ok", the analysis' JSON dict) or ("error", class name, detail, line, col)
Outcome = tuple[Any, ...]


class CachedAnalyzer:
    """A `QueryAnalyzer` with an optional on-disk cache and a process pool for large batches."""

    parallel_min_files = PARALLEL_MIN_FILES

    def __init__(self, cache_dir: Path | None, *, workers: int | None = None) -> None:
        self.cache_dir = cache_dir / CANONICALIZER_VERSION if cache_dir else None
        self.workers = workers if workers is not None else min(4, os.cpu_count() or 1)
        self.hits = 0
        self.misses = 0
        self._pool: ProcessPoolExecutor | None = None
        self._pending: dict[str, tuple[Future[list[Outcome]], int]] = {}  # key -> (task, index in task)
        self._done: dict[str, Outcome] = {}  # outcomes collected from background tasks

    def is_cold(self) -> bool:
        """Whether the cache holds nothing yet (so a plan will likely analyze many files)."""
        if self.cache_dir is None:
            return True
        try:
            with os.scandir(self.cache_dir) as entries:
                return next(entries, None) is None
        except OSError:
            return True

    @property
    def has_workers(self) -> bool:
        """Whether worker processes are running (so no later call forks this process again)."""
        return self._pool is not None

    def start_workers(self) -> None:
        """Fork the worker processes now and have them load the SQL parser in the background."""
        if self.workers < 2 or self._pool is not None:
            return
        self._pool = _new_pool(self.workers)
        for _ in range(self.workers):
            self._pool.submit(_warm_up)

    def close(self) -> None:
        """Stop the worker processes (work that nobody asked for yet is dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending.clear()

    def prefetch(self, files: Sequence[tuple[str, str, str]]) -> None:
        """Start analyzing, in the background, those of `files` that are not cached.

        Only large batches are worth starting workers for (and only with several workers); smaller
        ones are left to `analyze_many`, unless the workers run already. Errors are kept and raised
        by `analyze_many` for the files that ask for them.
        """
        if self.workers < 2:
            return
        todo = []
        seen: set[str] = set()
        for item in files:
            key = item[0]
            if key in seen or key in self._pending or key in self._done:
                continue
            seen.add(key)
            if not self._exists(key):
                todo.append(item)
        if not todo or (len(todo) < PARALLEL_MIN_FILES and self._pool is None):
            return
        if self._pool is None:
            self._pool = _new_pool(self.workers)
        size = _chunk_size(len(todo), self.workers)
        for start in range(0, len(todo), size):
            chunk = todo[start:start + size]
            future = self._pool.submit(_analyze_chunk, self._cache_text(), chunk)
            for index, (key, _, _) in enumerate(chunk):
                self._pending[key] = (future, index)

    def analyze_many(self, files: Sequence[tuple[str, str, str]]) -> dict[str, QueryAnalysis]:
        results: dict[str, QueryAnalysis] = {}
        outcomes: dict[str, Outcome] = {}
        order: list[tuple[str, str]] = []  # (key, path) of each distinct key, in the caller's order
        seen: set[str] = set()
        todo: list[tuple[str, str, str]] = []
        for key, path, text in files:
            if key in seen:
                continue
            seen.add(key)
            order.append((key, path))
            outcome = self._collect(key)
            if outcome is not None:
                outcomes[key] = outcome
                self.misses += 1
                continue
            cached = self._read(key)
            if cached is not None:
                results[key] = cached
                self.hits += 1
            else:
                todo.append((key, path, text))
        self.misses += len(todo)
        outcomes.update(zip((key for key, _, _ in todo), self._analyze(todo), strict=True))
        for key, path in order:
            if key in results:
                continue
            outcome = outcomes[key]
            if outcome[0] == "error":
                _, cls, detail, line, col = outcome
                error_type = UnsafeSqlError if cls == "UnsafeSqlError" else ModelError
                raise error_type(detail, path=path, line=line, col=col)
            results[key] = QueryAnalysis.from_dict(outcome[1])
        return results

    def _collect(self, key: str) -> Outcome | None:
        """The outcome of a background analysis of `key` (waiting for it), or None if there is none."""
        if key in self._done:
            return self._done[key]
        task = self._pending.pop(key, None)
        if task is None:
            return None
        future, index = task
        outcome = future.result()[index]
        self._done[key] = outcome
        return outcome

    def _analyze(self, files: list[tuple[str, str, str]]) -> list[Outcome]:
        if self._pool is not None and files:  # running workers have the parser loaded: use them for any batch
            size = _chunk_size(len(files), self.workers)
            chunks = [files[start:start + size] for start in range(0, len(files), size)]
            futures = [self._pool.submit(_analyze_chunk, self._cache_text(), chunk) for chunk in chunks]
            return [outcome for future in futures for outcome in future.result()]
        if len(files) < PARALLEL_MIN_FILES or self.workers < 2:
            return [_analyze_one(self._cache_text(), f) for f in files]
        size = _chunk_size(len(files), self.workers)
        chunks = [files[start:start + size] for start in range(0, len(files), size)]
        with _new_pool(self.workers) as pool:
            done = pool.map(_analyze_chunk, [self._cache_text()] * len(chunks), chunks)
            return [outcome for chunk in done for outcome in chunk]

    def _cache_text(self) -> str | None:
        return str(self.cache_dir) if self.cache_dir is not None else None

    def _exists(self, key: str) -> bool:
        return self.cache_dir is not None and os.path.exists(_cache_file(str(self.cache_dir), key))

    def _read(self, key: str) -> QueryAnalysis | None:
        if self.cache_dir is None:
            return None
        try:
            with open(_cache_file(str(self.cache_dir), key), "rb") as handle:
                return QueryAnalysis.from_dict(json.loads(handle.read()))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent or unreadable: analyze again and overwrite


def _chunk_size(count: int, workers: int) -> int:
    return max(1, min(CHUNK_MAX_FILES, -(-count // (workers * 4))))


def _cache_file(cache_dir: str, key: str) -> str:
    return os.path.join(cache_dir, key[:2], f"{key}.json")


def _write(cache_dir: str, key: str, data: dict[str, Any]) -> None:  # Any: the analysis' JSON form
    """Store one analysis atomically (a temporary file renamed into place)."""
    path = _cache_file(cache_dir, key)
    tmp = f"{path}.{os.getpid()}.tmp"
    payload = json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")
    try:
        try:
            handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(handle, payload)
        finally:
            os.close(handle)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs speed next time


def _new_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork"), initializer=_init_worker)


def _init_worker() -> None:
    """Set up a forked worker's garbage collector.

    Everything inherited from the parent is frozen (never scanned, so its pages stay shared instead
    of being copied on the first collection), and collection is on even if the parent turned it off:
    parse trees are cyclic, and a worker analyzes thousands of them.
    """
    gc.freeze()
    gc.enable()


_settled = False  # in a worker: whether the objects of the loaded parser are frozen yet


def _warm_up() -> None:
    """Import and exercise the SQL parser, so that a worker's first real task does not pay for it."""
    global _settled
    analyze_query("SELECT a FROM b", "warm-up.sql")
    gc.freeze()  # see _analyze_chunk
    _settled = True


def _analyze_chunk(cache_dir: str | None, items: list[tuple[str, str, str]]) -> list[Outcome]:
    global _settled
    outcomes = [_analyze_one(cache_dir, item) for item in items]
    if not _settled:  # the parser's modules are loaded now: keep the collector from rescanning them
        gc.freeze()
        _settled = True
    return outcomes


def _analyze_one(cache_dir: str | None, item: tuple[str, str, str]) -> Outcome:
    key, path, text = item
    try:
        data = analyze_query(text, path).to_dict()
    except ModelError as exc:
        return ("error", type(exc).__name__, exc.detail, exc.line, exc.col)
    if cache_dir is not None:
        _write(cache_dir, key, data)
    return ("ok", data)
