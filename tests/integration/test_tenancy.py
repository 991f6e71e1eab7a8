"""Row-level security on the real server: two tenants x every table x SELECT/INSERT/UPDATE/DELETE.

The application role (`ironlayer_app`) must see and change only the rows of the tenant its transaction
binds, see nothing when it binds none, never append to another tenant, never rewrite the audit log, and
be neither superuser, nor owner, nor BYPASSRLS.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

pytestmark = pytest.mark.integration

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def rows(tenant: str, plan_id: str, run_id: Callable[[str], int]) -> dict[str, dict[str, Any]]:
    """One valid row per table for `tenant` (run_id: the tenant's run, for test_results)."""
    return {
        "tenants": {"tenant_id": tenant, "name": tenant},
        "models": {"tenant_id": tenant, "name": "s.m", "kind": "FULL_REFRESH", "materialization": "TABLE",
                   "current_hash": "h"},
        "model_versions": {"tenant_id": tenant, "name": "s.m", "content_hash": "h", "canonical_sql": "SELECT 1",
                           "header": "{}"},
        "plans": {"tenant_id": tenant, "plan_id": plan_id, "base": "b", "target": "t", "as_of": NOW,
                  "inputs_hash": "i", "plan_json": "{}"},
        "runs": {"tenant_id": tenant, "plan_id": plan_id, "step_id": "s", "model": "s.m"},
        "watermarks": {"tenant_id": tenant, "model": "s.m", "range_start": NOW, "range_end": NOW + timedelta(days=1)},
        "range_locks": {"tenant_id": tenant, "model": "s.m", "holder": "h", "expires_at": NOW},
        "test_results": {"tenant_id": tenant, "run_id": run_id(tenant), "test": "not_null(a)@BLOCK",
                         "severity": "BLOCK", "passed": True},
        "telemetry": {"tenant_id": tenant, "metric": "m", "value": 1.0},
        "webhook_deliveries": {"tenant_id": tenant, "delivery_id": "d", "event": "push"},
        "jobs": {"tenant_id": tenant, "instance_id": "i", "kind": "push", "repository": "o/r", "target": "t"},
        "used_tokens": {"tenant_id": tenant, "jti": "j", "plan_id": plan_id, "action": "approve", "subject": "s"},
        "audit_log": {"tenant_id": tenant, "seq": 1, "at": NOW, "actor": "a", "role": "admin", "action": "login",
                      "target": "", "details": "{}", "prev_hash": "0" * 64, "hash": "a" * 64},
        "credentials": {"tenant_id": tenant, "name": "github", "ciphertext": "x"},
        "revoked_tokens": {"tenant_id": tenant, "jti": "j", "expires_at": NOW},
        "rate_limits": {"tenant_id": tenant, "key": "k", "window_start": NOW, "count": 1, "previous_count": 0},
        "repository_tenants": {"tenant_id": tenant, "repository": f"org/{tenant}", "installation_id": 1},
        "repository_settings": {"tenant_id": tenant, "repository": f"org/{tenant}", "source_kind": "github",
                                "source": f"org/{tenant}", "engine": "duckdb", "warehouse": "w.duckdb",
                                "blob_prefix": f"tenants/{tenant}/", "branches": ["main"]},
        "branch_pushes": {"tenant_id": tenant, "repository": "o/r", "branch": "main", "sequence": 1,
                          "before_sha": "a" * 40, "after_sha": "b" * 40},
        "identities": {"tenant_id": tenant, "provider": "api", "subject": "ann", "role": "operator",
                       "github_login": "ann"},
        "plan_bases": {"tenant_id": tenant, "plan_id": plan_id, "document": "{}", "base_hash": "b" * 64},
        "step_telemetry": {"tenant_id": tenant, "record_key": "step:k", "kind": "step", "plan_id": plan_id,
                           "step_id": "s", "model": "s.m", "engine": "duckdb", "status": "success", "seconds": 1.0,
                           "engine_seconds": 1.0},
        "usage_events": {"tenant_id": tenant, "identifier": f"il_{tenant}", "kind": "plan_generated", "quantity": 1},
        "stripe_customers": {"tenant_id": tenant, "customer_id": f"cus_{tenant}", "mapped_by": "command"},
        "stripe_subscriptions": {"tenant_id": tenant, "subscription_id": f"sub_{tenant}", "customer_id": f"cus_{tenant}",
                                 "status": "active", "tier": "team", "created": NOW, "event_created": NOW},
        "stripe_events": {"tenant_id": tenant, "event_id": f"evt_{tenant}", "type": "invoice.paid", "created": NOW,
                          "outcome": ""},
        "execution_slots": {"tenant_id": tenant, "instance_id": "i"},
    }


TABLES = list(rows("x", "0" * 64, lambda _: 0))


def insert_sql(table: str, row: dict[str, Any]) -> tuple[str, list[Any]]:
    columns = list(row)
    casts = ["::jsonb" if c == "header" else "" for c in columns]
    values = ", ".join(f"${i + 1}{cast}" for i, cast in enumerate(casts))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values})", list(row.values())


