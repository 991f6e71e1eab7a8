"""Repository settings: defaults, the rules that keep tenants apart, and the prefixed blob store that enforces one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared_core.adapters.blobs import LocalBlobStore, PrefixedBlobStore
from shared_core.core.errors import RepositorySettingsError, StateError
from shared_core.core.repository_settings import (
    default_blob_prefix,
    repository_settings,
    resolve_warehouse,
    settings_from_row,
)
from shared_core.core.state import RepositorySettingsFields
from shared_core.services.tenancy import DevelopmentDefaults, Secret, TenantResources


def test_defaults() -> None:
    settings = repository_settings("acme", "Acme-Org/Models", production=False)
    assert settings.fields() == {
        "repository": "acme-org/models", "source_kind": "github", "source": "Acme-Org/Models",
        "github_token_credential": None, "engine": "duckdb", "warehouse": "warehouse.duckdb", "databricks_host": None,
        "databricks_http_path": None, "databricks_catalog": None, "databricks_token_credential": None,
        "blob_prefix": "tenants/acme/", "branches": ["main"], "status_repository": None}
    with_token = repository_settings("acme", "Acme-Org/Models", production=False, github_token_credential="gh")
    assert with_token.status_repository == "Acme-Org/Models" and with_token.credentials() == ("gh",)
    local = repository_settings("acme", "acme/models", production=False, local_path="/srv/repo",
                                github_token_credential="gh")
    assert (local.source_kind, local.source, local.status_repository) == ("local", "/srv/repo", None)


def test_databricks_settings_are_stored_whole() -> None:
    settings = repository_settings("acme", "acme/models", production=True, engine="databricks",
                                   databricks_host="adb-123.4.azuredatabricks.net",
                                   databricks_http_path="/sql/1.0/warehouses/abc", databricks_catalog="main",
                                   databricks_token_credential="dbx", branches=["main", "release/2024", "main"])
    assert (settings.engine, settings.warehouse, settings.databricks_catalog) == ("databricks", None, "main")
    assert settings.branches == ("main", "release/2024") and settings.credentials() == ("dbx",)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"repository": "not a repo"}, "is not a GitHub repository"),
        ({"repository": "acme/.."}, "is not a GitHub repository"),
        ({"tenant_id": "Acme"}, "tenant id 'Acme' is invalid"),
        ({"local_path": "/srv/repo", "production": True}, "for development only"),
        ({"production": True}, "engine duckdb keeps the warehouse in a file on the worker's disk"),
        ({"warehouse": "/var/lib/other/w.duckdb"}, "must be a relative path inside the tenant's folder"),
        ({"warehouse": "../b/w.duckdb"}, "must be a relative path"),
        ({"warehouse": "sub/../../b/w.duckdb"}, "must be a relative path"),
        ({"warehouse": ".hidden/w.duckdb"}, "must be a relative path"),
        ({"warehouse": "a\\b.duckdb"}, "must be a relative path"),
        ({"blob_prefix": "tenants/beta/"}, "must be tenants/acme/ or a folder beneath it"),
        ({"blob_prefix": "tenants/acme/../beta/"}, "must be tenants/acme/"),
        ({"blob_prefix": "tenants/acmex/"}, "must be tenants/acme/"),
        ({"blob_prefix": "/tenants/acme/"}, "must be tenants/acme/"),
        ({"engine": "sqlite"}, "engine 'sqlite' is unknown"),
        ({"databricks_host": "adb.net"}, "Databricks settings given for engine duckdb"),
        ({"engine": "databricks"}, "Databricks host missing is invalid"),
        ({"engine": "databricks", "databricks_host": "adb-1.net", "databricks_http_path": "/sql/x"},
         "needs the name of the credential"),
        ({"engine": "databricks", "warehouse": "w.duckdb"}, "a DuckDB warehouse given for engine databricks"),
        ({"github_token_credential": "My Token"}, "must be 1-100 of a-z"),
        ({"branches": ["main", "-x"]}, "branch '-x' is not a branch name"),
        ({"branches": ["a..b"]}, "is not a branch name"),
        ({"status_repository": "acme/other"}, "need a GitHub token credential"),
    ],
)
def test_invalid_settings_are_refused_with_the_setting_named(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"tenant_id": "acme", "repository": "acme/models", "production": False, **kwargs}
    with pytest.raises(RepositorySettingsError) as refused:
        repository_settings(arguments.pop("tenant_id"), arguments.pop("repository"), **arguments)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_stored_rows_are_checked_again_as_they_are_read() -> None:
    row = repository_settings("acme", "acme/models", production=False, github_token_credential="gh").fields()
    assert settings_from_row("acme", row, production=False).fields() == row
    with pytest.raises(RepositorySettingsError, match="another repository"):
        settings_from_row("acme", {**row, "source": "victim/models"}, production=False)
    with pytest.raises(RepositorySettingsError, match="must be tenants/acme/"):
        settings_from_row("acme", {**row, "blob_prefix": "tenants/beta/"}, production=False)
    with pytest.raises(RepositorySettingsError, match="for development only"):
        settings_from_row("acme", {**row, "source_kind": "local", "source": "/srv/x"}, production=True)
    with pytest.raises(RepositorySettingsError, match="engine duckdb keeps the warehouse"):
        settings_from_row("acme", row, production=True)  # stored in development, read by a production app
    silent: RepositorySettingsFields = {**row, "status_repository": None}  # statuses switched off by hand: kept off
    assert settings_from_row("acme", silent, production=False).status_repository is None


def test_warehouses_resolve_inside_the_tenant_folder() -> None:
    root = Path("/srv/warehouses")
    assert resolve_warehouse(root, "acme", "sales/w.duckdb") == root / "acme" / "sales" / "w.duckdb"
    for hostile in ("../beta/w.duckdb", "/etc/passwd", "a/../../beta/w.duckdb", ""):
        with pytest.raises(RepositorySettingsError):
            resolve_warehouse(root, "acme", hostile)
    with pytest.raises(RepositorySettingsError):
        resolve_warehouse(root, "../beta", "w.duckdb")


def test_a_prefixed_blob_store_never_reaches_outside_its_prefix(tmp_path: Path) -> None:
    root = LocalBlobStore(tmp_path)
    a = PrefixedBlobStore(root, default_blob_prefix("alpha"))
    b = PrefixedBlobStore(root, default_blob_prefix("beta"))
    a.put("plans/p.json", b"A's plan")
    assert (tmp_path / "tenants" / "alpha" / "plans" / "p.json").read_bytes() == b"A's plan"
    assert a.get("plans/p.json") == b"A's plan" and a.exists("plans/p.json")
    assert b.get("plans/p.json") is None and not b.exists("plans/p.json")
    for hostile in ("../alpha/plans/p.json", "/tenants/alpha/plans/p.json", "plans/../../alpha/plans/p.json",
                    "..\\alpha\\plans\\p.json", "./plans/p.json", "plans//p.json", "", "plans/p.json\0"):
        with pytest.raises(StateError, match="invalid blob key"):
            b.get(hostile)
        with pytest.raises(StateError, match="invalid blob key"):
            b.put(hostile, b"x")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == [
        "tenants/alpha/plans/p.json"]
    for prefix in ("tenants/alpha", "/tenants/alpha/", "tenants/../", ""):
        with pytest.raises(StateError):
            PrefixedBlobStore(root, prefix)


def test_resources_never_show_their_tokens() -> None:
    defaults = DevelopmentDefaults(tenant_id="ops", repository="ops/models", local_repo="",
                                   github_token="ghp_" + "s" * 36)
    assert "ghp_" not in repr(defaults)
    resources = TenantResources(
        tenant_id="ops", repository="ops/models", origin="repository settings", source_kind="github",
        source="ops/models", github_token=Secret("ghp_" + "s" * 36), engine="duckdb", warehouse=Path("w.duckdb"),
        databricks_host=None, databricks_http_path=None, databricks_catalog=None, databricks_token=None,
        blob_prefix="tenants/ops/", branches=frozenset({"main"}), status_repository="ops/models")
    assert "ghp_" not in repr(resources) and "ghp_" not in f"{resources.github_token}"
    assert resources.branch_refusal("main") is None
    assert resources.branch_refusal("dev") == "branch dev is not configured (the branches of ops/models)"
    assert resources.default_branch == "main"
