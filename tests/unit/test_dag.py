"""The DAG: order agrees with networkx's lexicographical topological sort; cycles print their path."""

from __future__ import annotations

import random

import networkx as nx
import pytest

from shared_core.core.errors import CycleError
from shared_core.core.planning.dag import Graph


def _random_dag(seed: int, size: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    names = [f"m{rng.randrange(10**6):06d}_{i}" for i in range(size)]
    return {name: rng.sample(names[:i], k=min(i, rng.randrange(4))) for i, name in enumerate(names)}


@pytest.mark.parametrize("seed", range(25))
def test_order_matches_networkx(seed: int) -> None:
    upstreams = _random_dag(seed, 60)
    graph = nx.DiGraph()
    graph.add_nodes_from(upstreams)
    graph.add_edges_from((u, n) for n, ups in upstreams.items() for u in ups)
    assert Graph(upstreams).topological_order() == list(nx.lexicographical_topological_sort(graph))


@pytest.mark.parametrize("seed", range(10))
def test_upstream_downstream_and_waves_match_networkx(seed: int) -> None:
    upstreams = _random_dag(seed, 40)
    graph = nx.DiGraph()
    graph.add_nodes_from(upstreams)
    graph.add_edges_from((u, n) for n, ups in upstreams.items() for u in ups)
    ours = Graph(upstreams)
    waves = ours.waves()
    for node in upstreams:
        assert ours.upstream(node) == sorted(nx.ancestors(graph, node))
        assert ours.downstream(node) == sorted(nx.descendants(graph, node))
        longest = max((waves[u] + 1 for u in upstreams[node]), default=0)
        assert waves[node] == longest


def test_order_is_independent_of_insertion_order() -> None:
    upstreams = _random_dag(7, 50)
    reversed_input = dict(reversed(list(upstreams.items())))
    assert Graph(upstreams).topological_order() == Graph(reversed_input).topological_order()


def test_cycle_is_reported_with_its_path() -> None:
    graph = Graph({"a": ["c"], "b": ["a"], "c": ["b"], "d": []})
    assert graph.find_cycle() == ["a", "b", "c", "a"]
    with pytest.raises(CycleError) as caught:
        graph.topological_order()
    assert "a -> b -> c -> a" in str(caught.value)


def test_custom_key_breaks_ties() -> None:
    graph = Graph({"a": [], "b": [], "c": ["a"]})
    assert graph.topological_order(key=lambda n: {"a": 2, "b": 1, "c": 0}[n]) == ["b", "a", "c"]
