"""The CLI's shared plumbing, built from one `Settings` per command: tenant, home, actor, the state store.

`main` calls `begin()` before each command; the settings are then read from the environment once, on
first use, so a command that needs none (`show`) reads none. Commands reach the state store through
`with_store`: the configured PostgreSQL, or the embedded server under IRONLAYER_HOME (started on demand).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from shared_core.settings import Settings, load_settings

if TYPE_CHECKING:
    from rich.console import Console

    from shared_core.ports import StateStore

T = TypeVar("T")


class CommandParsers(Protocol):
    """Where a command module registers its sub-commands (the `ironlayer` parser's sub-parsers)."""

    def add_parser(self, name: str, *, help: str | None = ...) -> argparse.ArgumentParser:
        """A new sub-command `name`, its parser returned for its arguments."""
        ...


_current: Settings | None = None


def begin() -> None:
    """Start a command: forget the settings read by an earlier command of this process."""
    global _current
    _current = None


def settings() -> Settings:
    """The settings of this command, read from the environment on first use.

    Raises:
        SettingsError: a setting is invalid.
    """
    global _current
    if _current is None:
        _current = load_settings()
    return _current


def tenant() -> str:
    """The tenant of local runs (IRONLAYER_TENANT, default `local`)."""
    return settings().tenant_id


def home() -> Path:
    """The local state folder (IRONLAYER_HOME, default `.ironlayer`)."""
    return settings().home


def actor() -> str:
    """Who the audit entries of this command name (IRONLAYER_ACTOR, else USER, else `cli`)."""
    return settings().actor


def store_urls(*, start: bool = True) -> tuple[str, str | None] | None:
    """(application URL, migration URL) of the state store, or None when none is configured or running."""
    from shared_core.adapters.state import store_urls as urls_of

    return urls_of(settings(), start=start)


def migration_url() -> str:
    """The URL migrations run with (the owner role, else the configured URL, else the embedded superuser)."""
    from shared_core.adapters.state import migration_url as url_of

    return url_of(settings())


def migrate_store() -> list[int]:
    """Create or upgrade the state store's schema as its owner and make sure this tenant exists.

    Returns:
        The versions of the migrations applied now (empty when the schema was up to date).
    """
    from shared_core.adapters.postgres.store import PostgresStateStore

    url, name = migration_url(), tenant()

    async def run() -> list[int]:
        store = PostgresStateStore(url)
        try:
            applied = await store.migrate()
            await store.ensure_tenant(name, name)
            return applied
        finally:
            await store.close()

    return asyncio.run(run())


def with_store(action: Callable[[StateStore], Awaitable[T]], *, urls: tuple[str, str | None] | None = None) -> T:
    """Run `action(store)` on the tenant's state store (migrating first when the schema is behind).

    Raises:
        StateError: the store cannot be opened or refuses the action.
    """
    from shared_core.adapters.postgres.store import open_store

    resolved = urls or store_urls()
    assert resolved is not None  # store_urls() starts the embedded server when nothing is configured

    async def run() -> T:
        store = await open_store(resolved[0], resolved[1], tenant())
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run())


def cache_dir(option: str | None, no_cache: bool, git_dir: Path) -> Path | None:
    """The cache folder (analyses, scans): --cache-dir, IRONLAYER_CACHE_DIR or the git dir; None for --no-cache."""
    if no_cache:
        return None
    if option:
        return Path(option)
    configured = settings().cache_dir
    return configured if configured is not None else git_dir / "ironlayer" / "cache"


def console() -> Console:
    """A rich console for the terminal (no automatic highlighting, long lines kept whole)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file, so a failure never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
