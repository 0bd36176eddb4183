"""W1 first / converged / repair 10 %: durable batched writes against a floor and CFEngine.

Issue 13's workload W1 (as in ../shared/bench-peers): N files ``fNNNN`` with
content ``i am fNNNN\\n`` and mode 0644, plus their directory. Three phases,
each a whole one-shot process, fork to exit:

* first: from nothing (the directory is removed before each run);
* converged: nothing to do (the run must rewrite no file);
* repair10%: 10 % of the files deleted and 10 % given other content first.

Every phase is verified (content and mode of every file) after each run; a
previous run's files are moved aside before a first phase, not deleted
(see `_set_aside`).
The tools, measured in the same run, their runs interleaved:

* ``pymgmt``: this tree's ``pymgmt run --converged-timeout 0`` (the plain
  form, as ../shared/bench-peers runs it: the one-shot fast path answers it;
  with ``-q`` the full engine did, and that is what this measured before);
* ``baseline``: another pymgmt (``--baseline CMD``, e.g. main's install), A/B;
* ``floor``: the durable floor, plain Python doing per file what a durable
  write must: read and compare; if it differs, write a temporary file,
  fsync it, rename it over the target, fsync the directory;
* ``floor-batch``: the same, batched by hand: every temporary file written,
  one syncfs, every rename, one directory fsync (the best a batch can do);
* ``cfengine``: ``cf-agent -KIf policy.cf`` with the harness's policy
  (CFEngine writes its files without fsync: it is no durable peer, but the
  issue's target is half its time).

Ratios are pymgmt's median wall time over each other tool's; CPU is
user+sys of the whole process tree. Wall times are noisy on a shared
machine: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path

from _common import (
    PY,
    PYMGMT,
    bench_env,
    check_venv,
    median,
    ratio,
    table,
    temp_dir,
    timed,
    warm_up,
)

PHASES = ("first", "converged", "repair10%")

FLOOR = r"""
import ctypes, os, sys
d, n, batch = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "batch"
os.makedirs(d, exist_ok=True)
dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
staged = []
for i in range(n):
    name = f"f{i:04d}"
    want = f"i am {name}\n".encode()
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
        have, mode = os.read(fd, 1 << 16), os.fstat(fd).st_mode & 0o7777
        os.close(fd)
    except FileNotFoundError:
        have, mode = None, None
    if have == want:
        if mode != 0o644:
            os.chmod(name, 0o644, dir_fd=dfd)
        continue
    tmp = "." + name + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644, dir_fd=dfd)
    os.fchmod(fd, 0o644)
    os.write(fd, want)
    if batch:
        staged.append((fd, tmp, name))
        continue
    os.fsync(fd)
    os.close(fd)
    os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    os.fsync(dfd)
if staged:
    if ctypes.CDLL(None, use_errno=True).syncfs(dfd) != 0:
        raise OSError(ctypes.get_errno(), "syncfs")
    for fd, tmp, name in staged:
        os.close(fd)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    os.fsync(dfd)
