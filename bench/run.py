"""Run every engine-core benchmark and print the results as Markdown.

    .venv/bin/python bench/run.py            # full run (about 10 minutes)
    .venv/bin/python bench/run.py --quick    # smoke run (about a minute)
    .venv/bin/python bench/run.py --write    # full run, and rewrite bench/RESULTS.md
    .venv/bin/python bench/run.py --peers    # also pymgmt side by side with CFEngine,
                                             # Salt, Puppet and the floor (bench/peers.py)

--peers runs bench/peers.py after the engine-core benchmarks when the peer
harness is here (``--peers DIR``, else $PYMGMT_PEERS or ../shared/bench-peers),
and says so and goes on without it when it is not; with --write its table
replaces the "Issue 13: side by side" section of RESULTS.md.

Everything after the ANALYSIS marker line in RESULTS.md is kept when it is
rewritten, so hand-written notes survive a new run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import BENCH, PY, check_venv, machine, ms

SCRIPTS = ("startup", "converged_check", "drift_repair")
MARKER = "<!-- ANALYSIS: everything below is kept by bench/run.py --write -->"


def git_state() -> str:
    def git(*a: str) -> str:
        p = subprocess.run(["git", *a], cwd=BENCH.parent, capture_output=True, text=True)
        return p.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src")
    return head + (" + uncommitted changes in src/" if dirty else "")


def run_script(name: str, quick: bool, tmp: Path) -> tuple[str, dict[str, object], float]:
    out = tmp / f"{name}.json"
    cmd = [PY, str(BENCH / f"{name}.py"), "--json", str(out)] + (["--quick"] if quick else [])
    print(f"## running {name} ...", file=sys.stderr, flush=True)
    t = time.monotonic()
    load0 = os.getloadavg()[0]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    dt = time.monotonic() - t
    load1 = os.getloadavg()[0]
    if p.returncode != 0:
        raise SystemExit(f"{name} failed with exit status {p.returncode}:\n{p.stdout}")
    note = f"\n\n(1-minute load average: {load0:.2f} before, {load1:.2f} after)"
    return p.stdout.rstrip() + note, json.loads(out.read_text()), dt


def targets(res: dict[str, dict[str, object]], quick: bool) -> list[list[str]]:
    rows = []
    s = res["startup"]["ratio"]  # type: ignore[index]
    rows.append(
        [
            "`pymgmt --version` within 1.3x of `python -c pass`",
            f"{s['warm']:.2f}x (warm .pyc); {s['env']:.2f}x with the environment as is",
            "met" if s["warm"] <= 1.3 else "NOT met",
        ]
    )
    conv = {c["n"]: c for c in res["converged_check"]["sizes"]}  # type: ignore[index]
    if 1000 in conv:
        t = conv[1000]["walls"]["conv"]
        rows.append(
            [
                "1k-file converged check <= ~150 ms total",
                f"{ms(t)} ms wall, {ms(conv[1000]['cpu']['conv'])} ms CPU "
                f"(plain loop {ms(conv[1000]['walls']['loop'])} ms)",
                "met" if t <= 0.150 else "NOT met",
            ]
        )
    d = res["drift_repair"]
    if "pooled_p99_10k" in d:
        p99 = d["pooled_p99_10k"]  # type: ignore[index]
        rows.append(
            [
                "drift repair p99 <= 10 ms at 10k files",
                f"p99 {ms(p99)} ms over all 10k-file trials "
                f"(worst single row {ms(d['worst_row_p99_10k'])} ms)",  # type: ignore[index]
                "met" if p99 <= 0.010 else "NOT met",
            ]
        )
    else:
        rows.append(["drift repair p99 <= 10 ms at 10k files", "not run (--quick)", "n/a"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke mode for every benchmark")
    ap.add_argument("--write", action="store_true", help="rewrite bench/RESULTS.md")
    ap.add_argument(
        "--peers",
        nargs="?",
        const="",
        metavar="DIR",
        help="also run bench/peers.py (the side-by-side harness in DIR, default ../shared)",
    )
    args = ap.parse_args()
    check_venv()
    if args.write and args.quick:
        raise SystemExit("--write records full runs only")
    started = datetime.datetime.now(datetime.UTC)
    load = os.getloadavg()
    outputs, results, times = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="pymgmt-bench-run-") as tmp:
        for name in SCRIPTS:
            outputs[name], results[name], times[name] = run_script(name, args.quick, Path(tmp))

    m = machine()
    argv = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/run.py", *sys.argv[1:]])
    lines = [
        "# pymgmt engine-core benchmarks" + (" (quick)" if args.quick else ""),
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC",
        f"- machine: {m['nproc']} CPUs, {m['cpu']}, kernel {m['kernel']}",
        f"- python: {m['python']}; temp dirs: {m['tmp_fs']}",
        f"- load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        f"- source: commit {git_state()}",
        f"- command: `{argv}` (from the repository root)",
        "",
        "## Targets",
        "",
    ]
    t_rows = targets(results, args.quick)
    lines += ["| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {a} | {b} | **{c}** |" for a, b, c in t_rows]
    for name in SCRIPTS:
        lines += ["", f"## {name} ({times[name]:.0f} s)", "", outputs[name].rstrip()]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        path = BENCH / "RESULTS.md"
        kept = ""
        if path.exists() and MARKER in (old := path.read_text()):
            kept = old.split(MARKER, 1)[1]
        path.write_text(text + "\n" + MARKER + (kept or "\n"))
        print(f"wrote {path}", file=sys.stderr)
    if args.peers is not None:
        run_peers(args.peers, args.write)


def run_peers(where: str, write: bool) -> None:
    """The side-by-side part, optional: without the harness it says so and is skipped."""
    cmd = [PY, str(BENCH / "peers.py")] + (["--peers", where] if where else [])
    p = subprocess.run([*cmd, "--write"] if write else cmd, check=False)
    if p.returncode != 0:
        print(f"bench/peers.py did not run (exit {p.returncode}): see above", file=sys.stderr)


if __name__ == "__main__":
    main()
