"""The agent's HTTP server (``--prometheus``): metrics, and the live web view.

One object plays the three parts the run gives it: a reporter (`emit`:
every event, counted for the metrics), a graph observer (`graph_swapped`:
the running graph, drawn for the page) and the server itself (`start`,
`close`), which lives as long as the engine. The routes, all GET/HEAD:

  /metrics         Prometheus text format (metrics.py)
  /                the page; /app.js and /app.css beside it (page.py)
  /graph.svg       the running graph laid out by graphviz (view.py)
  /events          server-sent events: a snapshot, then each vertex as it changes
  /vertex/NAME     one vertex as JSON, with its params (secrets redacted)
  /state.json      what ``pymgmt status --json`` prints: the agent and every vertex

Start-up cost: prometheus_client takes tens of milliseconds to import (it
brings http.server, email and more). A run without ``--prometheus`` never
imports it; with the flag it is imported at the first scrape, in a thread,
so neither the start nor the engine's event loop waits for it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
from typing import TYPE_CHECKING, Any

from ..report.events import Event
from ..report.live import LiveState
from . import WebError, page
from .http import HttpServer, Request, Response, Stream, text
from .metrics import Metrics, render
from .view import GraphView, LayoutError, events

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from ..graph.model import Graph

log = logging.getLogger("pymgmt.web")


def _json(data: object, status: int = 200) -> Response:
    body = json.dumps(data, separators=(",", ":")).encode()
    return Response(status, body, "application/json")


class WebServer:
    """Metrics and the web view of one agent, at `host`:`port` (see the module docstring)."""

    def __init__(
        self, host: str, port: int, *, live: LiveState, noop: bool, layout: str = "dot"
    ) -> None:
        """`layout`: the graphviz program that lays out the picture (--graphviz-filter)."""
        self.live = live
        self.metrics = Metrics(noop=noop, states=live.counts)
        self.view = GraphView(layout)
        self.http = HttpServer(self.handle, host, port)
        self._registry: CollectorRegistry | None = None
        self._importing = asyncio.Lock()
        #: where it listens, once started: ``http://127.0.0.1:9233/``
        self.urls: list[str] = []

    # -- fed by the engine ----------------------------------------------------------

    def emit(self, event: Event) -> None:
        self.metrics.emit(event)

    async def graph_swapped(self, graph: Graph[Any]) -> None:
        self.metrics.graph_swapped(graph)
        self.view.graph_swapped(graph)

    # -- the server's life ------------------------------------------------------------

    async def start(self) -> None:
        """Listen; WebError (the run stops before it changed anything) if it cannot."""
        if importlib.util.find_spec("prometheus_client") is None:  # found, not imported
            raise WebError("--prometheus needs the prometheus_client package (pip install it)")
        host, port = self.http.host, self.http.port
        try:
            bound = await self.http.start()
        except OSError as e:
            shown = f"[{host}]" if ":" in host else host
            raise WebError(
                f"cannot serve metrics and the web view on {shown}:{port}: "
                f"{e.strerror or e} (--prometheus-listen)"
            ) from None
        self.urls = [f"http://{f'[{h}]' if ':' in h else h}:{p}/" for h, p in bound]
        log.info("web: metrics at %smetrics, the live graph at %s", self.urls[0], self.urls[0])
        if not self.http.loopback:
            log.warning(
                "web: listening beyond loopback (%s): anyone who can reach it can read "
                "the graph and its params (secrets are redacted)",
                ", ".join(self.urls),
            )

    async def close(self) -> None:
        await self.http.close()

    # -- the routes ---------------------------------------------------------------------

    async def handle(self, request: Request) -> Response | Stream:
        path = request.path
        if path == "/metrics":
            body, ctype = render(await self._prometheus())
            return Response(200, body, ctype)
        if path.startswith("/vertex/"):
            vertex = self.live.vertex(path.removeprefix("/vertex/"))
            return _json(vertex) if vertex is not None else text(404, "no such vertex")
        if path == "/events":
            return Stream(events(self.live, self.view))
        if path == "/graph.svg":
            return await self._svg()
        if path == "/state.json":
            return _json(self.live.snapshot())
        return _static(path)

    async def _prometheus(self) -> CollectorRegistry:
        """The registry, made (and prometheus_client imported) at the first scrape."""
        async with self._importing:
            if self._registry is None:
                self._registry = await asyncio.to_thread(self.metrics.registry)
            return self._registry

    async def _svg(self) -> Response:
        try:
            svg = await self.view.svg()
        except LayoutError as e:
            return text(503, str(e))
        return Response(200, svg, "image/svg+xml")


def _static(path: str) -> Response:
    if path in ("/", "/index.html"):
        return Response(
            200,
            page.HTML.encode(),
            "text/html; charset=utf-8",
            [("Content-Security-Policy", page.CSP)],
        )
    if path == "/app.js":
        return Response(200, page.JS.encode(), "text/javascript; charset=utf-8")
    if path == "/app.css":
        return Response(200, page.CSS.encode(), "text/css; charset=utf-8")
    if path == "/favicon.ico":
        return Response(204)  # no icon: said so, so the browser logs no error
    return text(404, "not found: / (the live graph), /metrics, /events, /vertex/NAME")
