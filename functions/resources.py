"""Clients built lazily once per worker and reused while it is warm: state store, blob store, git, engine.

asyncpg pools belong to one event loop, so the store is kept per running loop (the Functions worker has
one; tests start a new one per test).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from shared_core.settings import Settings, get_settings

_stores: dict[int, Any] = {}
_blob: Any = None


async def get_store(settings: Settings | None = None) -> Any:
    """The PostgreSQL state store of this worker, connected as the application role.

    Without IRONLAYER_DATABASE_URL it is the embedded server (its superuser migrates, `ironlayer_app`
    connects). A schema that is behind is migrated with IRONLAYER_MIGRATION_DATABASE_URL when given.
    """
    from shared_core.adapters.postgres.store import app_url_for, open_store

    loop = id(asyncio.get_running_loop())
    store = _stores.get(loop)
    if store is None:
        settings = settings or get_settings()
        app_url, migration_url = settings.database_url, settings.migration_database_url or None
        if not app_url:
            from shared_core.adapters.postgres.embedded import ensure_embedded_server

            migration_url = await asyncio.to_thread(ensure_embedded_server, settings.home)
            app_url = app_url_for(migration_url)
        store = await open_store(app_url, migration_url, settings.tenant_id)
        _stores.clear()  # a new loop: pools of earlier loops cannot be used from it
        _stores[loop] = store
    return store


def get_blob_store(settings: Settings | None = None) -> Any:
    """Azure Blob Storage when configured (connection string or account URL), else a local folder."""
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


def get_git_source(settings: Settings | None = None) -> Any:
    """The repository's git source: a local repository in development, else the GitHub REST API."""
    settings = settings or get_settings()
    if settings.local_repo:
        from shared_core.adapters.local_git import LocalGitSource

        return LocalGitSource(settings.local_repo)
    from shared_core.adapters.github.source import GitHubSource

    return GitHubSource(settings.repository, token=settings.github_token, base_url=settings.github_api_url,
                        cache=get_blob_store(settings))


_status: Any = None


def get_status_publisher(settings: Settings | None = None) -> Any:
    """Commit statuses on GitHub, or to the log when no token is configured (local development)."""
    global _status
    if _status is None:
        settings = settings or get_settings()
        if settings.github_token and settings.repository:
            from shared_core.adapters.github.status import GitHubStatusPublisher

            _status = GitHubStatusPublisher(settings.repository, token=settings.github_token,
                                            base_url=settings.github_api_url)
        else:
            from shared_core.adapters.github.status import LoggedStatusPublisher

            _status = LoggedStatusPublisher()
    return _status


def get_executor(settings: Settings | None = None) -> Any:
    """The engine adapter named by IRONLAYER_ENGINE (the same executor `ironlayer apply` uses)."""
    settings = settings or get_settings()
    from shared_core.adapters.engines.duckdb import DuckDBExecutor, ExecutionError

    if settings.engine == "databricks":
        raise ExecutionError(
            f"IRONLAYER_ENGINE=databricks (host {settings.databricks_host or 'unset'}): the Databricks executor "
            "is not part of this build; set IRONLAYER_ENGINE=duckdb"
        )
    return DuckDBExecutor(settings.warehouse, wait_seconds=60)


def plan_key(plan_id: str) -> str:
    """The blob key of a plan's exact bytes."""
    return f"plans/{plan_id}.json"


async def read_stored_plan(plan_id: str, settings: Settings | None = None) -> dict[str, Any] | None:
    """The plan stored under `plan_id`, integrity-checked (`load_plan`), or None when it is not stored."""
    from shared_core.core.planning.plan import load_plan

    data = await asyncio.to_thread(get_blob_store(settings).get, plan_key(plan_id))
    return None if data is None else load_plan(data.decode(), plan_key(plan_id))


def analysis_cache_dir(settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    return settings.home / "cache"


def reset() -> None:
    """Forget every cached client (tests, and after settings change)."""
    global _blob, _status
    _stores.clear()
    _blob = _status = None
    get_settings.cache_clear()
