"""The engine at scale: 1k to 100k file resources, one-shot and as an agent.

One-shot (``pymgmt run --converged-timeout 0 -q``) on N files that are
already right (content + mode; 1,000 files per directory), for N = 1k, 10k,
30k and 100k: wall time, CPU time (user+sys) and peak RSS of the whole
process, and the CPU cost per resource (the curve that should stay flat).
The floor, measured in the same run, is the plain-Python loop that loads the
same graph with libyaml and stats, reads and compares every file
(``_plain_loop.py check-yaml``). Each pymgmt is run once first, unmeasured:
that run parses and stores the parse cache and the one-shot plan, as the
first run on any machine does, so the measured runs are the steady state
(before, a median of two runs at 30k and 100k averaged a first run in).
With ``--base VENV`` the same runs of another install (e.g.
``/work/main/.venv``) are interleaved with this one's, so before/after come
from the same minutes of this shared machine.

Then one in-process run per N (``_scale_probe.py``) splits the time and the
memory by phase: imports, parse (YAML to a declared graph), compile
(AutoEdges, AutoGroup, graph-wide checks), engine start (workers made and
wired), first checks (until converged), stop.

Agent (``--agent-sizes``, default 10000): ``pymgmt run --json`` on the same
converged tree: start to every vertex checked; CPU used while idle over
``--idle`` seconds; and a one-line edit of the graph file (one file's
content) until the new content is on disk, ``--edits`` times.

The first apply is left out on purpose: its cost is the durable writes'
(fsync per file), measured by the durable-write benchmark.

    .venv/bin/python bench/scale.py [--sizes 1000,10000,30000,100000] [--base /work/main/.venv]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
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
    ratio,
    stop,
    table,
    temp_dir,
    warm_up,
    write_graph,
)

BENCH = Path(__file__).resolve().parent
PLAIN = str(BENCH / "_plain_loop.py")
PROBE = str(BENCH / "_scale_probe.py")
PER_DIR = 1000


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float, int]:
    """(wall s, CPU s, peak RSS MiB, exit code) of one process, output discarded."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    return dt, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, p.returncode


