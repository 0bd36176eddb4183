"""A frontend that adds other hosts' exports to the graphs of another frontend.

`CollectingFrontend` wraps the frontend that reads the user's graph (the
YAML file, the Python API). For each graph it yields, and each time the
collected exports change, it yields a new **declared** graph: a copy of the
user's graph (never changed itself) plus the collected resources, confined
by world/confine.py to what the graph's ``collect:`` entries allow. The
engine compiles it like any other, so AutoEdges (a collected file after its
directory) and every check apply to collected resources too.

A graph without ``collect:`` never subscribes to anything: it is passed
through as it is.

What is not applied is said, once per change, as `CollectRefused`:

* whatever `confine` refuses, and exports that did not decode;
* a collected vertex whose name, or whose path, a local resource already
  has: the local one wins;
* two exports that would write the same path: the one from the lowest host
  name wins (the same answer on every host), the others are refused.

When the collected set changes, `CollectChanged` says how, and a new graph
follows; a change that leaves the merged graph as it was yields nothing, so
the engine does not swap for it.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from ..errors import InputError, Location
from ..graph.model import Collect, Graph, Key, key_str
from ..report.events import CollectChanged, CollectRefused, Event
from ..resources.base import Resource
from ..world.codec import quote, shorten
from ..world.confine import Refused, confine
from ..world.resworld import ResWorld, Snapshot

log = logging.getLogger("pymgmt.collect")

C = TypeVar("C", contravariant=True)
Item = Graph[Resource] | InputError


class GraphSource(Protocol[C]):
    """The frontend contract: ``graphs(ctx)`` yields declared graphs or InputErrors."""

    def graphs(self, ctx: C) -> AsyncIterator[Item]: ...


@dataclass
class Merged:
    """A user's graph with the collected resources added, and what was refused."""

    graph: Graph[Resource]
    #: the collected vertices, by key
    collected: dict[Key, Resource] = field(default_factory=dict)
    refused: list[CollectRefused] = field(default_factory=list)


def merge(graph: Graph[Resource], snapshot: Snapshot | None) -> Merged:
    """`graph` plus the confined exports of `snapshot`; `graph` itself is untouched.

    Pure and deterministic: the same graph and snapshot give the same result
    on every host, whatever order the exports arrived in.
    """
    out = _copy(graph)
    merged = Merged(out)
    if snapshot is None or not graph.collect:
        return merged
    specs: dict[str, Collect] = {}
    for entry in graph.collect:
        specs.setdefault(entry.kind, entry)  # the first entry of a kind decides
    owners: dict[tuple[str, str], str] = {}  # (kind, managed thing) -> who has it
    for key, res in graph.vertices.items():
        for thing in res.manages():
            owners.setdefault((res.kind, thing), f"the local {key_str(key)}")
    for ex in sorted(snapshot.exports, key=lambda e: (e.host, e.kind, e.name)):

        def refuse(reason: str, ex: Any = ex) -> None:
            merged.refused.append(
                CollectRefused(ex.host, ex.kind, shorten(ex.name, 80), shorten(reason, 300))
            )

        if ex.error is not None:
            refuse(ex.error.reason)
            continue
        spec = specs.get(ex.kind)
        exported = ex.resource
        if spec is None or exported is None:
            continue  # not collected by this graph
        local = confine(spec, ex.host, exported)
        if isinstance(local, Refused):
            refuse(local.reason)
            continue
        if local.key in graph.vertices:
            refuse(f"{local} is the name of a local resource, which wins")
            continue
        clash = next(
            (
                (thing, owners[(local.kind, thing)])
                for thing in local.manages()
                if (local.kind, thing) in owners
            ),
            None,
        )
        if clash is not None:
            thing, owner = clash
            refuse(f"its path {quote(thing)} is already managed by {owner}, which wins")
            continue
        for thing in local.manages():
            owners[(local.kind, thing)] = f"host {ex.host}'s {key_str(exported.key)}"
        merged.collected[local.key] = local
        out.add(local, Location(f"host {ex.host}'s export"))
    return merged


def _copy(graph: Graph[Resource]) -> Graph[Resource]:
    """A copy of `graph` whose containers can be added to (the resources are shared)."""
    out = copy.copy(graph)
    out.vertices = dict(graph.vertices)
    out.edges = list(graph.edges)
    out.locations = dict(graph.locations)
    out.exported = set(graph.exported)
    out.collect = list(graph.collect)
    return out


