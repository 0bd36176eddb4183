"""Fan-in at scale: N client agents, each exporting one file and collecting all.

One server agent runs the embedded etcd (its graph manages one local file
and exports nothing); N agents (default 50) join it with ``--no-server
--seeds``, each managing one exported file in its own directory and
collecting every other host's into it: N x N files in place at the end
(2,500 for 50). All N are spawned at once.

Measured: spawn of the first client -> all N x N files in place (polled on
disk), and the last client's ``host_joined`` -> all in place (the exchange
once everybody is up, without the interpreters' start on 2 shared cores);
the RSS of the etcd process and of one client agent at the end. The floor,
in the same run: the same N agents started with local graphs (no cluster),
spawn to their N own files in place; ratios are to it.

Loopback only, every process killed at the end, every loop bounded.

    .venv/bin/python bench/fanin.py              # 50 agents
    .venv/bin/python bench/fanin.py --agents 10
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from _common import check_venv, median, ms, ratio, rss_mib, table, temp_dir, warm_up
from exchange import Agent, Host, cpu_seconds, env_for, wait_until


def _etcd_pid(server: Agent) -> int | None:
    """The etcd child of the server agent (the direct child named etcd)."""
    pid = server.proc.pid
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            kids = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        except OSError:
            continue
        for k in kids:
            try:
                if os.path.basename(os.readlink(f"/proc/{k}/exe")) == "etcd":
                    return int(k)
            except OSError:
                continue
    return None


def _all_in_place(hosts: Sequence[Host]) -> bool:
    return all(h.complete(hosts) for h in hosts)


def fan_in(base: Path, n: int, env: dict[str, str]) -> dict[str, float]:
    server = Host(base / "server", 1, exports=0, private=1)
    server.write_graph()
    srv = Agent(server.name, server.argv(*server.serve_flags()), env)
    agents = [srv]
    try:
        wait_until(lambda: server.complete([]), "the server", agents)
        hosts = [Host(base, 2 + i, exports=1, private=0) for i in range(n)]
        for h in hosts:
            h.write_graph()
        for h in hosts:
            h.agent = Agent(h.name, h.argv("--no-server", "--seeds", server.client_url), env)
            agents.append(h.agent)
        start = hosts[0].agent.spawned  # type: ignore[union-attr]
        done = wait_until(lambda: _all_in_place(hosts), f"{n}x{n} files in place", agents)
        joined = []
        for h in hosts:
            a = h.agent
            assert a is not None
            e = a.first(lambda e, h=h: e.get("event") == "host_joined" and e["host"] == h.name)
            if e is not None:
                joined.append(e["time"])
        etcd = _etcd_pid(srv)
        one = hosts[len(hosts) // 2].agent
        assert one is not None
        swaps = [
            len(h.agent.all(lambda e: e.get("event") in ("graph_started", "graph_swapped")))
            for h in hosts
            if h.agent is not None
        ]
        out = {
            "files": float(sum(len(os.listdir(h.dir)) for h in hosts)),
            "graphs per agent": median(swaps),
            "agents CPU s": sum(cpu_seconds(h.agent.proc.pid) for h in hosts if h.agent),
            # start-up: each agent's CPU until its own host_joined was read
            "agents CPU to join s": sum(h.agent.join_cpu or 0.0 for h in hosts if h.agent),
            "etcd CPU s": cpu_seconds(etcd) if etcd else float("nan"),
            "from first spawn": done - start,
            "from last joined": done - max(joined) if joined else float("nan"),
            "etcd RSS MiB": rss_mib(etcd) if etcd else float("nan"),
            "agent RSS MiB": rss_mib(one.proc.pid),
            "server agent RSS MiB": rss_mib(srv.proc.pid),
        }
        return out
    finally:
        for a in reversed(agents):
            a.stop()


def floor(base: Path, n: int, env: dict[str, str]) -> float:
    """The same N agents with local graphs: spawn of the first -> every own file in place."""
    hosts = [Host(base, 2 + i, exports=1, private=0) for i in range(n)]
    agents = []
    try:
        for h in hosts:
            h.write_graph(cluster=False)
        for h in hosts:
            h.agent = Agent(h.name, h.argv(), env)
            agents.append(h.agent)
        start = agents[0].spawned
        done = wait_until(lambda: all(h.complete([]) for h in hosts), "the floor", agents)
        return done - start
    finally:
        for a in agents:
            a.stop()


def main() -> None:
    check_venv()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=50)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args()
    if not 2 <= args.agents <= 100 or not 1 <= args.runs <= 5:
        sys.exit("--agents from 2 to 100, --runs from 1 to 5")
    with temp_dir() as tmp:
        env = env_for("warm", tmp, fast=True)
        warm_up(env)
        floors, runs = [], []
        for r in range(args.runs):
            floors.append(floor(tmp / f"floor{r}", args.agents, env))
            runs.append(fan_in(tmp / f"fanin{r}", args.agents, env))
            time.sleep(1)  # let the machine's load settle between runs (bounded: runs <= 5)
    fl = median(floors)
    n = args.agents
    print(f"## fan-in: {n} client agents, one file each, collecting all ({args.runs} run(s))\n")
    print(f"Floor: the same {n} agents with local graphs, first spawn to {n} files: {ms(fl)} ms\n")
    keys = ["from first spawn", "from last joined"]
    rows = [
        [k, ms(median([r[k] for r in runs])), ratio(median([r[k] for r in runs]), fl)] for k in keys
    ]
    print(table([f"{n}x{n} files in place", "ms", "vs floor"], rows))
    print()
    mem = ["etcd RSS MiB", "agent RSS MiB", "server agent RSS MiB"]
    print(
        table(["process", "RSS (MiB)"], [[k, f"{median([r[k] for r in runs]):.1f}"] for k in mem])
    )
    last = runs[-1]
    print(
        f"\nfiles in place: {int(last['files'])}; graphs run per agent (median): "
        f"{last['graphs per agent']:g}; CPU: agents {last['agents CPU s']:.1f} s in all "
        f"({last['agents CPU to join s']:.1f} s of it until each had joined), "
        f"etcd {last['etcd CPU s']:.1f} s (2 cores shared by everything)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"floor": floors, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
