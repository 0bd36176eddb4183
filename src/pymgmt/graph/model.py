"""The resource graph as data: vertices keyed by (kind, name), directed edges.

Pure: no I/O, and no knowledge of what a vertex does. The engine runs it;
frontends build it; graph algorithms (toposort, changeover diff, graphviz)
read it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from ..errors import InputError, Location

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


@dataclass(frozen=True, slots=True)
class Collect:
    """What a graph takes from other hosts' exports (YAML ``collect:``).

    Only kinds with a confinement rule can be collected (world/confine.py):
    data from other hosts is untrusted input. For files, every collected
    file lands directly in the directory `pattern` under its base name;
    `mode` is the most permissive mode a collected file may ask for, and
    `owners`/`groups` the only owner and group names it may ask for.
    """

    kind: str
    pattern: str
    mode: str = "0644"
    owners: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    location: Location | None = field(default=None, compare=False)


V = TypeVar("V", bound=Vertex)


@dataclass(eq=False)
class Graph(Generic[V]):
    name: str
    vertices: dict[Key, V] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    locations: dict[Key, Location] = field(default_factory=dict)
    #: where the graph came from, for messages (a file name or "api")
    source: str = ""
    #: vertices this host also publishes to the cluster (YAML ``@@name``)
    exported: set[Key] = field(default_factory=set)
    #: resources this host publishes to the cluster without applying them
    #: (Puppet's ``@@`` resource its own node does not collect); never vertices
    export_only: list[V] = field(default_factory=list)
    #: other hosts' exports this graph takes in
    collect: list[Collect] = field(default_factory=list)
    #: accepted, but the user should hear of it (an identical duplicate merged)
    warnings: list[InputError] = field(default_factory=list)
    #: set by a frontend that re-read only one resource of an edited file:
    #: (the graph it edited, the key of the resource whose params changed);
    #: the Engine then compiles only that vertex again (`compile.recompile`)
    edited_from: tuple[Graph[V], Key] | None = field(default=None, compare=False, repr=False)

    def derive(
        self, vertices: dict[Key, V] | None = None, edges: list[Edge] | None = None
    ) -> Graph[V]:
        """A new graph of the same type and metadata, with these vertices and edges.

        Compiling builds new graphs step by step; whatever the graph says
        besides its vertices and edges (its name, source, what it exports
        and collects, its warnings) must survive every step, and a subclass
        (the YAML frontend's) stays itself. Containers are copied, never shared.
        """
        return dataclasses.replace(
            self,
            vertices=dict(self.vertices) if vertices is None else vertices,
            edges=list(self.edges) if edges is None else edges,
            locations=dict(self.locations),
            exported=set(self.exported),
            export_only=list(self.export_only),
            collect=list(self.collect),
            warnings=list(self.warnings),
            edited_from=None,  # a derived graph is no edit of anything
        )

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
