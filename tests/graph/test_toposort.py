"""check_acyclic: the yes/no of toposort, naming the very same cycle."""

from __future__ import annotations

import random

import pytest

from pymgmt.graph.toposort import CycleError, check_acyclic, toposort


def _key(i: int) -> tuple[str, str]:
    return ("file", f"/f{i:03d}")


def test_a_graph_without_edges_is_acyclic() -> None:
    check_acyclic([_key(i) for i in range(5)], [])


def test_a_dag_passes_and_a_cycle_is_named_as_toposort_names_it() -> None:
    rng = random.Random(7)
    for _ in range(200):
        n = rng.randrange(2, 12)
        keys = [_key(i) for i in range(n)]
        edges = {(rng.choice(keys), rng.choice(keys)) for _ in range(rng.randrange(1, 2 * n))}
        edges = {(a, b) for a, b in edges if a != b}
        try:
            toposort(keys, edges)
        except CycleError as e:
            with pytest.raises(CycleError) as got:
                check_acyclic(keys, edges)
            assert got.value.cycle == e.cycle
        else:
            check_acyclic(keys, edges)
