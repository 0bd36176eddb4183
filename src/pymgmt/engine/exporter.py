"""Publishes the running graph's exported resources (YAML ``@@name``).

An observer of the engine: after each successful swap it hands the
resources whose key is in ``graph.exported`` to `ResWorld.export`, which
writes only what changed. So a swap that leaves the exports as they were
costs no write and wakes no other host.

With ``--noop`` nothing is exported, as in mgmt: a dry run must not change
what other hosts apply. That is said once in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from ..graph.model import Graph, Key, key_str
from ..report.events import Event, Exported
from ..resources.base import Resource
from ..world.resworld import ResWorld

log = logging.getLogger("pymgmt.exporter")


class Exporter:
    """`GraphObserver` that keeps this host's exports equal to the running graph's."""

    def __init__(
        self, resworld: ResWorld, emit: Callable[[Event], None], noop: bool = False
    ) -> None:
        self.resworld = resworld
        self.emit = emit
        self.noop = noop
        self._said_noop = False
        #: the keys last published, to tell a changed set from a rewrite of one
        self._keys: list[str] = []

    async def graph_swapped(self, graph: Graph[Resource]) -> None:
        """Publish `graph`'s exports; emit `Exported` when what is published changed."""
        if self.noop:
            if graph.exported and not self._said_noop:
                self._said_noop = True
                log.warning(
                    "noop: the %d exported resource%s of this graph are not published",
                    len(graph.exported),
                    "" if len(graph.exported) == 1 else "s",
                )
            return
        resources = sorted(_exported(graph), key=lambda r: r.key)
        changed = await self.resworld.export(resources)
        names = [key_str(r.key) for r in resources]
        if changed or names != self._keys:
            self._keys = names
            self.emit(Exported(len(names), names))


def _exported(graph: Graph[Resource]) -> Iterator[Resource]:
    """The resources of `graph.exported`, also those AutoGroup folded into a leader."""
    wanted: set[Key] = graph.exported
    if not wanted:
        return
    for res in graph.vertices.values():
        for r in (res, *res.members):
            if r.key in wanted:
                yield r
