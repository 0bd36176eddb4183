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
  name wins (the same answer on every host), the others are refused;
* a host's exports past its first `MAX_PER_HOST` (by kind and name): one
  refusal says how many. Another host's exports are untrusted input, and
  each collected one is a file written here.

At most `MAX_REFUSALS` refusals are said one by one; one more says how many
others there are, so a flood of junk keys does not become a flood of lines.

When the collected set changes, `CollectChanged` says how, and a new graph
follows; a change that leaves the merged graph as it was yields nothing, so
the engine does not swap for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from ..errors import InputError, Location
from ..graph.model import Collect, Graph, Key, key_str
from ..report.events import CollectChanged, CollectRefused, Event
from ..resources.base import Resource
from ..world.codec import printable, quote
from ..world.confine import Refused, confine
from ..world.resworld import Ended, Export, ResWorld, Snapshot, pumping

log = logging.getLogger("pymgmt.collect")

#: the most exports of one host that are collected (the rest are refused)
MAX_PER_HOST = 1000
#: the most refusals said one by one per merged graph
MAX_REFUSALS = 50

C = TypeVar("C", contravariant=True)
#: the queue tag of the inner frontend's items (subscriptions count up from it)
_INNER = 0
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


#: (collect entry, export key) -> (the export confined, what confine made of it)
ConfineCache = dict[tuple[Collect, str], tuple[Export, "Resource | Refused"]]


