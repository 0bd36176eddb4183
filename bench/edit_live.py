"""A one-line edit of a running 10k-resource graph: CPU and wall time until it is applied.

An engine runs in-process on N converged files (``YamlFrontend`` on the
graph file, real inotify), exactly as ``pymgmt run`` runs it minus the
command line's reporters. Each trial changes one file's ``content:`` line
in the graph file and waits until that file holds the new content: the
process's CPU time (``time.process_time``, which the machine's load does
not inflate) and the wall time from the save to the file applied. The
command line also checks every new graph against the state directory
(``statedir.intrusions``, a path walk of every managed file); its cost is
timed separately on the same graph and reported beside.

With ``--base VENV`` the same trials run under that install too (e.g.
``/work/main/.venv``), so before/after come from the same minutes.

    .venv/bin/python bench/edit_live.py [--n 10000] [--edits 5] [--base /work/main/.venv]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from _common import PY, content_of, median, table, temp_dir  # noqa: E402


async def _trials(graph: Path, files: list[Path], state: Path, edits: int) -> list[list[float]]:
    from pymgmt import statedir
    from pymgmt.engine.engine import Engine
    from pymgmt.frontends.yamlfile import YamlFrontend
    from pymgmt.report.events import Checked, Event
    from pymgmt.world.local import LocalWorld

    checked: list[Checked] = []
    news = asyncio.Event()

    class Log:
        def emit(self, event: Event) -> None:
            if isinstance(event, Checked):
                checked.append(event)
                news.set()

    async def until(done: Callable[[], bool]) -> None:
        while not done():
            news.clear()
            await news.wait()

    engine = Engine(world=LocalWorld("bench"), reporter=Log(), state_dir=state)
    task = asyncio.create_task(engine.run(YamlFrontend(str(graph))))
    await until(lambda: len(checked) >= len(files))
    await asyncio.sleep(1)
    text = graph.read_text()
    out: list[list[float]] = []
    for k in range(edits):
        i = (k * 7919 + 1) % len(files)
        new = f"edited {k}\n"
        text = text.replace(
            f"content: {json.dumps(content_of(i))}\n", f"content: {json.dumps(new)}\n"
        )
        c0, w0 = time.process_time(), time.monotonic()
        n = len(checked)
        vertex = f"File[{files[i]}]"
        graph.write_text(text)
        await until(lambda n=n, v=vertex: any(e.vertex == v and e.applied for e in checked[n:]))
        assert files[i].read_text() == new
        c1, w1 = time.process_time(), time.monotonic()
        assert engine.graph is not None
        statedir.intrusions(engine.graph, state)
        out.append([c1 - c0, w1 - w0, time.process_time() - c1])
        await asyncio.sleep(0.5)
    engine.stop("bench")
    await task
    return out


def child(graph: str, root: str, n: int, edits: int, out: str) -> None:
    """Run in the interpreter under test: the trials, written as JSON to `out`."""
    gc.set_threshold(50_000, 10, 10)  # as `pymgmt run` sets it
    files = [Path(root) / "files" / f"f{i:05d}" for i in range(n)]
    rows = asyncio.run(_trials(Path(graph), files, Path(root) / "state", edits))
    Path(out).write_text(json.dumps(rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--edits", type=int, default=5)
    ap.add_argument("--base", metavar="VENV")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        g, root, n, edits, out = args.child
        child(g, root, int(n), int(edits), out)
        return
    from _common import write_graph

    print(f"# load average at start: {os.getloadavg()}", file=sys.stderr)
    rows = []
    with temp_dir() as tmp:
        files = [tmp / "files" / f"f{i:05d}" for i in range(args.n)]
        files[0].parent.mkdir(parents=True)
        for i, p in enumerate(files):
            p.write_text(content_of(i))
            p.chmod(0o644)
        pythons = {"this": PY, **({"base": f"{args.base}/bin/python"} if args.base else {})}
        for who, py in pythons.items():
            graph = tmp / f"graph-{who}.yaml"
            write_graph(graph, files)
            out = tmp / f"{who}.json"
            argv = [str(graph), str(tmp), str(args.n), str(args.edits), str(out)]
            subprocess.run([py, __file__, "--child", *argv], check=True)
            res = json.loads(out.read_text())
            for p, i in ((p, i) for i, p in enumerate(files)):  # back to converged for the next
                p.write_text(content_of(i))
            cpu, wall, guard = ([r[j] for r in res] for j in range(3))
            rows.append(
                [
                    who,
                    len(res),
                    f"{1000 * median(cpu):.0f}",
                    " / ".join(f"{1000 * x:.0f}" for x in wall),
                    f"{1000 * median(guard):.0f}",
                ]
            )
    print(f"### One-line edit of a live {args.n}-file graph (ms; CPU = the agent process's)\n")
    header = ["who", "edits", "CPU median", "wall each", "+ statedir.intrusions CPU"]
    print(table(header, rows))
    print(f"\n(load average at end: {os.getloadavg()})")


if __name__ == "__main__":
    main()
