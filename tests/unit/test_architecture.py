"""Import rules: the import-linter contracts hold, and the pure packages read neither the environment nor the clock."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PURE_PACKAGES = (ROOT / "shared_core" / "core", ROOT / "shared_core" / "security")

#: Modules the pure packages never import (import-linter checks the same; this also sees TYPE_CHECKING blocks).
FORBIDDEN_IMPORTS = frozenset({
    "azure", "asyncpg", "duckdb", "httpx", "rich", "functions",
    "shared_core.adapters", "shared_core.services", "shared_core.cli", "shared_core.settings",
})
#: `owner.attribute` calls that read the clock; `owner` is the last name before the attribute.
CLOCK_CALLS = frozenset({
    ("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today"),
    ("time", "time"), ("time", "time_ns"),
})
#: Names that read the process environment, as `os.<name>` or `from os import <name>`.
ENV_NAMES = frozenset({"environ", "environb", "getenv", "getenvb"})
CLOCK_IMPORTS = frozenset({("time", "time"), ("time", "time_ns")})


def test_import_linter_contracts_hold() -> None:
    """`lint-imports` (import-linter's CLI) passes every contract in pyproject.toml."""
    cli = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(cli), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local names bound by `import x as y` / `from m import x as y`, mapped to the name they stand for."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name.rsplit(".", 1)[-1]
    return aliases


def _owner(node: ast.expr, aliases: dict[str, str]) -> str:
    """The last name of a dotted expression: `datetime` for `datetime.datetime` or `dt` (`import datetime as dt`)."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _forbidden_module(name: str) -> bool:
    return any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN_IMPORTS)


def violations(source: str, path: str = "<module>") -> Iterator[str]:
    """Every environment read, clock call and forbidden import in one module's source, as `path:line: what`."""
    tree = ast.parse(source, path)
    aliases = _aliases(tree)
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _forbidden_module(alias.name):
                    yield f"{path}:{line}: imports {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if _forbidden_module(node.module):
                yield f"{path}:{line}: imports {node.module}"
            for alias in node.names:
                if node.module == "os" and alias.name in ENV_NAMES:
                    yield f"{path}:{line}: imports os.{alias.name} (the environment)"
                if (node.module, alias.name) in CLOCK_IMPORTS:
                    yield f"{path}:{line}: imports {node.module}.{alias.name} (the clock)"
        elif isinstance(node, ast.Attribute) and node.attr in ENV_NAMES and _owner(node.value, aliases) == "os":
            yield f"{path}:{line}: reads os.{node.attr} (the environment)"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = _owner(node.func.value, aliases)
            if (owner, node.func.attr) in CLOCK_CALLS:
                yield f"{path}:{line}: calls {owner}.{node.func.attr}() (the clock)"


def _pure_modules() -> list[Path]:
    return sorted(path for package in PURE_PACKAGES for path in package.rglob("*.py"))


def test_the_pure_packages_read_no_environment_or_clock_and_import_no_adapter() -> None:
    modules = _pure_modules()
    assert len(modules) > 20  # the walk really covers core/ and security/
    found = [v for path in modules for v in violations(path.read_text("utf-8"), str(path.relative_to(ROOT)))]
    assert found == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import os\nx = os.environ['A']\n", "m.py:2: reads os.environ (the environment)"),
        ("import os\nx = os.getenv('A')\n", "m.py:2: reads os.getenv (the environment)"),
        ("from os import environ\n", "m.py:1: imports os.environ (the environment)"),
        ("from datetime import datetime, UTC\nx = datetime.now(UTC)\n", "m.py:2: calls datetime.now() (the clock)"),
        ("import datetime\nx = datetime.datetime.utcnow()\n", "m.py:2: calls datetime.utcnow() (the clock)"),
        ("from datetime import date\nx = date.today()\n", "m.py:2: calls date.today() (the clock)"),
        ("import time\nx = time.time()\n", "m.py:2: calls time.time() (the clock)"),
        ("import time as t\nx = t.time_ns()\n", "m.py:2: calls time.time_ns() (the clock)"),
        ("import os as o\nx = o.environ\n", "m.py:2: reads os.environ (the environment)"),
        ("from datetime import datetime as DT\nx = DT.now()\n", "m.py:2: calls datetime.now() (the clock)"),
        ("from time import time\n", "m.py:1: imports time.time (the clock)"),
        ("import duckdb\n", "m.py:1: imports duckdb"),
        ("from azure.storage.blob import BlobClient\n", "m.py:1: imports azure.storage.blob"),
        ("def f():\n    import httpx\n", "m.py:2: imports httpx"),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import asyncpg\n", "m.py:3: imports asyncpg"),
        ("from shared_core.adapters.local_git import LocalGitSource\n", "m.py:1: imports shared_core.adapters.local_git"),
        ("import shared_core.settings\n", "m.py:1: imports shared_core.settings"),
        ("from rich.console import Console\n", "m.py:1: imports rich.console"),
    ],
)
def test_the_walk_finds_each_kind_of_violation(source: str, expected: str) -> None:
    assert list(violations(source, "m.py")) == [expected]


def test_the_walk_allows_values_passed_in() -> None:
    source = (
        "from datetime import UTC, datetime, timedelta\nimport time as _t\nx = _t.sleep\n"
        "def f(now: datetime, environ: dict[str, str]) -> datetime:\n"
        "    return datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=1) if environ.get('a') else now\n"
        "from shared_core.core.errors import ModelError\nimport shared_core.security.scrub\n"
    )
    assert list(violations(source, "m.py")) == []
