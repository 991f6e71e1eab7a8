"""Tenancy use cases: onboard a tenant and its repository, and resolve the resources a job of a repository runs with.

Every execution resource of a job (git source and token, engine and warehouse and credentials, blob prefix,
commit-status target, planned branches) comes from `resolve_resources(store, tenant_id, repository, ...)`:
the repository's settings stored for the job's tenant (`repository_settings`, private to that tenant), with
tokens decrypted from the tenant's own credentials. Deployment-wide settings are used for exactly one case,
the **development default**: in development or test (said explicitly, as `Settings.local`), the
deployment's own tenant and repository (IRONLAYER_TENANT,
IRONLAYER_REPOSITORY or IRONLAYER_LOCAL_REPO) without stored settings run with IRONLAYER_LOCAL_REPO,
IRONLAYER_GITHUB_TOKEN, IRONLAYER_ENGINE, IRONLAYER_WAREHOUSE and IRONLAYER_BRANCHES, as before. Anything
else without settings is refused (`NotOnboardedError`), and anywhere else (production, or the environment
unset) nothing falls back, and stored settings that keep state on the worker's disk are refused too.

Onboarding (`onboard_tenant`, `configure_repository`) is one service for the CLI and the API: it validates
the settings (`shared_core.core.repository_settings`), maps the repository, stores the settings and audits it.
Nothing here builds an adapter; `functions.resources` turns `TenantResources` into clients.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from shared_core.core.errors import ConflictError, NotOnboardedError, RepositorySettingsError
from shared_core.core.repository_settings import (
    RepositorySettings,
    check_tenant,
    default_blob_prefix,
    resolve_warehouse,
    settings_from_row,
)
from shared_core.core.state import EngineName, RepositorySettingsRow, SourceKind
from shared_core.ports import RepositoryStore, SecurityStore
from shared_core.services.audit import record_audit

Origin = Literal["repository settings", "development defaults"]


class TenancyStore(SecurityStore, RepositoryStore, Protocol):
    """What onboarding and resolution touch: tenants, routing, credentials, audit, repository settings."""


@dataclass(frozen=True)
class Secret:
    """A decrypted token: its `repr` and `str` never show it (a resource object may end up in a log line)."""

    value: str = field(repr=False)

    def __str__(self) -> str:
        return "****"


@dataclass(frozen=True)
class DevelopmentDefaults:
    """The deployment-wide settings that stand in for the deployment's own repository in development."""

    tenant_id: str  # IRONLAYER_TENANT
    repository: str  # IRONLAYER_REPOSITORY, else IRONLAYER_LOCAL_REPO
    local_repo: str  # IRONLAYER_LOCAL_REPO
    github_token: str = field(repr=False)  # IRONLAYER_GITHUB_TOKEN
    engine: str = "duckdb"  # IRONLAYER_ENGINE
    warehouse: Path = Path("warehouse.duckdb")  # IRONLAYER_WAREHOUSE
    databricks_host: str = ""  # IRONLAYER_DATABRICKS_HOST (or DATABRICKS_HOST)
    branches: frozenset[str] = frozenset({"main"})  # IRONLAYER_BRANCHES
    databricks_http_path: str = ""  # DATABRICKS_HTTP_PATH
    databricks_catalog: str = ""  # IRONLAYER_DATABRICKS_CATALOG
    databricks_token: str = field(default="", repr=False)  # DATABRICKS_TOKEN
    databricks_client_id: str = ""  # DATABRICKS_CLIENT_ID
    databricks_client_secret: str = field(default="", repr=False)  # DATABRICKS_CLIENT_SECRET

    def covers(self, tenant_id: str, repository: str) -> bool:
        """Whether the job of `repository` for `tenant_id` is this deployment's own (development) repository."""
        return bool(self.repository) and tenant_id == self.tenant_id and repository.lower() == self.repository.lower()


@dataclass(frozen=True)
class Deployment:
    """What resolution needs of the deployment: whether local state is refused, the warehouse folder, the
    credential keys, and the development default (None outside development and test: nothing falls back)."""

    production: bool  # not an explicit development or test environment: no local source, no DuckDB file
    warehouse_root: Path  # IRONLAYER_WAREHOUSE_DIR: each tenant's DuckDB files live in <root>/<tenant_id>/
    credential_keys: str = field(repr=False)  # IRONLAYER_CREDENTIAL_KEYS
    defaults: DevelopmentDefaults | None = None


