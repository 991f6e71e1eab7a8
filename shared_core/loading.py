"""Load the project of one commit from a `GitSource`: project file, model files, resolved models."""

from __future__ import annotations

from dataclasses import dataclass

from shared_core.config import PROJECT_FILES, ProjectConfig, parse_project_config
from shared_core.errors import ModelError, SourceError
from shared_core.models import ModelSource, Project, load_project
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
    config = read_config(source, sha)
    files = source.list_files(sha, config.models_path, ".sql")
    blobs = source.read_blobs([blob for _, blob in files])
    sources = []
    for path, blob in files:
        try:
            sources.append(ModelSource(path, blobs[blob].decode("utf-8")))
        except UnicodeDecodeError:
            raise SourceError(f"{path}: not UTF-8 text (at commit {sha[:12]}); save model files as UTF-8") from None
    try:
        project = load_project(sources)
    except ModelError as exc:
        exc.args = (f"{exc.args[0]} (at commit {sha[:12]})",)
        raise
    return CommitProject(sha, config, project)
