"""What watching the agent costs (issue 12): --prometheus on start-up and on drift repair.

1. Start-up, fork to exit, runs interleaved so machine noise hits every
   command alike (warm bytecode cache, as an installed package runs):
   ``pymgmt --version``, and an empty run (``--converged-timeout 0`` on a graph
   with no resources) without and with ``--prometheus``. With ``--baseline
   SRC`` (the ``src/`` of a checkout before issue 12, say ``git worktree add
   /tmp/base <commit>``) the same commands also run that code, through
   PYTHONPATH: the issue's rule is that neither may grow by more than 10 ms.
   The import time of prometheus_client itself comes from ``-X importtime``.
2. Drift-repair latency of a running agent managing N files (inotify
   observer in this process, as in drift_repair.py: the drift -> the file is
   right again), in three configurations, each its own agent:
   ``off`` (no flag), ``--prometheus`` (served, nobody asking), and ``watched``
   (``--prometheus`` with a scraper reading /metrics 10 times a second and two
   pages holding /events open, all on loopback, for the whole series).
   The three run side by side and take turns, one drift each, so that
   whatever else loads the machine hits all three alike. p50/p99 and their
   ratios to ``off``; also how long a scrape takes.
"""

from __future__ import annotations

import argparse
import http.client
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from _common import (
    PY,
    PYMGMT,
    bench_env,
    check_venv,
    content_of,
    dump_json,
    file_paths,
    make_dirs,
    median,
    ms,
    pct,
    ratio,
    stop,
    table,
    temp_dir,
    timed,
    warm_up,
    write_graph,
)
from drift_repair import AgentLog, Observer, drift
from drift_repair import _settle as settle

LISTEN = ("--prometheus", "--prometheus-listen", "127.0.0.1:0")
#: the issue's rule: a new import may cost at most this much on start-up
BUDGET = 0.010
_URL = re.compile(rb"web: metrics at http://([\d.]+):(\d+)/")


# -- 1. start-up ------------------------------------------------------------------------


def startup(runs: int, env: dict[str, str], tmp: Path, baseline: str | None) -> dict[str, object]:
    empty = tmp / "empty.yaml"
    empty.write_text("graph: empty\nresources: {}\n")

    def run(*flags: str) -> list[str]:
        prefix = tmp / f"prefix-{len(flags)}"
        return [PYMGMT, "run", "--converged-timeout", "0", "--prefix", str(prefix), *flags,
                str(empty)]  # fmt: skip

    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "python -c pass": ([PY, "-c", "pass"], env),
        "pymgmt --version": ([PYMGMT, "--version"], env),
        "empty run": (run(), env),
        "empty run --prometheus": (run(*LISTEN), env),
    }
    if baseline:
        base_env = {**env, "PYTHONPATH": baseline}
        subprocess.run([PY, "-c", "import pymgmt.cli.run"], env=base_env, check=True)  # warm
        commands["baseline: pymgmt --version"] = ([PYMGMT, "--version"], base_env)
        commands["baseline: empty run"] = (run(), base_env)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in commands}
    for _ in range(runs):
        for name, (argv, e) in commands.items():
            times[name].append(timed(argv, e))
    walls = {k: median([w for w, _ in v]) for k, v in times.items()}
    cpus = {k: median([c for _, c in v]) for k, v in times.items()}
    rows = [
        [name, ms(walls[name]), ms(pct([w for w, _ in v], 90)), ms(cpus[name])]
        for name, v in times.items()
    ]
    print(f"### Start-up (ms; median of {runs} interleaved runs, warm .pyc)\n")
    print(table(["command", "wall median", "wall p90", "CPU median"], rows))
    pairs = {"--prometheus on an empty run": ("empty run --prometheus", "empty run")}
    if baseline:
        pairs["--version vs baseline"] = ("pymgmt --version", "baseline: pymgmt --version")
        pairs["empty run vs baseline"] = ("empty run", "baseline: empty run")
    # CPU time hardly moves when other processes load the machine; wall time does
    deltas = {what: (walls[a] - walls[b], cpus[a] - cpus[b]) for what, (a, b) in pairs.items()}
    imports = import_time(env)
    print()
    for what, (w, c) in deltas.items():
        print(f"- {what}: {w * 1000:+.1f} ms wall, {c * 1000:+.1f} ms CPU")
    print(f"- import of prometheus_client (-X importtime, median of 10): {ms(imports)} ms")
    print(
        f"- the rule (at most +{BUDGET * 1000:.0f} ms on --version and on an empty run "
        "without the flag): "
        + ("checked against the baseline above" if baseline else "give --baseline SRC to check")
    )
    print()
    return {"wall": walls, "cpu": cpus, "deltas": deltas, "prometheus_import": imports}


