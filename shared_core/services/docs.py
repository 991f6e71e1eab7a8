"""Documentation use case: the static HTML site of the project at a commit, as files ready to write.

`ironlayer docs` calls this and writes the files with `adapters.site_folder.write_site`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared_core.core.docs import SiteInfo, render_site
from shared_core.core.docs.runtime_chart import ModelRuntime
from shared_core.core.project.loading import ZERO_SHA, load_commit
from shared_core.ports import GitSource


@dataclass(frozen=True)
class DocsSite:
    """The site of one commit: its SHA, how many models it documents, and its files by relative path."""

    sha: str
    models: int
    files: dict[str, bytes]


def docs_site(source: GitSource, ref: str, *, title: str,
              telemetry: Mapping[str, ModelRuntime] | None = None) -> DocsSite:
    """Render the documentation site of the project at `ref`.

    Args:
        source: the repository.
        ref: the commit, branch or tag to document.
        title: the project's name on every page (e.g. the repository's folder name).
        telemetry: executed steps per model (`shared_core.core.docs.runtime_chart.read_telemetry`): a runtime and
            cost chart on the page of each model it lists.

    Returns:
        The site; the same commit and title give the same bytes.

    Raises:
        SourceError, ProjectError, ModelError: the commit cannot be read or a model is invalid.
    """
    sha = source.resolve(ref)
    project = load_commit(source, sha).project
    committed = source.commit_time(sha).strftime("%Y-%m-%d") if sha != ZERO_SHA else ""
    return DocsSite(sha, len(project), render_site(project, SiteInfo(title, sha, committed), telemetry=telemetry))
