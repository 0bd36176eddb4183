"""Packages, A/B and interleaved: pymgmt's grouped install and converged check
against one ``apt-get install`` and ``dpkg-query -W`` of the same packages.

Each round runs every command once, in turn (so load hits them alike): for
install, the packages are removed first (untimed); for check, they are
installed. Wall and CPU (user+sys of the process and its children) medians.
For pymgmt, the run's own events (``--json``) split the wall time: start-up
to the first check, the transaction (the vertex's applying -> checked), and
from there to exit.

Needs root and apt; installs and removes real packages (powertop sl cowsay,
or `--packages`), but never removes one that was installed before it ran.
The check runs take pymgmt's plain one-shot command (no ``--json``), the
one a cron job runs and the fast path answers, so they have no split; the
first of them is unmeasured (it stores the plan the next ones use).
``--runs 0`` skips the install phase: with packages already installed,
nothing on the machine changes.

    .venv/bin/python bench/peers_pkg.py --pymgmt /tmp/a/bin/pymgmt --pymgmt /tmp/b/bin/pymgmt
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import PYMGMT, table

PKGS = ["powertop", "sl", "cowsay"]
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=600"]
ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def timed(argv: list[str]) -> tuple[float, float, str]:
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    p = subprocess.run(argv, capture_output=True, text=True, env=ENV, check=False)
    t1 = time.time()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode not in (0, 2):
        sys.exit(f"{argv} exited {p.returncode}: {p.stdout[-800:]}{p.stderr[-800:]}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    # the events' times are wall-clock: make them relative to the start
    return t1 - t0, cpu, json.dumps({"t0": t0, "t1": t1, "out": p.stdout})


def split(raw: str) -> dict[str, float]:
    """start->applying, the transaction, and after it, from a --json run's events."""
    d = json.loads(raw)
    ev = [json.loads(x) for x in d["out"].splitlines() if x.startswith("{")]
    times = {e["event"]: e.get("time") for e in ev if e.get("time")}
    applying = next((e["time"] for e in ev if e["event"] == "applying"), None)
    checked = next((e["time"] for e in ev if e["event"] == "checked"), None)
    first = applying or checked or d["t1"]
    out = {"start": first - d["t0"], "exit": d["t1"] - (checked or d["t1"])}
    if applying and checked:
        out["apply"] = checked - applying
    out["graph"] = times.get("graph_started", first) - d["t0"]
    return out


def _installed(name: str) -> bool:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Abbrev}", name], capture_output=True, text=True
    )
    return out.stdout.startswith("ii")


def graph(d: Path) -> Path:
    path = d / "graph.yaml"
    body = "".join(f"  - name: {p}\n    state: installed\n" for p in PKGS)
    path.write_text(f"graph: w2\nresources:\n  pkg:\n{body}")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pymgmt", action="append", help="a pymgmt executable (repeatable)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--check-runs", type=int, default=9)
    ap.add_argument("--packages", default=",".join(PKGS), help="comma-separated")
    args = ap.parse_args()
    PKGS[:] = args.packages.split(",")
    if os.geteuid() != 0:
        sys.exit("needs root (it installs packages)")
    exes = args.pymgmt or [PYMGMT]
    with tempfile.TemporaryDirectory(prefix="pymgmt-peers-pkg-") as tmp:
        g = str(graph(Path(tmp)))
        cmds = {"apt-get install / dpkg-query -W": None}
        for i, exe in enumerate(exes):
            state = f"{tmp}/state{i}"
            cmds[f"[{i}] {exe}"] = [exe, "run", "--prefix", state]
        cmds_list = list(cmds)
        before = [p for p in PKGS if _installed(p)]
        if len(before) < len(PKGS):
            subprocess.run([*APT, "install", *PKGS], env=ENV, capture_output=True, check=True)
        load0 = os.getloadavg()
        rows = []
        for phase, runs in (("install", args.runs), ("check", args.check_runs)):
            if not runs:
                continue
            samples: dict[str, list[tuple[float, float, str]]] = {k: [] for k in cmds_list}
            for n in range(runs + (phase == "check")):
                for name in cmds_list:
                    if phase == "install":
                        subprocess.run([*APT, "remove", *PKGS], env=ENV, capture_output=True)
                    base = cmds[name]
                    if base is None:
                        argv = [*APT, "install", *PKGS] if phase == "install" else None
                        argv = argv or ["dpkg-query", "-W", *PKGS]
                    else:
                        as_json = ["--json"] if phase == "install" else []
                        argv = [*base, *as_json, "--converged-timeout", "0", g]
                    if phase == "check" and n == 0:
                        timed(argv)  # stores the plan: unmeasured
                    else:
                        samples[name].append(timed(argv))
            floor = statistics.median(s[0] for s in samples[cmds_list[0]])
            for name in cmds_list:
                walls = [s[0] for s in samples[name]]
                w = statistics.median(walls)
                cpu = statistics.median(s[1] for s in samples[name])
                parts = ""
                if cmds[name] is not None and phase == "install":
                    sp = [split(s[2]) for s in samples[name]]
                    keys = ("graph", "start", "apply", "exit")
                    med = {
                        k: statistics.median(x[k] for x in sp if k in x)
                        for k in keys
                        if any(k in x for x in sp)
                    }
                    parts = ", ".join(f"{k} {v * 1000:.0f}" for k, v in med.items())
                rows.append([phase, name, f"{w:.3f}", f"{w / floor:.2f}x", f"{cpu:.3f}", parts])
        if added := [p for p in PKGS if p not in before]:
            subprocess.run([*APT, "remove", *added], env=ENV, capture_output=True)
        load1 = os.getloadavg()
    head = ["phase", "command", "wall s", "vs floor", "CPU s", "pymgmt split (ms)"]
    print(table(head, rows))
    print(
        f"\n{args.runs} install / {args.check_runs} check rounds, interleaved, medians; "
        f"load average {load0[0]:.2f} before, {load1[0]:.2f} after. Split: graph = start to "
        "graph_started; start = to the first applying/checked event; apply = applying -> "
        "checked of the package vertex; exit = from that checked event to the process exit."
    )


if __name__ == "__main__":
    main()