def import_time(env: dict[str, str]) -> float:
    """Seconds prometheus_client takes to import what the server uses (median of 10)."""
    code = "import prometheus_client.core, prometheus_client.exposition, prometheus_client.registry"
    out = []
    for _ in range(10):
        r = subprocess.run([PY, "-X", "importtime", "-c", code], env=env, capture_output=True,
                           text=True, check=True)  # fmt: skip
        total = 0
        for line in r.stderr.splitlines():
            parts = line.split("|")
            # top-level entries only (no indentation): their cumulative time includes the rest
            if len(parts) == 3 and parts[2].startswith(" prometheus_client"):
                total += int(parts[1])
        out.append(total / 1e6)
    return median(out)


# -- 2. drift repair ---------------------------------------------------------------------


class Watchers:
    """A scraper of /metrics (10/s) and two SSE pages, in threads, until `close`."""

    def __init__(self, host: str, port: int) -> None:
        self.addr = (host, port)
        self.done = threading.Event()
        self.scrapes: list[float] = []
        self.metrics_bytes = 0
        self.sse_bytes = 0
        self.threads = [threading.Thread(target=self._scrape, daemon=True)]
        self.threads += [threading.Thread(target=self._page, daemon=True) for _ in range(2)]
        for t in self.threads:
            t.start()

    def _scrape(self) -> None:
        while not self.done.wait(0.1):
            conn = http.client.HTTPConnection(*self.addr, timeout=10)
            t = time.monotonic()
            conn.request("GET", "/metrics")
            body = conn.getresponse().read()
            self.scrapes.append(time.monotonic() - t)
            self.metrics_bytes = len(body)
            conn.close()

    def _page(self) -> None:
        with socket.create_connection(self.addr, timeout=0.2) as s:
            s.sendall(f"GET /events HTTP/1.1\r\nHost: {self.addr[0]}\r\n\r\n".encode())
            while not self.done.is_set():
                try:
                    chunk = s.recv(1 << 16)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                self.sse_bytes += len(chunk)

    def close(self) -> None:
        self.done.set()
        for t in self.threads:
            t.join(15)


def served_at(stderr: Path, deadline: float) -> tuple[str, int]:
    while time.monotonic() < deadline:
        if m := _URL.search(stderr.read_bytes()):
            return m.group(1).decode(), int(m.group(2))
        time.sleep(0.01)
    raise RuntimeError(f"the agent never said where it serves; see {stderr}")


def wait_converged(log: AgentLog, n: int, agent: subprocess.Popen[bytes], root: Path) -> None:
    seen: set[str] = set()
    last = time.monotonic()
    deadline = last + 60 + n * 0.01
    while len(seen) < n or time.monotonic() - last < 0.5:
        if evs := log.events():
            last = time.monotonic()
        seen.update(str(e["vertex"]) for e in evs if e["event"] == "checked")
        if agent.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"agent not converged (exit {agent.returncode}); see {root}")
        time.sleep(0.01)


@dataclass
class Subject:
    """One agent under test: its files, its event log, its observer, its watchers."""

    name: str
    agent: subprocess.Popen[bytes]
    files: list[Path]
    want: list[bytes]
    log: AgentLog
    observer: Observer
    watchers: Watchers | None = None
    lat: list[float] = field(default_factory=list)
    fails: int = 0

    def trial(self, rng: random.Random, kind: str) -> None:
        """Drift one random file, time until it is right again, wait for the follow-up check."""
        i = rng.randrange(len(self.files))
        self.observer.drain()
        t0 = time.monotonic()
        drift(self.files[i], kind, len(self.want[i]))
        t1 = self.observer.wait_restored(self.files[i], self.want[i], t0 + 5)
        if t1 is None:
            self.fails += 1
        else:
            self.lat.append(t1 - t0)
        settle(self.log, f"File[{self.files[i]}]", time.monotonic() + 2)


def start(
    tmp: Path, name: str, flags: tuple[str, ...], n: int, env: dict[str, str], stack: ExitStack
) -> Subject:
    """An agent managing `n` files of its own, converged; closed by `stack`."""
    root = tmp / name
    files = file_paths(root / "managed", n, 1)
    make_dirs(files)
    graph = root / "graph.yaml"
    write_graph(graph, files)
    argv = [PYMGMT, "run", "--json", "--prefix", str(root / "prefix"), *flags, str(graph)]
    with open(root / "out.jsonl", "wb") as out, open(root / "err", "wb") as err:
        agent = subprocess.Popen(argv, stdout=out, stderr=err, env=env, start_new_session=True)
    stack.callback(stop, agent)
    log = AgentLog(root / "out.jsonl")
    stack.callback(log.close)
    wait_converged(log, n, agent, root)
    observer = Observer([files[0].parent])
    stack.callback(observer.close)
    want = [content_of(i).encode() for i in range(n)]
    return Subject(name, agent, files, want, log, observer)


