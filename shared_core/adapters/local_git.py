"""`LocalGitSource`: read commits and files straight from a local repository's object database.

It runs `git` plumbing commands (`rev-parse`, `ls-tree`, `cat-file --batch`), so it works on bare
repositories, never checks anything out and never touches a working tree. All blobs a plan needs are
read through one `cat-file --batch` process.

With `prefetch=True` (one planning run), listing files also starts reading their blobs in a
background `git` process (into a temporary file), so that git works on another core while the caller
does something else before `read_blobs`; what was listed or read is kept, and not asked of git again
(commits never change). Any failure of a background read is left to a plain `read_blobs`, which
reports it as before.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from shared_core.core.errors import SourceError

ZERO_SHA = "0" * 40


def is_zero_sha(ref: str) -> bool:
    """Whether `ref` is the all-zero SHA, whole or abbreviated to at least 4 digits as git abbreviates.

    >>> is_zero_sha("0000000"), is_zero_sha("0" * 40), is_zero_sha("000"), is_zero_sha("0000001")
    (True, True, False, False)
    """
    return 4 <= len(ref) <= 40 and set(ref) == {"0"}


class LocalGitSource:
    """A `GitSource` over a local repository (bare or not)."""

    def __init__(self, repo: str | Path, *, prefetch: bool = False) -> None:
        self.repo = Path(repo)
        self.prefetch = prefetch
        self._fetches: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []  # background reads, with output
        self._fetching: set[str] = set()
        self._blobs: dict[str, bytes] = {}  # blobs read so far (with prefetch)
        self._listed: dict[tuple[str, str, str], list[tuple[str, str]]] = {}  # list_files results (with prefetch)
        self._files: dict[tuple[str, str], str | None] = {}  # read_file results (with prefetch)
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
        """The full commit SHA of `ref`; the all-zero SHA, also abbreviated (`0000000`), means "nothing deployed yet".

        Raises:
            SourceError: `ref` names no commit; in a shallow clone, with a hint to fetch more history.
        """
        if is_zero_sha(ref):
            return ZERO_SHA
        if ref.startswith("-"):
            raise SourceError(f"{self.repo}: invalid ref '{ref}'; give a commit SHA, branch or tag")
        result = self._run(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"], check=False)
        if result.returncode != 0:
            if self._is_shallow():
                raise SourceError(
                    f"{self.repo}: unknown git ref '{ref}'; this is a shallow clone, so the commit may be in the "
                    "history it left out: run `git fetch --unshallow` (or `git fetch --depth=N` with N large enough)"
                )
            raise SourceError(f"{self.repo}: unknown git ref '{ref}'; check the branch, tag or commit SHA")
        return result.stdout.decode().strip()

    def _is_shallow(self) -> bool:
        result = self._run(["rev-parse", "--is-shallow-repository"], check=False)
        return result.returncode == 0 and result.stdout.decode().strip() == "true"

    def commit_time(self, sha: str) -> datetime:
        output = self._run(["show", "-s", "--format=%ct", sha]).stdout.decode().strip()
        return datetime.fromtimestamp(int(output), tz=UTC)

    def read_file(self, sha: str, path: str) -> str | None:
        if (sha, path) in self._files:
            return self._files[(sha, path)]
        result = self._run(["cat-file", "blob", f"{sha}:{path}"], check=False)
        text = result.stdout.decode("utf-8", errors="strict") if result.returncode == 0 else None
        if self.prefetch:
            self._files[(sha, path)] = text
        return text

    def list_files(self, sha: str, folder: str, suffix: str) -> list[tuple[str, str]]:
        if sha == ZERO_SHA:
            return []
        if (sha, folder, suffix) in self._listed:
            return list(self._listed[(sha, folder, suffix)])
        output = self._run(["ls-tree", "-r", "-z", "--full-tree", sha, "--", folder]).stdout.decode()
        files = []
        for entry in output.split("\0"):
            if not entry:
                continue
            meta, _, path = entry.partition("\t")
            mode, kind, blob = meta.split(" ")
            if kind == "blob" and path.endswith(suffix) and mode != "120000":
                files.append((path, blob))
        files.sort()
        if self.prefetch:
            self._listed[(sha, folder, suffix)] = list(files)
            self._start_reading([blob for _, blob in files])
        return files

    def read_blobs(self, blob_ids: Sequence[str]) -> dict[str, bytes]:
        unique = sorted(set(blob_ids))
        if not unique:
            return {}
        if not self.prefetch:
            return self._read_now(unique)
        self._finish_reading()
        missing = [blob for blob in unique if blob not in self._blobs]
        if missing:
            self._blobs.update(self._read_now(missing))
        return {blob: self._blobs[blob] for blob in unique}

    def _read_now(self, unique: list[str]) -> dict[str, bytes]:
        output = self._run(["cat-file", "--batch"], stdin=("\n".join(unique) + "\n").encode()).stdout
        blobs = _parse_batch(output, len(unique))
        if blobs is None or len(blobs) != len(unique):
            for blob in unique:
                if blob not in (blobs or {}):
                    raise SourceError(f"{self.repo}: git object {blob} is missing from the repository")
        assert blobs is not None
        return blobs

    def _start_reading(self, blob_ids: list[str]) -> None:
        """Start a background `cat-file --batch` for the blobs not read or being read yet."""
        new = sorted(set(blob_ids) - self._fetching - self._blobs.keys())
        if not new:
            return
        self._fetching.update(new)
        output = None
        try:
            with tempfile.TemporaryFile() as ids:
                ids.write(("\n".join(new) + "\n").encode())
                ids.seek(0)
                output = tempfile.TemporaryFile()  # noqa: SIM115 - kept open until _finish_reading reads it
                process = subprocess.Popen(
                    ["git", "-C", str(self.repo), "cat-file", "--batch"], stdin=ids, stdout=output,
                    stderr=subprocess.DEVNULL,
                )
        except OSError:
            if output is not None:
                output.close()
            return  # read_blobs reads them (and reports any error)
        self._fetches.append((process, output))

    def _finish_reading(self) -> None:
        """Wait for the background reads and keep what they read (a failed one reads nothing)."""
        fetches, self._fetches = self._fetches, []
        for process, output in fetches:
            with output:
                if process.wait() != 0:
                    continue
                output.seek(0)
                blobs = _parse_batch(output.read(), None)
            self._blobs.update(blobs or {})
        self._fetching.clear()


def _parse_batch(output: bytes, expected: int | None) -> dict[str, bytes] | None:
    """The blobs in `cat-file --batch` output, by id; stops at a missing object (returns what came before).

    Returns None when the output does not have the batch format at all.
    """
    blobs: dict[str, bytes] = {}
    offset = 0
    while offset < len(output) and (expected is None or len(blobs) < expected):
        newline = output.find(b"\n", offset)
        if newline < 0:
            return None
        header = output[offset:newline].decode().split(" ")
        if len(header) != 3:
            return blobs  # "<id> missing": the caller reports it
        size = int(header[2])
        blobs[header[0]] = output[newline + 1:newline + 1 + size]
        offset = newline + 1 + size + 1
    return blobs
