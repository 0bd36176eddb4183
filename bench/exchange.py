"""The exchange: from the last host's start to every host holding every exported file.

mgmt's A/B/C example scaled to N hosts (3 and 10): host i manages four
files in its own directory, exports two of them (``@@``) and collects every
other host's exports into that directory. Host 1 serves etcd (embedded);
hosts 2..N join it with ``--seeds``, started one after the other, each once
the previous one holds everything. The clock runs from the *last* host's
spawn to the moment every host's directory holds its four files plus two
from each other host (polled on disk by this script).

Where the time goes, from the agents' ``--json`` event timestamps (and the
arrival time of their log lines) for the last host L:

* start+join   L's spawn -> L's own ``host_joined`` (interpreter, imports,
               gRPC connect, lease, host key)
* first graph  -> L's ``graph_started`` (the others' exports read, its graph compiled)
* export+watch -> the other hosts' ``collect_changed`` completing L's files (median,
               max): L's exporter writes them after its swap, etcd commits, watches deliver
* compile      -> their ``graph_swapped`` (merge, compile, changeover)
* apply        -> their last apply of one of L's files
* L collects   L's spawn -> L's own directory complete

and, for host 1, ``etcd start``: its spawn -> its etcd healthy (its log line; this
includes the interpreter's start and imports, ~0.2 s).
The floor, measured in the same run: one single-host agent (no cluster)
applying the same four files, spawn to files in place. Ratios are to it.

Loopback only (127.0.1.N), every process killed at the end, every loop
bounded in count and time.

    .venv/bin/python bench/exchange.py                 # 3 and 10 hosts, 3 runs each
    .venv/bin/python bench/exchange.py --hosts 3 --runs 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import PYMGMT, bench_env, check_venv, median, ms, ratio, table, temp_dir, warm_up

#: the longest one exchange may take before the run is declared failed
DEADLINE = 120.0
#: how often the disk is polled for the files, seconds
POLL = 0.002


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a live process so far (NaN once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port


class Agent:
    """A `pymgmt run --json` process; its events and log lines, each with arrival time."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str]) -> None:
        self.name = name
        self.events: list[dict[str, Any]] = []
        self.log: list[tuple[float, str]] = []
        #: the agent's CPU seconds when its own ``host_joined`` was read (start-up)
        self.join_cpu: float | None = None
        self.spawned = time.time()
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,  # a ^C at the terminal reaches this script only
        )
        self._threads = [
            threading.Thread(target=self._out, daemon=True),
            threading.Thread(target=self._err, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                e = json.loads(line)
                self.events.append(e)
                if (
                    self.join_cpu is None
                    and e.get("event") == "host_joined"
                    and e.get("host") == self.name
                ):
                    self.join_cpu = cpu_seconds(self.proc.pid)

    def _err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append((time.time(), line.rstrip("\n")))

    def first(self, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        return next((e for e in list(self.events) if pred(e)), None)

    def all(self, pred: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if pred(e)]

    def logged(self, needle: str) -> float | None:
        return next((t for t, line in list(self.log) if needle in line), None)

    def stop(self) -> None:
        """SIGTERM (a clean leave), SIGKILL after a deadline; reap; join the readers."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for t in self._threads:
            t.join(5)

    def tail(self) -> str:
        events = [json.dumps(e)[:300] for e in self.events[-10:]]
        return "\n".join([line for _, line in self.log[-20:]] + events)


class Host:
    """Host i of a benchmark cluster: its address, ports, directories and graph."""

    def __init__(self, base: Path, i: int, *, exports: int = 2, private: int = 2) -> None:
        self.i = i
        self.name = f"h{i}"
        self.address = f"127.0.1.{i}"
        self.dir = base / self.name / "files"
        self.prefix = base / self.name / "state"
        self.graph = base / self.name / "graph.yaml"
        self.dir.mkdir(parents=True)
        self.private = [f"p{k}-{self.name}" for k in range(private)]
        self.exports = [f"x{k}-{self.name}" for k in range(exports)]
        self.agent: Agent | None = None

    def write_graph(self, *, cluster: bool = True) -> None:
        lines = ["graph: exchange", "resources:", "  file:"]
        for name in self.private + self.exports:
            exported = cluster and name in self.exports
            lines += [
                f"  - name: {json.dumps(('@@' if exported else '') + name)}",
                f"    path: {self.dir / name}",
                f"    content: {json.dumps(content(name))}",
            ]
        if cluster:
            lines += ["collect:", "- kind: file", f"  pattern: {self.dir}/"]
        self.graph.write_text("\n".join(lines) + "\n")

    def argv(self, *flags: str) -> list[str]:
        return [
            PYMGMT,
            "run",
            "--json",
            "--prefix",
            str(self.prefix),
            "--hostname",
            self.name,
            *flags,
            str(self.graph),
        ]

    def serve_flags(self) -> list[str]:
        client, peer = free_port(self.address), free_port(self.address)
        self.client_url = f"http://{self.address}:{client}"
        return ["--client-urls", self.client_url, "--server-urls", f"http://{self.address}:{peer}"]

    def complete(self, everyone: Sequence[Host]) -> bool:
        """Every file this host should hold is there with its content."""
        want = set(self.private + self.exports)
        for h in everyone:
            want.update(h.exports)
        try:
            present = set(os.listdir(self.dir))
        except OSError:
            return False
        if not want <= present:
            return False
        return all((self.dir / n).read_text() == content(n) for n in want)


def content(name: str) -> str:
    return f"{name}: exchanged by the pymgmt benchmark\n"


def wait_until(pred: Callable[[], bool], what: str, agents: Sequence[Agent]) -> float:
    """Poll `pred` every POLL s; the wall time it became true; fail after DEADLINE."""
    deadline = time.monotonic() + DEADLINE
    while not pred():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {a.name}\n{a.tail()}" for a in agents)
            raise RuntimeError(f"timed out waiting for {what}\n{tails}")
        for a in agents:
            if a.proc.poll() is not None:
                raise RuntimeError(f"{a.name} exited {a.proc.returncode}\n{a.tail()}")
        time.sleep(POLL)
    return time.time()


def env_for(mode: str, tmp: Path, fast: bool) -> dict[str, str]:
    env = bench_env(mode, tmp / "pyc")
    if fast:
        env["PYMGMT_ETCD_FAST"] = "1"
    env["PYMGMT_LEASE_TTL"] = "5"
    return env


# -- the floor ------------------------------------------------------------------------


def floor(base: Path, env: dict[str, str]) -> float:
    """One single-host agent, the same four files without exports: spawn -> files in place."""
    h = Host(base, 200)
    h.write_graph(cluster=False)
    a = Agent(h.name, h.argv(), env)
    try:
        done = wait_until(lambda: h.complete([]), "the floor's files", [a])
    finally:
        a.stop()
    return done - a.spawned


# -- one exchange ---------------------------------------------------------------------------


def exchange(base: Path, n: int, env: dict[str, str]) -> dict[str, float]:
    """Start hosts 1..n one after the other; the timings of the last one's exchange."""
    hosts = [Host(base, i) for i in range(1, n + 1)]
    agents: list[Agent] = []
    try:
        first = hosts[0]
        for h in hosts:
            h.write_graph()
            flags = first.serve_flags() if h is first else ["--seeds", first.client_url]
            h.agent = Agent(h.name, h.argv(*flags), env)
            agents.append(h.agent)
            up = hosts[: h.i]
            if h is not hosts[-1]:
                wait_until(
                    lambda up=up: all(x.complete(up) for x in up), f"{h.name}'s exchange", agents
                )
        when: dict[str, float] = {}

        def everyone() -> bool:
            for x in hosts:
                if x.name not in when and x.complete(hosts):
                    when[x.name] = time.time()
            return len(when) == len(hosts)

        done = wait_until(everyone, "the exchange", agents)
        # the files are on disk; give the reader threads the JSON lines that said so
        mine = {f"File[{x}@{hosts[-1].name}]" for x in hosts[-1].exports}
        wait_until(lambda: all(_saw_apply(h, mine) for h in hosts[:-1]), "the events", agents)
        return breakdown(hosts, done, when[hosts[-1].name])
    finally:
        for a in reversed(agents):  # clients first, the server's etcd last
            a.stop()


def _saw_apply(host: Host, vertices: set[str]) -> bool:
    a = host.agent
    assert a is not None
    seen = {e.get("vertex") for e in a.all(lambda e: e.get("event") == "checked")}
    return vertices <= seen


def breakdown(hosts: Sequence[Host], done: float, last_own: float) -> dict[str, float]:
    first, last = hosts[0], hosts[-1]
    fa, la = first.agent, last.agent
    assert fa is not None and la is not None
    out: dict[str, float] = {"total": done - la.spawned, "last collects": last_own - la.spawned}
    serving = fa.logged(" serving ")
    if serving is not None:
        out["etcd start"] = serving - fa.spawned
    joined = la.first(lambda e: e.get("event") == "host_joined" and e.get("host") == last.name)
    started = la.first(lambda e: e.get("event") == "graph_started")
    if joined is None or started is None:
        return out
    out["start+join"] = joined["time"] - la.spawned
    out["first graph"] = started["time"] - joined["time"]
    watch, compile_, apply_ = [], [], []
    mine = {f"File[{x}@{last.name}]" for x in last.exports}
    for h in hosts[:-1]:
        a = h.agent
        assert a is not None
        # L's exports may arrive in more than one change: take the one completing them
        seen: set[str] = set()
        cc = None
        for e in a.all(lambda e: e.get("event") == "collect_changed"):
            seen.update(set(e["added"]) & mine)
            if seen == mine:
                cc = e
                break
        if cc is None:
            continue
        watch.append(cc["time"] - started["time"])
        sw = a.first(
            lambda e, cc=cc: (
                e.get("event") == "graph_swapped"
                and e["time"] >= cc["time"]
                and bool(set(e["added"]) & set(cc["added"]))
            )
        )
        if sw is None:
            continue
        compile_.append(sw["time"] - cc["time"])
        applies = a.all(lambda e: e.get("event") == "checked" and e.get("vertex") in mine)
        if applies:
            apply_.append(max(e["time"] for e in applies) - sw["time"])
    for name, values in (("export+watch", watch), ("compile+swap", compile_), ("apply", apply_)):
        if values:
            out[name] = median(values)
            out[name + " max"] = max(values)
    out["after last is up"] = done - joined["time"]
    return out


# -- start-up cost --------------------------------------------------------------------------


def startup(base: Path, env: dict[str, str], runs: int) -> dict[str, list[float]]:
    """Spawn -> own four files in place: a local graph, an exporting graph serving its
    own etcd, and an exporting graph joining a running cluster as a client."""
    out: dict[str, list[float]] = {"local": [], "exporting, own etcd": [], "exporting, client": []}
    server = Host(base / "server", 1)
    server.write_graph()
    srv = Agent(server.name, server.argv(*server.serve_flags()), env)
    try:
        wait_until(lambda: server.complete([]), "the server host", [srv])
        for r in range(runs):  # interleaved, so machine noise hits each case alike
            for k, case in enumerate(out):
                h = Host(base / f"case{k}-run{r}", 2 + r)
                h.write_graph(cluster=case != "local")
                if case == "local":
                    flags: list[str] = []
                elif case == "exporting, own etcd":
                    flags = h.serve_flags()
                else:
                    flags = ["--seeds", server.client_url, "--no-server"]
                a = Agent(h.name, h.argv(*flags), env)
                try:
                    done = wait_until(lambda h=h: h.complete([]), f"{case} start", [a])
                finally:
                    a.stop()
                out[case].append(done - a.spawned)
    finally:
        srv.stop()
    return out


def main() -> None:
    check_venv()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, nargs="+", default=[3, 10])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--etcd-timers", choices=["fast", "default"], default="fast")
    p.add_argument("--json", metavar="FILE", help="also write the raw numbers here")
    args = p.parse_args()
    if any(not 2 <= n <= 50 for n in args.hosts) or not 1 <= args.runs <= 20:
        sys.exit("--hosts from 2 to 50, --runs from 1 to 20")
    with temp_dir() as tmp:
        env = env_for("warm", tmp, args.etcd_timers == "fast")
        warm_up(env)
        floors = [floor(tmp / f"floor{r}", env) for r in range(args.runs)]
        fl = median(floors)
        results: dict[int, list[dict[str, float]]] = {}
        for n in args.hosts:
            results[n] = [exchange(tmp / f"x{n}-{r}", n, env) for r in range(args.runs)]
        starts = startup(tmp / "startup", env, max(args.runs, 5))
    report(results, fl, args)
    report_startup(starts)
    if args.json:
        raw = {"floor": floors, "runs": results, "startup": starts}
        Path(args.json).write_text(json.dumps(raw, indent=2))


def report(results: dict[int, list[dict[str, float]]], fl: float, args: Any) -> None:
    print(f"## exchange ({args.runs} runs each, etcd timers: {args.etcd_timers})\n")
    print(f"Floor: one single-host agent, spawn to its 4 files in place: {ms(fl)} ms\n")
    cols = [
        "total",
        "after last is up",
        "start+join",
        "first graph",
        "export+watch",
        "export+watch max",
        "compile+swap",
        "apply",
        "last collects",
        "etcd start",
    ]
    rows = []
    for n, runs in results.items():
        row: list[object] = [n]
        for c in cols:
            row.append(ms(median([r[c] for r in runs if c in r])))
        row.append(ratio(median([r["total"] for r in runs]), fl))
        rows.append(row)
    print(table(["hosts", *[f"{c} (ms)" for c in cols], "total / floor"], rows))
    print("\n(medians over the runs; watch/compile/apply: median over the other hosts)")


def report_startup(starts: dict[str, list[float]]) -> None:
    n = len(next(iter(starts.values())))
    print(f"\n## start-up: spawn to the graph's own 4 files in place (median of {n})\n")
    local = median(starts["local"])
    rows = [
        [case, ms(median(v)), ms(min(v)), ms(max(v)), ratio(median(v), local)]
        for case, v in starts.items()
    ]
    print(table(["graph", "median (ms)", "min", "max", "vs local"], rows))


if __name__ == "__main__":
    main()
