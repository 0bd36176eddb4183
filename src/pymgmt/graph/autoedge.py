"""AutoEdges: dependency edges the user did not have to write (pure).

Every `Edgeable` vertex names the UIDs it provides; then each one walks its
`wants()` generator, most specific step first, and is told after each step
whether anything matched, so it can stop early: a file under
``/var/lib/foo/bar/`` depends on the nearest *managed* ancestor directory
only, which keeps the graph as parallel as possible.

An edge the user wrote in the same direction stands for the automatic one
(the ordering is kept, and the walk stops there). An edge the user wrote the
other way does not cancel it: a file ordered before its own directory cannot
run, so the automatic edge is still added and the cycle is reported, naming
both (issue 8, item 6).

A kind with many vertices may answer all their searches in one batch
(``answer_wants``): given every UID the graph provides, it returns the steps
each walk would take that can match, and the edges are made from those
exactly as from the walk. Files do so (the nearest managed ancestor, looked
up once per directory): walking, 100,000 files built a `Want` and a `UID`
for every unmanaged ancestor, 3.6 s of compiling them (issue 13).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ..traits import UID, Edgeable, Want, has
from .model import Edge, Graph, Key


def add_autoedges(
    graph: Graph[Any], enabled: Callable[[Any], bool], *, batched: bool = True
) -> list[Edge]:
    """Add automatic edges to `graph` (in place) and return them, in order.

    `enabled(vertex)` says whether a vertex takes part (its ``autoedge``
    metaparam); a vertex that opts out neither gets nor provides edges.
    `batched=False`: every vertex walks its own ``wants()``, even of a kind
    that answers in a batch (the reference its answers are tested against).
    """
    members: list[tuple[Key, Edgeable]] = [
        (k, v) for k, v in sorted(graph.vertices.items()) if has(v, Edgeable) and enabled(v)
    ]
    index: dict[UID, Key] = {}
    for key, v in members:
        for uid in v.uids():
            index.setdefault(uid, key)
    existing = {(e.src, e.dst) for e in graph.edges}
    added: list[Edge] = []

    def link(key: Key, want: Want) -> bool:
        """Connect `key` with what `want` names; whether anything matched."""
        matched = False
        for uid in want.uids:
            other = index.get(uid)
            if other is None or other == key:
                continue
            matched = True
            src, dst = (key, other) if want.reversed else (other, key)
            if (src, dst) in existing:
                continue  # the user wrote this very ordering
            edge = auto_edge(src, dst)
            existing.add((src, dst))
            graph.connect(edge)
            added.append(edge)
        return matched

    searching = _searching(members, {uid.kind for uid in index})
    answered = _answered(searching, index) if batched else {}
    for key, v in searching:
        steps = answered.get(key)
        if steps is not None:
            for want in steps:
                link(key, want)
            continue
        walk = v.wants()
        try:
            want = next(walk)
            while True:
                want = walk.send(link(key, want))
        except StopIteration:
            pass
    return added


def _answered(
    searching: list[tuple[Key, Edgeable]], index: Mapping[UID, Key]
) -> dict[Key, Sequence[Want]]:
    """The searches that kinds answer in a batch (``answer_wants``), by vertex.

    A kind's answer for a vertex lists the steps of its walk that can match
    given `index` (the steps that match nothing add nothing); None for a
    vertex leaves it to walk its ``wants()``.
    """
    by_kind: dict[Any, list[tuple[Key, Any]]] = {}
    for key, v in searching:
        if hasattr(type(v), "answer_wants"):
            by_kind.setdefault(type(v), []).append((key, v))
    out: dict[Key, Sequence[Want]] = {}
    for cls, group in by_kind.items():
        answers = cls.answer_wants(group, index)
        for (key, _), steps in zip(group, answers, strict=True):
            if steps is not None:
                out[key] = steps
    return out


def auto_edge(src: Key, dst: Key) -> Edge:
    """The edge AutoEdges adds from `src` to `dst` (the parse cache rebuilds it so)."""
    return Edge(src, dst, name=f"autoedge: {src} -> {dst}", auto=True)


def from_graph_alone(vertices: Iterable[Any]) -> bool:
    """Whether the AutoEdges of `vertices` follow from the graph alone, not the system.

    A kind's ``wants`` look at its own params, except where its search asks
    the system (pkg: which files a package ships, from ``dpkg -L``); such a
    kind answers its searches in ``prepare_wants``, so a graph without one
    gets the same AutoEdges every time, and they may be kept with its parse
    (frontends/cache.py).
    """
    return not any(hasattr(cls, "prepare_wants") for cls in {type(v) for v in vertices})


def _searching(
    members: list[tuple[Key, Edgeable]], present: set[str]
) -> list[tuple[Key, Edgeable]]:
    """The vertices whose search can match something here, their kinds told first.

    Both hooks are optional, for a kind whose search is costly (pkg's asks
    dpkg): ``wants_kinds`` names the UID kinds its wants can match (none of
    them in the graph: no search), ``prepare_wants(vertices)`` lets the kind
    answer all its vertices' searches in one batch before they are asked.
    """
    out = [
        (k, v)
        for k, v in members
        if (kinds := getattr(v, "wants_kinds", None)) is None or not present.isdisjoint(kinds)
    ]
    by_kind: dict[type, list[Any]] = {}
    for _, v in out:
        by_kind.setdefault(type(v), []).append(v)
    for cls, vertices in by_kind.items():
        if (prepare := getattr(cls, "prepare_wants", None)) is not None:
            prepare(vertices)
    return out
