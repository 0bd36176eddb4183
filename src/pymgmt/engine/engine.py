"""The engine: runs a stream of graphs, swapping live between them.

Structure (all inside one TaskGroup, nothing fire-and-forget)::

    Engine.run
     ├── inotify hub             shared watcher for every resource
     ├── graph stream consumer   frontends send declared graphs (or
     │                           InputErrors); each is compiled here
     │                           (`compile.accept`, in a thread) before
     │                           it is swapped in
     ├── worker per vertex       engine/worker.py
     └── converger wait          only with a converged timeout

After each successful swap the `GraphObserver`s are awaited with the running
(compiled) graph (the Exporter publishes what it exports). An observer that
raises is reported as a failure event (vertex "observer <name>") and logged;
the engine goes on with the graph it swapped in: publishing is the
observer's business, and a broken publisher must not stop the host's own
resources from being managed.

Live changeover: when the frontend yields a new graph, vertices whose
resource is unchanged (`Resource.same_as`) keep their running worker and
are not checked again; changed ones are replaced, removed ones stopped, new
ones started, and edges are rewired. A replaced or removed vertex starts no
new check, but an apply under way finishes and is reported before its
worker is stopped.

Stopping: `stop()` (a signal, the API) or the converged timeout. From then
on no check starts and no graph is swapped in; checks and applies already
under way finish and are reported (an apply cut in half would go uncounted),
then vertices left dirty by a watch event alone (maybe the echo of their
own write) get one check without apply, and every worker is cancelled.
`Settled` is never said on the way out, and `Finished` calls "pending"
whatever still had work to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from asyncio import FIRST_COMPLETED
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..durable import DurableWrites
from ..errors import InputError, InputErrors
from ..events.dbus import DBusHub
from ..events.inotify import InotifyHub
from ..frontends.base import Frontend, FrontendContext, GraphStream
from ..frontends.compile import Compiled, accept, recompile
from ..graph.model import Graph, Key
from ..redaction import scrub
from ..report.events import (
    Converged,
    Event,
    Finished,
    GraphRejected,
    GraphStarted,
    GraphSwapped,
    Reporter,
    Settled,
    Stopping,
    VertexState,
)
from ..resources.base import Context, Resource
from ..service import TaskStatus, start
from ..world.base import World
from .converger import Converger
from .firstpass import first_pass
from .refresh import RefreshStore
from .semaphores import Semaphores
from .services import InFlight, Services
from .worker import Status, Worker, failure

log = logging.getLogger("pymgmt.engine")

#: seconds the check-only pass on the way out may take (engine._verify_echoes)
VERIFY_DEADLINE = 10.0


class GraphObserver(Protocol):
    """Told of every graph the Engine swapped in (the Exporter publishes its exports)."""

    async def graph_swapped(self, graph: Graph[Resource]) -> None:
        """`graph` is the running, compiled graph; it keeps `exported` and `collect`."""
        ...


#: waits until the graph has converged (or `timeout` seconds went by idle);
#: a cluster waits for every host, locally it is the converger's own wait
ConvergedWait = Callable[[Converger, float], Awaitable[None]]


class _VertexLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"{self.extra['vertex']}: {msg}", kwargs  # type: ignore[index]


class Engine:
    def __init__(
        self,
        *,
        world: World,
        reporter: Reporter,
        state_dir: Path,
        noop: bool = False,
        converged_timeout: float | None = None,
        sema: int = 0,
        observers: Sequence[GraphObserver] = (),
        converged_wait: ConvergedWait | None = None,
        accepted: Compiled | None = None,
    ) -> None:
        """`accepted`: a graph the caller already accepted (``pymgmt run``
        validates before touching anything); when the frontend yields that
        very declared graph (`Compiled.declared`), it is not compiled again.
        """
        self.world = world
        self.observers = list(observers)
        self.converged_wait = converged_wait
        self._accepted = accepted
        #: the last graph compiled, kept so that a one-resource edit of it
        #: (`Graph.edited_from`) is compiled again for that vertex only
        self._compiled: Compiled | None = None
        self.reporter = reporter
        self.state_dir = state_dir
        self.noop = noop
        self.converged_timeout = converged_timeout
        self.converger = Converger()
        if converged_timeout is None:
            self.converger.on_settled = self._settled
        self.semaphores = Semaphores()
        self.refresh = RefreshStore(str(state_dir / "refresh"))
        #: ``--sema N``: one more semaphore every resource holds (1 = serial, like Puppet)
        self.global_sema = [f"--sema:{sema}"] if sema > 0 else []
        self.hub = InotifyHub()
        self.dbus = DBusHub()
        #: one batcher for every resource's durable writes (issue 13)
        self.durable = DurableWrites()
        self.workers: dict[Key, Worker] = {}
        self.graph: Graph[Resource] | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._stop: asyncio.Future[tuple[str, bool]] | None = None
        #: a stop asked for before `run` began
        self._stop_early: tuple[str, bool] | None = None
        #: why the graph stream broke while the graph ran (raised by `run`
        #: once the graceful stop it caused is over)
        self.source_error: Exception | None = None
        #: set by stop(): no check starts and no graph is swapped in any more
        self.stopping = False
        #: checks and applies under way, which a graceful stop lets finish
        self.in_flight = InFlight()
        #: the first pass under way over the vertices a swap started (engine/firstpass.py)
        self._first_pass: asyncio.Task[None] | None = None
        #: what each Worker may use of the engine, and nothing more
        self.services = Services(
            converger=self.converger,
            refresh=self.refresh,
            semaphores=self.semaphores,
            in_flight=self.in_flight,
            global_sema=self.global_sema,
            emit=self.emit,
            noop=noop,
            is_stopping=lambda: self.stopping,
            spawn=self._spawn,
        )

    def emit(self, event: Event) -> None:
        self.reporter.emit(scrub(event))  # no secret value reaches any reporter

    # -- running ------------------------------------------------------------------

    async def run(self, frontend: Frontend) -> None:
        """Run until converged (with a timeout) or stopped.

        Raises the frontend's InputError if its very first graph is invalid;
        later invalid graphs are reported and the running graph is kept. A
        frontend that fails after the first graph stops the engine gracefully,
        and its exception is raised once everything is stopped.
        """
        try:
            await self._run(frontend)
            if self.source_error is not None:
                raise self.source_error
        except BaseExceptionGroup as eg:
            bad = eg.subgroup(InputError)
            if bad is None:
                raise
            first: BaseException = bad
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from None

    async def _run(self, frontend: Frontend) -> None:
        loop = asyncio.get_running_loop()
        self._stop = loop.create_future()
        if self._stop_early is not None:  # stopped before it ran: it stops at once
            self.stopping = True
            self._stop.set_result(self._stop_early)
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                hub_task = await self._start_hub(tg)
                first_graph = loop.create_future()
                graphs = frontend.graphs(FrontendContext(inotify=self.hub, world=self.world))
                feed = tg.create_task(self._consume(graphs, first_graph), name="graph stream")
                conv: asyncio.Task[None] | None = None
                try:
                    # a stop may come before the first graph is in (which then never runs)
                    await asyncio.wait([first_graph, self._stop], return_when=FIRST_COMPLETED)
                    if first_graph.done():
                        first_graph.result()  # raises the InputError of a bad first graph
                    if self.converged_timeout is not None:
                        conv = tg.create_task(self._converged(self.converged_timeout))
                    reason, interrupted = await self._stop
                    self.emit(Stopping(reason, interrupted))
                    # No swap may start workers behind our back from now on.
                    feed.cancel()
                    await asyncio.wait([feed])
                    await self._finish_running()
                    await self._verify_echoes()
                finally:
                    self.stopping = True
                    feed.cancel()
                    if not first_graph.done():
                        first_graph.cancel()
                    await self._stop_workers(list(self.workers.values()))
                    self.emit(Finished(self.final_states()))
                    if conv is not None:
                        conv.cancel()
                    hub_task.cancel()
                    await self.dbus.close()
        finally:
            self._tg = None
            gc.unfreeze()  # what the run froze is garbage now, or the caller's

    async def _start_hub(self, tg: asyncio.TaskGroup) -> asyncio.Task[None]:
        """Start the inotify hub as a service; its task, which the engine cancels at the end.

        `service.start` raises here if the hub cannot start (no inotify
        instance left), before any frontend or worker exists.
        """
        task: list[asyncio.Task[None]] = []

        async def hub(task_status: TaskStatus[None]) -> None:
            me = asyncio.current_task()
            assert me is not None
            task.append(me)
            await self.hub.run(task_status)

        await start(tg, hub, name="inotify hub")
        return task[0]

    async def _finish_running(self) -> None:
        """A graceful stop lets the checks and applies under way finish.

        Cutting an apply in half (a package transaction, a command) would
        leave the system in a state nobody asked for, and the recap would not
        count what it did change. No new check starts meanwhile.
        """
        if self._first_pass is not None:
            # Its checks are short and it starts none once stopping: a moment.
            await asyncio.wait([self._first_pass])
        n = self.in_flight.count
        if n:
            log.warning(
                "waiting for %d running resource%s to finish (^C again to exit at once)",
                n,
                "" if n == 1 else "s",
            )
            await self.in_flight.wait_idle()

    async def _verify_echoes(self) -> None:
        """Check again, without applying, vertices a watch event left dirty.

        Once the work under way finished, a vertex whose watch fired during
        its own apply (the echo of its write) is not pending work unless a
        check finds a difference. Checks change nothing, so this pass is
        short, and bounded: what it has not settled in time stays pending.
        """
        # The last applies' echoes may still wait in the kernel's queue: a
        # vertex whose echo is read only after this pass would be called
        # pending at the stop (seen: 42 of 1,000 files in a first apply).
        self.hub.drain()
        suspects = [w for w in self.workers.values() if w.may_be_echo()]
        if not suspects:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(VERIFY_DEADLINE), asyncio.TaskGroup() as tg:
                for w in suspects:
                    tg.create_task(w.verify(), name=f"verify {w.name}")

    def _settled(self) -> bool:
        """Report that the graph is as wanted again, if it truly is."""
        if self.stopping:
            return False
        # The workers that are not OK and clean, kept as they change: a repair
        # costs this what is left to do, not a walk of the graph (issue 13).
        standing = self.services.standing
        standing.shrink()
        for w in standing.unfinished:
            if not _failed_ancestors(w):
                return False  # work left: not settled (it will be reported later)
        failed = _in_graph_order(standing.failed)
        would_change = _in_graph_order(standing.would_change)
        self.emit(Settled(len(self.workers), failed, would_change))
        _freeze_the_graph()
        return True

    def stop(self, reason: str, interrupted: bool = True) -> None:
        """Ask a running engine to stop gracefully (signal handlers call this).

        `interrupted` says the stop came before the graph converged (a
        signal, the API); only the converged timeout stops uninterrupted.
        """
        if self._stop is None:
            self._stop_early = (reason, interrupted)  # `run` has not begun: it stops at once
        elif not self._stop.done():
            self.stopping = True
            self._stop.set_result((reason, interrupted))

    async def _converged(self, timeout: float) -> None:
        if self.converged_wait is not None:
            await self.converged_wait(self.converger, timeout)
        else:
            await self.converger.wait_converged(timeout)
        if self.stopping:
            return
        self.emit(Converged(timeout))
        self.stop("converged", interrupted=False)

    async def _consume(self, graphs: GraphStream, first: asyncio.Future[None]) -> None:
        try:
            async for declared in graphs:
                item = (
                    declared if isinstance(declared, InputError) else await self._accept(declared)
                )
                if isinstance(item, InputError):
                    if not first.done():
                        first.set_exception(item)
                        return
                    errors = item.errors if isinstance(item, InputErrors) else [item]
                    self.emit(GraphRejected(errors))
                    continue
                if self.stopping:
                    return  # a graph that arrives while stopping is never started
                await self.swap(item)
                if self.graph is item:
                    await self._tell_observers(item)
                if not first.done():
                    first.set_result(None)
        except Exception as e:
            if not first.done():
                raise  # nothing ran yet: the start fails, as with a bad first graph
            # The graph source broke while the graph runs (e.g. the cluster
            # World's watch ended): stop gracefully, as for a signal, so what
            # is being applied finishes and is reported; `run` raises it then.
            self.source_error = e
            log.error("the graph source failed: %s", e)
            self.stop(f"the graph source failed: {e}", interrupted=True)
        finally:
            # Cancelled during a swap, the stream is parked at its yield: close
            # it now, or the garbage collector would, in a task nobody awaits.
            aclose = getattr(graphs, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _accept(self, declared: Graph[Resource]) -> Graph[Resource] | InputError:
        """The compiled graph, or why it is refused (one validation path: `accept`).

        Compiling runs in a thread: AutoEdges may run dpkg-query, and a 10k
        resource graph takes over a second, while every watch must go on.
        The graph the caller accepted before the run is not compiled again,
        and a live edit of one resource (`compile.recompile`) compiles that
        vertex alone, on the loop: it copies a dict and checks one resource.
        """
        pre = self._accepted
        if pre is not None and pre.declared is declared:
            self._accepted = None  # a later yield of the same object is a new graph
            self._compiled = pre
            return pre.graph
        prev = self._compiled
        compiled = recompile(prev, declared) if prev is not None else None
        if compiled is None:
            try:
                compiled = await asyncio.to_thread(accept, declared)
            except InputError as e:
                return e
        self._compiled = compiled
        return compiled.graph

    async def _tell_observers(self, graph: Graph[Resource]) -> None:
        """Await each observer in turn; one that raises is reported, never fatal."""
        for obs in self.observers:
            try:
                await obs.graph_swapped(graph)
            except Exception as e:
                name = type(obs).__name__
                log.warning("observer %s failed: %s", name, e)
                self.emit(failure(f"observer {name}", "apply", e))

    # -- changeover ------------------------------------------------------------------

    async def swap(self, new: Graph[Resource]) -> None:
        """Make `new` the running graph, touching only what changed.

        Refused once the engine is stopping, also if the stop comes while
        the old workers are being stopped: no worker starts after a stop.
        """
        if self.stopping:
            return
        if self._first_pass is not None:
            # It holds vertices of the running graph that have no task yet.
            await asyncio.wait([self._first_pass])
            self._first_pass = None
        first = self.graph is None
        gc.unfreeze()  # replaced workers must be collectable; frozen again once settled
        old = self.workers
        keep: dict[Key, Worker] = {}
        replaced: list[str] = []
        added: list[Resource] = []
        stopping: list[Worker] = []
        for key, res in new.vertices.items():
            w = old.get(key)
            # `is`: an edit's recompiled graph holds the running resources themselves
            if w is not None and (w.res is res or w.res.same_as(res)):
                keep[key] = w
            else:
                if w is not None:
                    stopping.append(w)
                    replaced.append(str(res))
                added.append(res)
        removed = [w for k, w in old.items() if k not in new.vertices]
        self.converger.activity()
        await self._retire(stopping + removed)
        await self._stop_workers(stopping + removed)
        for w in stopping + removed:
            w.leave_standing()
        if self.stopping:
            return
        self.graph = new
        self.workers = dict(keep)
        if first:
            # Wired inside too: `_wire` replaces each worker's edge lists, and
            # a list taken from the interpreter's free list is never counted
            # by the collector, so 400k of them at 100k vertices sat in its
            # youngest generation, uncounted, until one collection walked
            # them all (0.2 s; issue 13).
            with collector_paused():
                started = [self._new_worker(res) for res in added]
                self._wire(new)
        else:
            started = [self._new_worker(res) for res in added]
            self._wire(new)
        if first:
            self.emit(GraphStarted(new.name, new.source, len(new.vertices), len(new.edges)))
        else:
            self.emit(
                GraphSwapped(
                    new.name,
                    kept=len(keep),
                    replaced=replaced,
                    added=[str(r) for r in added if str(r) not in replaced],
                    removed=[w.name for w in removed],
                )
            )
        # The vertices of a kind that checks in batches start in one pass;
        # the others (and those the pass does not find converged) in a task each.
        batch: list[Worker] = []
        for w in started:
            if w.batchable():
                batch.append(w)
            else:
                w.task = self._spawn(w)
        if batch:
            assert self._tg is not None
            self._first_pass = self._tg.create_task(
                first_pass(batch, self._context, self._spawn), name="first pass"
            )

    def _spawn(self, w: Worker) -> asyncio.Task[None]:
        """Start the task of worker `w` (at a swap, or when a dormant one is woken)."""
        assert self._tg is not None
        return self._tg.create_task(w.run(self._context), name=w.name)

    def _new_worker(self, res: Resource) -> Worker:
        w = Worker(self.services, res)
        self.workers[res.key] = w
        w.poke()  # busy from birth, so the converger never sees a gap
        return w

    def _wire(self, graph: Graph[Resource]) -> None:
        for rank, w in enumerate(self.workers.values()):
            w.in_edges, w.out_edges = [], []
            w.rank = rank
        for e in graph.edges:
            src, dst = self.workers.get(e.src), self.workers.get(e.dst)
            if src is not None and dst is not None:
                src.out_edges.append((dst, e))
                dst.in_edges.append((src, e))
        for w in self.workers.values():
            w.parents = [p for p, _ in w.in_edges]
            w.children = [c for c, _ in w.out_edges]
        for w in self.workers.values():
            # A kept vertex may have lost a failed parent: let it re-evaluate.
            if w.dirty:
                w.poke()

    async def _retire(self, workers: list[Worker]) -> None:
        """Let the applies under way on `workers` finish (and be reported) first.

        Cancelled half-way, a command or a package transaction would leave
        the system in a state nobody asked for, and the change would go
        uncounted (issue 8 review, finding 6). No new check starts on them.
        """
        for w in workers:
            w.retiring = True
        running = [w for w in workers if w.in_check]
        if running:
            log.info("changeover: waiting for %s to finish", ", ".join(w.name for w in running))
        for w in running:
            await w.wait_idle()

    async def _stop_workers(self, workers: list[Worker]) -> None:
        tasks = [w.task for w in workers if w.task is not None]
        for t in tasks:
            t.cancel()
        if tasks:
            # asyncio.wait, not `await t`: awaiting a task forwards our own
            # cancellation into it, and suppressing the CancelledError it then
            # raises swallowed the caller's cancellation too (a stop during a
            # changeover hung: issue 8). Our cancellation now propagates.
            await asyncio.wait(tasks)
        for w in workers:
            # A task cancelled before it first ran never reached its finally,
            # and a dormant worker has no task.
            await w.close()

    def _context(self, w: Worker) -> Context:
        res = w.res
        return Context(
            hostname=self.world.hostname,
            log=_VertexLog(logging.getLogger("pymgmt.resource"), {"vertex": w.name}),  # type: ignore[arg-type]
            state_root=self.state_dir,
            world=self.world,
            inotify=self.hub,
            dbus=self.dbus,
            _event=w.on_event,
            _ready=w.on_ready,
            key=res.key,
            _tick=w.on_tick,
            durable=self.durable,
        )

    # -- results ------------------------------------------------------------------

    def final_states(self) -> list[VertexState]:
        """Where each vertex stands: "ok" only if nothing was left to do for it."""
        out: list[VertexState] = []
        for w in self.workers.values():
            if w.status is Status.OK and not w.dirty:
                out.append(VertexState(w.name, "ok"))
            elif w.status is Status.FAILED:
                out.append(VertexState(w.name, "failed"))
            else:
                blockers = sorted({a.name for a in _failed_ancestors(w)})
                out.append(VertexState(w.name, "skipped" if blockers else "pending", blockers))
        return out

    def check_counts(self) -> dict[str, int]:
        return {w.name: w.checks for w in self.workers.values()}


def _freeze_the_graph() -> None:
    """Keep the running graph out of every later garbage collection.

    At 100k files the graph, its workers and their tasks are millions of
    objects; each full collection walked them all (0.8-3 s) while the agent
    sat on a repair (issue 13: drift p99 at 100k). Once settled they live as
    long as the graph does, so they move to the permanent generation; a
    changeover and the end of the run unfreeze them (`gc.unfreeze`), so that
    what they leave behind is still collected.
    """
    gc.freeze()


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection while something long-lived is made; then it is frozen.

    The first graph's workers (and `pymgmt run`'s reading of the graph)
    live as long as the graph, and nothing before them is garbage yet; each
    collection walked all made so far (100k workers: issue 13). A
    changeover and the end of the run unfreeze them (`gc.unfreeze`).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _in_graph_order(workers: set[Worker]) -> list[str]:
    return [w.name for w in sorted(workers, key=lambda w: w.rank)]


def _failed_ancestors(w: Worker) -> list[Worker]:
    seen: set[int] = set()
    out: list[Worker] = []
    stack = list(w.parents)
    while stack:
        p = stack.pop()
        if id(p) in seen:
            continue
        seen.add(id(p))
        if p.status is Status.FAILED:
            out.append(p)
        stack.extend(p.parents)
    return out


__all__ = [
    "ConvergedWait",
    "Engine",
    "Frontend",
    "FrontendContext",
    "GraphObserver",
    "GraphStream",
]