@dataclass(frozen=True)
class TenantResources:
    """Everything a job of one repository of one tenant may use, resolved; nothing else is reachable."""

    tenant_id: str
    repository: str  # the job's repository, lower-case owner/name (or the development repository's path)
    origin: Origin
    source_kind: SourceKind
    source: str  # github: owner/name; local: a repository path
    github_token: Secret | None
    engine: EngineName
    warehouse: Path | None  # duckdb: the tenant's file
    databricks_host: str | None
    databricks_http_path: str | None
    databricks_catalog: str | None
    databricks_token: Secret | None
    blob_prefix: str
    branches: frozenset[str]
    status_repository: str | None  # None: commit statuses are only logged
    databricks_credential: str | None = None  # the name of the credential holding databricks_token

    def branch_refusal(self, branch: str) -> str | None:
        """Why a push to `branch` is not planned, or None when it is."""
        if branch in self.branches:
            return None
        where = "IRONLAYER_BRANCHES" if self.origin == "development defaults" else f"the branches of {self.repository}"
        return f"branch {branch} is not configured ({where})"

    @property
    def default_branch(self) -> str:
        """The branch scheduled runs read: `main` when planned, else the first planned branch by name."""
        return "main" if "main" in self.branches else sorted(self.branches)[0]


def not_onboarded(repository: str, tenant_id: str | None = None) -> NotOnboardedError:
    """The refusal for a repository without a tenant or without settings, naming the command that fixes it."""
    tenant = tenant_id or "TENANT"
    return NotOnboardedError(
        f"repository {repository.lower()} is not onboarded; run `ironlayer tenants add {tenant} --repository "
        f"{repository}` (or `ironlayer repositories map {repository} --tenant {tenant}`)"
    )


async def tenant_of_repository(store: TenancyStore, repository: str, deployment: Deployment) -> str:
    """The tenant a push of `repository` belongs to: its mapping, else (development) the deployment's own.

    Raises:
        NotOnboardedError: the repository is mapped to no tenant.
    """
    tenant = await store.tenant_for_repository(repository)
    if tenant is not None:
        return tenant
    defaults = deployment.defaults
    if defaults is not None and repository.lower() == defaults.repository.lower() and defaults.repository:
        return defaults.tenant_id
    raise not_onboarded(repository)


async def resolve_resources(store: TenancyStore, tenant_id: str, repository: str,
                            deployment: Deployment) -> TenantResources:
    """The resources of a job of `repository` for `tenant_id`, from the tenant's stored repository settings.

    Raises:
        NotOnboardedError: no settings for this tenant and repository (a repository of another tenant has
            none for this one), and the development default does not apply.
        RepositorySettingsError: a stored setting breaks the rules (e.g. a local source in production), or a
            named credential is not stored.
        SettingsError: a credential is needed and IRONLAYER_CREDENTIAL_KEYS is not set.
        CredentialError: a token cannot be decrypted with the configured keys.
    """
    row = await store.repository_settings(tenant_id, repository)
    if row is None:
        defaults = deployment.defaults
        if deployment.production or defaults is None or not defaults.covers(tenant_id, repository):
            raise not_onboarded(repository, tenant_id)
        return _development_resources(defaults)
    settings = settings_from_row(tenant_id, row, production=deployment.production)
    secrets = {name: await _secret(store, deployment, tenant_id, name, settings.repository)
               for name in settings.credentials()}
    return TenantResources(
        tenant_id=tenant_id, repository=settings.repository, origin="repository settings",
        source_kind=settings.source_kind, source=settings.source,
        github_token=secrets.get(settings.github_token_credential or ""), engine=settings.engine,
        warehouse=resolve_warehouse(deployment.warehouse_root, tenant_id, settings.warehouse)
        if settings.warehouse else None,
        databricks_host=settings.databricks_host, databricks_http_path=settings.databricks_http_path,
        databricks_catalog=settings.databricks_catalog,
        databricks_token=secrets.get(settings.databricks_token_credential or ""), blob_prefix=settings.blob_prefix,
        branches=frozenset(settings.branches), status_repository=settings.status_repository,
        databricks_credential=settings.databricks_token_credential,
    )


def _development_resources(defaults: DevelopmentDefaults) -> TenantResources:
    token = Secret(defaults.github_token) if defaults.github_token else None
    databricks = defaults.engine == "databricks"
    databricks_token = None
    if defaults.databricks_client_id or defaults.databricks_client_secret:  # a service principal, as stored
        databricks_token = Secret(json.dumps({"client_id": defaults.databricks_client_id,
                                              "client_secret": defaults.databricks_client_secret}))
    elif defaults.databricks_token:
        databricks_token = Secret(defaults.databricks_token)
    return TenantResources(
        tenant_id=defaults.tenant_id, repository=defaults.repository.lower(), origin="development defaults",
        source_kind="local" if defaults.local_repo else "github", source=defaults.local_repo or defaults.repository,
        github_token=token, engine="databricks" if databricks else "duckdb",
        warehouse=None if databricks else defaults.warehouse, databricks_host=defaults.databricks_host or None,
        databricks_http_path=defaults.databricks_http_path or None,
        databricks_catalog=defaults.databricks_catalog or None, databricks_token=databricks_token,
        blob_prefix=default_blob_prefix(defaults.tenant_id), branches=defaults.branches,
        status_repository=defaults.repository if token is not None and not defaults.local_repo else None,
    )


