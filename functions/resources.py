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
    from shared_core.adapters.postgres.store import open_store
    from shared_core.adapters.state import store_urls

    loop = id(asyncio.get_running_loop())
    store = _stores.get(loop)
    if store is None:
        settings = settings or get_settings()
        urls = await asyncio.to_thread(store_urls, settings)
        assert urls is not None  # store_urls starts the embedded server when no URL is configured
        store = await open_store(urls[0], urls[1], settings.tenant_id)
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
    from shared_core.adapters.engines.duckdb import DuckDBExecutor
    from shared_core.core.errors import ExecutionError

    if settings.engine == "databricks":
        raise ExecutionError(
            f"IRONLAYER_ENGINE=databricks (host {settings.databricks_host or 'unset'}): the Databricks executor "
            "is not part of this build; set IRONLAYER_ENGINE=duckdb"
        )
    return DuckDBExecutor(settings.warehouse, wait_seconds=60)


def plan_key(plan_id: str) -> str:
    """The blob key of a plan's exact bytes."""
    from shared_core.services.plans import plan_key as key_of

    return key_of(plan_id)


async def read_stored_plan(plan_id: str, settings: Settings | None = None) -> dict[str, Any] | None:
    """The plan stored under `plan_id`, integrity-checked (`load_plan`), or None when it is not stored."""
    from shared_core.services.plans import read_stored_plan as read

    return await read(get_blob_store(settings), plan_id)


def analysis_cache_dir(settings: Settings | None = None) -> Path:
    """The folder of the analysis cache: `cache/` under IRONLAYER_HOME."""
    settings = settings or get_settings()
    return settings.home / "cache"


def get_analyzer(settings: Settings | None = None) -> Any:
    """A query analyzer over the analysis cache (the caller closes it: it may start worker processes)."""
    from shared_core.adapters.caches.analysis import CachedAnalyzer

    return CachedAnalyzer(analysis_cache_dir(settings))


def reset() -> None:
    """Forget every cached client (tests, and after settings change)."""
    global _blob, _status
    _stores.clear()
    _blob = _status = None
    get_settings.cache_clear()