def make_tree(root: Path, n: int) -> tuple[Path, list[Path]]:
    """N converged files (written plainly: the first apply is not measured here)."""
    files = file_paths(root / "files", n, max(1, n // PER_DIR))
    make_dirs(files)
    for i, p in enumerate(files):
        p.write_text(content_of(i))
        p.chmod(0o644)
    graph = root / "graph.yaml"
    write_graph(graph, files)
    return graph, files


def one_shot(
    root: Path, graph: Path, n: int, reps: int, env: dict[str, str], base: str | None
) -> dict[str, list[tuple[float, float, float]]]:
    cmds: dict[str, list[str]] = {}
    for who, exe in (("this", PYMGMT), ("base", base and f"{base}/bin/pymgmt")):
        if exe:
            prefix = str(root / f"prefix-{who}")
            cmds[who] = [
                exe,
                "run",
                "--converged-timeout",
                "0",
                "-q",
                "--prefix",
                prefix,
                str(graph),
            ]
    cmds["floor"] = [PY, PLAIN, "check-yaml", str(root / "files"), str(n), str(graph)]
    out: dict[str, list[tuple[float, float, float]]] = {k: [] for k in cmds}
    for who, cmd in cmds.items():  # unmeasured: a first run parses and stores the cache and plan
        if who != "floor" and run_measured(cmd, env)[3] != 0:
            raise RuntimeError(f"{who}'s warm-up run failed: {cmd}")
    for _ in range(reps):
        for who, cmd in cmds.items():
            w, c, rss, rc = run_measured(cmd, env)
            if rc != 0:
                raise RuntimeError(f"{who} exited {rc}: {cmd}")
            out[who].append((w, c, rss))
    return out


def probe(root: Path, graph: Path, env: dict[str, str], py: str = PY) -> dict[str, object]:
    out = root / "probe.json"
    subprocess.run(
        [py, PROBE, str(out), str(graph), str(root / "prefix-probe")],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    data: dict[str, object] = json.loads(out.read_text())
    return data


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks


def start_agent(
    graph: Path, prefix: Path, log: Path, n: int, env: dict[str, str], per_file: float = 0.002
) -> tuple[subprocess.Popen[bytes], float]:
    """`pymgmt run --json` started and every vertex checked: the agent, and the wall time.

    Its events go to `log`. The caller stops the agent; if it does not
    converge in time, it is stopped here and RuntimeError raised.
    """
    cmd = [PYMGMT, "run", "--json", "--prefix", str(prefix), str(graph)]
    t0 = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.DEVNULL, start_new_session=True
        )
    try:
        wait_all_checked(proc, log, n, t0 + 120 + n * per_file)
    except BaseException:
        stop(proc, timeout=60)
        raise
    return proc, time.monotonic() - t0


def wait_all_checked(proc: subprocess.Popen[bytes], log: Path, n: int, deadline: float) -> None:
    """Wait until the agent writing JSON events to `log` has said N vertices are `checked`."""
    seen: set[str] = set()
    pos = 0
    while len(seen) < n:
        with open(log, "rb") as f:
            f.seek(pos)
            chunk = f.read()
        cut = chunk.rfind(b"\n") + 1
        pos += cut
        for line in chunk[:cut].splitlines():
            ev = json.loads(line)
            if ev.get("event") == "checked":
                seen.add(str(ev["vertex"]))
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"agent not converged ({len(seen)}/{n}); see {log}")
        time.sleep(0.005)


def agent(
    root: Path, graph: Path, files: list[Path], n: int, env: dict[str, str], idle: float, edits: int
) -> dict[str, object]:
    """Start to converged, idle CPU, and one-line edits of a running agent."""
    proc, converged = start_agent(graph, root / "prefix-agent", root / "agent.jsonl", n, env)
    try:
        hz = os.sysconf("SC_CLK_TCK")
        converged_cpu = cpu_ticks(proc.pid) / hz  # the wall time above is the load's too
        load = os.getloadavg()[0]
        time.sleep(2)  # let the start's own echoes settle
        c0, w0 = cpu_ticks(proc.pid), time.monotonic()
        time.sleep(idle)
        idle_pct = 100 * (cpu_ticks(proc.pid) - c0) / hz / (time.monotonic() - w0)
        lat: list[float] = []
        text = graph.read_text()
        for k in range(edits):
            i = (k * 7919) % n
            old = json.dumps(content_of(i))
            new_content = f"edited {k} {content_of(i)}"
            text = text.replace(f"content: {old}\n", f"content: {json.dumps(new_content)}\n", 1)
            want = new_content.encode()
            t = time.monotonic()
            graph.write_text(text)
            while files[i].read_bytes() != want:
                if time.monotonic() - t > 60:
                    raise RuntimeError("edit not live after 60 s")
                time.sleep(0.002)
            lat.append(time.monotonic() - t)
            time.sleep(1)
        return {
            "converged_s": converged,
            "converged_cpu_s": converged_cpu,
            "load": load,
            "idle_pct": idle_pct,
            "edit_s": lat,
        }
    finally:
        stop(proc, timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,10000,30000,100000")
    ap.add_argument("--reps", type=int, default=3, help="one-shot runs per size up to 10k")
    ap.add_argument("--big-reps", type=int, default=1, help="one-shot runs per size above 10k")
    ap.add_argument("--base", metavar="VENV", help="also run this venv's pymgmt, interleaved")
    ap.add_argument("--agent-sizes", default="10000")
    ap.add_argument("--idle", type=float, default=60.0, help="seconds of idle CPU measured")
    ap.add_argument("--edits", type=int, default=3)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    check_venv()
    sizes = [int(x) for x in args.sizes.split(",") if x]
    agent_sizes = [int(x) for x in args.agent_sizes.split(",") if x]
    print(f"# load average at start: {os.getloadavg()}", file=sys.stderr)
    results: dict[str, object] = {"load_start": os.getloadavg()}
    rows, phase_rows, agent_rows = [], [], []
    with temp_dir() as tmp:
        env = bench_env("warm", tmp / "pyc")
        warm_up(env)
        if args.base:  # its bytecode cache filled too, so neither side pays for compiling
            imports = "import pymgmt.cli.main, pymgmt.cli.run, pymgmt.resources.file"
            subprocess.run([f"{args.base}/bin/python", "-c", imports], env=env, check=True)
        for n in sorted(set(sizes) | set(agent_sizes)):
            root = tmp / f"n{n}"
            print(f"# scale: N={n} ...", file=sys.stderr, flush=True)
            graph, files = make_tree(root, n)
            if n in sizes:
                reps = args.reps if n <= 10000 else args.big_reps
                runs = one_shot(root, graph, n, reps, env, args.base)
                fl = runs["floor"]
                f_wall, f_cpu = median([r[0] for r in fl]), median([r[1] for r in fl])
                for who, rs in runs.items():
                    wall_s, cpu_s = median([r[0] for r in rs]), median([r[1] for r in rs])
                    rows.append(
                        [
                            n,
                            who,
                            len(rs),
                            f"{wall_s:.2f}",
                            f"{cpu_s:.2f}",
                            f"{max(r[2] for r in rs):.0f}",
                            f"{1e6 * cpu_s / n:.0f}",
                            ratio(wall_s, f_wall),
                            ratio(cpu_s, f_cpu),
                        ]
                    )
                probes = {"this": probe(root, graph, env)}
                if args.base:
                    probes["base"] = probe(root, graph, env, f"{args.base}/bin/python")
                for who, pr in probes.items():
                    ph: dict[str, float] = pr["phases"]  # type: ignore[assignment]
                    rss: dict[str, float] = pr["rss"]  # type: ignore[assignment]
                    phase_rows.append(
                        [
                            n,
                            who,
                            *(f"{v:.2f}" for v in ph.values()),
                            f"{rss['engine converged']:.0f}",
                        ]
                    )
                results[f"n{n}"] = {"runs": runs, "probes": probes}
            if n in agent_sizes:
                a = agent(root, graph, files, n, env, args.idle, args.edits)
                edit = a["edit_s"]
                agent_rows.append(
                    [
                        n,
                        f"{a['converged_s']:.2f}",
                        f"{a['converged_cpu_s']:.2f}",
                        f"{a['load']:.1f}",
                        f"{a['idle_pct']:.2f} % over {args.idle:.0f} s",
                        " / ".join(f"{x:.2f}" for x in edit),  # type: ignore[attr-defined]
                    ]
                )
                results[f"agent{n}"] = a
            subprocess.run(["rm", "-rf", str(root)], check=False)
    results["load_end"] = os.getloadavg()
    print("### One-shot converged check (s; CPU = user+sys; RSS = peak)\n")
    print(
        table(
            [
                "N",
                "who",
                "runs",
                "wall",
                "CPU",
                "RSS MiB",
                "CPU us/resource",
                "wall/floor",
                "CPU/floor",
            ],
            rows,
        )
    )
    print("\n### Where a converged run goes, in-process (CPU s; RSS MiB when converged)\n")
    names = ["imports", "parse", "compile", "engine start", "first checks", "stop", "after"]
    print(table(["N", "who", *names, "RSS"], phase_rows))
    if agent_rows:
        print("\n### Agent on a converged tree\n")
        print(
            table(
                [
                    "N",
                    "start -> all checked (s)",
                    "its CPU (s)",
                    "load",
                    "idle CPU",
                    "one-line edit live (s)",
                ],
                agent_rows,
            )
        )
    print(f"\n(load average: {results['load_start']} at start, {results['load_end']} at end)")
    dump_json(args.json, results)


if __name__ == "__main__":
    main()
