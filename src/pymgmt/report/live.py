"""What the agent is doing now: one live model for the status socket, metrics and web view.

The engine states what happened as events; this reporter folds them into the
current state of every vertex of the running graph (pending, applying,
converged, failed), with when it was last checked and changed, its last
error and diff, and how often it was checked, applied and repaired. Three
readers share it (issue 12): ``pymgmt status`` over the status socket, the
Prometheus metrics and the web view, so they never disagree about what the
agent is doing.

`emit` runs on the event loop for every event of every vertex: it only
updates a dict entry and, when someone subscribed (the web view's SSE),
puts a small dict in each subscriber's bounded queue. A subscriber that
does not keep up is told to resynchronise instead of slowing the engine
(see `subscribe`). Params are turned into JSON only when someone asks.

Every text here comes from events the engine already scrubbed of secret
values (`redaction.scrub`); params are shown through the resource's own
redaction (secret fields) and scrubbed as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .._version import __version__
from ..graph.model import Graph
from ..redaction import scrub
from .events import (
    Applying,
    ChangeInfo,
    Checked,
    Event,
    Failed,
    Finished,
    Settled,
    Stopping,
)

VertexStatus = Literal["pending", "applying", "converged", "failed"]

#: vertex identity in the graph: (kind, name)
Key = tuple[str, str]

#: how many changes a subscriber may lag behind before it must resynchronise
QUEUE_SIZE = 1000


class _Vertex(Protocol):
    """What the live state reads of a resource (report/ never imports resources/)."""

    kind: str
    name: str

    @property
    def key(self) -> Key: ...

    def params(self) -> dict[str, Any]: ...

    def redact(self, field_name: str, value: object) -> object: ...

    def same_as(self, other: Any) -> bool: ...


class RefreshSource(Protocol):
    """The engine's durable refresh store (`engine.refresh.RefreshStore`), read-only."""

    def snapshot(self, receiver: Key) -> Mapping[str, int]: ...


@dataclass
class VertexLive:
    """One vertex of the running graph as it stands now."""

    name: str  # "Kind[name]", as in events
    kind: str
    status: VertexStatus = "pending"
    #: time.time() of the last Checked/Failed
    last_check: float | None = None
    #: time.time() of the last applied change
    last_change: float | None = None
    last_error: str | None = None
    #: the last change's diff (or its summary, when the change has no diff); redacted
    last_diff: str = ""
    checks: int = 0
    applies: int = 0
    drift_repairs: int = 0
    #: refresh notifications waiting for it in the durable store
    pending_refreshes: int = 0
    #: the resource's params, secrets redacted (filled when first asked for)
    params: dict[str, object] = field(default_factory=dict)

    def as_dict(self, *, params: bool = True) -> dict[str, object]:
        """The fields as a new dict; `params` is shared: it is replaced, never changed in place.

        (`dataclasses.asdict` deep-copies: 60 us a vertex, 0.6 s for a 10k graph's snapshot.)
        """
        return {name: getattr(self, name) for name in _FIELDS if params or name != "params"}


_FIELDS = tuple(f.name for f in dataclasses.fields(VertexLive))