def merge(
    graph: Graph[Resource], snapshot: Snapshot | None, cache: ConfineCache | None = None
) -> Merged:
    """`graph` plus the confined exports of `snapshot`; `graph` itself is untouched.

    Pure and deterministic: the same graph and snapshot give the same result
    on every host, whatever order the exports arrived in. With `cache`, an
    export already confined under the same entry (the very `Export` object:
    ResWorld keeps it until its key changes) is not confined again, and its
    collected resource is the same object as before, which makes comparing
    it to the last graph's free; the cache is left holding only this
    snapshot's entries.
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
    used: ConfineCache = {}
    seen: Counter[str] = Counter()  # exports considered, per host
    over: Counter[str] = Counter()  # and those past MAX_PER_HOST
    for ex in sorted(snapshot.exports, key=lambda e: (e.host, e.kind, e.name)):
        seen[ex.host] += 1
        if seen[ex.host] > MAX_PER_HOST:
            over[ex.host] += 1
            continue

        def refuse(reason: str, ex: Any = ex) -> None:
            # Each part came from another host (a key that is no export key
            # yields its raw pieces): printed as shown, never acted on.
            merged.refused.append(
                CollectRefused(
                    printable(ex.host, 80),
                    printable(ex.kind, 40),
                    printable(ex.name, 80),
                    printable(reason, 300),
                )
            )

        if ex.error is not None:
            refuse(ex.error.reason)
            continue
        spec = specs.get(ex.kind)
        exported = ex.resource
        if spec is None or exported is None:
            continue  # not collected by this graph
        hit = cache.get((spec, ex.key)) if cache is not None else None
        local = hit[1] if hit is not None and hit[0] is ex else confine(spec, ex.host, exported)
        used[(spec, ex.key)] = (ex, local)
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
    if cache is not None:
        cache.clear()
        cache.update(used)
    if len(merged.refused) > MAX_REFUSALS:
        rest = len(merged.refused) - MAX_REFUSALS
        del merged.refused[MAX_REFUSALS:]
        merged.refused.append(CollectRefused("*", "", "*", f"and {rest:,} more refusals"))
    for host, n in sorted(over.items())[:MAX_REFUSALS]:
        merged.refused.append(
            CollectRefused(
                printable(host, 80),
                "",
                f"{n:,} exports",
                f"the host exports more than {MAX_PER_HOST:,}: {n:,} past those are ignored",
            )
        )
    return merged


def _copy(graph: Graph[Resource]) -> Graph[Resource]:
    """A copy of `graph` whose containers can be added to (the resources are shared)."""
    out = copy.copy(graph)
    out.vertices = dict(graph.vertices)
    out.edges = list(graph.edges)
    out.locations = dict(graph.locations)
    out.exported = set(graph.exported)
    out.export_only = list(graph.export_only)
    out.collect = list(graph.collect)
    return out


def _same_res(a: Resource, b: Resource) -> bool:
    return a is b or a.same_as(b)


def _same(a: dict[Key, Resource], b: dict[Key, Resource]) -> bool:
    return a.keys() == b.keys() and all(_same_res(a[k], b[k]) for k in a)


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
        self._confined: ConfineCache = {}

    async def graphs(self, ctx: C) -> AsyncIterator[Item]:
        """Yield a merged graph per inner graph, and per change of the collected set.

        The inner frontend and the collected exports are each followed by a
        task of their own (`pumping`), into one queue of size 1: neither
        runs more than one item ahead of what this generator has taken. A
        change of the kinds collected starts a new subscription (a new tag);
        what the old one still had queued is ignored. A graph waits for its
        subscription's first snapshot, so it is never yielded half-collected.
        """
        queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue(maxsize=1)
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(pumping(self.inner.graphs(ctx), queue, _INNER))
            inner_alive = True
            subscription: contextlib.AsyncExitStack | None = None
            tag = _INNER  # the current subscription's tag
            kinds: frozenset[str] = frozenset()
            graph: Graph[Resource] | None = None
            snapshot: Snapshot | None = None
            fresh = False  # a new inner graph is waiting to be yielded
            try:
                while inner_alive or subscription is not None:
                    source, item = await queue.get()
                    if isinstance(item, Ended):
                        if item.error is not None:
                            raise item.error
                        if source == _INNER:
                            inner_alive = False  # keep following the exports
                        elif source == tag:
                            raise ConnectionError("the collected exports stopped coming")
                        continue
                    if source == _INNER:
                        if isinstance(item, InputError):
                            yield item
                            continue
                        graph, fresh = item, True
                        wanted = frozenset(c.kind for c in item.collect)
                        if wanted != kinds:
                            kinds, snapshot = wanted, None
                            if subscription is not None:
                                await subscription.aclose()
                                subscription = None
                            if kinds:
                                tag += 1
                                subscription = contextlib.AsyncExitStack()
                                stream = self.resworld.collect(kinds)
                                await subscription.enter_async_context(pumping(stream, queue, tag))
                                continue  # wait for its first snapshot
                    elif source == tag:
                        snapshot = item
                    else:
                        continue  # from a subscription already closed
                    if subscription is not None and snapshot is None:
                        continue  # still waiting for its first snapshot
                    if graph is not None:
                        merged = self._merge(graph, snapshot, fresh)
                        fresh = False
                        if merged is not None:
                            yield merged
            finally:
                if subscription is not None:
                    await subscription.aclose()

    def _merge(
        self, graph: Graph[Resource], snapshot: Snapshot | None, fresh: bool
    ) -> Graph[Resource] | None:
        """The merged graph to yield, or None when nothing changed; reports as it goes."""
        merged = merge(graph, snapshot, self._confined)
        refused = set(merged.refused)
        for r in merged.refused:
            if r not in self._refused:
                self.emit(r)
        self._refused = refused
        old, new = self._collected, merged.collected
        # Nothing collected: the inner graph itself, so the engine knows it
        # as the one already compiled at start (Engine(accepted=...)).
        result = merged.graph if new else graph
        if _same(old, new):
            return result if fresh else None
        self._collected = new
        self.emit(
            CollectChanged(
                added=[str(new[k]) for k in sorted(new.keys() - old.keys())],
                removed=[str(old[k]) for k in sorted(old.keys() - new.keys())],
                kept=sum(1 for k in new.keys() & old.keys() if _same_res(new[k], old[k])),
                changed=[
                    str(new[k])
                    for k in sorted(new.keys() & old.keys())
                    if not _same_res(new[k], old[k])
                ],
            )
        )
        return result
