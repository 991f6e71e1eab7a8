"""Shared test helpers: reproducible git repositories, the real `ironlayer plan` entry, the test database.

Repositories are written with `shared_core.adapters.git_writer` (fixed author, committer and commit
times), so the same trees always give the same commit SHAs and therefore the same plan bytes.

The test database: the PostgreSQL server at IRONLAYER_TEST_DATABASE_URL (default the local server on
127.0.0.1:5432) when it answers, else an embedded PostgreSQL (`shared_core.adapters.postgres.embedded`)
started for the session in a temporary folder and stopped at its end, so `make test` needs no database
set up. Either way each session creates its own database and drops it afterwards.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import asyncpg
import pytest

from shared_core.adapters.git_writer import commit_files, init_repo
from shared_core.cli.main import EXIT_OK, main

BASE_TIME = "2024-03-01T00:00:00+00:00"
TARGET_TIME = "2024-03-15T06:00:00+00:00"

Tree = Mapping[str, str]


def write_commits(repo: Path, trees: Sequence[Tree], times: Sequence[str] | None = None) -> list[str]:
    """Commit each tree in turn into a new repository at `repo`, as a full snapshot; returns the SHAs.

    Files of the previous tree that are missing from the next one are deleted in that commit.
    """
    if times is None:
        times = {1: [TARGET_TIME], 2: [BASE_TIME, TARGET_TIME]}.get(len(trees), [])
    if len(times) != len(trees):
        raise ValueError(f"give one commit time per tree ({len(trees)} trees, {len(times)} times)")
    init_repo(repo)
    shas: list[str] = []
    previous: Tree = {}
    for index, (tree, when) in enumerate(zip(trees, times, strict=True)):
        files: dict[str, str | None] = {path: None for path in previous if path not in tree}
        files.update(tree)
        shas.append(commit_files(repo, files, f"commit {index}", when))
        previous = tree
    return shas


def plan_bytes(repo: Path, base: str, target: str, out: Path, *extra: str) -> bytes:
    """Run `ironlayer plan REPO BASE TARGET --out OUT --no-cache EXTRA...` in-process; the plan file's bytes.

    Without `--watermarks` in `extra`, an empty ledger file is passed: the plan never falls back to
    whatever state store the machine running the tests happens to have configured or running.
    """
    args = ["plan", str(repo), base, target, "--out", str(out), *extra]
    if not any(a in ("--cache-dir", "--no-cache") for a in extra):
        args.append("--no-cache")
    if "--watermarks" not in extra:
        empty = out.parent / "empty-ledger.json"
        empty.parent.mkdir(parents=True, exist_ok=True)
        empty.write_text("{}\n", encoding="utf-8")
        args += ["--watermarks", str(empty)]
    code = main(args)
    assert code == EXIT_OK, f"ironlayer {' '.join(args)} exited with {code}"
    return out.read_bytes()


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., tuple[Path, list[str]]]:
    """Factory: `make_repo(trees, name="repo", times=None)` -> (repository path, commit SHAs)."""

    def factory(trees: Sequence[Tree], name: str = "repo", times: Sequence[str] | None = None) -> tuple[Path, list[str]]:
        repo = tmp_path / name
        return repo, write_commits(repo, trees, times)

    return factory


@pytest.fixture
def run_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., bytes]:
    """Factory: `run_plan(repo, base, target, *extra_args)` -> the plan file's bytes (stdout swallowed)."""
    counter = iter(range(1_000_000))

    def runner(repo: Path, base: str, target: str, *extra: str) -> bytes:
        out = tmp_path / "plans" / f"plan-{next(counter)}.json"
        data = plan_bytes(repo, base, target, out, *extra)
        capsys.readouterr()
        return data

    return runner


# -- a fresh PostgreSQL database per test session on the real server ------------------------------

CONFIGURED_URL = os.environ.get("IRONLAYER_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _answers(url: str) -> bool:
    """Whether a PostgreSQL server accepts a connection at `url` (a refused or unreachable one does not)."""

    async def probe() -> None:
        conn = await asyncpg.connect(url, timeout=5)
        await conn.close()

    try:
        asyncio.run(probe())
    except (TimeoutError, OSError):
        return False
    return True


@pytest.fixture(scope="session")
def server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A superuser URL of the session's PostgreSQL server: the configured one, else an embedded one."""
    if _answers(CONFIGURED_URL):
        yield CONFIGURED_URL
        return
    from shared_core.adapters.postgres.embedded import ensure_embedded_server, stop_embedded_server

    # In the system temp dir, not pytest's: as root the server runs as another user, who must be able to
    # reach the folder, and every pytest session closes /tmp/pytest-of-root to others when it starts.
    base = Path(tempfile.mkdtemp(prefix="ironlayer-test-pg-"))
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # said on the terminal, not captured with the test's output
            reporter.write_line(f"\nno PostgreSQL answers at {CONFIGURED_URL} (IRONLAYER_TEST_DATABASE_URL); "
                                f"starting the embedded PostgreSQL under {base} for this session")
    try:
        owner = ensure_embedded_server(base / "state")
        yield owner.rsplit("/", 1)[0] + "/postgres"
    finally:
        stop_embedded_server(base / "state")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def admin_database_url(server_url: str) -> Iterator[str]:
    """Create `ironlayer_test_<random>` for this session, migrated by its owner; dropped afterwards.

    This URL is the owner/superuser (it bypasses row-level security): tests use it to inspect state and
    to tamper with it, never as the application's connection.
    """
    from shared_core.adapters.postgres.store import PostgresStateStore

    name = f"ironlayer_test_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(server_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def migrate(url: str) -> None:
        store = PostgresStateStore(url)
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = f"{server_url.rsplit('/', 1)[0]}/{name}"
    try:
        asyncio.run(migrate(url))
        yield url
    finally:
        asyncio.run(admin(f'DROP DATABASE "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def database_url(admin_database_url: str) -> str:
    """The application's connection to the session database: the `ironlayer_app` role, under RLS."""
    from shared_core.adapters.postgres.store import app_url_for

    return app_url_for(admin_database_url)
