"""The onboarding API: create a tenant with its repository, and change a repository's execution settings.

`POST /api/admin/tenants` onboards a tenant (creates it, maps its repository, stores the repository's
settings); only admins of the deployment's operator tenant (IRONLAYER_TENANT) may, because it decides
which tenant a repository's pushes belong to. `PUT /api/repositories/{owner}/{name}` stores the settings
of a repository of the caller's own tenant (the tenant in the token); mapping a repository that is not
mapped yet is again for the operator tenant's admins only, so no tenant can claim another's repository.
Both call `shared_core.services.tenancy` (the service `ironlayer tenants add` and `repositories map` call)
and are audited. Tokens are never sent here: settings name the credential that holds one
(`PUT /api/credentials/{name}`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import azure.durable_functions as df
import azure.functions as func

from functions.http.bodies import json_object
from functions.http.guard import Body, Reply, guarded
from shared_core.core.errors import AuthorizationError, InputError
from shared_core.settings import get_settings

if TYPE_CHECKING:
    from shared_core.core.repository_settings import RepositorySettings
    from shared_core.ports import StateStore
    from shared_core.security.tokens import Principal
    from shared_core.services.tenancy import Onboarded

bp = df.Blueprint()

#: The settings a body may give, each a string (or, for `branches`, a list of strings).
SETTING_FIELDS = (
    "local_path", "github_token_credential", "engine", "warehouse", "databricks_host", "databricks_http_path",
    "databricks_catalog", "databricks_token_credential", "blob_prefix", "branches", "status_repository",
)


@bp.route(route="admin/tenants", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@guarded("manage_tenants")
async def onboard_tenant(req: func.HttpRequest, principal: Principal, store: StateStore) -> Body:
    """Create a tenant, map its repository to it and store the repository's settings (201)."""
    from shared_core.services import tenancy

    _require_operator(principal, "onboard a tenant")
    body = json_object(req)
    unknown = sorted(set(body) - {"tenant_id", "name", "repository", "settings"})
    if unknown:
        raise InputError(f"unknown field {unknown[0]!r}; give tenant_id, name, repository and settings")
    tenant_id, repository = _text(body, "tenant_id"), _text(body, "repository")
    name = body.get("name", "")
    if not isinstance(name, str) or len(name) > 200:
        raise InputError("name must be text of at most 200 characters")
    settings = _settings(tenant_id, repository, body.get("settings", {}))
    done = await tenancy.onboard_tenant(store, settings, name=name, actor=principal.subject, role=principal.role)
    return Reply(_answer(done), 201)


@bp.route(route="repositories/{owner}/{name}", methods=["PUT"], auth_level=func.AuthLevel.ANONYMOUS)
@guarded("configure_repository")
async def put_repository(req: func.HttpRequest, principal: Principal, store: StateStore) -> Body:
    """Store (replace) the execution settings of a repository of the caller's tenant."""
    from shared_core.services import tenancy

    repository = f"{req.route_params.get('owner', '')}/{req.route_params.get('name', '')}"
    settings = _settings(principal.tenant_id, repository, json_object(req))
    done = await tenancy.configure_repository(store, settings, actor=principal.subject, role=principal.role,
                                              allow_new_mapping=_is_operator(principal))
    return _answer(done)


def _is_operator(principal: Principal) -> bool:
    """Whether the caller is an admin of the deployment's operator tenant (IRONLAYER_TENANT)."""
    return principal.role == "admin" and principal.tenant_id == get_settings().tenant_id


def _require_operator(principal: Principal, what: str) -> None:
    if not _is_operator(principal):
        raise AuthorizationError(f"only admins of the deployment's operator tenant may {what}; ask them, or run "
                                 "`ironlayer tenants add`")


def _text(body: dict[str, Any], field: str) -> str:  # Any: the request's parsed JSON
    value = body.get(field)
    if not isinstance(value, str) or not value or len(value) > 200:
        raise InputError(f"{field} must be a non-empty string of at most 200 characters")
    return value


def _settings(tenant_id: str, repository: str, values: Any) -> RepositorySettings:  # Any: parsed JSON, checked here
    """The validated settings from a JSON object of `SETTING_FIELDS` (unknown fields and wrong types refused)."""
    from shared_core.core.repository_settings import repository_settings

    if not isinstance(values, dict):
        raise InputError("settings must be a JSON object")
    unknown = sorted(set(values) - set(SETTING_FIELDS))
    if unknown:
        raise InputError(f"unknown setting {unknown[0][:80]!r}; use {', '.join(SETTING_FIELDS)}")
    for field, value in values.items():
        valid = (isinstance(value, list) and all(isinstance(item, str) for item in value) and len(value) <= 50
                 if field == "branches" else value is None or (isinstance(value, str) and len(value) <= 1000))
        if not valid:
            kind = "a list of branch names" if field == "branches" else "a string"
            raise InputError(f"setting {field} must be {kind}")
    given = {field: value for field, value in values.items() if value is not None}
    return repository_settings(tenant_id, repository, production=not get_settings().local, **given)


def _answer(done: Onboarded) -> dict[str, object]:
    return {"tenant_id": done.settings.tenant_id, "repository": done.settings.repository,
            "mapped_now": done.created_mapping, "settings": done.settings.describe(),
            "missing_credentials": list(done.missing_credentials)}
