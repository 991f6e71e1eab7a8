"""A real Azurite blob service for integration tests: the session fixture `azurite_blob`.

It starts `azurite-blob` (npm package `azurite`) on 127.0.0.1 and a free port, with its data in a
temporary folder, waits until it accepts connections, yields the well-known `devstoreaccount1`
connection string for that port, and stops it by process group at the end of the session.

The binary is looked up at `.ci/node_modules/.bin/azurite-blob` (where `.ci/run` installs it), then on
PATH. Without it the fixture fails, saying how to install it: integration tests never skip silently.

Use it from a test module with `from azurite import azurite_blob_fixture` and ask for `azurite_blob`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCAL_BINARY = ROOT / ".ci" / "node_modules" / ".bin" / "azurite-blob"
INSTALL_HINT = "install it with: npm install --prefix .ci azurite@3   (run from the repository root; needs Node.js)"
ACCOUNT = "devstoreaccount1"
# Azurite's fixed development key, documented by Microsoft; not a secret.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
START_TIMEOUT = 30.0


def find_azurite() -> str | None:
    """The `azurite-blob` executable: the one under `.ci/node_modules`, else the one on PATH."""
    if LOCAL_BINARY.is_file() and os.access(LOCAL_BINARY, os.X_OK):
        return str(LOCAL_BINARY)
    return shutil.which("azurite-blob")


def connection_string(port: int) -> str:
    """The connection string of Azurite's development account on `127.0.0.1:port`."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop Azurite's process group (node may have children): SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _tail(path: Path) -> str:
    text = path.read_text("utf-8", errors="replace") if path.exists() else ""
    return "\n".join(text.strip().splitlines()[-20:]) or "(no output)"


@pytest.fixture(scope="session", name="azurite_blob")
def azurite_blob_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start Azurite's blob service for the session; yields its connection string."""
    binary = find_azurite()
    if binary is None:
        pytest.fail(f"Azurite (azurite-blob) was not found in {LOCAL_BINARY.parent} or on PATH; {INSTALL_HINT}")
    folder = tmp_path_factory.mktemp("azurite")
    log = folder / "azurite.log"
    port = free_port()
    command = [
        binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(folder / "data"),
        "--silent", "--disableTelemetry", "--skipApiVersionCheck", "--loose",
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _accepts(port):
            if process.poll() is not None:
                pytest.fail(f"Azurite exited with code {process.returncode} before listening:\n{_tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"Azurite did not listen on 127.0.0.1:{port} within {START_TIMEOUT:.0f} s:\n{_tail(log)}")
            time.sleep(0.1)
        yield connection_string(port)
    finally:
        _stop(process)
