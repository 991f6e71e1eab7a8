"""Load the projects of commits from a `GitSource`: project file, model files, resolved models.

`load_commits` loads several commits (a plan's target and base) in one go: the files they share are
read from the source once and scanned (header and refs) once, by blob id, optionally reusing the
scans of earlier runs. The result, and the first error raised, are exactly those of calling
`load_commit` for each commit in the order given.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared_core.core.errors import ModelError, SourceError
from shared_core.core.project.config import PROJECT_FILES, ProjectConfig, parse_project_config
from shared_core.core.project.models import ModelSource, Project, ScannedSource, load_project, scan_source

if TYPE_CHECKING:  # the port is a type here; ports.py imports the core at run time
    from shared_core.ports import GitSource

ZERO_SHA = "0" * 40


@dataclass(frozen=True)
class CommitProject:
    """A commit's resolved project and its configuration."""

    sha: str
    config: ProjectConfig
    project: Project


def read_config(source: GitSource, sha: str) -> ProjectConfig:
    """The project configuration at `sha` (defaults when there is no project file)."""
    if sha == ZERO_SHA:
        return ProjectConfig()
    for filename in PROJECT_FILES:
        text = source.read_file(sha, filename)
        if text is not None:
            return parse_project_config(filename, text)
    return ProjectConfig()


def load_commit(source: GitSource, sha: str) -> CommitProject:
    """Read and resolve every model at commit `sha` (an empty project for the all-zero SHA).

    Raises:
        ProjectError: an invalid project file.
        ModelError: an invalid model (the message names the file and the commit).
        SourceError: the commit or a file cannot be read.
    """
    return load_commits(source, [sha])[0]


def load_commits(
    source: GitSource, shas: Sequence[str], *, scans: MutableMapping[str, ScannedSource] | None = None
) -> list[CommitProject]:
    """Load each commit of `shas`, reading and scanning every distinct model file once.

    Args:
        source: the repository.
        shas: commit SHAs (the all-zero SHA gives an empty project).
        scans: scans by blob id, reused when present and filled in for the files scanned here
            (a blob id names the file's bytes, and a scan depends on the bytes alone).

    Returns:
        The commits' projects, in the order of `shas`.

    Raises:
        ProjectError, ModelError, SourceError: as `load_commit`, for the first commit (in the order
            given) that fails.
    """
    memo: MutableMapping[str, ScannedSource] = {} if scans is None else scans
    listed: list[tuple[str, ProjectConfig, list[tuple[str, str]]]] = []
    failure: Exception | None = None
    for sha in shas:
        try:
            config = read_config(source, sha)
            files = source.list_files(sha, config.models_path, ".sql") if sha != ZERO_SHA else []
        except Exception as exc:  # raised after the commits before this one, as loading one by one would
            failure = exc
            break
        listed.append((sha, config, files))
    wanted = sorted({blob for *_, files in listed for _, blob in files})
    for blob in wanted:  # scans known from earlier runs first: a source may be reading the files meanwhile
        memo.get(blob)
    try:
        blobs: dict[str, bytes] | None = source.read_blobs(wanted)
    except SourceError:
        blobs = None  # read commit by commit below, so that the error comes where it would one by one
    texts: dict[str, str] = {}
    made: dict[tuple[str, str], ModelSource] = {}  # the same file in several commits: one object
    loaded = []
    for sha, config, files in listed:
        data = blobs if blobs is not None else source.read_blobs([blob for _, blob in files])
        sources = []
        blob_of: dict[str, str] = {}
        for path, blob in files:
            model_source = made.get((path, blob))
            if model_source is None:
                text = texts.get(blob)
                if text is None:
                    try:
                        text = texts[blob] = data[blob].decode("utf-8")
                    except UnicodeDecodeError:
                        raise SourceError(
                            f"{path}: not UTF-8 text (at commit {sha[:12]}); save model files as UTF-8"
                        ) from None
                model_source = made[(path, blob)] = ModelSource(path, text)
            sources.append(model_source)
            blob_of[path] = blob

        def scan(model_source: ModelSource, blob_of: dict[str, str] = blob_of) -> ScannedSource:
            blob = blob_of[model_source.path]
            found = memo.get(blob)
            if found is None:
                found = memo[blob] = scan_source(model_source)
            return found

        try:
            project = load_project(sources, scan=scan, default_start=config.default_start)
        except ModelError as exc:
            exc.args = (f"{exc.args[0]} (at commit {sha[:12]})",)
            raise
        loaded.append(CommitProject(sha, config, project))
    if failure is not None:
        raise failure
    return loaded