def _same(a: dict[Key, Resource], b: dict[Key, Resource]) -> bool:
    return a.keys() == b.keys() and all(a[k].same_as(b[k]) for k in a)


class CollectingFrontend(Generic[C]):
    """`inner`'s graphs, each with the exports its ``collect:`` entries take in."""

    def __init__(
        self, inner: GraphSource[C], resworld: ResWorld, emit: Callable[[Event], None]
    ) -> None:
        self.inner = inner
        self.resworld = resworld
        self.emit = emit
        #: what the last yielded graph collected, and the refusals last said
        self._collected: dict[Key, Resource] = {}
        self._refused: set[CollectRefused] = set()

    async def graphs(self, ctx: C) -> AsyncIterator[Item]:
        """Yield a merged graph per inner graph, and per change of the collected set."""
        inner: AsyncIterator[Item] | None = self.inner.graphs(ctx)
        collecting: AsyncIterator[Snapshot] | None = None
        kinds: frozenset[str] = frozenset()
        graph: Graph[Resource] | None = None
        snapshot: Snapshot | None = None
        next_graph: asyncio.Task[Item | None] | None = None
        next_snapshot: asyncio.Task[Snapshot | None] | None = None
        try:
            while True:
                if next_graph is None and inner is not None:
                    next_graph = asyncio.create_task(_next(inner))
                if next_snapshot is None and collecting is not None:
                    next_snapshot = asyncio.create_task(_next(collecting))
                waiting = [t for t in (next_graph, next_snapshot) if t is not None]
                if not waiting:
                    return  # the inner frontend ended and nothing is collected
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                fresh = False
                if next_graph is not None and next_graph.done():
                    item = next_graph.result()
                    next_graph = None
                    if item is None:
                        inner = None  # ended: keep following the collected exports
                    elif isinstance(item, InputError):
                        yield item
                    else:
                        graph, fresh = item, True
                        wanted = frozenset(c.kind for c in graph.collect)
                        if wanted != kinds:
                            await _cancel(next_snapshot)
                            next_snapshot = None
                            await _close(collecting)
                            collecting, snapshot, kinds = None, None, wanted
                            if kinds:
                                collecting = self.resworld.collect(kinds)
                                snapshot = await anext(collecting)
                if next_snapshot is not None and next_snapshot.done():
                    got = next_snapshot.result()
                    next_snapshot = None
                    if got is None:
                        raise ConnectionError("the collected exports stopped coming")
                    snapshot = got
                if graph is not None:
                    merged = self._merge(graph, snapshot, fresh)
                    if merged is not None:
                        yield merged
        finally:
            await _cancel(next_graph)
            await _cancel(next_snapshot)
            await _close(collecting)
            await _close(inner)

    def _merge(
        self, graph: Graph[Resource], snapshot: Snapshot | None, fresh: bool
    ) -> Graph[Resource] | None:
        """The merged graph to yield, or None when nothing changed; reports as it goes."""
        merged = merge(graph, snapshot)
        refused = set(merged.refused)
        for r in merged.refused:
            if r not in self._refused:
                self.emit(r)
        self._refused = refused
        old, new = self._collected, merged.collected
        if _same(old, new):
            return merged.graph if fresh else None
        self._collected = new
        self.emit(
            CollectChanged(
                added=[str(new[k]) for k in sorted(new.keys() - old.keys())],
                removed=[str(old[k]) for k in sorted(old.keys() - new.keys())],
                kept=sum(1 for k in new.keys() & old.keys() if new[k].same_as(old[k])),
                changed=[
                    str(new[k])
                    for k in sorted(new.keys() & old.keys())
                    if not new[k].same_as(old[k])
                ],
            )
        )
        return merged.graph


T = TypeVar("T")


async def _next(it: AsyncIterator[T]) -> T | None:
    """The next item of `it`, None once it ended."""
    try:
        return await anext(it)
    except StopAsyncIteration:
        return None


async def _cancel(task: asyncio.Task[Any] | None) -> None:
    """Stop a pending `_next` we started, and wait for it: nothing is left running."""
    if task is None:
        return
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # its outcome is moot now: we are closing the stream


async def _close(it: AsyncIterator[Any] | None) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        await aclose()
