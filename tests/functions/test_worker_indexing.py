"""The app loads in Azure's real Python worker: every function is indexed by the worker's own loader.

`.ci/worker_index.py` runs under Python 3.13 with `azure-functions-runtime` (the worker code the Functions host
runs) in `.venv-worker` (`make worker-venv`; `make test` builds it). A binding the worker would refuse, such as
an activity input annotated `dict[str, Any]`, fails here rather than at deployment, where one refusal stops the
whole app.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.functions.conftest import functions_by_name

ROOT = Path(__file__).resolve().parents[2]
INDEXER = ROOT / ".ci" / "worker_index.py"


def worker_python() -> str:
    """The worker venv's interpreter; a missing venv fails the test (it is part of `make test`)."""
    configured = os.environ.get("IRONLAYER_WORKER_PYTHON")
    path = Path(configured) if configured else ROOT / ".venv-worker" / "bin" / "python"
    if not path.exists():
        pytest.fail(f"the Azure worker venv is missing ({path}); run `make worker-venv` (needs Python 3.13)")
    return str(path)


def index(app_dir: Path) -> tuple[int, dict[str, object]]:
    done = subprocess.run([worker_python(), str(INDEXER)], cwd=app_dir, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "IRONLAYER_ENVIRONMENT": "test"})
    lines = done.stdout.strip().splitlines()
    assert lines, f"the indexer printed nothing; stderr: {done.stderr[-2000:]}"
    return done.returncode, json.loads(lines[-1])


def test_every_function_of_the_app_is_indexed_by_the_worker() -> None:
    registered = sorted(functions_by_name())
    code, report = index(ROOT)
    assert report["refused"] == {}, f"the worker refuses: {report['refused']}"
    assert report["indexed"] == registered
    assert len(registered) >= 19
    assert code == 0
    assert str(report["python"]).startswith("3.13")


def test_the_indexer_reports_a_binding_the_worker_refuses(tmp_path: Path) -> None:
    (tmp_path / "function_app.py").write_text(
        "from typing import Any\n"
        "import azure.durable_functions as df\n"
        "app = df.DFApp()\n\n"
        "@app.activity_trigger(input_name='job')\n"
        "def typed_activity(job: dict[str, Any]) -> dict[str, Any]:\n"
        "    return job\n\n"
        "@app.activity_trigger(input_name='job')\n"
        "def plain_activity(job: dict) -> dict:\n"
        "    return job\n"
    )
    code, report = index(tmp_path)
    assert code == 1
    assert report["indexed"] == ["plain_activity"]
    refused = report["refused"]
    assert isinstance(refused, dict)
    assert list(refused) == ["typed_activity"]
    assert "invalid non-type annotation dict[str, typing.Any]" in refused["typed_activity"]


def test_the_worker_python_is_not_this_interpreter() -> None:
    # The point is to index with the host's worker on its own Python, not with the SDK this suite runs on.
    assert Path(worker_python()).resolve() != Path(sys.executable).resolve()
