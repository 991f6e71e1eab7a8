"""`WorkingTreeFiles`: the project files a user is editing, as they are on disk, not at a commit.

In a git repository the files are those git itself would consider: tracked files that still exist and
untracked files that `.gitignore` (and `.git/info/exclude`, the global excludes) does not ignore, listed by
`git ls-files --cached --others --exclude-standard`; uncommitted edits are read as they are. A folder that is
not in a git repository is read as it is (every file under it, hidden folders skipped). A bare repository
has no working tree: it is refused, with the hint to check a commit instead. Symbolic links are skipped, as
they are when a commit is read.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from shared_core.core.errors import SourceError


class WorkingTreeFiles:
    """The `WorkingFiles` of a repository's working tree (or of a plain folder)."""

    def __init__(self, repo: str | Path) -> None:
        path = Path(repo)
        if not path.is_dir():
            raise SourceError(f"{path}: no such directory; give the path of a project or git repository")
        inside = self._git(path, "rev-parse", "--is-inside-work-tree")
        self.git_dir: Path | None = None  # where the analysis cache lives (None: not in a repository)
        if inside is None:
            self.root, self.in_git = path.resolve(), False  # not a repository: the folder as it is
        elif inside != "true":  # a bare repository, or inside a .git folder
            raise SourceError(f"{path}: a bare repository has no working tree; check a commit with --ref REF")
        else:
            top = self._git(path, "rev-parse", "--show-toplevel")
            git_dir = self._git(path, "rev-parse", "--absolute-git-dir")
            self.root, self.in_git = Path(top or path).resolve(), True
            self.git_dir = Path(git_dir) if git_dir else None
        self.label = f"the working tree of {path}" if self.in_git else str(path)

    @staticmethod
    def _git(path: Path, *args: str) -> str | None:
        """The output of a git command in `path`, or None when it fails (or git is not installed)."""
        try:
            result = subprocess.run(["git", "-C", str(path), *args], capture_output=True, check=False)
        except FileNotFoundError:
            return None
        return result.stdout.decode().strip() if result.returncode == 0 else None

    def read_file(self, path: str) -> str | None:
        """The text of `path` (relative to the root), or None when it does not exist.

        Raises:
            SourceError: the file exists but is not UTF-8 text.
        """
        file = self.root / path
        if not file.is_file():
            return None
        try:
            return file.read_text("utf-8")
        except UnicodeDecodeError:
            raise SourceError(f"{path}: not UTF-8 text; save it as UTF-8") from None

    def list_files(self, folder: str, suffix: str) -> list[str]:
        """Relative paths of the files under `folder` ending in `suffix`, sorted (git's view inside a repository)."""
        base = self.root / folder
        if not base.is_dir():
            return []
        if self.in_git:
            output = subprocess.run(
                ["git", "-C", str(self.root), "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                 "--full-name", "--", folder], capture_output=True, check=False,
            )
            if output.returncode != 0:
                message = output.stderr.decode(errors="replace").strip().splitlines()
                raise SourceError(f"{self.root}: git ls-files failed: {message[-1] if message else 'unknown error'}")
            candidates = {entry for entry in output.stdout.decode().split("\0") if entry}
        else:
            candidates = set()
            for directory, folders, names in os.walk(base):
                folders[:] = sorted(name for name in folders if not name.startswith("."))
                relative = Path(directory).relative_to(self.root)
                candidates.update((relative / name).as_posix() for name in names)
        return sorted(
            path for path in candidates
            if path.endswith(suffix) and (self.root / path).is_file() and not (self.root / path).is_symlink()
        )

    def read_bytes(self, paths: Sequence[str]) -> dict[str, bytes]:
        """The bytes of each file, by relative path.

        Raises:
            SourceError: a file cannot be read.
        """
        found: dict[str, bytes] = {}
        for path in paths:
            try:
                found[path] = (self.root / path).read_bytes()
            except OSError as exc:
                raise SourceError(f"{path}: cannot be read ({exc.strerror}); check the file") from None
        return found
