"""Start-up cost: `pymgmt --version` (the console script) vs `python -c pass`.

Both use the venv's own interpreter (the console script's shebang is
.venv/bin/python), never a pyenv shim. Median of >= 20 runs each, measured
with hyperfine when it is installed, else fork-to-exit with perf_counter,
runs interleaved so that machine noise hits every command alike. Measured
with a warm bytecode cache (as an installed package runs) and with the
environment as it is (PYTHONDONTWRITEBYTECODE=1: src/ only has the .pyc that
./scripts/setup compiled, recompiled in memory on every start once stale).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess

from _common import (
    PY,
    PYMGMT,
    bench_env,
    check_venv,
    dump_json,
    median,
    ms,
    pct,
    ratio,
    table,
    temp_dir,
    wall,
    warm_up,
)

TARGET = 1.3
COMMANDS = {
    "python -c pass": [PY, "-c", "pass"],
    "python -I -S -c pass": [PY, "-I", "-S", "-c", "pass"],
    "pymgmt --version": [PYMGMT, "--version"],
    "pymgmt --help": [PYMGMT, "--help"],
    "python -c 'import pymgmt.cli.run'": [PY, "-c", "import pymgmt.cli.run"],
}


def loop(runs: int, env: dict[str, str]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for cmd in COMMANDS.values():  # one unmeasured run each
        wall(cmd, env)
    for _ in range(runs):
        for name, cmd in COMMANDS.items():
            out[name].append(wall(cmd, env))
    return out


def hyperfine(runs: int, env: dict[str, str], tmp: str) -> dict[str, list[float]]:
    exe = shutil.which("hyperfine")
    assert exe
    export = f"{tmp}/hyperfine.json"
    cmds = [" ".join(c) for c in COMMANDS.values()]
    subprocess.run(
        [exe, "-N", "--warmup", "3", "--runs", str(runs), "--export-json", export, *cmds],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    with open(export) as f:
        res = json.load(f)["results"]
    return {name: r["times"] for name, r in zip(COMMANDS, res, strict=True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="20 runs (the minimum)")
    ap.add_argument("--runs", type=int, default=None, help="runs per command (default 40)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args()
    check_venv()
    runs = max(20, args.runs or (20 if args.quick else 40))
    tool = "hyperfine" if shutil.which("hyperfine") else "perf_counter loop"

    results: dict[str, dict[str, list[float]]] = {}
    with temp_dir() as tmp:
        for mode in ("warm", "env"):
            env = bench_env(mode, tmp / "pyc")
            if mode == "warm":
                warm_up(env)
            results[mode] = (
                hyperfine(runs, env, str(tmp)) if tool == "hyperfine" else loop(runs, env)
            )

    print(f"### Start-up (ms; median of {runs} runs, {tool})\n")
    rows = []
    for mode, res in results.items():
        base = median(res["python -c pass"])
        for name, ts in res.items():
            rows.append(
                [
                    "warm .pyc" if mode == "warm" else "env as is",
                    name,
                    ms(median(ts)),
                    ms(pct(ts, 90)),
                    ms(min(ts)),
                    ratio(median(ts), base),
                ]
            )
    print(table(["bytecode", "command", "median", "p90", "min", "vs python -c pass"], rows))
    summary = {}
    for mode, res in results.items():
        r = median(res["pymgmt --version"]) / median(res["python -c pass"])
        summary[mode] = r
    verdict = "met" if summary["warm"] <= TARGET else "NOT met"
    print(
        f"\nTarget `pymgmt --version` within {TARGET}x of bare python: "
        f"{summary['warm']:.2f}x (warm .pyc), {summary['env']:.2f}x (env as is) -> {verdict}"
    )
    dump_json(args.json, {"runs": runs, "tool": tool, "ratio": summary, "times": results})


if __name__ == "__main__":
    main()
