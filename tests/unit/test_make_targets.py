"""The README's quick start wiring: `make test` installs Azurite itself, `.ci/run` runs `make test`, `make clean`
stops the embedded PostgreSQL servers before it removes their folders (checked with `make -n` on a copy).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def dry_run(folder: Path, target: str) -> list[str]:
    """The commands `make TARGET` would run in `folder`, one per line."""
    alone = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}  # under `make test`
    done = subprocess.run(["make", "-n", "--no-print-directory", target], cwd=folder, env=alone, capture_output=True,
                          text=True, check=True)
    return done.stdout.splitlines()


def index(lines: list[str], fragment: str) -> int:
    return next(i for i, line in enumerate(lines) if fragment in line)


def test_make_test_installs_azurite_when_missing_then_runs_the_suite(tmp_path: Path) -> None:
    (tmp_path / ".ci").mkdir()
    for name in ("Makefile", "pyproject.toml", ".ci/package.json", ".ci/package-lock.json", ".ci/worker-requirements.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    fresh = dry_run(tmp_path, "test")
    assert index(fresh, "command -v npm") < index(fresh, "npm ci --prefix .ci") < index(fresh, "/pytest -q")
    assert "needs Node.js (npm) to install Azurite" in fresh[index(fresh, "command -v npm")]
    binary = tmp_path / ".ci" / "node_modules" / ".bin" / "azurite-blob"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    installed = dry_run(tmp_path, "test")
    assert not any("npm" in line for line in installed) and installed[-1].endswith("/pytest -q")


def test_ci_runs_the_readme_test_command_and_installs_nothing_itself() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert "\nmake test\n" in script and "npm" not in script


def test_make_clean_stops_the_servers_before_removing_their_folders(tmp_path: Path) -> None:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    lines = dry_run(tmp_path, "clean")
    removal = index(lines, "rm -rf")
    assert index(lines, "ironlayer db stop .ironlayer/demo/repo") < removal
    assert lines[index(lines, "ironlayer db stop") + 1].endswith(".venv/bin/ironlayer db stop") and removal == 2
    assert ".ironlayer" in lines[removal] and "git rev-parse --git-common-dir" in lines[removal]