async def _secret(store: TenancyStore, deployment: Deployment, tenant_id: str, name: str, repository: str) -> Secret:
    from shared_core.security.cipher import credential_name
    from shared_core.services.credentials import credential_cipher

    ciphertext = await store.get_credential(tenant_id, name)
    if ciphertext is None:
        raise RepositorySettingsError(
            f"repository {repository} uses credential {name}, which tenant {tenant_id} has not stored; run "
            f"`IRONLAYER_TENANT={tenant_id} ironlayer credentials set {name}`"
        )
    cipher = credential_cipher(deployment.credential_keys)  # SettingsError when no key is configured
    return Secret(cipher.decrypt(credential_name(tenant_id, name), ciphertext))


async def repositories_to_schedule(store: TenancyStore, deployment: Deployment) -> list[tuple[str, str]]:
    """`(tenant_id, repository)` of every repository whose scheduled models the tick catches up, by repository:
    every mapped repository, and in development the deployment's own when it is not mapped."""
    mapped = await store.repository_mappings()
    targets = [(tenant, repository) for repository, tenant in mapped]
    defaults = deployment.defaults
    if defaults is not None and defaults.repository and defaults.repository.lower() not in {r for r, _ in mapped}:
        targets.append((defaults.tenant_id, defaults.repository))
    return targets


# -- onboarding -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Onboarded:
    """What onboarding stored: the settings, and the credentials they name that the tenant has not stored yet."""

    settings: RepositorySettings
    created_mapping: bool
    missing_credentials: tuple[str, ...]


async def onboard_tenant(store: TenancyStore, settings: RepositorySettings, *, name: str, actor: str,
                         role: str) -> Onboarded:
    """Create the tenant (unless it exists), map its repository to it and store the repository's settings.

    Args:
        store: the state store.
        settings: the validated settings (`repository_settings(...)`), naming the tenant and the repository.
        name: the tenant's display name.
        actor, role: who onboards, for the audit entry (`tenant.onboarded`, in the new tenant's log).

    Raises:
        ConflictError: the repository is mapped to another tenant.
    """
    check_tenant(settings.tenant_id)
    await store.ensure_tenant(settings.tenant_id, name or settings.tenant_id)
    return await _store_settings(store, settings, actor=actor, role=role, action="tenant.onboarded",
                                 allow_new_mapping=True)


async def configure_repository(store: TenancyStore, settings: RepositorySettings, *, actor: str, role: str,
                               allow_new_mapping: bool) -> Onboarded:
    """Store the settings of a repository of an existing tenant, mapping it first when allowed.

    Args:
        store: the state store.
        settings: the validated settings of the repository, naming its tenant.
        actor, role: who configures it, for the audit entry (`repository.configured`).
        allow_new_mapping: whether an unmapped repository may be mapped to the tenant now (the CLI and the
            deployment's operators may; a tenant's own admin may only change a repository it already has).

    Raises:
        ConflictError: the repository is mapped to another tenant.
        NotOnboardedError: the repository is not mapped yet and `allow_new_mapping` is false.
    """
    return await _store_settings(store, settings, actor=actor, role=role, action="repository.configured",
                                 allow_new_mapping=allow_new_mapping)


async def _store_settings(store: TenancyStore, settings: RepositorySettings, *, actor: str, role: str, action: str,
                          allow_new_mapping: bool) -> Onboarded:
    tenant, repository = settings.tenant_id, settings.repository
    owner = await store.tenant_for_repository(repository)
    if owner is not None and owner != tenant:
        raise ConflictError(f"repository {repository} belongs to another tenant; it cannot be mapped to {tenant}")
    if owner is None:
        if not allow_new_mapping:
            raise NotOnboardedError(f"repository {repository} is not mapped to tenant {tenant}; ask the deployment's "
                                    f"operators to run `ironlayer repositories map {repository} --tenant {tenant}`")
        await store.map_repository(tenant, repository)
    before = await store.repository_settings(tenant, repository)
    await store.set_repository_settings(tenant, settings.fields())
    stored = {name for name, _ in await store.list_credentials(tenant)}
    missing = tuple(name for name in settings.credentials() if name not in stored)
    await record_audit(store, tenant, actor=actor, role=role, action=action, target=repository,
                       details={"mapped_now": owner is None, "before": _audited(before), "after": _audited(settings)})
    return Onboarded(settings, owner is None, missing)


def _audited(settings: RepositorySettings | RepositorySettingsRow | None) -> dict[str, object] | None:
    """Settings as audit details; credential names under `*_auth` keys (the scrubber masks `*token*` keys)."""
    if settings is None:
        return None
    values: dict[str, object] = settings.describe() if isinstance(settings, RepositorySettings) else dict(settings)
    values.pop("updated_at", None)
    for key, label in (("github_token_credential", "github_auth"), ("databricks_token_credential", "databricks_auth")):
        values[label] = values.pop(key, None)
    return dict(sorted(values.items()))
