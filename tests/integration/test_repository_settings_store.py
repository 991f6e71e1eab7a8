"""Repository settings on the real server, as the application role: the store methods, row-level security between
tenants, the table's own rules, and the tenancy service's onboarding and resolution over them."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from cryptography.fernet import Fernet

from shared_core.adapters.postgres.store import PostgresStateStore
from shared_core.core.errors import (
    ConflictError,
    NotOnboardedError,
    RepositorySettingsError,
    SettingsError,
    StateError,
)
from shared_core.core.repository_settings import repository_settings
from shared_core.services import tenancy
from shared_core.services.credentials import credential_cipher, set_credential
from tests.pg import with_store

pytestmark = pytest.mark.integration
T = TypeVar("T")
KEY = Fernet.generate_key().decode()


def names() -> tuple[str, str, str, str]:
    a, b = f"a{uuid.uuid4().hex[:10]}", f"b{uuid.uuid4().hex[:10]}"
    return a, b, f"acme/{a}", f"bolt/{b}"


async def two_tenants(store: PostgresStateStore, a: str, b: str, repo_a: str, repo_b: str) -> None:
    """A and B onboarded through the service, each with a GitHub token credential named `github`."""
    for tenant, repository in ((a, repo_a), (b, repo_b)):
        settings = repository_settings(tenant, repository, production=False, github_token_credential="github",
                                       warehouse=f"{tenant}.duckdb", branches=["main", "release"])
        await tenancy.onboard_tenant(store, settings, name=tenant.upper(), actor="ops", role="admin")


def test_settings_round_trip_and_are_replaced_whole(database_url: str) -> None:
    a, b, repo_a, repo_b = names()

    async def scenario(store: PostgresStateStore) -> Any:
        await two_tenants(store, a, b, repo_a, repo_b)
        first = await store.repository_settings(a, repo_a.upper())  # any case finds it
        await store.set_repository_settings(a, repository_settings(a, repo_a, production=False, engine="databricks",
                                                                   databricks_host="adb-1.2.azuredatabricks.net",
                                                                   databricks_http_path="/sql/1.0/warehouses/x",
                                                                   databricks_token_credential="dbx").fields())
        return first, await store.repository_settings(a, repo_a), await store.list_repository_settings(a)

    first, second, listed = with_store(database_url, scenario)
    assert first is not None and second is not None
    assert {k: v for k, v in first.items() if k != "updated_at"} == {
        "tenant_id": a, "repository": repo_a, "source_kind": "github", "source": repo_a,
        "github_token_credential": "github", "engine": "duckdb", "warehouse": f"{a}.duckdb", "databricks_host": None,
        "databricks_http_path": None, "databricks_catalog": None, "databricks_token_credential": None,
        "blob_prefix": f"tenants/{a}/", "branches": ["main", "release"], "status_repository": repo_a}
    assert (second["engine"], second["warehouse"], second["github_token_credential"]) == ("databricks", None, None)
    assert second["databricks_token_credential"] == "dbx" and second["updated_at"] >= first["updated_at"]
    assert [row["repository"] for row in listed] == [repo_a]


def test_tenant_b_can_neither_read_nor_write_tenant_a_settings(database_url: str, admin_database_url: str) -> None:
    a, b, repo_a, repo_b = names()

    async def scenario(store: PostgresStateStore) -> dict[str, Any]:
        await two_tenants(store, a, b, repo_a, repo_b)
        seen: dict[str, Any] = {
            "b_reads_a": await store.repository_settings(b, repo_a),
            "b_lists": [row["repository"] for row in await store.list_repository_settings(b)],
            "routing": sorted(r for r, _ in await store.repository_mappings() if r in (repo_a, repo_b)),
        }
        with pytest.raises(StateError, match=f"not mapped to tenant {b}"):  # A's repository, B's settings
            await store.set_repository_settings(b, repository_settings(b, repo_a, production=False).fields())
        with pytest.raises(StateError, match="mapped to another tenant"):
            await store.map_repository(b, repo_a)
        with pytest.raises(StateError, match="not mapped to tenant"):  # nobody's repository
            await store.set_repository_settings(b, repository_settings(b, "nobody/x", production=False).fields())
        return seen

    seen = with_store(database_url, scenario)
    assert seen == {"b_reads_a": None, "b_lists": [repo_b], "routing": sorted([repo_a, repo_b])}

    async def raw(tenant: str | None) -> list[Any]:
        conn = await asyncpg.connect(database_url)
        try:
            async with conn.transaction():
                if tenant is not None:
                    await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant)
                return list(await conn.fetch("SELECT tenant_id, repository FROM repository_settings "
                                             "WHERE repository IN ($1, $2)", repo_a, repo_b))
        finally:
            await conn.close()

    assert [tuple(r) for r in asyncio.run(raw(b))] == [(b, repo_b)]
    assert asyncio.run(raw(None)) == []  # no tenant bound, no row

    async def owner_view() -> list[Any]:
        conn = await asyncpg.connect(admin_database_url)
        try:
            return list(await conn.fetch("SELECT tenant_id, source FROM repository_settings WHERE repository = $1",
                                         repo_a))
        finally:
            await conn.close()

    assert [tuple(r) for r in asyncio.run(owner_view())] == [(a, repo_a)]  # A's row was never changed


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("blob_prefix", "tenants/{other}/"),  # another tenant's blobs
        ("blob_prefix", "tenants/{tenant}/../{other}/"),
        ("blob_prefix", "plans/"),
        ("branches", []),
        ("engine", "sqlite"),
        ("github_token_credential", "Bad Name"),
    ],
)
def test_the_table_refuses_what_the_service_would(database_url: str, column: str, value: Any) -> None:
    a, b, repo_a, repo_b = names()

    async def scenario(store: PostgresStateStore) -> None:
        await two_tenants(store, a, b, repo_a, repo_b)
        fields = repository_settings(a, repo_a, production=False).fields()
        bad = value.format(tenant=a, other=b) if isinstance(value, str) else value
        with pytest.raises(StateError, match="refused by the state store"):
            await store.set_repository_settings(a, {**fields, column: bad})  # type: ignore[misc]  # a hostile row

    with_store(database_url, scenario)


def test_a_tenant_id_with_an_underscore_cannot_reach_a_lookalike_prefix(database_url: str) -> None:
    tenant = f"x_{uuid.uuid4().hex[:8]}"
    lookalike = tenant.replace("_", "y")  # `_` is a LIKE wildcard: a prefix rule written with LIKE would let it in

    async def scenario(store: PostgresStateStore) -> None:
        settings = repository_settings(tenant, f"us/{tenant}", production=False)
        await tenancy.onboard_tenant(store, settings, name="x", actor="ops", role="admin")
        with pytest.raises(StateError, match="refused by the state store"):
            await store.set_repository_settings(tenant, {**settings.fields(), "blob_prefix": f"tenants/{lookalike}/"})

    with_store(database_url, scenario)


def test_credentials_are_read_back_for_their_tenant_only(database_url: str) -> None:
    a, b, repo_a, repo_b = names()

    async def scenario(store: PostgresStateStore) -> tuple[str | None, str | None, str | None]:
        await two_tenants(store, a, b, repo_a, repo_b)
        await store.set_credential(a, "github", "ciphertext-of-a")
        return await store.get_credential(a, "github"), await store.get_credential(b, "github"), \
            await store.get_credential(a, "other")

    assert with_store(database_url, scenario) == ("ciphertext-of-a", None, None)


def deployment(tmp_path: Path, *, production: bool = False, tenant: str = "ops", repository: str = "ops/models",
               keys: str = KEY) -> tenancy.Deployment:
    defaults = None if production else tenancy.DevelopmentDefaults(
        tenant_id=tenant, repository=repository, local_repo="", github_token="ghp_" + "d" * 36,
        warehouse=tmp_path / "dev.duckdb")
    return tenancy.Deployment(production=production, warehouse_root=tmp_path / "warehouses", credential_keys=keys,
                              defaults=defaults)


def test_resources_resolve_from_the_job_tenant_and_repository_only(database_url: str, tmp_path: Path) -> None:
    a, b, repo_a, repo_b = names()
    dev = deployment(tmp_path)

    async def scenario(store: PostgresStateStore) -> dict[str, Any]:
        await two_tenants(store, a, b, repo_a, repo_b)
        cipher = credential_cipher(KEY)
        for tenant, value in ((a, "ghp_" + "a" * 36), (b, "ghp_" + "b" * 36)):
            await set_credential(store, tenant, "github", value, cipher=cipher, actor="ops", role="admin")
        resolved = await tenancy.resolve_resources(store, a, repo_a.upper(), dev)
        out: dict[str, Any] = {"a": resolved}
        for label, tenant, repository, where in (
                ("b_names_a_repository", b, repo_a, dev),  # the job's tenant decides: B has no such settings
                ("unknown", a, "acme/unknown", dev),
                ("dev_default_for_another_tenant", a, "ops/models", dev),
                ("production_dev_repository", "ops", "ops/models", deployment(tmp_path, production=True))):
            with pytest.raises(NotOnboardedError) as refused:
                await tenancy.resolve_resources(store, tenant, repository, where)
            out[label] = str(refused.value)
        out["dev"] = await tenancy.resolve_resources(store, "ops", "OPS/models", dev)
        with pytest.raises(SettingsError, match="IRONLAYER_CREDENTIAL_KEYS"):
            await tenancy.resolve_resources(store, a, repo_a, deployment(tmp_path, keys=""))
        await store.set_repository_settings(b, repository_settings(b, repo_b, production=False,
                                                                   github_token_credential="gone").fields())
        with pytest.raises(RepositorySettingsError, match=f"uses credential gone, which tenant {b} has not stored"):
            await tenancy.resolve_resources(store, b, repo_b, dev)
        await store.set_repository_settings(b, repository_settings(b, repo_b, production=False,
                                                                   local_path="/srv/b").fields())
        with pytest.raises(RepositorySettingsError, match="for development only"):
            await tenancy.resolve_resources(store, b, repo_b, deployment(tmp_path, production=True))
        out["tenant_of"] = [await tenancy.tenant_of_repository(store, repo_b.upper(), dev),
                            await tenancy.tenant_of_repository(store, "ops/models", dev)]
        with pytest.raises(NotOnboardedError, match="is not onboarded; run `ironlayer tenants add TENANT"):
            await tenancy.tenant_of_repository(store, "ops/models", deployment(tmp_path, production=True))
        return out

    out = with_store(database_url, scenario)
    resolved = out["a"]
    assert resolved.origin == "repository settings" and resolved.repository == repo_a
    assert resolved.github_token is not None and resolved.github_token.value == "ghp_" + "a" * 36
    assert "ghp_" not in repr(resolved) and str(resolved.github_token) == "****"
    assert resolved.warehouse == tmp_path / "warehouses" / a / f"{a}.duckdb"
    assert (resolved.blob_prefix, resolved.branches, resolved.status_repository) == (
        f"tenants/{a}/", frozenset({"main", "release"}), repo_a)
    assert "ironlayer tenants add" in out["b_names_a_repository"] and repo_a in out["b_names_a_repository"]
    assert "not onboarded" in out["dev_default_for_another_tenant"]
    assert out["dev"].origin == "development defaults" and out["dev"].warehouse == tmp_path / "dev.duckdb"
    assert out["dev"].blob_prefix == "tenants/ops/"
    assert out["tenant_of"] == [b, "ops"]


def test_onboarding_maps_once_refuses_another_tenant_and_is_audited(database_url: str) -> None:
    a, b, repo_a, repo_b = names()

    async def scenario(store: PostgresStateStore) -> Any:
        await two_tenants(store, a, b, repo_a, repo_b)
        with pytest.raises(ConflictError, match=f"{repo_a} belongs to another tenant"):
            await tenancy.configure_repository(store, repository_settings(b, repo_a, production=False), actor="eve",
                                               role="admin", allow_new_mapping=True)
        with pytest.raises(NotOnboardedError, match="ask the deployment's operators"):
            await tenancy.configure_repository(store, repository_settings(b, "bolt/new", production=False),
                                               actor="eve", role="admin", allow_new_mapping=False)
        changed = await tenancy.configure_repository(
            store, repository_settings(b, repo_b, production=False, branches=["dev"]), actor="bob", role="admin",
            allow_new_mapping=False)
        rows, _ = await store.audit_rows(b)
        return changed, rows, await store.tenant_for_repository("bolt/new")

    changed, rows, unmapped = with_store(database_url, scenario)
    assert unmapped is None
    assert (changed.created_mapping, changed.missing_credentials) == (False, ())
    assert [(r["action"], r["actor"], r["target"]) for r in rows] == [
        ("tenant.onboarded", "ops", repo_b), ("repository.configured", "bob", repo_b)]
    onboarded = json.loads(rows[0]["details"])
    assert onboarded["mapped_now"] is True and onboarded["before"] is None
    assert onboarded["after"]["github_auth"] == "github"  # the credential's name, never a value
    configured = json.loads(rows[1]["details"])
    assert configured["before"]["branches"] == ["main", "release"] and configured["after"]["branches"] == ["dev"]
