"""The Functions app's import boundary: nothing it can run needs a package that the deployment does not ship.

The walk starts at function_app.py and follows every import of the project's own modules, at module level
and inside functions alike (the handlers import lazily), and `importlib.import_module("...")` calls with a
literal name; imports under `if TYPE_CHECKING:` are not run and are left out. Of what it reaches, no module
may import the CLI's packages (rich, the embedded PostgreSQL), and every other package must be the standard
library or come with a distribution that requirements.txt installs. The embedded server is development-only:
the app refuses to start without IRONLAYER_DATABASE_URL outside development and test, and its adapter only
looks the wheel up (`find_spec`) when it starts one.
"""

from __future__ import annotations

import ast
import sys
from importlib import metadata
from pathlib import Path

import pytest

from shared_core.cli.main import CLI_EXTRA_MODULES, main
from tests.infra.terraform import ROOT

sys.path.insert(0, str(ROOT / "infra"))
from requirements_txt import requirement_name, shipped_names  # a script beside the Terraform, not a package

PROJECT = ("shared_core", "functions", "function_app")


def _module_path(name: str) -> Path | None:
    base = ROOT / name.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, module: str) -> set[str]:
    """Every module name `path` (module `module`) may import when it runs."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # submodules, when they are files
        elif (isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))
              and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
        for inner in ast.iter_child_nodes(node):
            visit(inner)

    visit(ast.parse(path.read_text("utf-8")))
    return found


def _reachable() -> tuple[dict[str, str], dict[str, str]]:
    """(project module -> the module that first imports it, external top-level package -> its first importer)."""
    modules, external = {"function_app": "<start>"}, {}
    queue = ["function_app"]
    while queue:
        current = queue.pop()
        path = _module_path(current)
        assert path is not None, current
        for name in sorted(_imports(path, current)):
            top = name.split(".")[0]
            if top not in PROJECT:
                if top and top not in external:
                    external[top] = current
                continue
            parts = name.split(".")
            for end in range(1, len(parts) + 1):  # a module runs its packages' __init__ first
                candidate = ".".join(parts[:end])
                if candidate not in modules and _module_path(candidate) is not None:
                    modules[candidate] = current
                    queue.append(candidate)
    return modules, external


def test_the_app_never_imports_the_cli_or_its_packages() -> None:
    modules, external = _reachable()
    assert "functions.webhook" in modules and "shared_core.adapters.postgres.store" in modules  # the walk works
    assert not [name for name in modules if name.startswith("shared_core.cli")]
    for package in CLI_EXTRA_MODULES:
        assert package not in external, f"{package} is imported by {external.get(package)}"


def test_every_package_the_app_imports_is_shipped() -> None:
    _, external = _reachable()
    shipped = shipped_names((ROOT / "requirements.txt").read_text("utf-8"))
    providers = metadata.packages_distributions()
    for package, importer in external.items():
        if package in sys.stdlib_module_names or package == "__future__":
            continue
        distributions = {requirement_name(name) for name in providers.get(package, [])}
        assert distributions & shipped, f"{importer} imports {package}, which requirements.txt does not install"


def test_the_cli_without_its_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    for name in [name for name in sys.modules if name == "rich" or name.startswith(("rich.", "shared_core.cli.render"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "rich", None)  # as if the cli extra were not installed
    assert main(["show", "plan.json"]) == 2
    assert capsys.readouterr().err == (
        "error: this command needs the rich package; install the CLI extra: pip install 'ironlayer[cli]'\n")
