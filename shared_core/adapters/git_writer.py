"""Write commits into a local repository with fixed identities and times (demo, tests, benchmarks).

Commits made here are reproducible: the same files, message and time give the same commit SHA on
any machine, so plans built from them have the same IDs everywhere.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from shared_core.core.errors import SourceError

_IDENTITY = {"name": "IronLayer Demo", "email": "demo@ironlayer.dev"}


def _git(repo: Path, *args: str, when: str | None = None) -> str:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(repo),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": _IDENTITY["name"],
        "GIT_AUTHOR_EMAIL": _IDENTITY["email"],
        "GIT_COMMITTER_NAME": _IDENTITY["name"],
        "GIT_COMMITTER_EMAIL": _IDENTITY["email"],
    }
    if when:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = when
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, env=env, check=False)
    if result.returncode != 0:
        raise SourceError(f"{repo}: git {args[0]} failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout.decode().strip()


def init_repo(path: Path) -> Path:
    """Create an empty repository with branch `main` at `path` (which must not hold one yet)."""
    path.mkdir(parents=True, exist_ok=True)
    _git(path, "init", "-q", "-b", "main")
    return path


def commit_files(repo: Path, files: Mapping[str, str | None], message: str, when: str) -> str:
    """Write (or, for None, delete) `files` in the work tree, commit them all at `when`; returns the SHA.

    Args:
        repo: a repository made by `init_repo`.
        files: repository-relative path -> text, or None to delete the file.
        message: the commit message.
        when: commit time, e.g. "2024-01-08T06:00:00+00:00".
    """
    for relative, text in sorted(files.items()):
        path = repo / relative
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "--allow-empty", "-m", message, when=when)
    return _git(repo, "rev-parse", "HEAD")


def read_tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` as relative path -> text (sorted)."""
    return {
        str(path.relative_to(folder)): path.read_text("utf-8")
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
