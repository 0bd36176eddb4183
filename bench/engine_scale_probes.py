"""Four in-process probes of the engine's per-graph and per-repair costs at scale (issue 13).

Each prints CPU time (``time.process_time``: the shared machine's load does
not inflate it as it does wall time), so before/after can be compared
across runs; ``--base``-style comparisons are left to the caller (run the
same probe under another install's interpreter).

* ``intrusions N DIRS``: `statedir.intrusions` on a compiled graph of N
  files spread over DIRS directories (what the command line runs on every
  graph swapped in, a live edit included), median of 11.
* ``settled N``: an agent-mode engine on N-1 noop vertices and one file:
  `Engine._settled` once settled (median of 20), then 20 times: delete the
  file, until the graph is settled again (repaired), CPU of each cycle.
* ``progress N TICKS``: `Progress` with N applies in flight at once (a
  durable batch): the N ``Applying`` events, one tick, the N ``Checked``.
* ``memory N first|converged [MAX_ATTEMPTS]``: the engine with the command
  line's reporters (JSON, progress, recap, live state) on N files, absent
  (``first``) or already right: RSS growth from the compiled graph to
  converged, peak RSS, CPU and wall. ``MAX_ATTEMPTS`` overrides the bound
  on vertices between a check and the end of its apply.

    .venv/bin/python bench/engine_scale_probes.py intrusions 10000 1
    .venv/bin/python bench/engine_scale_probes.py settled 100000
    .venv/bin/python bench/engine_scale_probes.py progress 10000 50
    .venv/bin/python bench/engine_scale_probes.py memory 20000 first
"""

from __future__ import annotations

import asyncio
import gc
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from _common import content_of, write_graph  # noqa: E402

gc.set_threshold(50_000, 10, 10)  # as `pymgmt run` sets it


def _cpu_median(fn: Callable[[], object], times: int) -> float:
    runs = []
    for _ in range(times):
        t = time.process_time()
        fn()
        runs.append(time.process_time() - t)
    return statistics.median(runs)


