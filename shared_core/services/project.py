"""Project use cases: check every model at a commit, read a commit's project, and a model's lineage.

`ironlayer check`, `models` and `lineage` call these; the git source and the analyzer are arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared_core.core.errors import ModelError
from shared_core.core.project.check import check_sources
from shared_core.core.project.loading import load_commit, read_config
from shared_core.core.project.models import ModelSource, Project
from shared_core.ports import GitSource, QueryAnalyzer


@dataclass(frozen=True)
class CheckReport:
    """What `check_commit` found: the commit, how many model files and valid models, and every problem."""

    sha: str
    files: int
    models: int
    errors: list[ModelError]


def check_commit(source: GitSource, ref: str, analyzer: QueryAnalyzer) -> CheckReport:
    """Validate every model file at `ref` (headers, refs, the DAG, SQL and safety); every problem, in file order.

    Raises:
        SourceError: the ref or a file cannot be read.
        ProjectError: the project file is invalid.
    """
    sha = source.resolve(ref)
    files = source.list_files(sha, read_config(source, sha).models_path, ".sql")
    blobs = source.read_blobs([blob for _, blob in files])
    sources = [ModelSource(path, blobs[blob].decode("utf-8", errors="replace")) for path, blob in files]
    project, errors = check_sources(sources, analyzer)
    return CheckReport(sha, len(files), len(project) if project else 0, errors)


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
