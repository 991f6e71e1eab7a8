"""The embedded PostgreSQL: first start, reuse, stop, restart with the data kept, concurrent starts.

Each test runs its own server in tmp_path and stops it in the fixture's finalizer, so that no
postgres process outlives the test. As root (CI) the server runs as `SERVER_USER`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared_core.adapters.postgres.embedded import (
    SERVER_USER,
    embedded_server_status,
    ensure_embedded_server,
    stop_embedded_server,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    """The `.ironlayer` folder of a throwaway project; its server is always stopped afterwards.

    As root, the server runs as SERVER_USER, which must be able to traverse every folder above the
    data directory. Every pytest session that starts re-closes /tmp/pytest-of-root (chmod go-rwx), so
    another session running at the same time would cut that user off from tmp_path in mid-test; root
    therefore gets a folder of its own in the system temp dir (removed afterwards).
    """
    base = Path(tempfile.mkdtemp(prefix="ironlayer-embedded-pg-")) if os.geteuid() == 0 else tmp_path
    folder = base / ".ironlayer"
    try:
        yield folder
    finally:
        stop_embedded_server(folder)
        if base != tmp_path:
            shutil.rmtree(base, ignore_errors=True)


def fetchval(url: str, sql: str) -> Any:
    async def go() -> Any:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return asyncio.run(go())


def execute(url: str, sql: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


def postmaster_pid(root: Path) -> int:
    return int((root / "postgres" / "postmaster.pid").read_text().splitlines()[0])


def test_start_reuse_stop_restart_keeps_data(root: Path) -> None:
    assert embedded_server_status(root) is None
    assert stop_embedded_server(root) is False

    started = time.perf_counter()
    url = ensure_embedded_server(root)
    first_start = time.perf_counter() - started
    print(f"first start (initdb + createdb + start): {first_start:.2f}s")

    assert url.startswith("postgresql://postgres@127.0.0.1:")
    assert not url.endswith(":5432/ironlayer")
    assert fetchval(url, "SELECT 1") == 1
    assert fetchval(url, "SELECT current_database()") == "ironlayer"
    assert fetchval(url, "SHOW unix_socket_directories") == ""
    assert (root / "postgres" / "server.log").read_text().count("ready to accept connections") == 1
    if os.geteuid() == 0:  # PostgreSQL refuses root: the server runs as the unprivileged system user
        import pwd

        assert os.stat(f"/proc/{postmaster_pid(root)}").st_uid == pwd.getpwnam(SERVER_USER).pw_uid
    execute(url, "CREATE TABLE kept (id integer); INSERT INTO kept VALUES (42)")

    reuses = []
    for _ in range(5):
        started = time.perf_counter()
        assert ensure_embedded_server(root) == url
        reuses.append(time.perf_counter() - started)
    print(f"reuse: best {min(reuses) * 1000:.1f} ms, worst {max(reuses) * 1000:.1f} ms")
    assert min(reuses) < 0.05
    assert embedded_server_status(root) == url

    assert stop_embedded_server(root) is True
    assert embedded_server_status(root) is None
    with pytest.raises(OSError):  # ConnectionRefusedError
        fetchval(url, "SELECT 1")
    assert stop_embedded_server(root) is False

    started = time.perf_counter()
    restarted = ensure_embedded_server(root)
    print(f"restart of the stopped server: {time.perf_counter() - started:.2f}s")
    assert fetchval(restarted, "SELECT id FROM kept") == 42
    assert (root / "postgres" / "server.log").read_text().count("ready to accept connections") == 2


def test_stale_pid_file_is_ignored(root: Path) -> None:
    """A postmaster.pid left by a crash or a reboot, naming a dead pid, does not block the start."""
    url = ensure_embedded_server(root)
    pid_file = root / "postgres" / "postmaster.pid"
    stale = pid_file.read_text()
    assert stop_embedded_server(root) is True
    gone = subprocess.Popen(["true"])
    gone.wait()
    lines = stale.splitlines()
    lines[0] = str(gone.pid)
    pid_file.write_text("\n".join(lines) + "\n")

    assert embedded_server_status(root) is None
    restarted = ensure_embedded_server(root)
    assert fetchval(restarted, "SELECT 1") == 1
    assert restarted.startswith(url.rsplit(":", 1)[0])


def test_concurrent_ensures_start_one_server(root: Path) -> None:
    script = (
        "import sys; from pathlib import Path; "
        "from shared_core.adapters.postgres.embedded import ensure_embedded_server; "
        "print(ensure_embedded_server(Path(sys.argv[1])))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err for _, err in results]
    urls = {out.strip() for out, _ in results}
    assert len(urls) == 1
    url = urls.pop()
    assert fetchval(url, "SELECT 1") == 1
    log = (root / "postgres" / "server.log").read_text()
    assert log.count("ready to accept connections") == 1
    assert log.count("running bootstrap script") == 1  # one initdb
