"""Lineage over networkx: the same models as the planner's DAG, listed in the project's order."""

from __future__ import annotations

import random

import pytest

from shared_core.core.errors import RefError
from shared_core.core.planning.lineage import Lineage
from shared_core.core.project.models import ModelSource, Project, load_project


def _random_project(seed: int, size: int) -> Project:
    rng = random.Random(seed)
    names = [f"m{rng.randrange(10**6):06d}_{i}" for i in range(size)]
    sources = []
    for i, name in enumerate(names):
        refs = rng.sample(names[:i], k=min(i, rng.randrange(4)))
        body = " UNION ALL ".join(f"SELECT * FROM {{{{ ref('s.{ref}') }}}}" for ref in refs) or "SELECT 1 AS x"
        sources.append(ModelSource(f"models/{name}.sql", f"-- name: s.{name}\n-- kind: FULL_REFRESH\n{body}\n"))
    rng.shuffle(sources)
    return load_project(sources)


@pytest.mark.parametrize("seed", range(10))
def test_lineage_lists_the_dag_closures_in_project_order(seed: int) -> None:
    project = _random_project(seed, 40)
    lineage = Lineage(project)
    for name in project.models:
        upstream, downstream = lineage.upstream(name), lineage.downstream(name)
        assert sorted(upstream) == project.graph.upstream(name)
        assert sorted(downstream) == project.graph.downstream(name)
        for listed in (upstream, downstream):
            assert [project.position[n] for n in listed] == sorted(project.position[n] for n in listed)
        assert all(project.position[u] < project.position[name] < project.position[d]
                   for u in upstream for d in downstream)


def test_direct_and_transitive_neighbours() -> None:
    def model(name: str, *refs: str) -> ModelSource:
        body = " UNION ALL ".join(f"SELECT * FROM {{{{ ref('{ref}') }}}}" for ref in refs) or "SELECT 1 AS x"
        return ModelSource(f"models/{name}.sql", f"-- name: s.{name}\n-- kind: FULL_REFRESH\n{body}\n")

    project = load_project([model("raw"), model("clean", "raw"), model("other"), model("daily", "clean", "other"),
                            model("report", "daily")])
    lineage = Lineage(project)
    assert lineage.upstream("s.report") == ["s.other", "s.raw", "s.clean", "s.daily"]
    assert lineage.downstream("s.raw") == ["s.clean", "s.daily", "s.report"]
    assert lineage.upstream("s.raw") == [] and lineage.downstream("s.report") == []


def test_an_unknown_model_is_a_ref_error() -> None:
    lineage = Lineage(_random_project(1, 3))
    with pytest.raises(RefError, match=r"lineage of 's\.nope': no such model; give a full model name"):
        lineage.downstream("s.nope")