"""


def names(n: int) -> list[str]:
    return [f"f{i:04d}" for i in range(n)]


def write_inputs(root: Path, n: int) -> None:
    """The graph, the CFEngine policy and the floor script for N files under `root`."""
    (root / "floor.py").write_text(FLOOR)
    d = root / "pymgmt"
    g = ["---", "graph: w1", "resources:", "  file:", "  - name: dir", f'    path: "{d}/"']
    g.append("    state: exists")
    for x in names(n):
        g += [f"  - name: {x}", f'    path: "{d}/{x}"', "    content: |", f"      i am {x}"]
        g += ['    mode: "0644"', "    state: exists"]
    (root / "graph.yaml").write_text("\n".join(g) + "\nedges: []\n")
    (root / "graph-baseline.yaml").write_text(
        (root / "graph.yaml").read_text().replace(f"{d}/", f"{root / 'baseline'}/")
    )
    c = root / "cfengine"
    policy = [
        'body common control { bundlesequence => { "main" }; }',
        'body perms m644 { mode => "0644"; }',
        "bundle agent main {",
        "  files:",
        f'    "{c}/." create => "true";',
        *(
            f'    "{c}/{x}" create => "true", content => "i am {x}$(const.n)", perms => m644;'
            for x in names(n)
        ),
        "}",
    ]
    (root / "policy.cf").write_text("\n".join(policy) + "\n")
    (root / "policy.cf").chmod(0o600)  # cf-agent refuses a policy others can write


def command(tool: str, root: Path, n: int, baseline: str) -> list[str]:
    once = ["run", "--converged-timeout", "0"]  # its output goes to /dev/null
    if tool == "pymgmt":
        return [PYMGMT, *once, "--prefix", str(root / "st-p"), str(root / "graph.yaml")]
    if tool == "baseline":
        state, graph = str(root / "st-b"), str(root / "graph-baseline.yaml")
        return [*shlex.split(baseline), *once, "--prefix", state, graph]
    if tool in ("floor", "floor-batch"):
        mode = "batch" if tool == "floor-batch" else "serial"
        return [PY, str(root / "floor.py"), str(root / tool), str(n), mode]
    if tool == "cfengine":
        return ["cf-agent", "-KIf", str(root / "policy.cf")]
    raise ValueError(tool)


def files_of(tool: str, root: Path) -> Path:
    return root / tool


def verify(d: Path, n: int) -> list[str]:
    bad = []
    for x in names(n):
        try:
            content, mode = (d / x).read_bytes(), (d / x).stat().st_mode & 0o7777
        except FileNotFoundError:
            bad.append(f"{x}: missing")
            continue
        if content != f"i am {x}\n".encode() or mode != 0o644:
            bad.append(f"{x}: {content[:20]!r} {mode:o}")
    return bad


def mutate(d: Path, n: int) -> None:
    for i, x in enumerate(names(n)):
        if i % 10 == 0:
            (d / x).unlink()
        elif i % 10 == 5:
            (d / x).write_text("drifted\n")


def one_round(
    tool: str, root: Path, n: int, env: dict[str, str], baseline: str
) -> dict[str, tuple[float, float]]:
    """(wall, CPU) of each phase for one tool, each phase verified."""
    d = files_of(tool, root)
    argv = command(tool, root, n, baseline)
    ok_codes = (0, 2)  # pymgmt: 2 = converged, changes applied
    out: dict[str, tuple[float, float]] = {}
    _set_aside(d, root / "trash")
    out["first"] = timed(argv, env, check_rc=ok_codes)
    _check(tool, "first", verify(d, n))
    before = {p.name: p.stat().st_mtime_ns for p in d.iterdir()}
    out["converged"] = timed(argv, env, check_rc=ok_codes)
    _check(tool, "converged", verify(d, n))
    rewritten = [p.name for p in d.iterdir() if before.get(p.name) != p.stat().st_mtime_ns]
    _check(tool, "converged (rewrote files)", rewritten)
    mutate(d, n)
    out["repair10%"] = timed(argv, env, check_rc=ok_codes)
    _check(tool, "repair10%", verify(d, n))
    return out


def _set_aside(d: Path, trash: Path) -> None:
    """Move a previous run's files out of the way, to be deleted after the benchmark.

    Deleted, their inodes would be "recently deleted" for a minute or more,
    and ext4 (without a journal, as here) scans past every such inode of the
    block group for each file created next: the first phase would measure
    how many files the benchmark deleted before it, for every tool alike.
    """
    if d.exists():
        trash.mkdir(exist_ok=True)
        d.rename(trash / f"{d.name}-{len(list(trash.iterdir()))}")


def _check(tool: str, phase: str, bad: list[str]) -> None:
    if bad:
        sys.exit(f"{tool} {phase}: the files are wrong: {bad[:5]} ({len(bad)} in all)")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_size(
    tmp: Path, n: int, rounds: int, tools: list[str], env: dict[str, str], baseline: str
) -> list[list[object]]:
    root = tmp / f"n{n}"
    root.mkdir()
    write_inputs(root, n)
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for r in range(rounds):
        order = tools[r % len(tools) :] + tools[: r % len(tools)]  # rotate: no tool always first
        for tool in order:
            for phase, wc in one_round(tool, root, n, env, baseline).items():
                samples.setdefault((tool, phase), []).append(wc)
            print(f"# n={n} round {r + 1}/{rounds} {tool} done (load {loadavg()})", file=sys.stderr)
    rows: list[list[object]] = []
    for phase in PHASES:
        walls = {t: median([w for w, _ in samples[(t, phase)]]) for t in tools}
        cpus = {t: median([c for _, c in samples[(t, phase)]]) for t in tools}
        row: list[object] = [n, phase]
        row += [f"{walls[t]:.3f} / {cpus[t]:.2f}" for t in tools]
        row += [ratio(walls["pymgmt"], walls[t]) for t in tools if t != "pymgmt"]
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,10000", help="comma-separated N")
    ap.add_argument("--rounds", default="5,1", help="rounds per size, comma-separated")
    ap.add_argument("--baseline", default="", help="another pymgmt command to compare (A/B)")
    ap.add_argument("--no-floor", action="store_true", help="skip the per-file durable floor")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    check_venv()
    tools = ["pymgmt"] + (["baseline"] if args.baseline else [])
    tools += [] if args.no_floor else ["floor"]
    tools += ["floor-batch"]
    if shutil.which("cf-agent"):
        tools.append("cfengine")
    else:
        print("# cf-agent not found: no CFEngine column", file=sys.stderr)
    sizes = [int(x) for x in args.sizes.split(",")]
    rounds = [int(x) for x in args.rounds.split(",")]
    rounds += [rounds[-1]] * (len(sizes) - len(rounds))
    start_load = loadavg()
    with temp_dir(args.keep) as tmp:
        env = bench_env("warm", tmp / "pyc")
        warm_up(env)
        rows: list[list[object]] = []
        for n, k in zip(sizes, rounds, strict=True):
            rows += run_size(tmp, n, k, tools, env, args.baseline)
    others = [t for t in tools if t != "pymgmt"]
    header = ["N", "phase"] + [f"{t} wall / CPU (s)" for t in tools]
    header += [f"pymgmt / {t}" for t in others]
    print(f"load average: {start_load} (start), {loadavg()} (end); {os.cpu_count()} cores")
    print(f"rounds: {dict(zip(sizes, rounds, strict=True))}; medians; wall / CPU = user+sys")
    print(table(header, rows))
    if args.baseline:
        print(f"baseline: {args.baseline}")
    print(f"cpu count {os.cpu_count()}; command: {' '.join(shlex.quote(a) for a in sys.argv)}")


if __name__ == "__main__":
    main()
