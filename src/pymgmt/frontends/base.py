"""The frontend contract: a stream of declared graphs, given what it may use.

A frontend (the YAML file, the Python API, a collecting wrapper that merges
other hosts' exports) yields *declared* graphs: every resource, edge and
metaparameter checked on its own, with its location, but nothing compiled.
The Engine compiles each one (`frontends.compile.accept`: AutoEdges,
cycles, Send/Recv, AutoGroup) off the event loop and reports a graph it
refuses; so whatever wraps a frontend sees the graph as the user wrote it.

What a frontend may use is handed to it in a `FrontendContext` rather than
reached for: the Engine's running inotify hub (to watch its file) and the
World (to watch what other hosts export).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..errors import InputError
from ..graph.model import Graph

if TYPE_CHECKING:
    from ..events.inotify import InotifyHub
    from ..resources.base import Resource
    from ..world.base import World

GraphStream = AsyncIterator["Graph[Resource] | InputError"]


@dataclass
class FrontendContext:
    """The running services a frontend may use while it yields graphs."""

    #: the Engine's inotify hub, already running
    inotify: InotifyHub
    #: this host's World (LocalWorld, or the etcd client)
    world: World


class Frontend(Protocol):
    """Anything that yields graphs: the YAML file, the Python API, a collecting wrapper."""

    def graphs(self, ctx: FrontendContext) -> GraphStream:
        """Yield the first declared graph, then a new one (or an InputError) per change."""
        ...


__all__ = ["Frontend", "FrontendContext", "GraphStream"]
