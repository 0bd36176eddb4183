"""Where one converged run's time and memory go, phase by phase, in one process.

Usage: _scale_probe.py OUT GRAPH PREFIX

Runs what ``pymgmt run --converged-timeout 0`` runs, split with CPU-time
stamps (``time.process_time``: this shared machine's load does not inflate
them as it does wall time) and RSS readings: imports, reading + parsing the
YAML into a declared graph (``declare``), compiling it (``accept``: AutoEdges, AutoGroup, graph-wide
checks), the engine's start (workers made and wired: until GraphStarted),
the first checks (until Converged), and the stop (until Finished). Writes
JSON to OUT. The reporter only timestamps events: no console output is
measured here (the whole-process runs in scale.py include it).
"""

from __future__ import annotations

import time

T0 = time.process_time()

import asyncio  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from pymgmt.engine.engine import Engine  # noqa: E402
from pymgmt.frontends.api import _Static  # noqa: E402  (the API's one-graph frontend)
from pymgmt.frontends.compile import accept  # noqa: E402
from pymgmt.frontends.graphfile import read_graph_file  # noqa: E402
from pymgmt.frontends.yamlbuild import declare  # noqa: E402
from pymgmt.report.events import Checked, Converged, Event, Finished, GraphStarted  # noqa: E402
from pymgmt.world.local import LocalWorld  # noqa: E402

try:  # as `pymgmt run` reads and compiles the graph (cli/run.py), where it does so
    from pymgmt.engine.engine import collector_paused
except ImportError:  # an older install (--base): its run collected meanwhile
    from contextlib import nullcontext as collector_paused


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Stamps:
    """A reporter that notes when the engine's milestones happen, and the RSS then."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.rss: dict[str, float] = {}
        self.checked = 0
        self.changed = 0

    def emit(self, event: Event) -> None:
        if isinstance(event, Checked):
            self.checked += 1
            self.changed += bool(event.changes)
            return
        for kind, name in ((GraphStarted, "started"), (Converged, "converged"), (Finished, "done")):
            if isinstance(event, kind) and name not in self.at:
                self.at[name] = time.process_time()
                self.rss[name] = rss_mib()


def main(out: str, graph_path: str, prefix: str) -> None:
    gc.set_threshold(50_000, 10, 10)  # as `pymgmt run` sets it (cli/run.py)
    t_imports = time.process_time()
    rss: dict[str, float] = {"imports": rss_mib()}
    with collector_paused():
        declared = declare(read_graph_file(graph_path), graph_path)
        t_parse = time.process_time()
        rss["parse"] = rss_mib()
        compiled = accept(declared)
        t_compile = time.process_time()
    rss["compile"] = rss_mib()
    stamps = Stamps()
    engine = Engine(
        world=LocalWorld(socket.gethostname()),
        reporter=stamps,
        state_dir=Path(prefix),
        converged_timeout=0,
        accepted=compiled,
    )
    t_engine = time.process_time()
    asyncio.run(engine.run(_Static(declared)))
    t_end = time.process_time()
    at = stamps.at
    phases = {
        "imports": t_imports - T0,
        "parse": t_parse - t_imports,
        "compile": t_compile - t_parse,
        "engine start": at["started"] - t_engine,
        "first checks": at["converged"] - at["started"],
        "stop": at["done"] - at["converged"],
        "after": t_end - at["done"],
    }
    rss.update({f"engine {k}": v for k, v in stamps.rss.items()})
    data = {
        "n": len(compiled.graph.vertices),
        "phases": phases,
        "rss": rss,
        "checked": stamps.checked,
        "changed": stamps.changed,
    }
    Path(out).write_text(json.dumps(data))


if __name__ == "__main__":
    main(*sys.argv[1:4])
