"""pymgmt side by side with CFEngine, Salt, Puppet and the floor, in one run.

Drives the peer harness of ../shared/bench-peers (its ``run.sh``, called as a
program: this repository does not depend on it, so it is found through
``--peers DIR`` or ``$PYMGMT_PEERS``) with a *non-editable* install of the
current tree in a scratch venv, because start-up figures must be what users
get from ``pip install``, not an editable checkout's. Prints one table: per
workload and phase the median of each tool, pymgmt/CFEngine and pymgmt/Salt,
and the verdict against issue 13's targets, with the load average before and
after. A peer that is not installed gets "not installed" in its column, and
the driver says so; without the harness it says where it looked and stops.

    .venv/bin/python bench/peers.py                 # W5, W1 10/100/1000, W3, W4
    .venv/bin/python bench/peers.py --pkg --big     # + W2 (real apt) + W1 10,000
    .venv/bin/python bench/peers.py --only W3 --tools pymgmt,floor
    .venv/bin/python bench/peers.py --write         # also record it in RESULTS.md

Scratch outputs go to ``$BENCHC`` (``--benchc``, default /tmp/benchC-peers);
the peers' venvs are linked from /tmp/benchC, where setup.sh made them.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from _common import BENCH, ROOT

TOOLS = ("pymgmt", "cfengine", "salt", "puppet", "floor")
#: W3's critical path: three chained `sleep 2`
W3_PATH = 6.0
#: CFEngine's apt package module, as the Debian package ships it (setup.sh installs it)
APT_GET_TEMPLATE = Path(
    "/usr/share/cfengine3/masterfiles/modules/packages/vendored/apt_get.mustache"
)
SETUP_BENCHC = Path("/tmp/benchC")  # where the harness's setup.sh puts the peers' venvs
SECTION = "## Issue 13: side by side"


@dataclass
class Run:
    """What one invocation measured: cells[(workload, n, phase)][tool] = seconds or a word."""

    cells: dict[tuple[str, str, str], dict[str, str]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# -- finding things ------------------------------------------------------------------------


def peers_dir(arg: str | None) -> Path:
    """The harness directory; exits with a clear message when it is absent."""
    d = Path(arg or os.environ.get("PYMGMT_PEERS") or ROOT.parent / "shared" / "bench-peers")
    if not (d / "run.sh").is_file():
        sys.exit(
            f"peers.py: no side-by-side harness at {d} (run.sh missing).\n"
            "Give its directory with --peers DIR or $PYMGMT_PEERS "
            "(it is ../shared/bench-peers on the benchmark machine)."
        )
    return d.resolve()


def missing_tools(tools: Sequence[str], benchc: Path) -> dict[str, str]:
    """tool -> why it cannot run here (only the tools that cannot)."""
    need = {
        "cfengine": shutil.which("cf-agent"),
        "puppet": shutil.which("puppet"),
        "salt": (benchc / "venv-salt" / "bin" / "salt-call").exists() or None,
    }
    out = {}
    for t in tools:
        if t in need and not need[t]:
            what = "salt-call in $BENCHC/venv-salt" if t == "salt" else f"{t} on PATH"
            out[t] = f"not installed ({what} not found; see the harness's setup.sh)"
    if shutil.which("hyperfine") is None:
        out.update(dict.fromkeys(tools, "hyperfine not installed"))
    return out


def link_venvs(benchc: Path) -> None:
    """Point $BENCHC's venv-* and cfengine/ (its apt module) at setup.sh's.

    A private scratch dir then still finds Salt and CFEngine's package module.
    """
    benchc.mkdir(parents=True, exist_ok=True)
    if benchc.resolve() == SETUP_BENCHC.resolve():
        return
    for src in [*SETUP_BENCHC.glob("venv-*"), SETUP_BENCHC / "cfengine"]:
        dst = benchc / src.name
        if src.exists() and not dst.exists() and not dst.is_symlink():
            dst.symlink_to(src)
    module = benchc / "cfengine" / "modules" / "apt_get"
    if not module.exists() and APT_GET_TEMPLATE.exists():
        # setup.sh's step, for a machine where only the Debian package was
        # installed: without it every CFEngine W2 run fails at once ("BAD")
        module.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(APT_GET_TEMPLATE, module)
        module.chmod(0o755)


def install_tree(venv: Path) -> Path:
    """A non-editable install of this tree in `venv` (made fresh); returns its pymgmt."""
    shutil.rmtree(venv, ignore_errors=True)
    print(f"# installing this tree (non-editable) into {venv} ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    with tempfile.TemporaryDirectory(prefix="pymgmt-src-") as tmp:
        # A copy: building in place would leave build/ and *.egg-info in the tree.
        src = Path(tmp) / "src"
        junk = shutil.ignore_patterns(".venv", ".git", "build", "__pycache__", "*.egg-info")
        shutil.copytree(ROOT, src, ignore=junk)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", str(src)],
            check=True,
            stderr=subprocess.DEVNULL,  # the machine's pip.conf warns about absent local indexes
        )
    return venv / "bin" / "pymgmt"


def git_state() -> str:
    def git(*a: str) -> str:
        p = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=False)
        return p.stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src")
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (" + changes in src/" if dirty else "")


# -- running the harness ---------------------------------------------------------------------


def plan(args: argparse.Namespace) -> list[tuple[str, int]]:
    """(workload, N) in the order they run: cheap and noise-sensitive first."""
    w1 = [10, 100, 1000] + ([10000] if args.big else [])
    out: list[tuple[str, int]] = [("W5", 0)] + [("W1", n) for n in w1] + [("W3", 0), ("W4", 10)]
    if args.pkg:
        out.append(("W2", 0))
    if args.only:
        keep = set(args.only.split(","))
        out = [(w, n) for w, n in out if w in keep or f"{w}:{n}" in keep]
    return out


def run_cell(
    harness: Path, tool: str, wl: str, n: int, env: dict[str, str], log: Path
) -> list[tuple[str, str, str, str]]:
    """One `run.sh TOOL WL N`: its (workload, n, phase, value) lines; details to `log`."""
    argv = [str(harness / "run.sh"), tool, wl] + ([str(n)] if n else [])
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    with log.open("a") as f:
        f.write(f"## {shlex.join(argv)} (load {load:.2f})\n")
        f.flush()
        p = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=f, text=True, check=False)
    took = time.monotonic() - t0
    rows = []
    for line in p.stdout.splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[0] == tool:
            rows.append((parts[1], parts[2], parts[3], parts[4]))
    if p.returncode != 0 or not rows:
        rows.append((wl, str(n), "?", f"FAIL(rc={p.returncode})"))
    print(
        f"# {tool} {wl} {n or ''}: {' '.join(f'{r[2]}={r[3]}' for r in rows)} "
        f"({took:.0f} s, load {load:.2f})",
        file=sys.stderr,
        flush=True,
    )
    return rows


def harness_env(pymgmt: Path, benchc: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed package has its .pyc files
    env["BENCHC"] = str(benchc)
    # A state directory of its own: /var/lib/pymgmt may be held by another agent.
    run = f"{pymgmt} run --prefix {benchc / 'pymgmt-state'}"
    env["PYMGMT_CMD"] = f"{run} --converged-timeout 0"
    env["PYMGMT_WATCH_CMD"] = run
    env.setdefault("BUDGET", "12")
    env.setdefault("W3_BUDGET", "35")
    return env


def measure(args: argparse.Namespace, harness: Path, pymgmt: Path) -> Run:
    benchc = Path(args.benchc)
    run = Run(missing=missing_tools(args.tools, benchc))
    for t, why in run.missing.items():
        print(f"# {t}: {why}; its column stays empty", file=sys.stderr)
    env = harness_env(pymgmt, benchc)
    log = benchc / "peers-driver.log"
    log.unlink(missing_ok=True)
    for wl, n in plan(args):
        for tool in args.tools:
            if tool in run.missing:
                continue
            for w, nn, phase, value in run_cell(harness, tool, wl, n, env, log):
                run.cells.setdefault((w, nn, phase), {})[tool] = value
    run.notes.append(f"harness stderr (samples, verification): {log}")
    return run


# -- the table -------------------------------------------------------------------------------


def num(v: str | None) -> float | None:
    try:
        return float(v) if v is not None else None
    except ValueError:
        return None


def verdict(key: tuple[str, str, str], row: dict[str, str]) -> str:
    """Issue 13's target for this row, and whether pymgmt meets it."""
    wl, _n, phase = key
    me, cf, floor = num(row.get("pymgmt")), num(row.get("cfengine")), num(row.get("floor"))
    if me is None:
        return "-"
    if wl == "W3":
        return _met(me <= W3_PATH * 1.02, f"<= {W3_PATH * 1.02:.2f} s (path + 2 %)")
    if wl == "W5" and phase == "version":
        return _met(floor is not None and me <= 1.3 * floor, "<= 1.3x python -c pass")
    if wl == "W2" and phase == "install":
        return _met(floor is not None and me <= 1.1 * floor, "<= 1.1x one apt-get install")
    if wl == "W4" or phase.startswith("install") or phase.startswith("check_"):
        return "-"
    return _met(cf is not None and me <= 0.5 * cf, "<= 0.5x CFEngine")


