"""Shared helpers for the benchmarks: paths, graph generation, stats, processes.

Every benchmark runs the venv's interpreter and console script directly (never
a pyenv shim), works under a fresh temporary directory, and kills what it
started. Timestamps are CLOCK_MONOTONIC (``time.monotonic`` / ``perf_counter``
on Linux).

Bytecode modes
--------------
This machine's environment sets ``PYTHONDONTWRITEBYTECODE=1``, so pymgmt's own
source (an editable install) only has the ``.pyc`` files that ./scripts/setup
compiled; a module edited since is compiled again, in memory, on every start.
An installed package has fresh ``.pyc`` files, so the benchmarks default to a
*warm bytecode cache*: ``PYTHONPYCACHEPREFIX`` points into the benchmark's temp
dir (the source tree is never written) and one warm-up run fills it. Mode
``env`` runs with the environment as it is, for comparison.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV = ROOT / ".venv"
PY = str(VENV / "bin" / "python")
PYMGMT = str(VENV / "bin" / "pymgmt")


def check_venv() -> None:
    if not (os.access(PY, os.X_OK) and os.access(PYMGMT, os.X_OK)):
        sys.exit(f"missing {PY} or {PYMGMT}: run ./scripts/setup first")


# -- environment ------------------------------------------------------------------


def bench_env(mode: str, pyc_dir: Path) -> dict[str, str]:
    """The environment for child processes in bytecode `mode` ('warm' or 'env')."""
    env = dict(os.environ)
    if mode == "warm":
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pyc_dir)
    elif mode != "env":
        raise ValueError(mode)
    return env


def warm_up(env: dict[str, str]) -> None:
    """Import everything `pymgmt run` imports once, so the bytecode cache is full."""
    subprocess.run(
        [PY, "-c", "import pymgmt.cli.main, pymgmt.cli.run, pymgmt.resources.base as b; b.kinds()"],
        env=env,
        check=True,
    )
    subprocess.run([PYMGMT, "--version"], env=env, check=True, stdout=subprocess.DEVNULL)


@contextlib.contextmanager
def temp_dir(keep: bool = False) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="pymgmt-bench-"))
    try:
        yield d
    finally:
        if keep:
            print(f"(kept {d})", file=sys.stderr)
        else:
            shutil.rmtree(d, ignore_errors=True)


# -- the managed files -----------------------------------------------------------


def content_of(i: int) -> str:
    return f"file {i} managed by the pymgmt benchmark\n"


def file_paths(root: Path, n: int, dirs: int) -> list[Path]:
    """`n` file paths, in one directory (dirs=1) or spread round-robin over `dirs`."""
    if dirs <= 1:
        return [root / f"f{i:05d}" for i in range(n)]
    return [root / f"d{i % dirs:03d}" / f"f{i:05d}" for i in range(n)]


def make_dirs(paths: Sequence[Path]) -> None:
    for d in sorted({p.parent for p in paths}):
        d.mkdir(parents=True, exist_ok=True)


def write_graph(path: Path, files: Sequence[Path], mode: str = "0644") -> None:
    """An mgmt YAML graph managing `files` (content + mode), no edges."""
    out = ["graph: bench", "resources:", "  file:"]
    for i, p in enumerate(files):
        out.append(f"  - name: {p}")
        out.append(f"    content: {json.dumps(content_of(i))}")
        out.append(f"    mode: '{mode}'")
    path.write_text("\n".join(out) + "\n")


# -- statistics -------------------------------------------------------------------


def pct(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank on the sorted values)."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> str:
    if seconds != seconds:  # NaN
        return "n/a"
    v = seconds * 1000
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown pipe table (readable as plain text too)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


# -- processes --------------------------------------------------------------------


def timed(
    cmd: Sequence[str], env: dict[str, str], *, check_rc: Sequence[int] = (0,)
) -> tuple[float, float]:
    """(wall, CPU) seconds of one run of `cmd`, fork to exit, output discarded.

    CPU is the child's user + system time: unlike wall time it hardly moves
    when other processes compete for this machine's cores.
    """
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode not in check_rc:
        raise RuntimeError(f"{cmd} exited {p.returncode}: {p.stderr.decode()[-2000:]}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return dt, cpu


def wall(cmd: Sequence[str], env: dict[str, str], *, check_rc: Sequence[int] = (0,)) -> float:
    """Wall time of one run of `cmd` (fork to exit), output discarded."""
    return timed(cmd, env, check_rc=check_rc)[0]


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM the process (group, started with start_new_session), then SIGKILL."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


# -- machine --------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    fs = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        fs = subprocess.run(
            ["df", "--output=fstype", tempfile.gettempdir()],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()[-1]
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": f"{platform.python_version()} ({os.path.realpath(PY)})",
        "tmp_fs": f"{tempfile.gettempdir()} on {fs}",
    }


def dump_json(path: str | None, data: object) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")
