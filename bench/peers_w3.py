"""Where W3's makespan goes beyond its critical path, from recorded timestamps.

W3 of the peer harness: four execs of ``sleep S`` (default 2), A->B->C and an
independent D; the critical path is 3*S. Each exec stamps its start and end
(``date +%s.%N``, as the harness's job.sh does), the driver stamps the agent's
start and exit, so the makespan splits into:

* start->A: interpreter start, imports, graph load and the first spawn;
* A->B, B->C: from one command's end to the next one's start (the child's
  exit seen, the edge followed, the next check and spawn);
* C->exit: from the last command's end to the agent's exit;
* D-A: how far the independent exec starts after the chain's head.

The floor is ``sh``: ``D & A; B; C; wait`` with the same job script. Every
command in --pymgmt (several may be given, A/B) and the floor run interleaved,
`--runs` rounds; medians of wall time and of CPU (user+sys of the agent and
its children). One unmeasured round first (`--warmup`): a host runs the same
graph again and again, and the first run of a graph stores the plan the
one-shot fast path answers the next ones from (README, "The one-shot fast path").

    .venv/bin/python bench/peers_w3.py --pymgmt /tmp/a/bin/pymgmt --pymgmt /tmp/b/bin/pymgmt
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import PYMGMT, table

JOB = 'date +%s.%N > "$2/$1.start"; sleep {s}; date +%s.%N > "$2/$1.end"\n'
PARTS = ("start->A", "A->B", "B->C", "C->exit", "D-A", "makespan", "cpu")


def graph(d: Path, job: Path) -> Path:
    res = "".join(
        f'  - name: {x}\n    cmd: "/bin/sh {job} {x} {d}"\n    shell: /bin/sh\n' for x in "ABCD"
    )
    edges = "".join(
        f"  - name: e{a}{b}\n    from: {{kind: exec, name: {a}}}\n"
        f"    to: {{kind: exec, name: {b}}}\n"
        for a, b in (("A", "B"), ("B", "C"))
    )
    path = d / "graph.yaml"
    path.write_text(f"graph: w3\nresources:\n  exec:\n{res}edges:\n{edges}")
    return path


def floor_script(d: Path, job: Path) -> Path:
    c = {x: f"/bin/sh {job} {x} {d}" for x in "ABCD"}
    path = d / "floor.sh"
    path.write_text(f"set -e\n{c['D']} &\n{c['A']}\n{c['B']}\n{c['C']}\nwait\n")
    return path


def once(argv: list[str], d: Path) -> dict[str, float]:
    for f in d.glob("*.st*"):
        f.unlink()
    for f in d.glob("*.end"):
        f.unlink()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    t1 = time.time()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode not in (0, 2):
        sys.exit(f"{argv} exited {p.returncode}: {p.stderr.decode()[-1000:]}")
    st = {x: float((d / f"{x}.start").read_text()) for x in "ABCD"}
    en = {x: float((d / f"{x}.end").read_text()) for x in "ABCD"}
    return {
        "start->A": min(st["A"], st["D"]) - t0,
        "A->B": st["B"] - en["A"],
        "B->C": st["C"] - en["B"],
        "C->exit": t1 - max(en["C"], en["D"]),
        "D-A": st["D"] - st["A"],
        "makespan": t1 - t0,
        "cpu": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pymgmt", action="append", help="a pymgmt executable (repeatable)")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--sleep", type=float, default=2.0, help="seconds each exec sleeps")
    ap.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="unmeasured rounds first (a run of a graph stores the one-shot plan the next uses)",
    )
    args = ap.parse_args()
    exes = args.pymgmt or [PYMGMT]
    with tempfile.TemporaryDirectory(prefix="pymgmt-w3-") as tmp:
        d = Path(tmp)
        job = d / "job.sh"
        job.write_text(JOB.format(s=args.sleep))
        cmds = {"floor (sh &)": ["/bin/sh", str(floor_script(d, job))]}
        g = str(graph(d, job))
        for i, exe in enumerate(exes):
            state = str(d / f"state{i}")  # /var/lib/pymgmt may be held by another agent
            cmds[f"[{i}] {exe}"] = [exe, "run", "--prefix", state, "--converged-timeout", "0", g]
        env_load = os.getloadavg()
        samples: dict[str, list[dict[str, float]]] = {k: [] for k in cmds}
        for _ in range(args.warmup):
            for argv in cmds.values():
                once(argv, d)
        for _ in range(args.runs):
            for name, argv in cmds.items():
                samples[name].append(once(argv, d))
        load = os.getloadavg()
    path = 3 * args.sleep
    rows = []
    for name, runs in samples.items():
        med = {k: statistics.median(r[k] for r in runs) for k in PARTS}
        rows.append(
            [name]
            + [f"{med[k] * 1000:.1f}" for k in PARTS[:-2]]
            + [f"{med['makespan']:.3f}", f"{(med['makespan'] / path - 1) * 100:+.1f} %"]
            + [f"{med['cpu'] * 1000:.0f}"]
        )
    head = ["command", *(f"{k} ms" for k in PARTS[:-2]), "makespan s", "over path", "CPU ms"]
    print(table(head, rows))
    print(
        f"\ncritical path {path:.1f} s; {args.runs} interleaved rounds, medians; load average "
        f"{env_load[0]:.2f} before, {load[0]:.2f} after"
    )


if __name__ == "__main__":
    main()
