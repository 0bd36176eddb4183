"""Build and run graphs from Python (mgmt's "libmgmt" idea).

::

    from pymgmt import GraphBuilder, File, Exec, run

    g = GraphBuilder("web")
    conf = g.add(File(name="/etc/app.conf", content="port=80\\n", mode="0644"))
    reload = g.add(Exec(name="reload", cmd="systemctl reload app"))
    g.edge(conf, reload)
    result = run(g, converged_timeout=0)
    assert result.exit_code in (0, 2)

The builder validates exactly as the YAML frontend does (types, params,
metaparams, edges) and the graph goes through the same `compile.accept`
(cycles, semaphores, Send/Recv, AutoEdges, AutoGroup); `InputErrors` name
the resource and field, before anything runs.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, InputErrors, Location
from ..graph.model import Edge, Graph, key_str
from ..report.events import Event
from ..report.recap import Recap
from ..resources.base import Resource
from ..types import check_value, nul_problem
from .base import FrontendContext
from .compile import Compiled, accept

log = logging.getLogger("pymgmt.api")


class GraphBuilder:
    def __init__(self, name: str) -> None:
        self.graph: Graph[Resource] = Graph(name=name, source="api")

    def add(self, res: Resource) -> Resource:
        if res.key in self.graph.vertices:
            raise InputError(f"duplicate resource {res}", location=Location("api"))
        self.graph.add(res)
        return res

    def edge(
        self,
        src: Resource,
        dst: Resource,
        *,
        notify: bool = False,
        name: str = "",
        send: str = "",
        recv: str = "",
    ) -> None:
        """`src` before `dst`; `notify` relays refreshes; `send`->`recv` carries a value."""
        self.graph.connect(
            Edge(src.key, dst.key, name or f"{src}->{dst}", notify, None, send, recv)
        )

    def declared(self) -> Graph[Resource]:
        """The declared graph, each resource and edge checked; raise InputErrors.

        What needs the whole graph (semaphore sizes, cycles, Send/Recv,
        AutoEdges, AutoGroup) is `compile.accept`'s, as for every frontend.
        """
        return check_declared(self.graph, Location("api"))

    def accept(self) -> Compiled:
        """The declared graph, accepted and compiled; raise InputErrors."""
        return accept(self.declared())

    def build(self) -> Graph[Resource]:
        """Validate everything and return the compiled graph, or raise InputErrors."""
        return self.accept().graph


def check_declared(declared: Graph[Resource], where: Location) -> Graph[Resource]:
    """A copy of `declared`, each resource, metaparameter and edge checked; raise InputErrors.

    For frontends that build resources from Python values rather than from
    YAML nodes (this API, the Puppet translation): the same checks as the
    YAML builder's, each error at the resource's location in
    ``declared.locations`` (`where` when it has none).
    """
    errors: list[InputError] = []
    graph = declared.derive()
    graph.warnings = []
    for key, res in graph.vertices.items():
        at = graph.locations.get(key, where)
        for fname, tp in res.param_types.items():
            err = check_value(tp, getattr(res, fname))
            if not err and fname not in res.binary_params:
                err = nul_problem(getattr(res, fname))
            if err:
                errors.append(InputError(f"{res}: {err}", location=at, field=fname))
        for fname, msg in res.problems():
            errors.append(InputError(f"{res}: {msg}", location=at, field=fname))
        for fname, msg in res.warnings():
            graph.warnings.append(InputError(f"{res}: {msg}", location=at, field=fname))
        for fname, msg in res.meta.problems():
            errors.append(InputError(f"{res}: {msg}", location=at, field=f"meta.{fname}"))
    for e in graph.edges:
        for end in (e.src, e.dst):
            if end not in graph.vertices:
                errors.append(
                    InputError(
                        f"edge names {key_str(end)}, which is not in the graph", location=where
                    )
                )
    if errors:
        raise InputErrors(errors)
    return graph


@dataclass
class RunResult:
    exit_code: int
    recap: Recap
    events: list[Event]


class _Static:
    def __init__(self, graph: Graph[Resource]) -> None:
        self.graph = graph

    async def graphs(self, ctx: FrontendContext) -> AsyncIterator[Graph[Resource] | InputError]:
        yield self.graph
        await asyncio.Event().wait()


class _Collect:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.recap = Recap()

    def emit(self, event: Event) -> None:
        self.events.append(event)
        self.recap.emit(event)


async def run_async(
    builder: GraphBuilder,
    *,
    converged_timeout: float = 0,
    noop: bool = False,
    hostname: str | None = None,
    state_dir: str | Path = "/var/lib/pymgmt",
    sema: int = 0,
) -> RunResult:
    """Run a built graph inside an existing event loop until converged."""
    from .. import statedir
    from ..engine.engine import Engine
    from ..world.local import LocalWorld

    compiled = builder.accept()
    graph = compiled.graph
    if intruders := statedir.intrusions(graph, Path(state_dir)):
        raise InputErrors(intruders)
    sink = _Collect()
    world = LocalWorld(hostname or socket.gethostname(), Path(state_dir))
    engine = Engine(
        world=world,
        reporter=sink,
        state_dir=Path(state_dir),
        noop=noop,
        converged_timeout=converged_timeout,
        sema=sema,
        accepted=compiled,  # compiled above: the Engine need not compile it again
    )
    with statedir.lock(Path(state_dir)):  # one agent per state directory (issue 8)
        await world.load()  # after the lock: the file is this agent's alone
        assert compiled.declared is not None
        await engine.run(_Static(compiled.declared))
    return RunResult(sink.recap.exit_code(), sink.recap, sink.events)


def run(builder: GraphBuilder, **kwargs: Any) -> RunResult:
    """Run a built graph until converged; see `run_async` for the options."""
    return asyncio.run(run_async(builder, **kwargs))
