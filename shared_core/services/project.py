"""Project use cases: check every model (at a commit or as edited), read a commit's project, a model's lineage.

`ironlayer check`, `models` and `lineage` call these; the git source and the analyzer are arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared_core.core.errors import ModelError
from shared_core.core.project.check import check_files
from shared_core.core.project.config import PROJECT_FILES, ProjectConfig, parse_project_config
from shared_core.core.project.loading import load_commit, read_config
from shared_core.core.project.models import Project
from shared_core.ports import GitSource, QueryAnalyzer, WorkingFiles


@dataclass(frozen=True)
class CheckReport:
    """What a check found: where (a commit, or files as edited), how many model files and valid models, and
    every problem."""

    sha: str | None  # the commit checked; None for a working tree
    where: str  # "commit 1a2b3c4d5e6f" or "the working tree of ."
    files: int
    models: int
    errors: list[ModelError]


def check_commit(source: GitSource, ref: str, analyzer: QueryAnalyzer) -> CheckReport:
    """Validate every model file at `ref` (bytes, headers, refs, the DAG, SQL and safety); every problem, in
    file order (see `shared_core.core.project.check`).

    Raises:
        SourceError: the ref or a file cannot be read.
        ProjectError: the project file is invalid.
    """
    sha = source.resolve(ref)
    config = read_config(source, sha)
    files = source.list_files(sha, config.models_path, ".sql")
    blobs = source.read_blobs([blob for _, blob in files])
    project, errors = check_files([(path, blobs[blob]) for path, blob in files], analyzer,
                                  default_start=config.default_start)
    return CheckReport(sha, f"commit {sha[:12]}", len(files), len(project) if project else 0, errors)


def check_working_files(files: WorkingFiles, analyzer: QueryAnalyzer) -> CheckReport:
    """Validate every model file as it is being edited: uncommitted changes and new files included.

    Raises:
        SourceError: a file cannot be read.
        ProjectError: the project file is invalid.
    """
    config = ProjectConfig()
    for filename in PROJECT_FILES:
        text = files.read_file(filename)
        if text is not None:
            config = parse_project_config(filename, text)
            break
    paths = files.list_files(config.models_path, ".sql")
    data = files.read_bytes(paths)
    project, errors = check_files([(path, data[path]) for path in paths], analyzer, default_start=config.default_start)
    return CheckReport(None, files.label, len(paths), len(project) if project else 0, errors)


def project_at(source: GitSource, ref: str) -> Project:
    """The resolved project at `ref`.

    Raises:
        SourceError, ProjectError, ModelError: the commit cannot be read or a model is invalid.
    """
    return load_commit(source, source.resolve(ref)).project


def lineage(project: Project, model: str) -> tuple[str, list[str], list[str]]:
    """The model's full name and its transitive upstream and downstream models, each in project order.

    Raises:
        RefError: `model` names no model, or is an ambiguous short name.
    """
    from shared_core.core.planning.lineage import Lineage  # networkx: only the lineage command pays its import

    name = project.resolve_name(model)
    graph = Lineage(project)
    return name, graph.upstream(name), graph.downstream(name)
