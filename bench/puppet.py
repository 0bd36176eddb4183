#!/usr/bin/env python3
"""W1 written as a Puppet manifest: `pymgmt run --puppet` against `puppet apply`.

For N files (10, 100, 1000 by default) one manifest declares N `file`
resources (content and mode) spread over directories, each declared too.
Both tools run the same manifest, interleaved round by round:

* first: the managed tree wiped, then one run (everything is created);
* converged: a second run (nothing to change).

Puppet's compile time is shown on its own: `puppet catalog find
--terminus compiler` of the same manifest (what pymgmt runs first), and
pymgmt's share after it (translation, checks, start-up, apply) is the rest.
Prints Markdown tables of medians (wall; CPU = user + system of the process
tree) and the ratios pymgmt / puppet apply.

    .venv/bin/python bench/puppet.py [--sizes 10,100,1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from _common import PYMGMT, bench_env, check_venv, median, table, temp_dir, timed, warm_up

DIRS = 10


def manifest(root: Path, n: int) -> str:
    """N files with content and mode in DIRS directories, every directory declared."""
    out = [f"file {{ '{root}': ensure => directory }}"]
    dirs = min(DIRS, n)
    out += [f"file {{ '{root}/d{j}': ensure => directory }}" for j in range(dirs)]
    for i in range(n):
        out.append(
            f"file {{ '{root}/d{i % dirs}/f{i}': content => \"file {i}\\n\", mode => '0644' }}"
        )
    return "\n".join(out) + "\n"


def wipe(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    check_venv()
    if shutil.which("puppet") is None:
        sys.exit("puppet is not installed (apt-get install puppet-agent)")
    rows = []
    load = os.getloadavg()
    with temp_dir() as tmp:
        env = bench_env("warm", tmp / "pyc")
        warm_up(env)
        for n in (int(x) for x in a.sizes.split(",")):
            rows.append(measure(tmp, env, n, a.runs))
    print(f"load average: {load[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(
        table(
            [
                "N",
                "phase",
                "pymgmt --puppet (wall / CPU s)",
                "puppet apply (wall / CPU s)",
                "pymgmt / puppet (wall)",
                "compile alone (wall / CPU s)",
            ],
            [r for pair in rows for r in pair],
        )
    )


def measure(tmp: Path, env: dict[str, str], n: int, runs: int) -> list[list[object]]:
    site = tmp / f"w1-{n}"
    ours, theirs = site / "ours", site / "theirs"
    site.mkdir()
    (site / "ours.pp").write_text(manifest(ours, n))
    (site / "theirs.pp").write_text(manifest(theirs, n))
    pymgmt = [PYMGMT, "run", "--prefix", str(site / "state"), "--converged-timeout", "0"]
    pymgmt += ["--puppet", str(site / "ours.pp")]
    puppet = ["puppet", "apply", "--color", "false", str(site / "theirs.pp")]
    compile_only = ["puppet", "catalog", "find", "--terminus", "compiler", "--render-as"]
    compile_only += ["json", "--manifest", str(site / "ours.pp"), "localhost"]
    got: dict[str, list[tuple[float, float]]] = {}
    for _ in range(runs):
        for name, cmd, root, codes in (
            ("pymgmt", pymgmt, ours, (2,)),
            ("puppet", puppet, theirs, (0,)),
        ):
            wipe(root)
            got.setdefault(f"{name}-first", []).append(timed(cmd, env, check_rc=codes))
            got.setdefault(f"{name}-converged", []).append(timed(cmd, env, check_rc=(0,)))
        got.setdefault("compile", []).append(timed(compile_only, env))
    check_same(ours, theirs)

    def cell(key: str) -> str:
        w = median([t[0] for t in got[key]])
        c = median([t[1] for t in got[key]])
        return f"{w:.2f} / {c:.2f}"

    def ratio(phase: str) -> str:
        ours_w = median([t[0] for t in got[f"pymgmt-{phase}"]])
        theirs_w = median([t[0] for t in got[f"puppet-{phase}"]])
        return f"{ours_w / theirs_w:.2f}x"

    return [
        [n, phase, cell(f"pymgmt-{phase}"), cell(f"puppet-{phase}"), ratio(phase), cell("compile")]
        for phase in ("first", "converged")
    ]


def check_same(ours: Path, theirs: Path) -> None:
    """Both tools made the same tree (content and mode), or the benchmark is void."""

    def tree(root: Path) -> dict[str, tuple[int, bytes]]:
        out = {}
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                p = Path(dirpath, name)
                out[str(p.relative_to(root))] = (p.stat().st_mode & 0o7777, p.read_bytes())
        return out

    if tree(ours) != tree(theirs):
        raise SystemExit("pymgmt and puppet apply made different trees")


if __name__ == "__main__":
    main()
