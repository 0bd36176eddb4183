"""One-shot runs: `pymgmt run --converged-timeout 0 -q` on N files vs a plain loop.

For N = 1000 and 10000 files (content + mode, one directory) it measures the
wall time of whole processes (fork to exit, interpreter start included),
median of several runs:

* converged check: every file already right; the peer is a plain Python loop
  (its own process, same interpreter) that stats, reads and compares the same
  files, and the same loop after loading the graph YAML with libyaml.
* first apply: no file exists; the peers write the files, plainly and with
  pymgmt's durability (temp file, fsync, rename, directory fsync).

Then it splits a converged run into interpreter start/exit, imports, YAML
parsing (each parse counted), the engine's run and the rest, times the
frontend's ``load`` against plain libyaml, and lists the heaviest imports
(``-X importtime``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from _common import (
    PY,
    PYMGMT,
    bench_env,
    check_venv,
    dump_json,
    file_paths,
    make_dirs,
    median,
    ms,
    ratio,
    table,
    temp_dir,
    timed,
    wall,
    warm_up,
    write_graph,
)

BENCH = Path(__file__).resolve().parent
PLAIN = str(BENCH / "_plain_loop.py")
PROBE = str(BENCH / "_probe.py")
TARGET_1K = 0.150


def run_size(
    tmp: Path, n: int, reps: int, reps_first: int, env: dict[str, str], env_raw: dict[str, str]
) -> dict[str, object]:
    root = tmp / f"n{n}"
    fdir = root / "files"
    files = file_paths(fdir, n, 1)
    make_dirs(files)
    graph = root / "graph.yaml"
    write_graph(graph, files)
    prefix = str(root / "prefix")
    cmd = [PYMGMT, "run", "--converged-timeout", "0", "-q", "--prefix", prefix, str(graph)]

    def reset() -> None:
        shutil.rmtree(fdir)
        fdir.mkdir()

    r: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}

    def run(key: str, c: list[str], e: dict[str, str], rc: tuple[int, ...] = (0,)) -> None:
        w, u = timed(c, e, check_rc=rc)
        r.setdefault(key, []).append(w)
        cpu.setdefault(key, []).append(u)

    for _ in range(reps_first):
        for key, c, rc in (
            ("first", cmd, (2,)),
            ("write", [PY, PLAIN, "write", str(fdir), str(n)], (2,)),
            ("durable", [PY, PLAIN, "write-durable", str(fdir), str(n)], (2,)),
        ):
            reset()
            run(key, c, env, rc)
    wall(cmd, env, check_rc=(0, 2))  # converged from here on (mode/content as wanted)
    for _ in range(reps):
        run("conv", cmd, env)
        run("loop", [PY, PLAIN, "check", str(fdir), str(n)], env)
        run("loop_yaml", [PY, PLAIN, "check-yaml", str(fdir), str(n), str(graph)], env)
    for _ in range(max(3, reps // 2)):
        run("conv_env", cmd, env_raw)

    # The split of a converged run, in-process (medians of each part).
    parts: dict[str, list[float]] = {}
    out = root / "probe.json"
    for _ in range(max(3, reps // 2)):
        w = wall([PY, PROBE, "split", str(out), str(graph), prefix], env)
        d = json.loads(out.read_text())
        if d["rc"] != 0:
            raise RuntimeError(f"probe run exited {d['rc']}")
        d["wall"] = w
        for k, v in d.items():
            parts.setdefault(k, []).append(float(v))
    split = {k: median(v) for k, v in parts.items()}
    subprocess.run([PY, PROBE, "parse", str(out), str(graph)], env=env, check=True)
    parse = json.loads(out.read_text())
    return {
        "n": n,
        "walls": {k: median(v) for k, v in r.items()},
        "cpu": {k: median(v) for k, v in cpu.items()},
        "split": split,
        "parse": parse,
    }


def importtime(env: dict[str, str]) -> list[tuple[str, float]]:
    """Direct imports of pymgmt.cli.run (and its own top), by cumulative time."""
    p = subprocess.run(
        [PY, "-X", "importtime", "-c", "import pymgmt.cli.main, pymgmt.cli.run"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    rows: list[tuple[str, float]] = []
    for line in p.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cum, name = line.split("|")
        if not cum.strip().isdigit():
            continue
        depth = (len(name) - len(name.lstrip(" "))) // 2
        if depth <= 1:
            rows.append((name.strip() if depth == 0 else "  " + name.strip(), int(cum) / 1e6))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1k files, 3 runs (smoke test)")
    ap.add_argument("--sizes", default=None, help="comma-separated N (default 1000,10000)")
    ap.add_argument("--reps", type=int, default=None, help="runs per converged case")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    check_venv()
    sizes = [int(x) for x in (args.sizes or ("1000" if args.quick else "1000,10000")).split(",")]

    results = []
    with temp_dir(args.keep) as tmp:
        env = bench_env("warm", tmp / "pyc")
        env_raw = bench_env("env", tmp / "pyc")
        warm_up(env)
        bare = median([wall([PY, "-c", "pass"], env) for _ in range(15)])
        for n in sizes:
            reps = args.reps or (3 if args.quick else 9 if n <= 1000 else 5)
            reps_first = 1 if args.quick else 5 if n <= 1000 else 3
            print(f"# converged_check: N={n} ...", file=sys.stderr, flush=True)
            results.append(run_size(tmp, n, reps, reps_first, env, env_raw))
        imports = importtime(env)

    print("### One-shot runs: whole process, fork to exit (ms, median; CPU = user+sys)\n")
    rows = []
    for res in results:
        n, w, u = res["n"], res["walls"], res["cpu"]  # type: ignore[index]
        for case, ours, peer, what in (
            ("converged check", "conv", "loop", "plain loop: stat+read+compare"),
            ("converged check", "conv", "loop_yaml", "plain loop + libyaml load of the graph"),
            ("converged, env as is", "conv_env", "loop", "plain loop"),
            ("first apply", "first", "write", "plain write + chmod"),
            ("first apply", "first", "durable", "durable write (fsync, rename, dir fsync)"),
        ):
            rows.append(
                [
                    n,
                    case,
                    ms(w[ours]),
                    ms(u[ours]),
                    what,
                    ms(w[peer]),
                    ms(u[peer]),
                    ratio(w[ours], w[peer]),
                    ratio(u[ours], u[peer]),
                ]
            )
    print(
        table(
            [
                "N",
                "case",
                "pymgmt wall",
                "pymgmt CPU",
                "peer",
                "peer wall",
                "peer CPU",
                "wall ratio",
                "CPU ratio",
            ],
            rows,
        )
    )

    print("\n### Where a converged run's time goes (ms, medians, in-process timestamps)\n")
    rows = []
    for res in results:
        s = res["split"]  # type: ignore[index]
        start_exit = s["wall"] - s["script"]
        rows.append(
            [
                res["n"],
                ms(s["wall"]),
                ms(bare),
                ms(max(0.0, start_exit - bare)),
                ms(s["imports"]),
                f"{ms(s['parse_validate'])} + {ms(s['parse_in_engine'])}"
                f" ({int(s['parse_count'])}x)",
                ms(s["engine"]),
                ms(s["other"]),
            ]
        )
    print(
        table(
            [
                "N",
                "total (probe)",
                "python -c pass",
                "exit/teardown extra",
                "imports",
                "YAML parse: validate + frontend",
                "engine run",
                "other",
            ],
            rows,
        )
    )

    print("\n### YAML parse (ms, median of 7 in one process)\n")
    rows = []
    for res in results:
        p = res["parse"]  # type: ignore[index]
        rows.append(
            [
                p["resources"],
                ms(p["load_first"]),
                ms(p["load"]),
                ms(p["compose_c"]),
                ms(p["load_c"]),
                ratio(p["load"], p["compose_c"]),
            ]
        )
    print(
        table(
            [
                "resources",
                "load() first call",
                "load()",
                "yaml.compose CSafeLoader",
                "yaml.load CSafeLoader",
                "load / compose",
            ],
            rows,
        )
    )

    print("\n### Imports of `pymgmt run` (-X importtime, cumulative ms, > 2 ms)\n")
    print(table(["module", "cumulative"], [[m, ms(t)] for m, t in imports if t > 0.002]))

    one_k = [r for r in results if r["n"] == 1000]
    if one_k:
        t = one_k[0]["walls"]["conv"]  # type: ignore[index]
        verdict = "met" if t <= TARGET_1K else "NOT met"
        print(f"\nTarget 1k-file converged check <= 150 ms: {ms(t)} ms -> {verdict}")
    dump_json(args.json, {"python_pass": bare, "sizes": results, "imports": imports})


if __name__ == "__main__":
    main()
