"""The CLI's shared plumbing, built from one `Settings` per command: tenant, home, actor, the state store.

`main` calls `begin(repository)` before each command, naming the repository the command works on (its git
directory holds the project's local state); the settings are then read from the environment once, on
first use, so a command that needs none (`show`) reads none. Commands reach the state store through
`with_store`: the configured PostgreSQL, or the project's embedded server (started on demand, saying so).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from shared_core.core.errors import InputError
from shared_core.settings import Settings, load_settings

if TYPE_CHECKING:
    from rich.console import Console

    from shared_core.ports import StateStore

T = TypeVar("T")


class CommandParsers(Protocol):
    """Where a command module registers its sub-commands (the `ironlayer` parser's sub-parsers)."""

    def add_parser(self, name: str, *, help: str | None = ..., epilog: str | None = ...) -> argparse.ArgumentParser:
        """A new sub-command `name`, its parser returned for its arguments."""
        ...


_current: Settings | None = None
_repository: Path | None = None
PLAIN_WIDTH = 1000  # columns of tables printed to a file or pipe (CI logs): never wrapped at 80


def begin(repository: str | Path | None = None) -> None:
    """Start a command: forget the settings read by an earlier command of this process.

    Args:
        repository: the repository the command works on (REPO, --repo), whose git directory holds the
            local state; None: the repository around the current directory.
    """
    global _current, _repository
    _current = None
    _repository = Path(repository) if repository is not None else None


def settings() -> Settings:
    """The settings of this command, read from the environment on first use.

    Raises:
        SettingsError: a setting is invalid.
    """
    global _current
    if _current is None:
        _current = load_settings(repository=_repository)
    return _current


def tenant() -> str:
    """The tenant of local runs (IRONLAYER_TENANT, default `local`)."""
    return settings().tenant_id


def home() -> Path:
    """The project's local state folder (IRONLAYER_HOME, else `<git dir>/ironlayer`, else the user's)."""
    return settings().home


def announce_start(root: Path) -> None:
    """Say on stderr that an embedded PostgreSQL is being started (the first use can take seconds)."""
    print(f"starting the embedded PostgreSQL under {root} (`ironlayer db stop` stops it)", file=sys.stderr,
          flush=True)


def actor() -> str:
    """Who the audit entries of this command name (IRONLAYER_ACTOR, else USER, else `cli`)."""
    return settings().actor


def store_urls(*, start: bool = True) -> tuple[str, str | None] | None:
    """(application URL, migration URL) of the state store, or None when none is configured or running."""
    from shared_core.adapters.state import store_urls as urls_of

    return urls_of(settings(), start=start, on_start=announce_start)


def migration_url() -> str:
    """The URL migrations run with (the owner role, else the configured URL, else the embedded superuser)."""
    from shared_core.adapters.state import migration_url as url_of

    return url_of(settings(), on_start=announce_start)


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


def examples(*lines: str) -> str:
    """A help epilog: `example:` (or `examples:`) and the command lines, indented."""
    return ("example:" if len(lines) == 1 else "examples:") + "".join(f"\n  {line}" for line in lines)


def parse_time(text: str, option: str) -> datetime:
    """A UTC date or time given on the command line.

    Raises:
        InputError: not `YYYY-MM-DD[THH:MM[:SS]][Z]`, not UTC, or outside the years 0001-9999; names the option.
    """
    from shared_core.core.project.headers import parse_instant

    try:
        return parse_instant(text)
    except ValueError:
        raise InputError(f"{option} '{text}' is not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ "
                         "(UTC, years 0001 to 9999)") from None


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of a file the user named (a plan, a ledger).

    Raises:
        InputError: the file is not UTF-8 text (names the file and the byte).
        OSError: it cannot be read.
    """
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: this {what} is not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x}); "
                         "save it as UTF-8 JSON") from None


def console() -> Console:
    """A rich console (no automatic highlighting, long lines kept whole); full-width tables off a terminal."""
    from rich.console import Console

    made = Console(highlight=False, soft_wrap=True)
    return made if made.is_terminal else Console(highlight=False, soft_wrap=True, width=PLAIN_WIDTH)


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