def _status(field: str) -> float:
    """A /proc/self/status field (VmRSS, VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _files(tmp: Path, n: int, dirs: int, right: bool) -> tuple[list[Path], Path]:
    files = [tmp / "files" / f"d{i % dirs}" / f"f{i:06d}" for i in range(n)]
    for i, p in enumerate(files):
        p.parent.mkdir(parents=True, exist_ok=True)
        if right:
            p.write_text(content_of(i))
            p.chmod(0o644)
    graph = tmp / "graph.yaml"
    write_graph(graph, files)
    return files, graph


def _compile(graph: Path) -> Any:
    from pymgmt.frontends.compile import accept
    from pymgmt.frontends.graphfile import read_graph_file
    from pymgmt.frontends.yamlbuild import declare

    return accept(declare(read_graph_file(str(graph)), str(graph)))


def intrusions(tmp: Path, n: int, dirs: int) -> None:
    from pymgmt import statedir

    _, path = _files(tmp, n, dirs, right=True)
    graph = _compile(path).graph
    gc.freeze()
    cpu = _cpu_median(lambda: statedir.intrusions(graph, tmp / "state"), 11)
    print(f"intrusions N={n} dirs={dirs}: median {1000 * cpu:.1f} ms CPU")


class _Once:
    def __init__(self, graph: Any) -> None:
        self.graph = graph

    async def graphs(self, ctx: Any) -> AsyncIterator[Any]:
        yield self.graph
        await asyncio.Event().wait()


def settled(tmp: Path, n: int) -> None:
    from pymgmt import File, GraphBuilder
    from pymgmt.engine.engine import Engine
    from pymgmt.report.events import Event, Settled
    from pymgmt.resources.noop import Noop
    from pymgmt.world.local import LocalWorld

    g = GraphBuilder("settled")
    for i in range(n - 1):
        g.add(Noop(name=f"n{i}"))
    f = tmp / "f"
    g.add(File(name="f", path=str(f), content="x\n"))
    count = [0]
    news = asyncio.Event()

    class Sink:
        def emit(self, event: Event) -> None:
            if isinstance(event, Settled):
                count[0] += 1
                news.set()

    async def until_settled(more_than: int) -> None:
        while count[0] <= more_than:
            news.clear()
            await news.wait()

    async def main() -> None:
        engine = Engine(world=LocalWorld("t"), reporter=Sink(), state_dir=tmp / "state")
        task = asyncio.create_task(engine.run(_Once(g.build())))
        await until_settled(0)
        cpu = _cpu_median(engine._settled, 20)
        print(f"settled N={n}: Engine._settled median {1000 * cpu:.2f} ms CPU")
        cycles = []
        for _ in range(20):
            before, t = count[0], time.process_time()
            f.unlink()
            await until_settled(before)
            cycles.append(time.process_time() - t)
            assert f.read_text() == "x\n"
        med = statistics.median(cycles)
        print(f"settled N={n}: delete -> repaired -> settled, median {1000 * med:.2f} ms CPU")
        engine.stop("bench")
        await task

    asyncio.run(main())


def progress(n: int, ticks: int) -> None:
    from pymgmt.report.events import Applying, Checked, GraphStarted
    from pymgmt.report.logs import Output
    from pymgmt.report.progress import Progress

    names = [f"File[/x/f{i:06d}]" for i in range(n)]
    applying = [Applying(v, "start", ["content"]) for v in names]
    checked = [Checked(v, "start", [], True, False, False, 0.0) for v in names]

    async def one(live: bool) -> tuple[float, float, float]:
        p = Progress(Output(io.StringIO(), journal=False, live=live), status_after=0)
        p.emit(GraphStarted("g", "t", n, 0))
        t0 = time.process_time()
        for e in applying:
            p.emit(e)
        t1 = time.process_time()
        for _ in range(ticks):
            p._tick()
        t2 = time.process_time()
        for e in checked:
            p.emit(e)
        t3 = time.process_time()
        p.close()
        return t1 - t0, (t2 - t1) / ticks, t3 - t2

    for live in (False, True):
        runs = [asyncio.run(one(live)) for _ in range(5)]
        a, k, c = (statistics.median(r[i] for r in runs) for i in range(3))
        print(
            f"progress N={n} live={live}: {n} Applying {1000 * a:.1f} ms, a tick "
            f"{1000 * k:.3f} ms, {n} Checked {1000 * c:.1f} ms (CPU)"
        )


def memory(tmp: Path, n: int, mode: str, max_attempts: int | None) -> None:
    import pymgmt.engine.services as services
    from pymgmt.engine.engine import Engine
    from pymgmt.frontends.api import _Static
    from pymgmt.report.console import Fanout, JsonReporter
    from pymgmt.report.events import Converged, Event
    from pymgmt.report.live import LiveState
    from pymgmt.report.logs import Output
    from pymgmt.report.progress import Progress
    from pymgmt.report.recap import Recap
    from pymgmt.world.local import LocalWorld

    if max_attempts is not None:
        services.MAX_ATTEMPTS = max_attempts
    _, path = _files(tmp, n, max(1, n // 1000), right=mode == "converged")
    compiled = _compile(path)
    gc.collect()
    base = _status("VmRSS")
    at: dict[str, float] = {}

    class Probe:
        def emit(self, event: Event) -> None:
            if isinstance(event, Converged) and "rss" not in at:
                at["rss"] = _status("VmRSS")

    live = LiveState(hostname="h")
    with open(os.devnull, "w") as sink:
        reporter = Fanout(
            JsonReporter(sink),
            Progress(Output(io.StringIO(), journal=False)),
            Recap(),
            live,
            Probe(),
        )
        engine = Engine(
            world=LocalWorld("h"),
            reporter=reporter,
            state_dir=tmp / "state",
            converged_timeout=0,
            accepted=compiled,
            observers=[live.observer()],
        )
        cpu, wall = time.process_time(), time.monotonic()
        asyncio.run(engine.run(_Static(compiled.declared)))
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    bound = services.MAX_ATTEMPTS
    print(
        f"memory N={n} {mode} max_attempts={bound}: CPU {cpu:.1f} s, wall {wall:.1f} s; RSS "
        f"{base:.0f} MiB compiled, {at['rss']:.0f} MiB converged (+{at['rss'] - base:.0f}), "
        f"peak {_status('VmHWM'):.0f} MiB"
    )


def main() -> None:
    what, args = sys.argv[1], sys.argv[2:]
    tmp = Path(tempfile.mkdtemp(prefix="pymgmt-bench-", dir="/var/tmp"))
    try:
        if what == "intrusions":
            intrusions(tmp, int(args[0]), int(args[1]))
        elif what == "settled":
            settled(tmp, int(args[0]))
        elif what == "progress":
            progress(int(args[0]), int(args[1]))
        elif what == "memory":
            memory(tmp, int(args[0]), args[1], int(args[2]) if len(args) > 2 else None)
        else:
            sys.exit(__doc__)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
