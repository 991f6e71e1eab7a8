"""The query-analysis seam of the planner: the `QueryAnalyzer` protocol and the plain in-process analyzer.

The planner, the diff and `check` turn model files into `QueryAnalysis`es through a `QueryAnalyzer`; the
cached, parallel analyzer lives in `shared_core.adapters.caches.analysis`. This module is pure, so the core
needs no import of `shared_core.ports` (which re-exports both names).
"""

from __future__ import annotations

from collections.abc import Sequence
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
        """Analyze `(key, path, text)` triples in order, each distinct key once.

        >>> found = InlineAnalyzer().analyze_many([("k", "m.sql", "SELECT id FROM {{ ref('s.orders') }}")])
        >>> found["k"].refs
        ('s.orders',)

        Raises:
            ModelError: the first file that does not parse.
            UnsafeSqlError: the first file that is not exactly one read-only query.
        """
        results: dict[str, QueryAnalysis] = {}
        for key, path, text in files:
            if key not in results:
                results[key] = analyze_query(text, path)
        return results
