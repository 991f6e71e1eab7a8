"""`LocalGitSource`: read commits and files straight from a local repository's object database.

It runs `git` plumbing commands (`rev-parse`, `ls-tree`, `cat-file --batch`), so it works on bare
repositories, never checks anything out and never touches a working tree. All blobs a plan needs are
read through one `cat-file --batch` process.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from shared_core.errors import SourceError

ZERO_SHA = "0" * 40


class LocalGitSource:
    """A `GitSource` over a local repository (bare or not)."""

    def __init__(self, repo: str | Path) -> None:
        self.repo = Path(repo)
        if not self.repo.exists():
            raise SourceError(f"{self.repo}: no such directory; give the path of a git repository")
        result = self._run(["rev-parse", "--absolute-git-dir"], check=False)
        if result.returncode != 0:
            raise SourceError(f"{self.repo}: not a git repository; run 'git init' there or give another path")
        self.git_dir = Path(result.stdout.decode().strip())

    def _run(
        self, args: list[str], *, check: bool = True, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        try:
            result = subprocess.run(
                ["git", "-C", str(self.repo), *args], input=stdin, capture_output=True, check=False,
            )
        except FileNotFoundError:
            raise SourceError("the 'git' command is not installed; install git to read repositories") from None
        if check and result.returncode != 0:
            message = result.stderr.decode(errors="replace").strip().splitlines()
            raise SourceError(f"{self.repo}: git {args[0]} failed: {message[-1] if message else 'unknown error'}")
        return result

    def resolve(self, ref: str) -> str:
        """The full commit SHA of `ref`; the all-zero SHA passes through ("nothing deployed yet")."""
        if ref == ZERO_SHA:
            return ZERO_SHA
        if ref.startswith("-"):
            raise SourceError(f"{self.repo}: invalid ref '{ref}'; give a commit SHA, branch or tag")
        result = self._run(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"], check=False)
        if result.returncode != 0:
            raise SourceError(f"{self.repo}: unknown git ref '{ref}'; check the branch, tag or commit SHA")
        return result.stdout.decode().strip()

    def commit_time(self, sha: str) -> datetime:
        output = self._run(["show", "-s", "--format=%ct", sha]).stdout.decode().strip()
        return datetime.fromtimestamp(int(output), tz=UTC)

    def read_file(self, sha: str, path: str) -> str | None:
        result = self._run(["cat-file", "blob", f"{sha}:{path}"], check=False)
        return result.stdout.decode("utf-8", errors="strict") if result.returncode == 0 else None

    def list_files(self, sha: str, folder: str, suffix: str) -> list[tuple[str, str]]:
        if sha == ZERO_SHA:
            return []
        output = self._run(["ls-tree", "-r", "-z", "--full-tree", sha, "--", folder]).stdout.decode()
        files = []
        for entry in output.split("\0"):
            if not entry:
                continue
            meta, _, path = entry.partition("\t")
            mode, kind, blob = meta.split(" ")
            if kind == "blob" and path.endswith(suffix) and mode != "120000":
                files.append((path, blob))
        return sorted(files)

    def read_blobs(self, blob_ids: Sequence[str]) -> dict[str, bytes]:
        unique = sorted(set(blob_ids))
        if not unique:
            return {}
        output = self._run(["cat-file", "--batch"], stdin=("\n".join(unique) + "\n").encode()).stdout
        blobs: dict[str, bytes] = {}
        offset = 0
        for blob in unique:
            newline = output.index(b"\n", offset)
            header = output[offset:newline].decode().split(" ")
            if len(header) != 3:
                raise SourceError(f"{self.repo}: git object {blob} is missing from the repository")
            size = int(header[2])
            blobs[header[0]] = output[newline + 1:newline + 1 + size]
            offset = newline + 1 + size + 1
        return blobs
