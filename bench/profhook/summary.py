"""Where an agent's CPU goes, per graph swap, from profiles of sitecustomize.py.

    .venv/bin/python bench/profhook/summary.py /tmp/prof/123.prof /tmp/prof/456.prof

Cumulative thread CPU of the phases of a swap on a collecting host, in all
and per swap (a swap = one `accept`, the engine's compile, which runs once
per graph; async functions cannot be counted by their calls, as cProfile
counts each resumption of a coroutine as a call).
"""

from __future__ import annotations

import pstats
import sys

PHASES = [
    ("compile (accept, in a thread)", "frontends/compile.py", "accept"),
    ("changeover (Engine.swap)", "engine/engine.py", "swap"),
    ("collect merge (CollectingFrontend._merge)", "frontends/collect.py", "_merge"),
    ("  of which confine", "world/confine.py", "confine"),
    ("state-dir check (statedir.intrusions)", "statedir.py", "intrusions"),
    ("ResWorld decode (_View.put)", "world/resworld.py", "put"),
    ("events, console/JSON (Engine.emit)", "engine/engine.py", "emit"),
    ("workers: check/apply (Worker.run)", "engine/worker.py", "run"),
    ("host watch (cluster.watch_hosts)", "world/cluster.py", "watch_hosts"),
    ("etcd connect, incl. aetcd/grpc import", "world/etcd/client.py", "_connect"),
]


def main(files: list[str]) -> None:
    stats = pstats.Stats(*files)
    table = stats.stats  # type: ignore[attr-defined]

    def cumulative(path: str, fn: str) -> float:
        return sum(v[3] for k, v in table.items() if k[0].endswith(path) and k[2] == fn)

    swaps = sum(v[1] for k, v in table.items() if k[0].endswith("compile.py") and k[2] == "accept")
    imports = max((v[3] for k, v in table.items() if k[2] == "_find_and_load"), default=0.0)
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"{len(files)} profile(s), {swaps} swaps (compiles)\n")
    print("| phase | CPU s | ms per swap |\n|---|---|---|")
    rows = [("all profiled threads", total), ("imports", imports)]
    rows += [(name, cumulative(path, fn)) for name, path, fn in PHASES]
    for name, value in rows:
        print(f"| {name} | {value:.2f} | {value / swaps * 1000 if swaps else 0:.1f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