class LiveState:
    """A Reporter that keeps what the agent is doing now (see the module docstring).

    `graph_swapped` is told of every graph the engine runs (through
    `observer`), and `refresh_source` may be attached once the engine
    exists, to count the refresh notifications waiting for each vertex.
    """

    def __init__(
        self,
        *,
        hostname: str = "",
        noop: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock
        self.hostname = hostname
        self.noop = noop
        self.started = clock()
        self.graph_name = ""
        #: time.time() the first graph started, and the running one was swapped in
        self.graph_started: float | None = None
        self.graph_swapped_at: float | None = None
        self.stopping = False
        self.refresh_source: RefreshSource | None = None
        self.vertices: dict[str, VertexLive] = {}
        self._resources: dict[str, _Vertex] = {}
        #: vertex name -> the names its notify edges point to
        self._notifies: dict[str, list[str]] = {}
        self._edges: list[dict[str, object]] = []
        self._queues: list[asyncio.Queue[dict[str, object]]] = []

    # -- the engine's side -------------------------------------------------------------

    def emit(self, event: Event) -> None:
        if isinstance(event, Applying):
            self._applying(event)
        elif isinstance(event, Checked):
            self._checked(event)
        elif isinstance(event, Failed):
            self._failed(event)
        elif isinstance(event, Stopping):
            self.stopping = True
        elif isinstance(event, Finished):
            self._finished(event)
        elif isinstance(event, Settled) and self._queues:
            # `converged` walks every vertex: after each repair at 100k files,
            # only for a reader (issue 13: drift repair p99)
            self._publish({"event": "settled", "converged": self.converged()})

    def graph_swapped(self, graph: Graph[Any]) -> None:
        """Make `graph` (the running, compiled graph) the one shown.

        A vertex kept from the previous graph keeps its state and counters;
        a replaced one (its resource changed) keeps its counters and is
        pending until its new resource is checked; a removed one goes.
        """
        now = self.clock()
        if self.graph_started is None:
            self.graph_started = now
        self.graph_swapped_at = now
        self.graph_name = graph.name
        old = self.vertices
        names: dict[Key, str] = {}
        self.vertices, resources = {}, {}
        for key, res in graph.vertices.items():
            name = names[key] = str(res)
            live = old.get(name)
            if live is None:
                live = VertexLive(name=name, kind=res.kind)
            elif not _same(self._resources.get(name), res):
                live.status, live.params = "pending", {}  # replaced: checked again soon
            self.vertices[name] = live
            resources[name] = res
        self._resources = resources
        self._wire(graph, names)
        for name in self.vertices:
            self._count_refreshes(name)
        if self._queues:
            self._publish({"event": "graph", **self.snapshot()})

    def observer(self) -> _Observer:
        """A `GraphObserver` for the engine (which awaits its observers)."""
        return _Observer(self)

    def _wire(self, graph: Graph[Any], names: dict[Key, str]) -> None:
        self._notifies = {}
        self._edges = []
        for e in graph.edges:
            src, dst = names.get(e.src), names.get(e.dst)
            if src is None or dst is None:
                continue
            self._edges.append({"from": src, "to": dst, "notify": e.notify, "auto": e.auto})
            if e.notify:
                self._notifies.setdefault(src, []).append(dst)

    def _applying(self, ev: Applying) -> None:
        live = self.vertices.get(ev.vertex)
        if live is None:
            return
        live.status = "applying"
        self._changed(live)
        # its notify edges were written to the store just before (write-ahead)
        for child in self._notifies.get(ev.vertex, ()):
            if self._count_refreshes(child):
                self._changed(self.vertices[child])

    def _checked(self, ev: Checked) -> None:
        live = self.vertices.get(ev.vertex)
        if live is None:
            return
        now = self.clock()
        live.last_check = now
        live.checks += 1
        # in noop a vertex that would change is not as wanted: still pending
        live.status = "pending" if ev.noop and ev.changes else "converged"
        if ev.applied:
            live.applies += 1
            live.last_change = now
            live.last_diff = diff_text(ev.changes)
        if ev.drift:
            live.drift_repairs += 1
        self._count_refreshes(ev.vertex)  # a delivered refresh is consumed
        self._changed(live)

    def _failed(self, ev: Failed) -> None:
        live = self.vertices.get(ev.vertex)
        if live is None:
            return  # not a vertex ("observer Exporter")
        live.last_check = self.clock()
        live.status = "failed"
        live.last_error = ev.error
        self._changed(live)

    def _finished(self, ev: Finished) -> None:
        for state in ev.states:
            live = self.vertices.get(state.vertex)
            if live is not None and state.status in ("pending", "skipped"):
                live.status = "pending"
                self._changed(live)

    def _count_refreshes(self, name: str) -> bool:
        """Re-read the pending refreshes of `name` from the store; True if it changed."""
        res = self._resources.get(name)
        if self.refresh_source is None or res is None:
            return False
        n = len(self.refresh_source.snapshot(res.key))
        live = self.vertices[name]
        if n == live.pending_refreshes:
            return False
        live.pending_refreshes = n
        return True

    # -- the readers' side -------------------------------------------------------------

    def converged(self) -> bool:
        """Every vertex checked and as wanted (none pending, applying or failed)."""
        return bool(self.vertices) and all(v.status == "converged" for v in self.vertices.values())

    def counts(self) -> dict[str, int]:
        """How many vertices are in each state."""
        out = dict.fromkeys(("pending", "applying", "converged", "failed"), 0)
        for v in self.vertices.values():
            out[v.status] += 1
        return out

    def vertex(self, name: str) -> dict[str, object] | None:
        """One vertex as JSON-able data, with its params; None if it is not in the graph."""
        live = self.vertices.get(name)
        if live is None:
            return None
        self._fill_params(live)
        return live.as_dict()

    def snapshot(self, *, params: bool = True) -> dict[str, object]:
        """The agent and its running graph, JSON-able: what ``pymgmt status --json`` prints.

        Without `params` the vertices have no "params" key: the first time,
        turning 10k resources' params into JSON takes a tenth of a second
        on the event loop, which the status table does not need.
        """
        if params:
            for live in self.vertices.values():
                self._fill_params(live)
        return {
            "agent": self.agent(),
            "vertices": [v.as_dict(params=params) for v in self.vertices.values()],
            "edges": list(self._edges),
        }

    def agent(self) -> dict[str, object]:
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uid": os.geteuid(),
            "hostname": self.hostname,
            "started": self.started,
            "graph": self.graph_name,
            "graph_started": self.graph_started,
            "graph_swapped": self.graph_swapped_at,
            "noop": self.noop,
            "stopping": self.stopping,
            "converged": self.converged(),
            "counts": self.counts(),
        }

    def subscribe(self) -> asyncio.Queue[dict[str, object]]:
        """A queue of changes: ``{"event": "vertex", "vertex": {...}}`` per vertex change.

        Also ``{"event": "graph", ...snapshot}`` when a graph is swapped in,
        ``{"event": "settled", "converged": bool}``, and ``{"event": "resync"}``
        when the subscriber fell `QUEUE_SIZE` changes behind: what was queued
        is dropped, and it should read `snapshot` again.
        """
        q: asyncio.Queue[dict[str, object]] = asyncio.Queue(QUEUE_SIZE)
        self._queues.append(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, object]]) -> None:
        with contextlib.suppress(ValueError):
            self._queues.remove(q)

    def _changed(self, live: VertexLive) -> None:
        if self._queues:
            self._fill_params(live)
            self._publish({"event": "vertex", "vertex": live.as_dict()})

    def _publish(self, item: dict[str, object]) -> None:
        for q in self._queues:
            try:
                q.put_nowait(item)
            except asyncio.QueueFull:
                while not q.empty():
                    q.get_nowait()
                q.put_nowait({"event": "resync"})

    def _fill_params(self, live: VertexLive) -> None:
        if live.params:
            return
        res = self._resources.get(live.name)
        if res is not None:
            live.params = shown_params(res)


