"""The README's two commands on a machine with nothing prepared, and the demo's promise.

- `make test` without a PostgreSQL server: a part of the suite runs in a subprocess with the test database
  URL pointed at a closed port, and passes on the embedded PostgreSQL it starts (and stops, and removes).
- `make demo`: every command it prints works when pasted as printed, from the folder it ran in; its state
  lives in the demo repository's git directory, so nothing else appears in that folder and nothing is
  untracked in the repository; a line says when the embedded server starts.

Both run as subprocesses from a folder in the system temp dir (as root the embedded server runs as another
user, who must be able to reach it), with this checkout's code on PYTHONPATH.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared_core.adapters.postgres.embedded import embedded_server_status, stop_embedded_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "shared_core.cli"]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens on it once the socket is closed


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without IronLayer's settings, with this checkout's code first on the path."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("IRONLAYER_") and not k.startswith("PYTEST_")}
    return {**kept, "PYTHONPATH": str(ROOT), **extra}


def test_the_tests_use_an_embedded_postgresql_when_no_server_answers() -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/postgres"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly",
         "tests/integration/test_state_store.py::test_plans_keep_their_bytes_store_once_and_list_newest_first",
         "tests/integration/test_state_store.py::test_a_reset_batch_makes_the_ledger_forget_the_model_first"],
        cwd=ROOT, env=clean_environment(IRONLAYER_TEST_DATABASE_URL=url), capture_output=True, text=True,
        timeout=600, check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "2 passed" in output and "ConnectionRefusedError" not in output
    said = re.search(rf"no PostgreSQL answers at {re.escape(url)} \(IRONLAYER_TEST_DATABASE_URL\); starting the "
                     r"embedded PostgreSQL under (\S+) for this session", output)
    assert said is not None, output
    assert not Path(said.group(1)).exists()  # stopped and removed at the end of the session


@pytest.fixture
def folder() -> Iterator[Path]:
    """An empty folder to run the demo in; whatever server the demo left running is stopped afterwards."""
    base = Path(tempfile.mkdtemp(prefix="ironlayer-demo-test-"))
    try:
        yield base
    finally:
        stop_embedded_server(base / "demo" / "repo" / ".git" / "ironlayer")
        shutil.rmtree(base, ignore_errors=True)


def test_every_command_the_demo_prints_works_when_pasted(folder: Path) -> None:
    environment = clean_environment()
    demo = subprocess.run([*CLI, "demo", "--dir", "demo"], cwd=folder, env=environment, capture_output=True,
                          text=True, timeout=600, check=False)
    output = demo.stdout + demo.stderr
    assert demo.returncode == 0, output
    state = folder / "demo" / "repo" / ".git" / "ironlayer"
    assert output.count(f"starting the embedded PostgreSQL under {state.resolve()}") == 1
    assert embedded_server_status(state) is not None
    assert sorted(os.listdir(folder)) == ["demo"]  # no state folder where the command ran
    untracked = subprocess.run(["git", "-C", str(folder / "demo" / "repo"), "status", "--porcelain"],
                               capture_output=True, text=True, check=True).stdout
    assert untracked == ""  # the state lives inside .git: nothing untracked in the repository

    ran = [line[2:] for line in demo.stdout.splitlines() if line.startswith("$ ironlayer ")]
    suggested = [line.strip() for line in demo.stdout.splitlines() if line.startswith("  ironlayer ")]
    assert ran[0] == f"ironlayer plan demo/repo 0000000 {ran[0].split()[4]} --out demo/plan-1.json"
    assert len(ran[0].split()[4]) == 7  # short SHAs
    assert "--warehouse demo/warehouse.duckdb" in ran[1]
    assert [c.split()[1] for c in ran] == ["plan", "apply", "plan", "apply"]
    assert [c.split()[1] for c in suggested] == ["runs", "status", "show", "lineage", "db"]
    for command in ran + suggested:
        pasted = subprocess.run([*CLI, *shlex.split(command)[1:]], cwd=folder, env=environment,
                                capture_output=True, text=True, timeout=300, check=False)
        assert pasted.returncode == 0, f"{command}\n{pasted.stdout}{pasted.stderr}"
        assert "Traceback" not in pasted.stderr
        assert "starting the embedded PostgreSQL" not in pasted.stderr  # the demo's server, found and reused
    assert embedded_server_status(state) is None  # the last suggestion, `ironlayer db stop demo/repo`, stopped it
    assert sorted(os.listdir(folder)) == ["demo"]