def repair(tmp: Path, n: int, trials: int, env: dict[str, str], seed: int) -> dict[str, object]:
    """The three agents run side by side and take turns: load on the machine hits all alike."""
    rng = random.Random(seed)
    with ExitStack() as stack:
        subjects = [
            start(tmp, "off", (), n, env, stack),
            start(tmp, "--prometheus", LISTEN, n, env, stack),
            start(tmp, "watched", LISTEN, n, env, stack),
        ]
        watched = subjects[2]
        watched.watchers = Watchers(*served_at(tmp / "watched" / "err", time.monotonic() + 10))
        stack.callback(watched.watchers.close)
        print(f"# observe: {trials} drifts for each of 3 agents", file=sys.stderr, flush=True)
        for t in range(trials):
            for s in subjects[t % 3 :] + subjects[: t % 3]:  # each goes first in turn
                s.trial(rng, ("overwrite", "delete")[t % 2])
        scrapes = watched.watchers.scrapes
        sizes = (watched.watchers.metrics_bytes, watched.watchers.sse_bytes)
    off = subjects[0].lat
    rows = []
    for s in subjects:
        v = s.lat
        rows.append([s.name, f"{len(v)}/{s.fails}", ms(pct(v, 50)), ms(pct(v, 90)),
                     ms(pct(v, 99)), ms(max(v)), ratio(pct(v, 50), pct(off, 50)),
                     ratio(pct(v, 99), pct(off, 99))])  # fmt: skip
    print(f"### Drift repair with and without --prometheus ({n} files, ms)\n")
    print(table(["config", "ok/fail", "p50", "p90", "p99", "max", "p50 / off", "p99 / off"], rows))
    print(
        f"\n- `watched`: {len(scrapes)} scrapes of /metrics during the trials, each "
        f"{ms(median(scrapes))} ms median, {ms(pct(scrapes, 99))} ms p99 "
        f"({sizes[0]} bytes); the two pages read {sizes[1]} bytes of events"
    )
    return {
        "files": n,
        "trials": {s.name: len(s.lat) for s in subjects},
        "fails": {s.name: s.fails for s in subjects},
        "p50": {s.name: pct(s.lat, 50) for s in subjects},
        "p99": {s.name: pct(s.lat, 99) for s in subjects},
        "scrape_p50": median(scrapes),
        "scrape_p99": pct(scrapes, 99),
    }


def render_cost() -> dict[str, float]:
    """How long the agent's event loop spends on one scrape's exposition (in this process)."""
    from pymgmt.web.metrics import Metrics, render

    counts = {"pending": 0, "applying": 0, "converged": 1000, "failed": 0}
    registry = Metrics(noop=False, states=lambda: counts).registry()
    times = []
    for _ in range(300):
        t = time.perf_counter()
        render(registry)
        times.append(time.perf_counter() - t)
    out = {"p50": pct(times, 50), "p99": pct(times, 99)}
    print(f"- one /metrics exposition on the agent's loop: {ms(out['p50'])} ms median, "
          f"{ms(out['p99'])} ms p99 (measured in-process)\n")  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=30, help="start-up runs per command (30)")
    ap.add_argument("--files", type=int, default=1000, help="files the agent manages (1000)")
    ap.add_argument("--trials", type=int, default=300, help="drifts per configuration (300)")
    ap.add_argument("--baseline", metavar="SRC", help="src/ of the code to compare start-up with")
    ap.add_argument("--quick", action="store_true", help="10 runs, 100 files, 60 trials")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    check_venv()
    if args.quick:
        args.runs, args.files, args.trials = 10, 100, 60
    with temp_dir(args.keep) as tmp:
        env = bench_env("warm", tmp / "pyc")
        warm_up(env)
        both: dict[str, Callable[[], dict[str, object]]] = {
            "startup": lambda: startup(args.runs, env, tmp, args.baseline),
            "repair": lambda: repair(tmp, args.files, args.trials, env, args.seed),
            "render": render_cost,
        }
        results = {k: f() for k, f in both.items()}
    dump_json(args.json, results)


if __name__ == "__main__":
    main()
