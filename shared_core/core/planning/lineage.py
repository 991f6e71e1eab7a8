"""Lineage of a project's models over a networkx graph: what a model reads and what reads it.

These queries answer a person (the `lineage` command), where networkx's import time does not matter;
the planner keeps its own lean `Graph` (dag.py) on the hot path. Edges point from an upstream model to
the model that reads it, as in `Graph`. Results follow the project's topological order (ties by name).
"""

from __future__ import annotations

from collections.abc import Iterable

import networkx as nx

from shared_core.core.errors import RefError
from shared_core.core.project.models import Project


class Lineage:
    r"""The model graph of one project, for upstream and downstream queries.

    >>> from shared_core.core.project.models import ModelSource, load_project
    >>> def model(name, sql):
    ...     return ModelSource(f"{name}.sql", f"-- name: s.{name}\n-- kind: FULL_REFRESH\n{sql}")
    >>> project = load_project([model("a", "SELECT 1"), model("b", "SELECT * FROM {{ ref('a') }}"),
    ...                         model("c", "SELECT * FROM {{ ref('b') }}")])
    >>> Lineage(project).upstream("s.c"), Lineage(project).downstream("s.a")
    (['s.a', 's.b'], ['s.b', 's.c'])
    """

    def __init__(self, project: Project) -> None:
        self._position = project.position
        self._graph = nx.DiGraph()
        self._graph.add_nodes_from(project.order)
        self._graph.add_edges_from((upstream, name) for name in project.order for upstream in project[name].upstream)

    def upstream(self, name: str) -> list[str]:
        """Every model `name` reads, directly or through others, upstream first.

        Raises:
            RefError: `name` is not a model of the project (resolve user input with `Project.resolve_name`).
        """
        return self._ordered(nx.ancestors(self._graph, self._node(name)))

    def downstream(self, name: str) -> list[str]:
        """Every model that reads `name`, directly or through others, upstream first.

        Raises:
            RefError: `name` is not a model of the project.
        """
        return self._ordered(nx.descendants(self._graph, self._node(name)))

    def _node(self, name: str) -> str:
        if name not in self._position:
            raise RefError(f"lineage of '{name}': no such model; give a full model name")
        return name

    def _ordered(self, names: Iterable[str]) -> list[str]:
        return sorted(names, key=self._position.__getitem__)
