"""A tenant whose repository runs on Databricks: a push plans and applies through the real orchestrator and
activities into that tenant's workspace and catalog, with the token from the tenant's own credential store
(the connector answered by the DuckDB-backed warehouse stand-in; Databricks cannot run here)."""

from __future__ import annotations

import io
import uuid
from typing import Any
from unittest.mock import Mock

import pytest
from cryptography.fernet import Fernet

from functions import resources
from shared_core.cli.main import main
from tests.conftest import write_commits
from tests.functions.test_two_tenants import B_PROJECT, B_PROJECT_V2, ZERO, orchestrate, push
from tests.integration.warehouse_emulator import Warehouse

pytestmark = pytest.mark.integration

TOKEN = "dapi" + "0123456789abcdef" * 2


def test_a_databricks_tenant_applies_into_its_own_catalog_with_its_own_token(
    app_env: dict[str, Any], client: Mock, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    warehouse = Warehouse(catalog="acme_lake")
    monkeypatch.setattr("databricks.sql.connect", warehouse.connect)
    monkeypatch.setenv("IRONLAYER_CREDENTIAL_KEYS", Fernet.generate_key().decode())
    for name in ("DATABRICKS_HOST", "DATABRICKS_HTTP_PATH", "DATABRICKS_TOKEN"):
        monkeypatch.delenv(name, raising=False)  # deployment-wide settings never configure a tenant's job
    tenant = f"d{uuid.uuid4().hex[:10]}"
    repository = f"dbx-{tenant}/models"
    path = app_env["tmp"] / "repo"
    v1, v2 = write_commits(path, [B_PROJECT, B_PROJECT_V2])
    assert main(["tenants", "add", tenant, "--repository", repository, "--local-path", str(path), "--engine",
                 "databricks", "--databricks-host", "adb-7.8.azuredatabricks.net", "--databricks-http-path",
                 "/sql/1.0/warehouses/w7", "--databricks-catalog", "acme_lake", "--databricks-token-credential",
                 "dbx"]) == 0
    monkeypatch.setenv("IRONLAYER_TENANT", tenant)
    monkeypatch.setattr("sys.stdin", io.StringIO(TOKEN + "\n"))
    assert main(["credentials", "set", "dbx"]) == 0
    monkeypatch.setenv("IRONLAYER_TENANT", app_env["tenant"])
    resources.reset()
    capsys.readouterr()

    assert orchestrate(push(client, repository, ZERO, v1))["status"] == "succeeded"
    assert warehouse.rows("acme_lake.bronze.raw_orders") == [(1, 7.5), (2, 8.5)]
    assert orchestrate(push(client, repository, v1, v2))["status"] == "succeeded"
    assert warehouse.rows("acme_lake.silver.big_orders") == [(2,)]
    assert {(c["server_hostname"], c["http_path"], c["catalog"], c["access_token"]) for c in warehouse.connects} == {
        ("adb-7.8.azuredatabricks.net", "/sql/1.0/warehouses/w7", "acme_lake", TOKEN)}
    assert {entry.tags["ironlayer_tenant"] for entry in warehouse.log if entry.tags} == {tenant}
    assert sorted(warehouse.tables()) == ["_ironlayer.committed_batches", "bronze.raw_orders", "silver.big_orders"]
