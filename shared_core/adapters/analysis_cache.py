"""`CachedAnalyzer`: a content-addressed cache of query analyses, filled in parallel on a miss.

An analysis depends only on a file's bytes and the canonicalizer version (`content_key`), so it is
stored once under that key (`<dir>/<version>/<k[:2]>/<k>.json`, written atomically) and shared by
every commit, branch and repository that holds the same file. Misses are analyzed in worker
processes when there are enough of them to pay for the workers; results do not depend on how the
work was split, and an error is reported for the first failing file in the caller's order.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from shared_core.canonical import CANONICALIZER_VERSION, QueryAnalysis, analyze_query
from shared_core.errors import ModelError, UnsafeSqlError

PARALLEL_MIN_FILES = 48


class CachedAnalyzer:
    """A `QueryAnalyzer` with an optional on-disk cache and a process pool for large batches."""

    def __init__(self, cache_dir: Path | None, *, workers: int | None = None) -> None:
        self.cache_dir = cache_dir / CANONICALIZER_VERSION if cache_dir else None
        self.workers = workers if workers is not None else min(4, os.cpu_count() or 1)
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        assert self.cache_dir is not None
        return self.cache_dir / key[:2] / f"{key}.json"

    def analyze_many(self, files: Sequence[tuple[str, str, str]]) -> dict[str, QueryAnalysis]:
        results: dict[str, QueryAnalysis] = {}
        todo: list[tuple[str, str, str]] = []
        seen: set[str] = set()
        for key, path, text in files:
            if key in seen:
                continue
            seen.add(key)
            cached = self._read(key)
            if cached is not None:
                results[key] = cached
                self.hits += 1
            else:
                todo.append((key, path, text))
        self.misses += len(todo)
        outcomes = self._analyze(todo)
        for (key, path, _), outcome in zip(todo, outcomes, strict=False):
            if outcome[0] == "error":
                _, cls, detail, line, col = outcome
                error_type = UnsafeSqlError if cls == "UnsafeSqlError" else ModelError
                raise error_type(detail, path=path, line=line, col=col)
            analysis = QueryAnalysis.from_dict(outcome[1])
            results[key] = analysis
            self._write(key, analysis)
        return results

    def _analyze(self, files: list[tuple[str, str, str]]) -> list[tuple[Any, ...]]:
        if len(files) < PARALLEL_MIN_FILES or self.workers < 2:
            return [_analyze_one(f) for f in files]
        chunk = max(1, len(files) // (self.workers * 4))
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("fork")) as pool:
            return list(pool.map(_analyze_one, files, chunksize=chunk))

    def _read(self, key: str) -> QueryAnalysis | None:
        if self.cache_dir is None:
            return None
        try:
            return QueryAnalysis.from_dict(json.loads(self._path(key).read_text("utf-8")))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent or unreadable: analyze again and overwrite

    def _write(self, key: str, analysis: QueryAnalysis) -> None:
        if self.cache_dir is None:
            return
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(analysis.to_dict(), out, sort_keys=True, separators=(",", ":"))
            os.replace(tmp, path)
        except OSError:
            pass  # a cache that cannot be written only costs speed next time


def _analyze_one(item: tuple[str, str, str]) -> tuple[Any, ...]:
    _, path, text = item
    try:
        return ("ok", analyze_query(text, path).to_dict())
    except ModelError as exc:
        return ("error", type(exc).__name__, exc.detail, exc.line, exc.col)
