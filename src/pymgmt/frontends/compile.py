"""From a parsed graph to the graph the engine runs: AutoEdges, checks, AutoGroup.

Every frontend calls `compile_graph` after building its graph, so automatic
edges and grouping behave the same whichever way a graph was written, and a
cycle that only automatic edges create is still an input error raised before
anything runs.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

from ..errors import InputError, InputErrors, Location
from ..graph.autoedge import add_autoedges
from ..graph.autogroup import AutoGrouper, NonReachabilityGrouper, apply_groups
from ..graph.model import Edge, Graph, key_str
from ..graph.toposort import CycleError, toposort
from ..resources.base import Resource
from ..traits import Groupable, has
from ..types import describe, suggest, unwrap_optional

log = logging.getLogger("pymgmt.compile")


@dataclass
class Compiled:
    graph: Graph[Resource]
    autoedges: list[Edge] = field(default_factory=list)
    groups: list[list[str]] = field(default_factory=list)


def compile_graph(graph: Graph[Resource], grouper: AutoGrouper | None = None) -> Compiled:
    """AutoEdges, a DAG check, Send/Recv type checks, then AutoGroup.

    Raises InputError (or InputErrors) before anything runs.
    """
    check_sendrecv(graph)
    added = add_autoedges(graph, lambda r: r.meta.autoedge)
    try:
        toposort(graph.vertices, ((e.src, e.dst) for e in graph.edges))
    except CycleError as c:
        auto = {(e.src, e.dst) for e in added}
        path = " -> ".join(key_str(k) for k in c.cycle)
        hops = list(zip(c.cycle, c.cycle[1:], strict=False))
        # Point at the first edge of the cycle the user wrote (automatic
        # edges have no place in the file).
        first = next(
            (e for e in graph.edges if (e.src, e.dst) in hops and e.location is not None), None
        )
        hint = None
        if any(h in auto for h in hops):
            hint = "the cycle uses automatic edges; set 'meta: {autoedge: false}' on one of them"
        raise InputError(
            f"the edges form a cycle: {path}",
            location=first.location if first and first.location else Location(graph.source),
            field="edges",
            hint=hint,
        ) from None
    for e in added:
        log.info("Adding AutoEdge: %s -> %s", key_str(e.src), key_str(e.dst))
    grouper = grouper or NonReachabilityGrouper()
    groups = grouper.groups(graph, _may_group)
    for members in groups:
        for m in members[1:]:
            log.info("Grouping: Success for: %s into %s", key_str(m), key_str(members[0]))
    if groups:
        graph = apply_groups(graph, groups, _merge)
    return Compiled(graph, added, [[key_str(m) for m in g] for g in groups])


def _may_group(a: Resource, b: Resource) -> bool:
    if a is b:
        return a.meta.autogroup and has(a, Groupable)
    if type(a) is not type(b) or not (a.meta.autogroup and b.meta.autogroup):
        return False
    return has(a, Groupable) and a.can_group(b)


def _merge(leader: Resource, others: list[Resource]) -> Resource:
    leader.absorb(others)
    # A group holds every semaphore any member asked for (mgmt's rule).
    sema = sorted({s for r in (leader, *others) for s in r.meta.sema})
    leader.meta = dataclasses.replace(leader.meta, sema=sema)
    return leader


def check_sendrecv(graph: Graph[Resource]) -> None:
    """Every send/recv edge names a real output and a param of the same type."""
    errors: list[InputError] = []
    for e in graph.edges:
        if not (e.send or e.recv):
            continue
        where = e.location or Location(graph.source)
        if not (e.send and e.recv):
            errors.append(
                InputError(
                    "an edge needs both 'send' and 'recv'",
                    location=where,
                    field="recv" if e.send else "send",
                )
            )
            continue
        src, dst = graph.vertices[e.src], graph.vertices[e.dst]
        outputs = src.outputs
        if e.send not in outputs:
            have = ", ".join(sorted(outputs)) or "nothing"
            hint = suggest(e.send, outputs)
            errors.append(
                InputError(
                    f"{src} sends no value named {e.send!r} (it sends: {have})",
                    location=where,
                    field="send",
                    hint=f"did you mean {hint!r}?" if hint else None,
                )
            )
            continue
        if e.recv not in dst.param_types:
            hint = suggest(e.recv, dst.param_types)
            errors.append(
                InputError(
                    f"{dst} has no param named {e.recv!r}",
                    location=where,
                    field="recv",
                    hint=f"did you mean {hint!r}?" if hint else None,
                )
            )
            continue
        want, got = unwrap_optional(dst.param_types[e.recv]), outputs[e.send]
        if want != got:
            errors.append(
                InputError(
                    f"type mismatch: {src}.{e.send} is {describe(got)} but {dst}.{e.recv} "
                    f"expects {describe(want)}",
                    location=where,
                    field="recv",
                )
            )
            continue
        dst.recv_fields = dst.recv_fields | {e.recv}
        if e.send in src.secret_outputs:
            dst.tainted = dst.tainted | {e.recv}
    if errors:
        raise InputErrors(errors)