@pytest.fixture(scope="module")
def tenants(admin_database_url: str) -> dict[str, Any]:
    """Tenants A and B with one row in every table, written by the owner."""
    a, b = f"a{uuid.uuid4().hex[:10]}", f"b{uuid.uuid4().hex[:10]}"
    plans = {a: uuid.uuid4().hex * 2, b: uuid.uuid4().hex * 2}
    runs: dict[str, int] = {}

    async def seed() -> None:
        conn = await asyncpg.connect(admin_database_url)
        try:
            for tenant in (a, b):
                table_rows = rows(tenant, plans[tenant], lambda t: runs.get(t, 0))
                for table in TABLES:
                    if table == "test_results":
                        continue
                    sql, args = insert_sql(table, table_rows[table])
                    if table == "runs":
                        runs[tenant] = await conn.fetchval(sql + " RETURNING run_id", *args)
                    else:
                        await conn.execute(sql, *args)
                sql, args = insert_sql("test_results", rows(tenant, plans[tenant], lambda t: runs[t])["test_results"])
                await conn.execute(sql, *args)
        finally:
            await conn.close()

    asyncio.run(seed())
    return {"a": a, "b": b, "plans": plans, "runs": runs}


async def as_app(url: str, tenant: str | None, sql: str, *args: Any) -> Any:
    """Run one statement as the application role, in a transaction bound to `tenant` (or to none)."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            if tenant is not None:
                await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant)
            if sql.lstrip().upper().startswith("SELECT"):
                return await conn.fetch(sql, *args)
            return await conn.execute(sql, *args)
    finally:
        await conn.close()


@pytest.mark.parametrize("table", TABLES)
def test_select_sees_only_the_bound_tenant(database_url: str, tenants: dict[str, Any], table: str) -> None:
    seen = asyncio.run(as_app(database_url, tenants["a"], f"SELECT tenant_id FROM {table}"))
    if table in ("repository_tenants", "stripe_customers"):  # routing maps are readable; writes stay tenant-bound
        assert {tenants["a"], tenants["b"]} <= {r["tenant_id"] for r in seen}
        return
    assert [r["tenant_id"] for r in seen] == [tenants["a"]]
    assert asyncio.run(as_app(database_url, None, f"SELECT tenant_id FROM {table}")) == []  # no tenant, no rows


@pytest.mark.parametrize("table", TABLES)
def test_insert_for_another_tenant_is_refused(database_url: str, tenants: dict[str, Any], table: str) -> None:
    b = tenants["b"]
    row = rows(b, tenants["plans"][b], lambda t: tenants["runs"][t])[table]
    row = {**row, **{k: v for k, v in {"name": "other", "delivery_id": "d2", "instance_id": "i2", "jti": "j2",
                                        "key": "k2", "seq": 2, "repository": f"org/x{uuid.uuid4().hex[:6]}",
                                        "content_hash": "h2", "test": "t2"}.items() if k in row}}
    if table == "tenants":
        row["tenant_id"] = f"c{uuid.uuid4().hex[:10]}"
    sql, args = insert_sql(table, row)
    with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
        asyncio.run(as_app(database_url, tenants["a"], sql, *args))
    assert "row-level security" in str(refused.value) or "permission denied" in str(refused.value)


@pytest.mark.parametrize("table", TABLES)
def test_update_and_delete_never_reach_another_tenant(database_url: str, admin_database_url: str,
                                                      tenants: dict[str, Any], table: str) -> None:
    a, b = tenants["a"], tenants["b"]
    if table in ("audit_log", "stripe_events"):  # append-only for the application (an event's outcome aside)
        for sql in (f"UPDATE {table} SET tenant_id = tenant_id WHERE tenant_id = $1",
                    f"DELETE FROM {table} WHERE tenant_id = $1"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                asyncio.run(as_app(database_url, a, sql, a))
        return
    assert asyncio.run(as_app(database_url, a, f"UPDATE {table} SET tenant_id = tenant_id WHERE tenant_id = $1",
                              b)) == "UPDATE 0"
    assert asyncio.run(as_app(database_url, a, f"DELETE FROM {table} WHERE tenant_id = $1", b)) == "DELETE 0"
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        asyncio.run(as_app(database_url, a, f"UPDATE {table} SET tenant_id = $2 WHERE tenant_id = $1", a, b))

    async def b_rows() -> int:
        conn = await asyncpg.connect(admin_database_url)
        try:
            return int(await conn.fetchval(f"SELECT count(*) FROM {table} WHERE tenant_id = $1", b))
        finally:
            await conn.close()

    assert asyncio.run(b_rows()) == 1


def test_the_application_role_is_neither_superuser_nor_owner_nor_bypassrls(database_url: str) -> None:
    async def facts() -> Any:
        conn = await asyncpg.connect(database_url)
        try:
            role = await conn.fetchrow("SELECT current_user AS name, rolsuper, rolbypassrls, rolcreaterole, "
                                       "rolcreatedb FROM pg_roles WHERE rolname = current_user")
            owned = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
                                        "AND tableowner = current_user")
            unprotected = await conn.fetch(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'schema_migrations' "
                "AND NOT (c.relrowsecurity AND c.relforcerowsecurity)")
            return role, owned, [r["relname"] for r in unprotected]
        finally:
            await conn.close()

    role, owned, unprotected = asyncio.run(facts())
    assert role["name"] == "ironlayer_app"
    assert not (role["rolsuper"] or role["rolbypassrls"] or role["rolcreaterole"] or role["rolcreatedb"])
    assert owned == 0
    assert unprotected == []  # every table but the migration ledger has RLS enabled and forced
