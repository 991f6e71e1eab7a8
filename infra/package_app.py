"""Build the Functions app's deployment zip: what a `func`-less deployment publishes to the Flex Consumption app.

The zip holds the repository's files that `.funcignore` does not leave out (the same gitignore-style rules
Azure Functions Core Tools applies when it publishes): function_app.py, host.json, requirements.txt and the
`functions` and `shared_core` packages. It holds no installed packages: Azure's remote build installs
requirements.txt on the platform (`az functionapp deployment source config-zip --build-remote true`).
The zip is reproducible (entries sorted, fixed timestamps and permissions): the same tree gives the same bytes.
`python infra/package_app.py` (`make package`) writes dist/ironlayer-functionapp.zip and refuses to package a
requirements.txt that no longer matches pyproject.toml.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from requirements_txt import ROOT, requirements_text  # a sibling script, not a package

DEFAULT_OUT = ROOT / "dist" / "ironlayer-functionapp.zip"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry


@dataclass(frozen=True)
class IgnoreRule:
    """One line of .funcignore: a glob, whether it only matches folders, is anchored to the root, or re-includes."""

    pattern: str
    directory_only: bool
    anchored: bool
    negated: bool

    def matches(self, path: str, is_dir: bool) -> bool:
        """Whether this rule's glob matches `path` (relative, '/'-separated).

        >>> IgnoreRule("tests", True, False, False).matches("tests", True)
        True
        >>> IgnoreRule("*.pyc", False, False, False).matches("shared_core/x.pyc", False)
        True
        >>> IgnoreRule("docs", False, True, False).matches("shared_core/core/docs", True)
        False
        """
        if self.directory_only and not is_dir:
            return False
        if self.anchored:
            return fnmatch.fnmatchcase(path, self.pattern)
        return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], self.pattern)


def read_rules(text: str) -> list[IgnoreRule]:
    """The rules of a .funcignore file (blank lines and `#` comments skipped).

    A pattern with a `/` other than a trailing one is anchored to the root, as in .gitignore; a trailing `/`
    matches folders only; a leading `!` includes again what an earlier rule left out.

    >>> [(r.pattern, r.directory_only, r.anchored) for r in read_rules("# x\\n/dist/\\n*.pyc\\n")]
    [('dist', True, True), ('*.pyc', False, False)]
    """
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line.removeprefix("!")
        directory_only = line.endswith("/")
        line = line.rstrip("/")
        anchored = "/" in line
        rules.append(IgnoreRule(line.lstrip("/"), directory_only, anchored, negated))
    return rules


def ignored(path: str, is_dir: bool, rules: Sequence[IgnoreRule]) -> bool:
    """Whether `path` is left out: the last rule that matches decides (none: kept)."""
    verdict = False
    for rule in rules:
        if rule.matches(path, is_dir):
            verdict = not rule.negated
    return verdict


def package_files(root: Path, rules: Sequence[IgnoreRule]) -> Iterator[str]:
    """The relative paths of the files that go into the zip, sorted; a folder left out is not entered."""
    for folder, dirs, files in os.walk(root):
        relative = Path(folder).relative_to(root).as_posix()
        prefix = "" if relative == "." else relative + "/"
        dirs[:] = sorted(d for d in dirs if not ignored(prefix + d, True, rules)
                         and not (Path(folder) / d).is_symlink())
        for name in sorted(files):
            path = prefix + name
            if not ignored(path, False, rules) and not (Path(folder) / name).is_symlink():
                yield path


def build_package(root: Path, out: Path) -> list[str]:
    """Write the deployment zip of the app under `root` to `out` (atomically); returns the paths it holds.

    Raises:
        SystemExit: requirements.txt does not match pyproject.toml (run `make requirements`).
    """
    if (root / "requirements.txt").read_text("utf-8") != requirements_text(root / "pyproject.toml"):
        raise SystemExit("requirements.txt does not match pyproject.toml; run `make requirements`")
    rules = read_rules((root / ".funcignore").read_text("utf-8"))
    paths = sorted(package_files(root, rules))
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(handle, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in paths:
                entry = zipfile.ZipInfo(path, date_time=_ZIP_TIME)
                entry.compress_type = zipfile.ZIP_DEFLATED
                entry.external_attr = 0o644 << 16
                archive.writestr(entry, (root / path).read_bytes())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return paths


def main(argv: list[str] | None = None) -> int:
    """Build the zip; prints its path and size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"zip to write (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    paths = build_package(ROOT, args.out)
    print(f"{args.out} ({len(paths)} files, {args.out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