def _met(ok: bool, target: str) -> str:
    return f"{'met' if ok else '**NOT met**'} ({target})"


def ratio(a: str | None, b: str | None) -> str:
    x, y = num(a), num(b)
    return f"{x / y:.2f}x" if x is not None and y else "-"


def render(run: Run, tools: Sequence[str]) -> str:
    head = ["workload", "N", "phase", *tools, "pymgmt/CFEngine", "pymgmt/Salt", "target"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, row in run.cells.items():
        cols = [row.get(t, run.missing.get(t, "-").split(" (")[0]) for t in tools]
        cells = [*key, *cols]
        cells += [ratio(row.get("pymgmt"), row.get("cfengine"))]
        cells += [ratio(row.get("pymgmt"), row.get("salt")), verdict(key, row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_section(text: str) -> None:
    """Add or replace the side-by-side section of RESULTS.md (up to the next '## ')."""
    path = BENCH / "RESULTS.md"
    old = path.read_text() if path.exists() else ""
    pat = re.compile(rf"^{re.escape(SECTION)}.*?(?=^## |\Z)", re.M | re.S)
    new = pat.sub(lambda _m: text.rstrip() + "\n\n", old, count=1)
    if new == old:
        new = old.rstrip() + "\n\n" + text.rstrip() + "\n"
    path.write_text(new)
    print(f"wrote {path}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peers", metavar="DIR", help="the harness (default ../shared/bench-peers)")
    ap.add_argument("--benchc", default=os.environ.get("BENCHC", "/tmp/benchC-peers"))
    ap.add_argument("--pkg", action="store_true", help="also W2: installs real packages")
    ap.add_argument("--big", action="store_true", help="also W1 at 10,000 files")
    ap.add_argument("--only", help="comma-separated workloads (W1, W3) or W1:1000 cells")
    ap.add_argument("--tools", default=",".join(TOOLS), help="comma-separated columns")
    ap.add_argument("--pymgmt", metavar="EXE", help="use this pymgmt instead of a fresh install")
    ap.add_argument("--write", action="store_true", help="record the run in bench/RESULTS.md")
    args = ap.parse_args()
    args.tools = [t for t in args.tools.split(",") if t]
    harness = peers_dir(args.peers)
    link_venvs(Path(args.benchc))
    started = datetime.datetime.now(datetime.UTC)
    commit = f"given pymgmt {args.pymgmt}" if args.pymgmt else f"commit {git_state()}"
    pymgmt = Path(args.pymgmt) if args.pymgmt else install_tree(Path(args.benchc) / "pymgmt-inst")
    load0 = os.getloadavg()
    run = measure(args, harness, pymgmt)
    load1 = os.getloadavg()
    argv = shlex.join([".venv/bin/python", "bench/peers.py", *sys.argv[1:]])
    text = "\n".join(
        [
            f"{SECTION} ({started:%Y-%m-%d %H:%M} UTC, {commit})",
            "",
            f"`{argv}` (harness {harness}, pymgmt installed non-editable: "
            f"`{pymgmt} run --prefix DIR --converged-timeout 0`). Medians in seconds, "
            "every tool in the same run; 2 cores, shared.",
            "Load average (1/5/15 min): before "
            + " ".join(f"{x:.2f}" for x in load0)
            + ", after "
            + " ".join(f"{x:.2f}" for x in load1)
            + ".",
            "",
            render(run, args.tools),
            "",
            *[f"- {t}: {why}" for t, why in run.missing.items()],
            *[f"- {n}" for n in run.notes],
        ]
    )
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
