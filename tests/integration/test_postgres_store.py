"""The PostgreSQL state store against the real server: migrations, tenants, the ledger, plans, CLI wiring."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import TypeVar

import pytest

from shared_core.adapters.git_writer import commit_files, init_repo
from shared_core.adapters.postgres.store import PostgresStateStore, migrations
from shared_core.cli.main import main
from shared_core.core.errors import StateError, StateUnavailableError
from shared_core.core.planning.plan_codec import load_plan
from shared_core.core.project.headers import parse_instant as t
from tests.integration.seeding import record_completed

pytestmark = pytest.mark.integration


T = TypeVar("T")


def run(coro: Coroutine[object, object, T]) -> T:
    return asyncio.run(coro)


def test_migrations_apply_once_and_are_then_a_no_op(admin_database_url: str) -> None:
    async def scenario() -> tuple[list[int], list[int], int]:
        store = PostgresStateStore(admin_database_url)
        try:
            first = await store.migrate()
            second = await store.migrate()
            return first, second, await store.schema_version()
        finally:
            await store.close()

    first, second, version = run(scenario())
    latest = migrations()[-1][0]
    assert second == [] and version == latest
    assert first in ([], list(range(1, latest + 1)))  # another test of this session may have migrated first


def test_ledger_round_trip_merges_and_is_per_tenant(database_url: str) -> None:
    async def scenario() -> tuple[dict, dict]:  # type: ignore[type-arg]
        store = PostgresStateStore(database_url)
        try:
            await store.migrate()
            for tenant in ("acme", "globex"):
                await store.ensure_tenant(tenant, tenant.title())
            await record_completed(store, "acme", "s.inc", t("2024-01-03"), t("2024-01-05"))
            await record_completed(store, "acme", "s.inc", t("2024-01-01"), t("2024-01-03"))
            await record_completed(store, "acme", "s.inc", t("2024-01-01"), t("2024-01-02"))  # overlapping rows merge
            await record_completed(store, "acme", "s.inc", t("2024-01-07"), t("2024-01-08"))
            await record_completed(store, "globex", "s.inc", t("2023-01-01"), t("2023-02-01"))
            return await store.load_ledger("acme"), await store.load_ledger("acme", ["other"])
        finally:
            await store.close()

    acme, other = run(scenario())
    assert acme == {"s.inc": [(t("2024-01-01"), t("2024-01-05")), (t("2024-01-07"), t("2024-01-08"))]}
    assert other == {}


def test_invalid_tenant_and_unreachable_server_are_clear_errors(database_url: str) -> None:
    async def bad_tenant() -> None:
        store = PostgresStateStore(database_url)
        try:
            await store.migrate()
            await store.ensure_tenant("Not Valid!", "x")
        finally:
            await store.close()

    with pytest.raises(StateError, match="invalid tenant id 'Not Valid!'"):
        run(bad_tenant())
    with pytest.raises(StateUnavailableError, match=r"state store unreachable at postgresql://u:\*\*\*@127\.0\.0\.1:1/x"):
        run(PostgresStateStore("postgresql://u:secret@127.0.0.1:1/x").pool())


def test_plan_reads_watermarks_from_the_state_store(database_url: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("IRONLAYER_DATABASE_URL", database_url)
    monkeypatch.setenv("IRONLAYER_TENANT", "local")
    assert main(["migrate"]) == 0
    latest = migrations()[-1][0]
    applied = "applied migrations " + ", ".join(str(v) for v in range(1, latest + 1)) + "\n"
    assert capsys.readouterr().out in (applied, "state store schema is up to date\n")  # other tests may migrate first
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out == "state store schema is up to date\n"

    up = ("-- name: s.up\n-- kind: FULL_REFRESH\nSELECT 1 AS d\n")
    inc = ("-- name: s.inc\n-- kind: APPEND_ONLY\n-- time_column: d\n-- start: 2024-01-01\n"
           "SELECT d FROM {{ ref('s.up') }}\n")
    repo = init_repo(tmp_path / "repo")
    first = commit_files(repo, {"models/up.sql": up, "models/inc.sql": inc}, "one", "2024-01-10T00:00:00+00:00")

    async def record() -> None:
        store = PostgresStateStore(database_url)
        try:
            await record_completed(store, "local", "s.inc", t("2024-01-01"), t("2024-01-04"))
        finally:
            await store.close()

    run(record())
    second = commit_files(repo, {"models/up.sql": up.replace("1 AS d", "2 AS d")}, "two", "2024-01-10T00:00:00+00:00")
    assert main(["plan", str(repo), first, second, "--json", "--no-cache"]) == 0
    plan = load_plan(capsys.readouterr().out, "stdout")
    assert plan.inputs.watermarks == {"s.inc": (("2024-01-01T00:00:00Z", "2024-01-04T00:00:00Z"),)}
    ledger_file = tmp_path / "w.json"
    ledger_file.write_text("{}", "utf-8")
    assert main(["plan", str(repo), first, second, "--json", "--no-cache", "--watermarks", str(ledger_file)]) == 0
    assert load_plan(capsys.readouterr().out, "stdout").inputs.watermarks == {}  # --watermarks wins
