"""The onboarding API with real tokens: who may onboard a tenant, map a repository or change its settings."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from functions import resources
from tests.functions.conftest import json_body
from tests.functions.test_security import call, jwt_env, token  # noqa: F401  (`jwt_env` is a fixture)

pytestmark = pytest.mark.integration


def onboard(bearer: str, body: dict[str, Any]) -> Any:
    return call("onboard_tenant", bearer, method="POST", body=json.dumps(body).encode())


def configure(bearer: str, repository: str, body: dict[str, Any]) -> Any:
    owner, name = repository.split("/")
    return call("put_repository", bearer, method="PUT", body=json.dumps(body).encode(),
                route_params={"owner": owner, "name": name})


def test_operators_onboard_tenants_and_tenants_keep_to_their_own_repositories(
        jwt_env: dict[str, Any]) -> None:  # noqa: F811
    operator = token(jwt_env["tenant"], "admin", subject="ops")
    tenant, other = f"c{uuid.uuid4().hex[:10]}", f"d{uuid.uuid4().hex[:10]}"
    repository, foreign = f"cust-{tenant}/models", f"cust-{other}/models"

    created = onboard(operator, {"tenant_id": tenant, "name": "Customer", "repository": repository,
                                 "settings": {"branches": ["main", "release"], "warehouse": "sales.duckdb",
                                              "github_token_credential": "github_token"}})
    assert created.status_code == 201, created.get_body()
    assert json_body(created) == {
        "tenant_id": tenant, "repository": repository, "mapped_now": True, "missing_credentials": ["github_token"],
        "settings": {"tenant_id": tenant, "repository": repository, "source_kind": "github", "source": repository,
                     "github_token_credential": "github_token", "engine": "duckdb", "warehouse": "sales.duckdb",
                     "databricks_host": None, "databricks_http_path": None, "databricks_catalog": None,
                     "databricks_token_credential": None, "blob_prefix": f"tenants/{tenant}/",
                     "branches": ["main", "release"], "status_repository": repository}}
    assert onboard(operator, {"tenant_id": other, "repository": foreign}).status_code == 201

    customer_admin = token(tenant, "admin", subject="cat")
    refused = onboard(customer_admin, {"tenant_id": f"e{uuid.uuid4().hex[:10]}", "repository": "x/y"})
    assert refused.status_code == 403 and "operator tenant" in json_body(refused)["error"]["message"]
    assert call("onboard_tenant", token(jwt_env["tenant"], "engineer"), method="POST", body=b"{}").status_code == 403

    changed = configure(customer_admin, repository.upper(), {"branches": ["dev"]})  # its own repository
    assert changed.status_code == 200 and json_body(changed)["settings"]["branches"] == ["dev"]
    assert json_body(changed)["mapped_now"] is False
    taken = configure(customer_admin, foreign, {})
    assert taken.status_code == 409 and "belongs to another tenant" in json_body(taken)["error"]["message"]
    unmapped = configure(customer_admin, f"cust-{tenant}/new", {})
    assert unmapped.status_code == 404 and "deployment's operators" in json_body(unmapped)["error"]["message"]

    async def stored() -> tuple[Any, Any]:
        store = await resources.get_store()
        return await store.repository_settings(tenant, repository), await store.tenant_for_repository(foreign)

    resources.reset()
    settings, foreign_owner = asyncio.run(stored())
    assert settings is not None and settings["branches"] == ["dev"] and foreign_owner == other


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"warehouse": "../other/w.duckdb"}, "must be a relative path inside the tenant's folder"),
        ({"blob_prefix": "tenants/someone-else/"}, "must be tenants/"),
        ({"engine": "oracle"}, "engine 'oracle' is unknown"),
        ({"branches": "main"}, "setting branches must be a list of branch names"),
        ({"warehouse": 7}, "setting warehouse must be a string"),
        ({"token": "ghp_secret"}, "unknown setting 'token'"),
    ],
)
def test_invalid_settings_are_refused_with_400(jwt_env: dict[str, Any], body: dict[str, Any],  # noqa: F811
                                               message: str) -> None:
    response = configure(token(jwt_env["tenant"], "admin"), f"o-{uuid.uuid4().hex[:8]}/r", body)
    assert response.status_code == 400
    assert message in json_body(response)["error"]["message"]
    assert "ghp_secret" not in response.get_body().decode()


def test_a_production_app_refuses_local_state_in_settings(jwt_env: dict[str, Any],  # noqa: F811
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IRONLAYER_ENVIRONMENT", "production")
    resources.reset()
    operator = token(jwt_env["tenant"], "admin")
    repository = f"o-{uuid.uuid4().hex[:8]}/r"
    local = configure(operator, repository, {"local_path": "/srv/models", "engine": "databricks",
                                             "databricks_host": "adb-1.2.azuredatabricks.net",
                                             "databricks_http_path": "/sql/1.0/warehouses/w",
                                             "databricks_token_credential": "dbx"})
    assert local.status_code == 400 and "for development only" in json_body(local)["error"]["message"]
    duck = configure(operator, repository, {})
    assert duck.status_code == 400 and "engine duckdb" in json_body(duck)["error"]["message"]
