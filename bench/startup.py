"""Start-up: the fixed cost of a pymgmt run, beside `python -c pass` and CFEngine (issue 13).

Three parts, every command of a part interleaved with the others (round
after round), so that the noise of this shared machine hits them alike:

1. ``pymgmt --version`` and ``--help`` through each install's console
   script, against ``python -c pass`` (target: --version within 1.3x);
2. one-shot runs, ``pymgmt run --converged-timeout 0``: an empty graph and
   W1 (N files ``fNNNN`` holding ``i am fNNNN``, mode 0644, and their
   directory) with 10 and 100 files, first apply (from an empty directory),
   converged check and repair (bench-peers' repair10%), beside ``cf-agent
   -KIf`` on the same policy as ../shared/bench-peers writes it (target: at
   most 0.5x CFEngine);
3. where a run's time goes, per phase (interpreter, imports, parse or
   cache, the rest of the start, engine, recap and exit), from
   bench/_startup_probe.py's marks.

Each install is a venv given with ``--venv NAME=DIR``, e.g. main's and
this branch's, both installed with a plain (non-editable) ``pip install``:
what users run. Default: this checkout's .venv. Wall time is fork to exit;
CPU is the child's user + system time, which competing processes hardly
move. Each pymgmt has its own state directory (``--prefix``); its first
run there parses the graph and caches the parse, as any first run does.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from _common import BENCH, ROOT, dump_json, median, ms, ratio, table, temp_dir, timed

VERSION_TARGET = 1.3
PEER_TARGET = 0.5
#: the runs of one-shot workloads: (label, files, phase); files None: the empty graph
WORKLOADS: list[tuple[str, int | None, str]] = [
    ("empty graph", None, "converged"),
    ("W1 10 first", 10, "first"),
    ("W1 10 converged", 10, "converged"),
    ("W1 10 repair", 10, "repair"),
    ("W1 100 first", 100, "first"),
    ("W1 100 converged", 100, "converged"),
    ("W1 100 repair", 100, "repair"),
]
#: exit codes that mean the run did its job (2: pymgmt changed something)
OK_CODES = (0, 2)


class Cell:
    """One command measured: its argv, what to do before each run, its samples."""

    def __init__(self, argv: list[str], prepare: Callable[[], None] | None = None) -> None:
        self.argv = argv
        self.prepare = prepare
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def once(self, env: dict[str, str]) -> None:
        if self.prepare is not None:
            self.prepare()
        w, c = timed(self.argv, env, check_rc=OK_CODES)
        self.wall.append(w)
        self.cpu.append(c)


def _names(n: int) -> list[str]:
    return [f"f{i:04d}" for i in range(n)]


def write_graph(path: Path, files: int | None, directory: Path) -> None:
    """The pymgmt graph of a workload (bench-peers' generator writes the same)."""
    if files is None:
        path.write_text("---\ngraph: w5\nresources: {}\nedges: []\n")
        return
    out = [
        "---",
        "graph: w1",
        "resources:",
        "  file:",
        "  - name: dir",
        f'    path: "{directory}/"',
    ]
    for x in _names(files):
        out += [f"  - name: {x}", f'    path: "{directory}/{x}"']
        out += [f'    content: "i am {x}\\n"', "    mode: '0644'"]
    path.write_text("\n".join(out) + "\n")


def write_policy(path: Path, files: int | None, directory: Path) -> None:
    """CFEngine's policy of a workload, as ../shared/bench-peers/peers.py writes it."""
    if files is None:
        text = 'body common control { bundlesequence => { "main" }; }\nbundle agent main {\n}\n'
    else:
        text = 'body common control { bundlesequence => { "main" }; }\n'
        text += 'body perms m644 { mode => "0644"; }\nbundle agent main {\n  files:\n'
        text += f'    "{directory}/." create => "true";\n'
        text += "".join(
            f'    "{directory}/{x}" create => "true", content => "i am {x}$(const.n)", '
            "perms => m644;\n"
            for x in _names(files)
        )
        text += "}\n"
    path.write_text(text)
    path.chmod(0o600)  # cf-agent refuses a policy others may write


def _emptied(directory: Path) -> Callable[[], None]:
    return lambda: shutil.rmtree(directory, ignore_errors=True)


def _drifted(directory: Path, files: int) -> Callable[[], None]:
    """bench-peers' repair10%: every tenth file deleted, every tenth (from the
    sixth) edited, before each run."""

    def drift() -> None:
        if not directory.is_dir():
            return  # before the first run, which makes them all
        for i, x in enumerate(_names(files)):
            if i % 10 == 0:
                (directory / x).unlink(missing_ok=True)
            elif i % 10 == 5:
                (directory / x).write_text("drifted\n")

    return drift


def build_cells(
    venvs: dict[str, Path], tmp: Path, cfagent: str | None
) -> tuple[dict[str, Cell], dict[tuple[str, str], list[str]]]:
    """Every command of parts 1 and 2, and (install, workload) -> argv for part 3."""
    first_py = str(next(iter(venvs.values())) / "bin" / "python")
    cells = {"python -c pass": Cell([first_py, "-c", "pass"])}
    probes: dict[tuple[str, str], list[str]] = {}
    for name, venv in venvs.items():
        script = str(venv / "bin" / "pymgmt")
        cells[f"{name}: pymgmt --version"] = Cell([script, "--version"])
        cells[f"{name}: pymgmt --help"] = Cell([script, "--help"])
    tools = [*venvs, *(["cfengine"] if cfagent else [])]
    for label, files, phase in WORKLOADS:
        for tool in tools:
            work = tmp / tool / label.replace(" ", "-")
            work.mkdir(parents=True, exist_ok=True)
            managed = work / "managed"
            prepare = None
            if phase == "first":
                prepare = _emptied(managed)
            elif phase == "repair":
                prepare = _drifted(managed, files or 0)
            if tool == "cfengine":
                assert cfagent is not None
                write_policy(work / "policy.cf", files, managed)
                argv = [cfagent, "-KIf", str(work / "policy.cf")]
            else:
                write_graph(work / "graph.yaml", files, managed)
                # a state directory per workload: one host, one graph (the parse
                # cache and the one-shot plan hold one graph each)
                args = ["run", "--converged-timeout", "0", "--prefix", str(work / "state")]
                args.append(str(work / "graph.yaml"))
                argv = [str(venvs[tool] / "bin" / "pymgmt"), *args]
                probes[tool, label] = args
            cells[f"{tool}: {label}"] = Cell(argv, prepare)
    return cells, probes


def measure(cells: dict[str, Cell], runs: int, env: dict[str, str]) -> None:
    for cell in cells.values():  # one unmeasured run each: caches, page cache, pyc
        if cell.prepare is not None:
            cell.prepare()
        timed(cell.argv, env, check_rc=OK_CODES)
    for _ in range(runs):
        for cell in cells.values():
            cell.once(env)


def probe(
    venv: Path, args: list[str], runs: int, env: dict[str, str], tmp: Path
) -> dict[str, float]:
    """Median milliseconds of each phase of `pymgmt ARGS` (parts: see _startup_probe.py)."""
    out = tmp / "marks.json"
    argv = [str(venv / "bin" / "python"), str(BENCH / "_startup_probe.py"), str(out), *args]
    phases: dict[str, list[float]] = {}
    for _ in range(runs):
        spawn = time.monotonic()
        proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        end = time.monotonic()
        if proc.returncode not in OK_CODES:
            raise RuntimeError(f"{argv} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
        m = json.loads(out.read_text())
        fast = m.get("fast_end", m["start"]) - m.get("fast_start", m["start"])
        full = "imported" in m  # the fast path did not answer
        last = m["engine_end"] if full else m["fast_end"]
        got = {
            "interpreter": m["start"] - spawn,
            "imports": m.get("fast_start", m["start"])
            - m["start"]
            + (m["imported"] - m.get("fast_end", m["start"]) if full else 0.0),
            "fast path": fast,
            "parse or cache": m["load_end"] - m["load_start"] if full else 0.0,
            "rest of start": (m["load_start"] - m["imported"]) + (m["engine_start"] - m["load_end"])
            if full
            else 0.0,
            "engine": m["engine_end"] - m["engine_start"] if full else 0.0,
            "recap and exit": end - last,
            "total": end - spawn,
        }
        for k, v in got.items():
            phases.setdefault(k, []).append(v)
    return {k: median(v) for k, v in phases.items()}


def _cpu_wall(cell: Cell) -> str:
    return f"{ms(median(cell.wall))} / {ms(median(cell.cpu))}"


def report(
    cells: dict[str, Cell], venvs: dict[str, Path], cf: bool, runs: int
) -> dict[str, object]:
    floor = cells["python -c pass"]
    base_w, base_c = median(floor.wall), median(floor.cpu)
    print(f"### Start-up (ms: median wall / median CPU of {runs} runs, interleaved)\n")
    rows: list[list[object]] = [["python -c pass", _cpu_wall(floor), "1.00x / 1.00x", ""]]
    summary: dict[str, object] = {}
    for name in venvs:
        for what in ("--version", "--help"):
            c = cells[f"{name}: pymgmt {what}"]
            r = median(c.wall) / base_w
            verdict = ""
            if what == "--version":
                verdict = "met" if r <= VERSION_TARGET else "NOT met"
                summary[f"{name} --version"] = r
            rows.append(
                [
                    f"{name}: pymgmt {what}",
                    _cpu_wall(c),
                    f"{ratio(median(c.wall), base_w)} / {ratio(median(c.cpu), base_c)}",
                    verdict,
                ]
            )
    head = ["command", "wall / CPU", "vs python -c pass (wall / CPU)", f"<= {VERSION_TARGET}x"]
    print(table(head, rows))
    print(f"\n### One-shot runs (ms: median wall / median CPU of {runs} runs, interleaved)\n")
    header = ["workload", *(f"{n}" for n in venvs)]
    if cf:
        header += ["cfengine", *(f"{n} vs CFEngine (wall / CPU)" for n in venvs)]
    header += [f"{n} vs python -c pass" for n in venvs]
    rows = []
    for label, _, _ in WORKLOADS:
        row: list[object] = [label, *(_cpu_wall(cells[f"{n}: {label}"]) for n in venvs)]
        if cf:
            peer = cells[f"cfengine: {label}"]
            row.append(_cpu_wall(peer))
            for n in venvs:
                c = cells[f"{n}: {label}"]
                rw = median(c.wall) / median(peer.wall)
                summary[f"{n} {label} vs cfengine"] = rw
                mark = " ok" if rw <= PEER_TARGET else ""
                row.append(f"{rw:.2f}x / {ratio(median(c.cpu), median(peer.cpu))}{mark}")
        row += [ratio(median(cells[f"{n}: {label}"].wall), base_w) for n in venvs]
        rows.append(row)
    print(table(header, rows))
    return summary


def print_phases(phases: dict[tuple[str, str], dict[str, float]]) -> None:
    print("\n### Where a one-shot run's time goes (ms, median; bench/_startup_probe.py)\n")
    names = ["interpreter", "imports", "fast path", "parse or cache", "rest of start", "engine"]
    names += ["recap and exit", "total"]
    rows = [[f"{tool}: {label}", *(ms(p[n]) for n in names)] for (tool, label), p in phases.items()]
    print(table(["run", *names], rows))


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--venv",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a pymgmt install to measure (repeatable; default: this checkout's .venv)",
    )
    ap.add_argument("--runs", type=int, default=15, help="runs per command (default 15)")
    ap.add_argument("--quick", action="store_true", help="7 runs per command, 5 per probe")
    ap.add_argument("--probe-runs", type=int, default=10, help="runs per phase probe")
    ap.add_argument("--no-cfengine", action="store_true", help="leave CFEngine out")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.probe_runs = 7, 5
    venvs = {"this": ROOT / ".venv"} if not args.venv else {}
    for spec in args.venv:
        name, _, path = spec.partition("=")
        venvs[name] = Path(path)
    for v in venvs.values():
        if not os.access(v / "bin" / "pymgmt", os.X_OK):
            sys.exit(f"no pymgmt in {v}")
    cfagent = None if args.no_cfengine else shutil.which("cf-agent")
    env = dict(os.environ)
    print(f"(1-minute load average before: {_load()})\n")
    with temp_dir() as tmp:
        cells, probes = build_cells(venvs, tmp, cfagent)
        measure(cells, args.runs, env)
        summary = report(cells, venvs, cfagent is not None, args.runs)
        phases = {
            key: probe(venvs[key[0]], argv, args.probe_runs, env, tmp)
            for key, argv in probes.items()
            if key[1].split()[-1] not in ("first", "repair")  # only the first run would change
        }
        print_phases(phases)
    print(f"\n(1-minute load average after: {_load()})")
    dump_json(
        args.json,
        {
            "runs": args.runs,
            # bench/run.py's targets table reads the first install's --version ratio here
            "ratio": dict.fromkeys(("warm", "env"), summary[f"{next(iter(venvs))} --version"]),
            "summary": summary,
            "cells": {k: {"wall": c.wall, "cpu": c.cpu} for k, c in cells.items()},
            "phases": {f"{t}: {w}": p for (t, w), p in phases.items()},
        },
    )


if __name__ == "__main__":
    main()
