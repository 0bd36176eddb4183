"""The Automatic-grouping article's package science, redone on this machine.

Four scenarios (1 package / 3 packages x check / install) with small Debian
packages, each timed from process start to exit, median of several runs
after a warm-up; before each install run the packages are removed (not
timed). Tools, all measured in the same run:

* pymgmt (apt backend, grouped)       pymgmt run --converged-timeout 0
* pymgmt (apt backend, autogroup off)
* pymgmt (PackageKit backend, grouped)
* apt-get install a b c (install) / dpkg-query -W a b c (check): the floor
* pkcon install / pkcon resolve

Needs root, apt, and for the PackageKit rows a system bus with packagekitd
(this script starts both when absent and stops what it started).

    .venv/bin/python bench/pkg.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ONE = ["powertop"]
THREE = ["powertop", "sl", "cowsay"]
PYMGMT = str(Path(sys.executable).with_name("pymgmt"))
BUS = "/run/dbus/system_bus_socket"
APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def sh(argv: list[str], *, check: bool = True) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=APT_ENV, check=False)
    took = time.perf_counter() - start
    if check and proc.returncode not in (0, 2):
        raise RuntimeError(
            f"{argv} exited {proc.returncode}: {proc.stdout[-500:]}{proc.stderr[-500:]}"
        )
    return took


def apt(*args: str) -> None:
    sh(["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=600", *args])


def remove(names: list[str]) -> None:
    present = [
        n
        for n in names
        if subprocess.run(
            ["dpkg-query", "-W", "-f", "${db:Status-Abbrev}", n],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.startswith("ii")
    ]
    if present:
        apt("remove", *present)


def graph(tmp: Path, names: list[str], *, backend: str = "apt", group: bool = True) -> Path:
    meta = "" if group else "    meta: {autogroup: false}\n"
    body = "".join(f"  - name: {n}\n    backend: {backend}\n{meta}" for n in names)
    path = tmp / f"g-{backend}-{group}-{len(names)}.yaml"
    path.write_text(f"graph: bench\nresources:\n  pkg:\n{body}")
    return path


@contextlib.contextmanager
def packagekit_running() -> Iterator[bool]:
    """A system bus and packagekitd for the PackageKit rows (started if absent)."""
    started: list[subprocess.Popen[bytes] | int] = []
    try:
        if not os.path.exists(BUS):
            os.makedirs("/run/dbus", exist_ok=True)
            out = subprocess.run(
                ["dbus-daemon", "--system", "--fork", "--print-pid"],
                capture_output=True,
                text=True,
                check=True,
            )
            started.append(int(out.stdout.split()[0]))
        pkd = "/usr/libexec/packagekitd"
        if not os.path.exists(pkd):
            yield False
            return
        proc = subprocess.Popen(
            [pkd, "--disable-timer"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        started.append(proc)
        deadline = time.monotonic() + 30
        while subprocess.run(["pkcon", "get-roles"], capture_output=True, check=False).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError("packagekitd did not come up")
            time.sleep(0.1)
        yield True
    finally:
        for s in reversed(started):
            if isinstance(s, int):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(s, 15)
                for f in ("/run/dbus/pid", BUS):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(f)
            else:
                s.terminate()
                s.wait(timeout=30)
        subprocess.run(["pkill", "-x", "polkitd"], check=False)


def median_of(runs: int, fn: object, setup: object = None) -> float:
    times = []
    for i in range(runs + 1):
        if setup is not None:
            setup()  # type: ignore[operator]
        t = fn()  # type: ignore[operator]
        if i:  # the first run only warms caches
            times.append(t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit("bench/pkg.py needs root and apt")
    runs = 2 if args.quick else 3
    tmp = Path(tempfile.mkdtemp(prefix="pymgmt-bench-pkg-"))
    prefix = str(tmp / "state")
    rows: list[tuple[str, str, float]] = []

    def pymgmt(path: Path) -> float:
        return sh([PYMGMT, "run", "-q", "--converged-timeout", "0", "--prefix", prefix, str(path)])

    with packagekit_running() as have_pk:
        for names, label in ((ONE, "1 package"), (THREE, "3 packages")):
            tools = {
                "pymgmt (apt, grouped)": lambda n=names: pymgmt(graph(tmp, n)),
                "pymgmt (apt, autogroup off)": lambda n=names: pymgmt(graph(tmp, n, group=False)),
            }
            if have_pk:
                tools["pymgmt (PackageKit, grouped)"] = lambda n=names: pymgmt(
                    graph(tmp, n, backend="packagekit")
                )
            # install
            install = dict(tools)
            install["apt-get install (one command)"] = lambda n=names: sh(
                ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=600", "install", *n]
            )
            if have_pk:
                install["pkcon install"] = lambda n=names: sh(["pkcon", "-y", "-p", "install", *n])
            for tool, fn in install.items():
                rows.append(
                    (
                        f"{label}, install",
                        tool,
                        median_of(runs, fn, setup=lambda n=names: remove(n)),
                    )
                )
            # check (already installed)
            apt("install", *names)
            check = dict(tools)
            check["dpkg-query -W (floor)"] = lambda n=names: sh(["dpkg-query", "-W", *n])
            if have_pk:
                check["pkcon resolve"] = lambda n=names: sh(["pkcon", "-p", "resolve", *n])
            for tool, fn in check.items():
                rows.append((f"{label}, check", tool, median_of(runs, fn)))
        remove(THREE)

    floors = {s: t for s, tool, t in rows if tool.startswith(("apt-get install", "dpkg-query"))}
    print(f"pkg scenarios, median of {runs} runs after a warm-up (seconds)")
    print("| scenario | tool | seconds | ratio to apt-get / dpkg-query |")
    print("|---|---|---|---|")
    for scenario, tool, t in rows:
        print(f"| {scenario} | {tool} | {t:.3f} | {t / floors[scenario]:.2f}x |")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
