"""The adapters implement the Protocols of `shared_core.ports`, method by method and parameter by parameter.

mypy proves it statically (`_as_ports` below, and `_IMPLEMENTS_PORTS` in the store's module); these tests
prove it at run time from the signatures, so a renamed method, a parameter added on one side only, a
changed default, or a store method that stops being a coroutine fails the suite too. For the state store
the annotations must read exactly alike: its ports are its contract.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any, Protocol

import pytest

from shared_core.adapters.blobs import AzureBlobStore, LocalBlobStore
from shared_core.adapters.caches.analysis import CachedAnalyzer
from shared_core.adapters.engines import duckdb as engine
from shared_core.adapters.engines.databricks import DatabricksExecutor
from shared_core.adapters.engines.duckdb import BatchResult, DuckDBExecutor
from shared_core.adapters.engines.results import StatementStats
from shared_core.adapters.github.source import GitHubSource
from shared_core.adapters.github.status import GitHubStatusPublisher, LoggedStatusPublisher
from shared_core.adapters.local_git import LocalGitSource
from shared_core.adapters.postgres.store import PostgresStateStore
from shared_core.core.state import AuditRow, JobRow, PlanSummaryRow, RunRow
from shared_core.ports import (
    BatchOutcome,
    BillingStore,
    BlobStore,
    Executor,
    GitSource,
    InlineAnalyzer,
    JobStore,
    LedgerStore,
    PlanStore,
    QualityOutcome,
    QueryAnalyzer,
    RepositoryStore,
    RunStore,
    SecurityStore,
    StatementOutcome,
    StateStore,
    StatusPublisher,
    TelemetryStore,
)

STORE_PORTS = [LedgerStore, PlanStore, RunStore, JobStore, SecurityStore, RepositoryStore, TelemetryStore, BillingStore,
               StateStore]


def members(protocol: type) -> dict[str, Any]:
    """The public methods and properties a Protocol declares, its bases' included."""
    found: dict[str, Any] = {}
    for base in reversed(protocol.__mro__):
        if base in (object, Protocol) or not getattr(base, "_is_protocol", False):
            continue
        for name, value in vars(base).items():
            if not name.startswith("_") and (inspect.isfunction(value) or isinstance(value, property)):
                found[name] = value
    return found


def signature_mismatches(protocol: type, implementation: type, *, exact_annotations: bool) -> list[str]:
    """How `implementation` departs from `protocol`: missing members, other parameters, sync vs async."""
    problems = []
    for name, declared in members(protocol).items():
        actual = inspect.getattr_static(implementation, name, None)
        if actual is None:
            problems.append(f"{name}: missing")
            continue
        if isinstance(declared, property):
            continue  # attributes and properties: checked on instances
        if inspect.iscoroutinefunction(declared) != inspect.iscoroutinefunction(actual):
            problems.append(f"{name}: async on one side only")
        want, got = inspect.signature(declared), inspect.signature(actual)
        shape = [(p.name, p.kind, p.default) for p in want.parameters.values()]
        if shape != [(p.name, p.kind, p.default) for p in got.parameters.values()]:
            problems.append(f"{name}: parameters {want} != {got}")
        elif exact_annotations and want != got:
            problems.append(f"{name}: annotations {want} != {got}")
    return problems


@pytest.mark.parametrize("port", STORE_PORTS, ids=lambda p: p.__name__)
def test_the_postgres_store_implements_every_store_port_exactly(port: type) -> None:
    assert signature_mismatches(port, PostgresStateStore, exact_annotations=True) == []


def test_the_store_ports_split_the_store_without_overlap_or_leftovers() -> None:
    by_concern = [set(members(port)) for port in STORE_PORTS[:-1]]
    assert sum(len(names) for names in by_concern) == len(set().union(*by_concern))  # each method in one port
    public = {name for name, value in inspect.getmembers(PostgresStateStore)
              if not name.startswith("_") and inspect.iscoroutinefunction(value)}
    owner_only = {"migrate", "schema_version", "pool"}  # the owner role's, and the pool for benchmarks
    assert public - owner_only == set(members(StateStore))


@pytest.mark.parametrize(("port", "implementation"), [
    (Executor, DuckDBExecutor),
    (Executor, DatabricksExecutor),
    (StatusPublisher, GitHubStatusPublisher),
    (StatusPublisher, LoggedStatusPublisher),
    (QueryAnalyzer, InlineAnalyzer),
    (QueryAnalyzer, CachedAnalyzer),
    (GitSource, LocalGitSource),
    (GitSource, GitHubSource),
    (BlobStore, LocalBlobStore),
    (BlobStore, AzureBlobStore),
], ids=lambda value: value.__name__)
def test_the_other_adapters_implement_their_ports(port: type, implementation: type) -> None:
    assert signature_mismatches(port, implementation, exact_annotations=False) == []


def test_a_batch_result_carries_what_the_engine_port_promises() -> None:
    tests = (engine.TestOutcome("not_null(id)@BLOCK", "BLOCK", 0), engine.TestOutcome("unique(id)@WARN", "WARN", 2))
    result = BatchResult(3, tests, True, (StatementStats("publish", 0.5, 3, None, "q-1"),))
    assert all(hasattr(result, name) for name in members(BatchOutcome))
    assert all(hasattr(test, name) for test in result.tests for name in members(QualityOutcome))
    assert all(hasattr(stat, name) for stat in result.statements for name in members(StatementOutcome))
    assert BatchResult(3, tests, True).statements == ()  # engines that report nothing return none
    assert [(t.test, t.passed, t.failing_rows) for t in result.tests] == [
        ("not_null(id)@BLOCK", True, 0), ("unique(id)@WARN", False, 2)]


def _as_ports(store: PostgresStateStore, executor: DuckDBExecutor, github: GitHubStatusPublisher,
              logged: LoggedStatusPublisher) -> tuple[StateStore, Executor, StatusPublisher, StatusPublisher]:
    """Typed as the ports: mypy refuses this function if an adapter drifts from its port."""
    return store, executor, github, logged


def test_real_adapters_are_accepted_where_their_ports_are_expected(tmp_path: Path) -> None:
    executor = DuckDBExecutor(tmp_path / "w.duckdb")
    github = GitHubStatusPublisher("octo/repo", token="t")
    try:
        ports = _as_ports(PostgresStateStore("postgresql://ironlayer_app@127.0.0.1:1/x"), executor, github,
                          LoggedStatusPublisher())
        assert [type(p).__name__ for p in ports] == [
            "PostgresStateStore", "DuckDBExecutor", "GitHubStatusPublisher", "LoggedStatusPublisher"]
    finally:
        executor.close()


@pytest.mark.parametrize("row", [PlanSummaryRow, RunRow, JobRow, AuditRow], ids=lambda r: r.__name__)
def test_rows_are_total_typed_dicts(row: type) -> None:
    assert row.__required_keys__ == frozenset(row.__annotations__)  # type: ignore[attr-defined]
    assert not row.__optional_keys__  # type: ignore[attr-defined]


def test_the_core_imports_no_port_and_no_adapter_at_run_time() -> None:
    core = sorted(
        ".".join(path.with_suffix("").parts)
        for path in Path("shared_core").glob("core/**/*.py") if path.name != "__init__.py"
    )
    probe = (
        f"import importlib, sys\nfor name in {core!r}:\n    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m == 'shared_core.ports' or m.startswith('shared_core.adapters')"
        " or m in ('asyncpg', 'duckdb', 'httpx')))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert "shared_core.core.sql.analysis" in core and "shared_core.core.state" in core
    assert result.stdout.strip() == "[]"
