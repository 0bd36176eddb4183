"""The live web view's data: the graph drawn by graphviz, and each vertex's state as it changes.

The picture comes from the same DOT text as ``--graphviz`` (`graph/graphviz.py`),
laid out by graphviz (``dot -Tsvg``) once per running graph, when a browser
first asks for it: an agent nobody watches renders nothing. Colours are not
in the picture: the page colours each node from the live state, which the
event stream (`events`) keeps current, so a repair shows in the browser as
it happens without drawing the graph again.

Everything shown comes from `LiveState` (report/live.py), the model the
status socket reads too: params with secret fields and secret values
redacted, errors and diffs from events the engine already scrubbed. The
DOT text goes through `redact` like the ``--graphviz`` file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import AsyncGenerator
from typing import Any

from .. import children
from ..graph.graphviz import to_dot
from ..graph.model import Graph, key_str
from ..redaction import redact
from ..report.live import LiveState

log = logging.getLogger("pymgmt.web")

#: how long graphviz may take to lay out one graph (s)
LAYOUT_TIMEOUT = 30.0
#: a graph larger than this is not drawn (dot would take minutes); the table lists it
MAX_DRAWN = 2000
#: an SSE comment this often keeps proxies and the browser from giving up (s)
HEARTBEAT = 15.0


class LayoutError(Exception):
    """The graph cannot be drawn: graphviz is missing, failed, or took too long."""


class GraphView:
    """The running graph for the page: its SVG (cached per graph) and its node names."""

    def __init__(self, program: str = "dot") -> None:
        self.program = program
        self.graph: Graph[Any] | None = None
        #: bumped at every graph swapped in: the page draws the picture again
        self.generation = 0
        #: DOT node name (``File[x]``) -> vertex name as in events and the live state
        self.nodes: dict[str, str] = {}
        #: the picture of a generation, or why there is none (a failure is not retried)
        self._svg: tuple[int, bytes | LayoutError] | None = None
        self._lock = asyncio.Lock()

    def graph_swapped(self, graph: Graph[Any]) -> None:
        self.graph = graph
        self.generation += 1
        self.nodes = {key_str(k): str(res) for k, res in graph.vertices.items()}

    async def svg(self) -> bytes:
        """The running graph laid out by graphviz; LayoutError if it cannot be.

        Laid out once per graph: a failure too (a graph dot cannot lay out
        in time is not tried again at every page load).
        """
        async with self._lock:  # two browsers asking at once: one layout
            if self._svg is None or self._svg[0] != self.generation:
                if self.graph is None:
                    raise LayoutError("no graph is running yet")
                generation = self.generation
                try:
                    self._svg = (generation, await self._draw(self.graph))
                except LayoutError as e:
                    self._svg = (generation, e)
            picture = self._svg[1]
        if isinstance(picture, LayoutError):
            raise LayoutError(str(picture))  # a new one: the kept one gathers no tracebacks
        return picture

    async def _draw(self, graph: Graph[Any]) -> bytes:
        if len(graph.vertices) > MAX_DRAWN:
            raise LayoutError(
                f"{len(graph.vertices)} resources are too many to draw (at most {MAX_DRAWN})"
            )
        return await self._layout(redact(to_dot(graph)).encode())

    async def _layout(self, dot: bytes) -> bytes:
        exe = shutil.which(self.program)
        if exe is None:
            raise LayoutError(f"graphviz ({self.program}) is not installed: no picture")
        # argv list, no shell; the DOT text on stdin
        try:
            answer = await children.ask([exe, "-Tsvg"], stdin=dot, timeout=LAYOUT_TIMEOUT)
        except TimeoutError:
            raise LayoutError(f"{self.program} took more than {LAYOUT_TIMEOUT:g} s") from None
        if answer.code != 0:
            message = redact(answer.err.decode(errors="replace").strip())
            raise LayoutError(f"{self.program} failed: {message}")
        return answer.out


def light(vertex: dict[str, object]) -> dict[str, object]:
    """A vertex without its params: what every change sends (the page asks for params)."""
    return {k: v for k, v in vertex.items() if k != "params"}


def snapshot(live: LiveState, view: GraphView) -> dict[str, object]:
    """What a page starts from: the agent, every vertex (no params), edges, node names."""
    return {
        "agent": live.agent(),
        "vertices": [v.as_dict(params=False) for v in live.vertices.values()],
        "nodes": view.nodes,
        "generation": view.generation,
    }


def sse(event: str, data: object) -> bytes:
    """One server-sent event; JSON has no raw newline, so one data line is enough."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def events(live: LiveState, view: GraphView) -> AsyncGenerator[bytes, None]:
    """The event stream of one page: a snapshot, then each change as it happens.

    The subscription ends with the stream (the client left, the server
    closes); a page that fell too far behind gets a fresh snapshot
    (LiveState drops what it queued and says ``resync``).
    """
    queue = live.subscribe()
    try:
        yield sse("snapshot", snapshot(live, view))
        while True:
            try:
                async with asyncio.timeout(HEARTBEAT):
                    first = await queue.get()
            except TimeoutError:
                yield b": still here\n\n"
                continue
            batch = [first]
            while not queue.empty():  # what queued meanwhile goes out in one write
                batch.append(queue.get_nowait())
            yield b"".join(_change(item, live, view) for item in batch)
    finally:
        live.unsubscribe(queue)


def _change(item: dict[str, object], live: LiveState, view: GraphView) -> bytes:
    kind = item.get("event")
    if kind == "vertex":
        vertex = item["vertex"]
        assert isinstance(vertex, dict)
        return sse("vertex", light(vertex))
    if kind == "settled":
        return sse("settled", {"converged": item.get("converged")})
    # "graph" (a new graph: draw it again) or "resync" (fell behind): start over
    return sse("snapshot", snapshot(live, view))
