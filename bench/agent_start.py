"""An agent's start, first and restarted: CPU until every vertex is checked.

For each N, on a tree of N converged files (``scale.py``'s ``make_tree``,
1,000 per directory), ``pymgmt run --json --prefix P graph.yaml`` runs until
N ``checked`` events have come out; the agent's CPU (user+sys, read from
``/proc/PID/stat`` at that moment) is the figure, the wall time is kept for
the record (this shared machine's load inflates it). "first": a new state
directory, so the graph is parsed, compiled and the parse cache stored;
"cached": the same state directory again, so the cache answers.

With ``--base SRC`` (a ``src/`` directory, e.g. ``git archive main src``
unpacked) the same runs of that source are made by the same interpreter
through ``PYTHONPATH``, interleaved round by round with this tree's, so both
sides see the same minutes of the machine. The peak RSS of each run is the
agent's VmHWM when it was stopped.

    .venv/bin/python bench/agent_start.py --sizes 10000,100000 --rounds 3 --base /tmp/base-src
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from _common import bench_env, check_venv, median, stop, table, temp_dir, warm_up
from scale import cpu_ticks, make_tree, start_agent


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(graph: Path, prefix: Path, n: int, env: dict[str, str], log: Path) -> dict[str, float]:
    """One agent start until N vertices are checked: its CPU, wall, peak RSS, load."""
    proc, wall = start_agent(graph, prefix, log, n, env, per_file=0.004)
    try:
        cpu = cpu_ticks(proc.pid) / os.sysconf("SC_CLK_TCK")
        return {"cpu": cpu, "wall": wall, "rss": peak_rss_mib(proc.pid), "load": os.getloadavg()[0]}
    finally:
        stop(proc, timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--base", metavar="SRC", help="a src/ directory run through PYTHONPATH")
    ap.add_argument("--trees", metavar="DIR", help="reuse (or keep) the trees under DIR")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    check_venv()
    sizes = [int(x) for x in args.sizes.split(",") if x]
    results: dict[str, list[dict[str, float]]] = {}
    print(f"# load average at start: {os.getloadavg()}", file=sys.stderr)
    with temp_dir() as tmp:
        env = bench_env("warm", tmp / "pyc")
        warm_up(env)
        sides = {"this": env}
        if args.base:
            base_env = dict(env, PYTHONPATH=str(Path(args.base).resolve()))
            warm_up(base_env)
            sides = {"base": base_env, "this": env}
        trees = Path(args.trees) if args.trees else tmp
        for n in sizes:
            root = trees / f"n{n}"
            graph = root / "graph.yaml"
            if not graph.exists():
                make_tree(root, n)
            for r in range(args.rounds):
                for who, e in sides.items():
                    prefix = tmp / f"prefix-{who}-{n}-{r}"
                    for kind in ("first", "cached"):
                        got = start(graph, prefix, n, e, tmp / "agent.jsonl")
                        results.setdefault(f"{n} {who} {kind}", []).append(got)
                        print(f"# N={n} round {r} {who} {kind}: {got}", file=sys.stderr, flush=True)
                    shutil.rmtree(prefix, ignore_errors=True)
    rows = []
    for key, runs in results.items():
        n, who, kind = key.split()
        rows.append(
            [
                n,
                who,
                kind,
                " / ".join(f"{r['cpu']:.2f}" for r in runs),
                f"{median([r['cpu'] for r in runs]):.2f}",
                " / ".join(f"{r['wall']:.1f}" for r in runs),
                f"{max(r['rss'] for r in runs):.0f}",
                " / ".join(f"{r['load']:.1f}" for r in runs),
            ]
        )
    head = ["N", "who", "start", "CPU s", "median", "wall s", "peak RSS MiB", "load"]
    print(table(head, rows))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
