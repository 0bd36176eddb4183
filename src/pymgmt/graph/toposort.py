"""Topological order and cycle detection (pure)."""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from .model import Key


def toposort(vertices: Iterable[Key], edges: Iterable[tuple[Key, Key]]) -> list[Key]:
    """Kahn's algorithm, smallest ready key first (deterministic).

    Raises `CycleError` naming one cycle's path.
    """
    order_hint, children, indeg = _adjacency(vertices, edges)
    ready = [v for v in order_hint if indeg[v] == 0]
    heapq.heapify(ready)
    out: list[Key] = []
    while ready:
        v = heapq.heappop(ready)
        out.append(v)
        for c in children[v]:
            indeg[c] -= 1
            if indeg[c] == 0:
                heapq.heappush(ready, c)
    if len(out) != len(order_hint):
        left = {v for v in order_hint if indeg[v] > 0}
        raise CycleError(find_cycle(left, children))
    return out


def _adjacency(
    vertices: Iterable[Key], edges: Iterable[tuple[Key, Key]]
) -> tuple[list[Key], dict[Key, list[Key]], dict[Key, int]]:
    """The vertices in order, each one's children, and each one's count of parents."""
    order_hint = list(vertices)
    children: dict[Key, list[Key]] = {v: [] for v in order_hint}
    indeg: dict[Key, int] = dict.fromkeys(order_hint, 0)
    for src, dst in edges:
        children[src].append(dst)
        indeg[dst] += 1
    return order_hint, children, indeg


def check_acyclic(vertices: Iterable[Key], edges: Iterable[tuple[Key, Key]]) -> None:
    """Raise `CycleError` (the same cycle `toposort` names) if the edges form one.

    Compiling only needs the yes/no, not the order: this skips the heap that
    keeps `toposort` deterministic, and a graph without edges (100k plain
    files) costs nothing at all.
    """
    pairs = list(edges)
    if not pairs:
        return
    order_hint, children, indeg = _adjacency(vertices, pairs)
    ready = [v for v in order_hint if indeg[v] == 0]
    freed = 0
    while ready:
        v = ready.pop()
        freed += 1
        for c in children[v]:
            indeg[c] -= 1
            if indeg[c] == 0:
                ready.append(c)
    if freed != len(order_hint):
        left = {v for v in order_hint if indeg[v] > 0}
        raise CycleError(find_cycle(left, children))


def find_cycle(left: set[Key], children: dict[Key, list[Key]]) -> list[Key]:
    """One cycle among `left`, the vertices Kahn's algorithm could not free.

    Each of them still has a parent in `left`, so walking parents must loop.
    """
    parents: dict[Key, list[Key]] = {v: [] for v in left}
    for v in left:
        for c in children[v]:
            if c in left:
                parents[c].append(v)
    path: list[Key] = []
    index: dict[Key, int] = {}
    v = min(left)
    while v not in index:
        index[v] = len(path)
        path.append(v)
        v = parents[v][0]
    loop = path[index[v] :]
    loop.reverse()
    return [*loop, loop[0]]


class CycleError(ValueError):
    def __init__(self, cycle: list[Key]) -> None:
        self.cycle = cycle
        super().__init__(" -> ".join(f"{k}[{n}]" for k, n in cycle))
