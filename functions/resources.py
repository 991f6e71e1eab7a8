"""Clients built lazily and reused while the worker is warm: the state store, the deployment's blob container,
and, per (tenant, repository), the clients a job of that repository runs with.

A job's git source, blob store, commit-status publisher and engine are built from the `TenantResources`
that `shared_core.services.tenancy.resolve_resources` resolves from the job's tenant and repository in the
state store, never from deployment-wide settings (those only stand in for the deployment's own repository
in development; see that module). Resolution runs on every use (one tenant-bound read); the clients built
from it are kept per (tenant, repository) and rebuilt when the resolved resources change (new settings, a
rotated token). The blob store a job gets is its tenant's prefix of the container (`PrefixedBlobStore`).

asyncpg pools belong to one event loop, so the store is kept per running loop (the Functions worker has
one; tests start a new one per test).
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shared_core.settings import Settings, get_settings

if TYPE_CHECKING:
    from shared_core.adapters.caches.analysis import CachedAnalyzer
    from shared_core.ports import BlobStore, Executor, GitSource, StateStore, StatusPublisher
    from shared_core.services.tenancy import Deployment, TenantResources

_stores: dict[int, StateStore] = {}
# one store per loop, even when its first requests arrive together (weak: a finished loop takes its lock along)
_opening: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()
_blob: BlobStore | None = None
_clients: dict[tuple[str, str], TenantClients] = {}


async def get_store(settings: Settings | None = None) -> StateStore:
    """The PostgreSQL state store of this worker, connected as the application role.

    Without IRONLAYER_DATABASE_URL it is the embedded server (its superuser migrates, `ironlayer_app`
    connects). A schema that is behind is migrated with IRONLAYER_MIGRATION_DATABASE_URL when given.
    """
    from shared_core.adapters.postgres.store import open_store
    from shared_core.adapters.state import store_urls

    running = asyncio.get_running_loop()
    loop = id(running)
    store = _stores.get(loop)
    if store is not None:
        return store
    lock = _opening.setdefault(running, asyncio.Lock())
    async with lock:
        store = _stores.get(loop)
        if store is None:
            settings = settings or get_settings()
            urls = await asyncio.to_thread(store_urls, settings)
            assert urls is not None  # store_urls starts the embedded server when no URL is configured
            store = await open_store(urls[0], urls[1], settings.tenant_id)
            _stores.clear()  # a new loop: pools of earlier loops cannot be used from it
            _stores[loop] = store
    return store


def get_blob_store(settings: Settings | None = None) -> BlobStore:
    """The deployment's whole blob container (Azure Blob Storage when configured, else a local folder).

    Only the health check uses it whole; jobs and readers get their tenant's prefix (`TenantClients.blobs`).
    """
    global _blob
    if _blob is None:
        settings = settings or get_settings()
        from shared_core.adapters.blobs import AzureBlobStore, LocalBlobStore

        if settings.blob_connection_string:
            _blob = AzureBlobStore(container=settings.blob_container,
                                   connection_string=settings.blob_connection_string)
        elif settings.blob_account_url:
            _blob = AzureBlobStore(container=settings.blob_container, account_url=settings.blob_account_url)
        else:
            _blob = LocalBlobStore(settings.blob_dir)
    return _blob


def deployment(settings: Settings) -> Deployment:
    """What resource resolution needs of the settings: the development default exists, and local state is
    allowed, only in an explicit development or test environment (an unset one is production to the app)."""
    from shared_core.services.tenancy import Deployment, DevelopmentDefaults

    defaults = None if not settings.local else DevelopmentDefaults(
        tenant_id=settings.tenant_id, repository=settings.repository or settings.local_repo,
        local_repo=settings.local_repo, github_token=settings.github_token, engine=settings.engine,
        warehouse=settings.warehouse, databricks_host=settings.databricks_host, branches=settings.branches,
        databricks_http_path=settings.databricks_http_path, databricks_catalog=settings.databricks_catalog,
        databricks_token=settings.databricks_token, databricks_client_id=settings.databricks_client_id,
        databricks_client_secret=settings.databricks_client_secret,
    )
    return Deployment(production=not settings.local, warehouse_root=settings.warehouse_dir,
                      credential_keys=settings.credential_keys, defaults=defaults)


@dataclass
class TenantClients:
    """The clients of one repository of one tenant, built from its resolved resources and nothing else."""

    resources: TenantResources
    source: GitSource
    blobs: BlobStore
    publisher: StatusPublisher
    github_api_url: str

    def open_executor(self) -> Executor:
        """A new executor on the repository's warehouse (the caller closes it): its DuckDB file, or its
        Databricks SQL warehouse and catalog with the tenant's own credential.

        Raises:
            ExecutionError: the warehouse cannot be used (settings missing, unreachable, credentials refused).
        """
        resources = self.resources
        if resources.engine == "databricks":
            return _databricks_executor(resources)
        from shared_core.adapters.engines.duckdb import DuckDBExecutor
        from shared_core.core.errors import ExecutionError

        if resources.warehouse is None:
            raise ExecutionError(f"repository {resources.repository} of tenant {resources.tenant_id} has no DuckDB "
                                 "warehouse; store its settings again")
        resources.warehouse.parent.mkdir(parents=True, exist_ok=True)
        return DuckDBExecutor(resources.warehouse, wait_seconds=60)

    def close(self) -> None:
        """Close the HTTP connections of the source and the publisher (when they hold any)."""
        for client in (self.source, self.publisher):
            close = getattr(client, "close", None)
            if close is not None:
                close()


def _databricks_executor(resources: TenantResources) -> Executor:
    """The Databricks executor of a repository: its workspace, SQL warehouse and catalog, with the tenant's
    credential (a token, or a service principal's client ID and secret); the connector loads only now.

    Raises:
        ExecutionError: a setting or the credential is missing, or the warehouse cannot be used.
    """
    from shared_core.adapters.engines.databricks import Credentials, DatabricksExecutor, Target
    from shared_core.core.errors import ExecutionError

    development = resources.origin == "development defaults"
    where = ("IRONLAYER_ENGINE=databricks" if development else
             f"repository {resources.repository} of tenant {resources.tenant_id} (engine databricks)")
    missing = [name for name, value in (
        ("DATABRICKS_HOST" if development else "its Databricks host", resources.databricks_host),
        ("DATABRICKS_HTTP_PATH" if development else "its Databricks HTTP path", resources.databricks_http_path),
        ("DATABRICKS_TOKEN or DATABRICKS_CLIENT_ID/DATABRICKS_CLIENT_SECRET" if development
         else "its Databricks credential", resources.databricks_token),
    ) if not value]
    if missing:
        raise ExecutionError(f"{where} (host {resources.databricks_host or 'unset'}) needs {', '.join(missing)}")
    assert resources.databricks_host and resources.databricks_http_path and resources.databricks_token
    source = ("DATABRICKS_TOKEN or DATABRICKS_CLIENT_ID/DATABRICKS_CLIENT_SECRET" if development else
              f"credential {resources.databricks_credential} of tenant {resources.tenant_id} "
              f"(`IRONLAYER_TENANT={resources.tenant_id} ironlayer credentials set {resources.databricks_credential}`)")
    credentials = Credentials.from_secret(resources.databricks_token.value, source=source)
    target = Target(resources.databricks_host, resources.databricks_http_path, resources.databricks_catalog)
    return DatabricksExecutor(target, credentials, tenant=resources.tenant_id)


def _build_clients(resources: TenantResources, settings: Settings) -> TenantClients:
    from shared_core.adapters.blobs import PrefixedBlobStore
    from shared_core.adapters.github.status import GitHubStatusPublisher, LoggedStatusPublisher

    blobs = PrefixedBlobStore(get_blob_store(settings), resources.blob_prefix)
    token = resources.github_token.value if resources.github_token is not None else None
    source: GitSource
    if resources.source_kind == "local":
        from shared_core.adapters.local_git import LocalGitSource

        source = LocalGitSource(resources.source)
    else:
        from shared_core.adapters.github.source import GitHubSource

        source = GitHubSource(resources.source, token=token, base_url=settings.github_api_url, cache=blobs)
    publisher: StatusPublisher = LoggedStatusPublisher()
    if resources.status_repository and token:
        publisher = GitHubStatusPublisher(resources.status_repository, token=token, base_url=settings.github_api_url)
    return TenantClients(resources, source, blobs, publisher, settings.github_api_url)


async def resolve(tenant_id: str, repository: str, settings: Settings | None = None) -> TenantResources:
    """The resources of `repository` for `tenant_id` (see `shared_core.services.tenancy.resolve_resources`).

    Raises:
        NotOnboardedError: the repository has no settings for this tenant (and no development default).
        RepositorySettingsError, CredentialError: its settings or credentials cannot be used.
    """
    from shared_core.services.tenancy import resolve_resources

    settings = settings or get_settings()
    return await resolve_resources(await get_store(settings), tenant_id, repository, deployment(settings))


async def clients_for(tenant_id: str, repository: str, settings: Settings | None = None) -> TenantClients:
    """The clients of a job of `repository` for `tenant_id`: resolved now, built once per resolved resources."""
    settings = settings or get_settings()
    resources = await resolve(tenant_id, repository, settings)
    key = (resources.tenant_id, resources.repository)
    clients = _clients.get(key)
    if clients is not None and clients.resources == resources and clients.github_api_url == settings.github_api_url:
        return clients
    built = await asyncio.to_thread(_build_clients, resources, settings)
    current = _clients.get(key)  # another activity of this worker may have built them meanwhile
    if current is not None and current.resources == resources and current.github_api_url == settings.github_api_url:
        built.close()
        return current
    _clients[key] = built  # clients of older resources are left to finish what they are doing, not closed under it
    return built


async def clients_for_plan(tenant_id: str, plan_id: str, settings: Settings | None = None) -> TenantClients:
    """The clients of the repository whose job built plan `plan_id` of `tenant_id` (readers of a stored plan).

    Raises:
        NotOnboardedError: no job of the tenant built that plan, or its repository is not onboarded.
    """
    from shared_core.core.errors import NotOnboardedError

    settings = settings or get_settings()
    job = await (await get_store(settings)).job_for_plan(tenant_id, plan_id)
    if job is None or not job["repository"]:
        raise NotOnboardedError(f"plan {plan_id[:12]} was built by no job of this tenant; its blobs are not here")
    return await clients_for(tenant_id, job["repository"], settings)


def analysis_cache_dir(tenant_id: str, settings: Settings | None = None) -> Path:
    """The tenant's folder of the analysis cache: `cache/tenants/<tenant_id>/` under IRONLAYER_HOME."""
    from shared_core.core.repository_settings import check_tenant

    settings = settings or get_settings()
    return settings.home / "cache" / "tenants" / check_tenant(tenant_id)


def get_analyzer(tenant_id: str, settings: Settings | None = None) -> CachedAnalyzer:
    """A query analyzer over the tenant's analysis cache (the caller closes it: it may start worker processes)."""
    from shared_core.adapters.caches.analysis import CachedAnalyzer

    return CachedAnalyzer(analysis_cache_dir(tenant_id, settings))


def reset() -> None:
    """Forget every cached client (tests, and after settings change)."""
    global _blob
    for clients in _clients.values():
        clients.close()
    _clients.clear()
    _stores.clear()
    _opening.clear()
    _blob = None
    get_settings.cache_clear()
