"""From a parsed graph to the graph the engine runs: AutoEdges, checks, AutoGroup.

Every frontend calls `compile_graph` after building its graph, so automatic
edges and grouping behave the same whichever way a graph was written, and a
cycle that only automatic edges create is still an input error raised before
anything runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..errors import InputError, Location
from ..graph.autoedge import add_autoedges
from ..graph.model import Edge, Graph, key_str
from ..graph.toposort import CycleError, toposort
from ..resources.base import Resource

log = logging.getLogger("pymgmt.compile")


@dataclass
class Compiled:
    graph: Graph[Resource]
    autoedges: list[Edge] = field(default_factory=list)


def compile_graph(graph: Graph[Resource]) -> Compiled:
    """Add AutoEdges and check the result is still a DAG (raises InputError)."""
    added = add_autoedges(graph, lambda r: r.meta.autoedge)
    for e in added:
        log.info("Adding AutoEdge: %s -> %s", key_str(e.src), key_str(e.dst))
    try:
        toposort(graph.vertices, ((e.src, e.dst) for e in graph.edges))
    except CycleError as c:
        auto = {(e.src, e.dst) for e in added}
        path = " -> ".join(key_str(k) for k in c.cycle)
        hops = list(zip(c.cycle, c.cycle[1:], strict=False))
        first = next((e for e in graph.edges if (e.src, e.dst) == hops[0]), None)
        hint = None
        if any(h in auto for h in hops):
            hint = "the cycle uses automatic edges; set 'meta: {autoedge: false}' on one of them"
        raise InputError(
            f"the edges form a cycle: {path}",
            location=first.location if first and first.location else Location(graph.source),
            field="edges",
            hint=hint,
        ) from None
    return Compiled(graph, added)