def _same(old: _Vertex | None, new: _Vertex) -> bool:
    """The engine keeps a vertex's worker when its resource wants the same (`same_as`)."""
    return old is not None and (old is new or old.same_as(new))


class _Observer:
    """Adapts `LiveState.graph_swapped` to the engine's awaited `GraphObserver`."""

    def __init__(self, live: LiveState) -> None:
        self.live = live

    async def graph_swapped(self, graph: Graph[Any]) -> None:
        self.live.graph_swapped(graph)


def shown_params(res: _Vertex) -> dict[str, object]:
    """`res`'s params as JSON-able values: secret fields and secret values redacted."""
    return {k: scrub(jsonable(res.redact(k, v))) for k, v in res.params().items()}


def jsonable(value: object) -> object:
    """`value` as JSON data: containers kept, anything unusual shown as its str()."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return str(value)


def diff_text(changes: list[ChangeInfo]) -> str:
    """A change's diff when it has one, else ``field: old -> new``, one per line."""
    parts: list[str] = []
    for c in changes:
        if c.diff:
            parts.append(c.diff.rstrip("\n"))
        elif c.old is None:
            parts.append(f"{c.field}: {c.new}")
        else:
            parts.append(f"{c.field}: {c.old} -> {c.new}")
    return "\n".join(parts)
