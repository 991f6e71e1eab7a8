"""Which PostgreSQL state store the settings name, for the CLI and the Functions alike.

IRONLAYER_DATABASE_URL connects as the application role and IRONLAYER_MIGRATION_DATABASE_URL (the owner
role) migrates. Without a URL, the embedded server under IRONLAYER_HOME: its superuser migrates and
`ironlayer_app` connects, through the very same code path.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from shared_core.adapters.postgres.embedded import embedded_server_status, ensure_embedded_server
from shared_core.adapters.postgres.store import app_url_for
from shared_core.settings import Settings


def store_urls(
    settings: Settings, *, start: bool = True, on_start: Callable[[Path], None] | None = None,
) -> tuple[str, str | None] | None:
    """(application URL, migration URL) of the state store, or None when none is configured or running.

    Args:
        settings: the settings (database URLs, home).
        start: start the embedded server when no URL is configured; else only use it when it runs.
        on_start: called with the server's folder just before an embedded server is started.

    Returns:
        The URLs, or None (no URL configured, `start` false and the embedded server not running).
    """
    if settings.database_url:
        return settings.database_url, settings.migration_database_url or None
    owner = (ensure_embedded_server(settings.home, on_start=on_start) if start
             else embedded_server_status(settings.home))
    return (app_url_for(owner), owner) if owner else None


def migration_url(settings: Settings, *, on_start: Callable[[Path], None] | None = None) -> str:
    """The URL migrations run with: the owner role, else the configured URL, else the embedded superuser."""
    return (settings.migration_database_url or settings.database_url
            or ensure_embedded_server(settings.home, on_start=on_start))

