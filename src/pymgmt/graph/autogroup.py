"""AutoGroup: merge like vertices that may run as one (pure).

The shipped algorithm is the non-reachability grouper of mgmt's "Automatic
grouping" article: two vertices of the same kind may be grouped only if
neither can reach the other, since a path between them is a dependency that
one vertex could not honour. Grouping is done kind by kind on the graph as
already grouped (reachability recomputed between kinds, as bitsets), which
is what keeps merges of *different* kinds from creating a cycle together.

Grouping keeps every member intact (the kind's ``group`` receives them), so
a later graph can split them again, and re-attaches every edge to the
group's leader, so the grouped graph is a faithful representation of the
original: anything that reached a member reaches the group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .model import Edge, Graph, Key
from .reachability import ancestors, descendants
from .toposort import toposort


class AutoGrouper(Protocol):
    """Decides which vertices to group; pluggable, as in mgmt."""

    name: str

    def groups(self, graph: Graph[Any], may_group: Callable[[Any, Any], bool]) -> list[list[Key]]:
        """Lists of vertex keys to merge, the leader first."""
        ...


class NonReachabilityGrouper:
    name = "non-reachability"

    def groups(self, graph: Graph[Any], may_group: Callable[[Any, Any], bool]) -> list[list[Key]]:
        owner: dict[Key, Key] = {k: k for k in graph.vertices}  # vertex -> its group leader
        result: dict[Key, list[Key]] = {}
        kinds = sorted({k[0] for k in graph.vertices})
        for kind in kinds:
            candidates = [k for k, v in graph.vertices.items() if k[0] == kind and may_group(v, v)]
            if len(candidates) < 2:
                continue
            # Reachability of the graph as grouped so far (groups as single vertices).
            nodes = sorted(set(owner.values()))
            edges = {(owner[e.src], owner[e.dst]) for e in graph.edges}
            edges = {e for e in edges if e[0] != e[1]}
            order = toposort(nodes, edges)
            pos = {k: i for i, k in enumerate(order)}
            kids: dict[Key, list[Key]] = {k: [] for k in order}
            pars: dict[Key, list[Key]] = {k: [] for k in order}
            for s, d in edges:
                kids[s].append(d)
                pars[d].append(s)
            down = descendants(order, kids)
            up = ancestors(order, pars)
            # Greedy, in topological order: join the first compatible group.
            open_groups: list[tuple[list[Key], int, int, int]] = []  # members, bits, down, up
            for k in sorted(candidates, key=lambda c: pos[owner[c]]):
                node = owner[k]
                bit = 1 << pos[node]
                for i, (members, bits, gdown, gup) in enumerate(open_groups):
                    if bit & (gdown | gup) or bits & (down[node] | up[node]):
                        continue
                    leader = graph.vertices[members[0]]
                    if not may_group(leader, graph.vertices[k]):
                        continue
                    members.append(k)
                    open_groups[i] = (members, bits | bit, gdown | down[node], gup | up[node])
                    break
                else:
                    open_groups.append(([k], bit, down[node], up[node]))
            for members, *_ in open_groups:
                if len(members) > 1:
                    result[members[0]] = members
                    for m in members:
                        owner[m] = members[0]
        return [result[k] for k in sorted(result)]


def apply_groups(
    graph: Graph[Any], groups: list[list[Key]], merge: Callable[[Any, list[Any]], Any]
) -> Graph[Any]:
    """The grouped graph: each group becomes its leader, edges re-attached.

    `merge(leader, others)` returns the vertex that stands for the group
    (the kind decides how members combine). Parallel edges collapse into
    one whose ``notify`` is true if any of them notified.
    """
    leader_of: dict[Key, Key] = {}
    out: Graph[Any] = graph.derive({}, [])
    out.locations = {}
    for members in groups:
        for m in members:
            leader_of[m] = members[0]
    for key, v in graph.vertices.items():
        lead = leader_of.get(key, key)
        if lead != key:
            continue
        if key in leader_of:
            group = next(g for g in groups if g[0] == key)
            v = merge(v, [graph.vertices[m] for m in group[1:]])
        out.add(v, graph.locations.get(key))
    merged: dict[tuple[Key, Key], Edge] = {}
    for e in graph.edges:
        src, dst = leader_of.get(e.src, e.src), leader_of.get(e.dst, e.dst)
        if src == dst:
            continue  # cannot happen for non-reachable members; kept as a guard
        prev = merged.get((src, dst))
        if prev is None:
            merged[(src, dst)] = Edge(
                src, dst, e.name, e.notify, e.location, e.send, e.recv, e.auto
            )
        elif e.notify and not prev.notify:
            merged[(src, dst)] = Edge(
                src, dst, prev.name, True, prev.location, prev.send, prev.recv
            )
    out.edges = list(merged.values())
    return out
