"""The resource graph as data: vertices keyed by (kind, name), directed edges.

Pure: no I/O, and no knowledge of what a vertex does. The engine runs it;
frontends build it; graph algorithms (toposort, changeover diff, graphviz)
read it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from ..errors import Location

Key = tuple[str, str]


def key_str(key: Key) -> str:
    """mgmt's display form of a vertex: ``File[f1]``."""
    return f"{key[0].capitalize()}[{key[1]}]"


class Vertex(Protocol):
    @property
    def key(self) -> Key: ...


@dataclass(frozen=True, slots=True)
class Edge:
    """`src` must be converged before `dst` runs.

    ``notify`` relays refresh notifications when `src` changed something;
    ``send``/``recv`` carry the sender's output value `send` into the
    receiver's param `recv` (Send/Recv).
    """

    src: Key
    dst: Key
    name: str = ""
    notify: bool = False
    location: Location | None = field(default=None, compare=False)
    send: str = ""
    recv: str = ""
    #: added by AutoEdges rather than written by the user
    auto: bool = False


V = TypeVar("V", bound=Vertex)


@dataclass(eq=False)
class Graph(Generic[V]):
    name: str
    vertices: dict[Key, V] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    locations: dict[Key, Location] = field(default_factory=dict)
    #: where the graph came from, for messages (a file name or "api")
    source: str = ""

    def add(self, vertex: V, location: Location | None = None) -> V:
        self.vertices[vertex.key] = vertex
        if location is not None:
            self.locations[vertex.key] = location
        return vertex

    def connect(self, edge: Edge) -> None:
        self.edges.append(edge)

    def parents(self, key: Key) -> Iterator[Key]:
        return (e.src for e in self.edges if e.dst == key)

    def adjacency(self) -> tuple[dict[Key, list[Key]], dict[Key, list[Key]]]:
        """(parents, children) of every vertex, built in one pass."""
        parents: dict[Key, list[Key]] = {k: [] for k in self.vertices}
        children: dict[Key, list[Key]] = {k: [] for k in self.vertices}
        for e in self.edges:
            if e.src in children and e.dst in parents:
                children[e.src].append(e.dst)
                parents[e.dst].append(e.src)
        return parents, children
