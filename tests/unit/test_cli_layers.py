"""The CLI's command modules never import each other: shared plumbing lives in `_runtime`, use cases in services.

`main` is the entry point that registers and dispatches the commands, so it may import the command modules;
they never import it (the demo receives `main` as an argument) nor one another.
"""

from __future__ import annotations

import ast
from pathlib import Path

CLI = Path(__file__).parents[2] / "shared_core" / "cli"
COMMAND_MODULES = {"execution", "security", "demo", "scaffold", "render"}


def cli_imports(module: str) -> set[str]:
    """The `shared_core.cli` submodules `module` imports, anywhere in its body."""
    tree = ast.parse((CLI / f"{module}.py").read_text("utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("shared_core.cli."):
                found.add(node.module.split(".")[2])
            elif node.module == "shared_core.cli":
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[2] for alias in node.names if alias.name.startswith("shared_core.cli."))
    return found


def test_command_modules_import_only_the_runtime_and_the_renderer() -> None:
    for module in sorted(COMMAND_MODULES):
        assert cli_imports(module) <= {"_runtime", "render"} - {module}, module


def test_the_runtime_imports_no_command_module() -> None:
    assert cli_imports("_runtime") == set()
