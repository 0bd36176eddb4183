"""Real daemons for the system tests: a D-Bus system bus, PackageKit, and systemd.

Session-scoped fixtures, each started at most once per pytest run and stopped
(by PID) at its end; every readiness wait polls a condition with a deadline.

* `system_bus`: a real `dbus-daemon --system` on this host, at the standard
  /run/dbus/system_bus_socket. A system bus that is already running is reused
  and left running (unless a harness run that died had started it).
* `packagekit`: `/usr/libexec/packagekitd --disable-timer` on that bus; yields
  the bus address. At the end packagekitd and the polkitd that the first
  privileged call bus-activated are stopped too.
* `nspawn_systemd`: systemd booted as PID 1 by systemd-nspawn on the bookworm
  tree that `scripts/system/prepare` caches in /var/cache/pymgmt-tests, with a
  tmpfs overlay on top (`--volatile=overlay`) so the cached tree is never
  written. Yields a `Container`: a D-Bus client on the host reaches the
  container's systemd through `Container.bus_address`; commands run inside
  with `Container.run` (nsenter).

Never boot a systemd that shares this machine's filesystem: its boot empties
the host's /tmp. systemd-nspawn gives it a root of its own.

Missing prerequisites (not root, `scripts/system/prepare` not run) skip the
tests with the reason; under CI (CI=true) they fail instead, so a CI run can
never pass without running them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from syshelpers import (
    MACHINE_PREFIX,
    PACKAGEKITD,
    PK_NAME,
    POLKIT_NAME,
    PREPARE,
    ROOTFS,
    STAMP,
    START_DEADLINE,
    STATE_DIR,
    STOP_DEADLINE,
    SYSTEM_BUS_ADDRESS,
    SYSTEM_BUS_SOCKET,
    TIMINGS,
    Container,
    SystemBus,
    bus_answers,
    cannot,
    cgroup_parents,
    container_binds,
    find_leader,
    overlay_supported,
    poll,
    proc_comm,
    remove_cgroup,
    run,
    stop_pid,
    stop_popen,
    sweep_stale_containers,
    tail,
)


def _timed(key: str, start: float) -> None:
    TIMINGS[key] = time.monotonic() - start


def _require_root_and(*tools: str) -> None:
    if os.geteuid() != 0:
        cannot("the system tests start real daemons and need root")
    missing = [t for t in tools if not (shutil.which(t) or Path(t).is_file())]
    if missing:
        cannot(f"missing {', '.join(missing)}: run {PREPARE} (as root) first")


def _flock(f: IO[str]) -> bool:
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@pytest.fixture(scope="session")
def system_bus() -> Iterator[SystemBus]:
    """A running D-Bus system bus at /run/dbus/system_bus_socket.

    The bus is machine-wide, so one pytest run at a time uses it: the fixture
    holds /run/pymgmt-tests/system-bus.lock for the session (a second run
    waits). A bus that is already running is reused and left running, unless
    /run/pymgmt-tests/system-bus.owner says a harness run that died started
    it: then it is adopted and stopped at the end.

    Side effect while it runs: every apt-get/dpkg run on this machine (by any
    process) runs /etc/apt/apt.conf.d/20packagekit, whose gdbus call
    bus-activates packagekitd. Teardown therefore stops the bus first, then
    the PackageKit/polkit daemons that were on it.
    """
    _require_root_and("dbus-daemon", "busctl")
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "system-bus.lock", "w") as lock:
        poll(lambda: _flock(lock), f"{lock.name} (another tests/system run holds it)", 900)
        yield from _system_bus()


def _system_bus() -> Iterator[SystemBus]:
    start = time.monotonic()
    run_dir = SYSTEM_BUS_SOCKET.parent
    pid_file = run_dir / "pid"
    owner_file = STATE_DIR / "system-bus.owner"
    pid: int | None = None
    if SYSTEM_BUS_SOCKET.exists() and bus_answers(SYSTEM_BUS_ADDRESS):
        with contextlib.suppress(OSError, ValueError):
            left = int(owner_file.read_text())  # a dead run's bus (we hold the lock)
            if pid_file.read_text().strip() == str(left) and proc_comm(left) == "dbus-daemon":
                pid = left
        if pid is None:
            yield SystemBus(SYSTEM_BUS_ADDRESS, None)  # not ours: reuse it, leave it running
            return
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        # Leftovers of a bus that died (it answered nothing above): dbus-daemon
        # refuses to start while its pid file exists.
        for stale in (pid_file, SYSTEM_BUS_SOCKET):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        # --fork returns once the daemon listens; the daemon is re-parented to us.
        argv = ["dbus-daemon", "--system", "--fork", "--print-pid"]
        pid = int(run(argv, timeout=START_DEADLINE).stdout.split()[0])
        owner_file.write_text(f"{pid}\n")
    bus = SystemBus(SYSTEM_BUS_ADDRESS, pid)
    try:
        poll(lambda: bus_answers(bus.address), "the system bus to answer")
        _timed("system_bus start", start)
        yield bus
    finally:
        start = time.monotonic()
        # Daemons on our bus (bus-activated ones included, e.g. by the apt hook):
        # stop the bus first so nothing new gets activated, then them.
        stragglers = [
            (p, proc_comm(p))
            for p in (bus.owner_pid(PK_NAME), bus.owner_pid(POLKIT_NAME))
            if p is not None
        ]
        stop_pid(pid, "dbus-daemon")
        for p, comm in stragglers:
            stop_pid(p, comm)
        with contextlib.suppress(OSError):
            if pid_file.read_text().strip() == str(pid):
                pid_file.unlink()
        if not pid_file.exists():
            with contextlib.suppress(FileNotFoundError):
                SYSTEM_BUS_SOCKET.unlink()
        with contextlib.suppress(FileNotFoundError):
            owner_file.unlink()
        _timed("system_bus stop", start)


# -- PackageKit ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def packagekit(system_bus: SystemBus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """packagekitd (apt backend) on the system bus; yields the bus address.

    An already running packagekitd is reused and left running. polkitd, which
    the first privileged call (e.g. InstallPackages) bus-activates, is stopped
    at the end if it was not running before.
    """
    _require_root_and(PACKAGEKITD)
    addr = system_bus.address
    polkit_before = system_bus.owner_pid(POLKIT_NAME)

    def stop_new_polkitd() -> None:
        polkit = system_bus.owner_pid(POLKIT_NAME)
        if polkit is not None and polkit_before is None:
            stop_pid(polkit, "polkitd")

    if system_bus.owner_pid(PK_NAME) is not None:
        try:
            yield addr
        finally:
            stop_new_polkitd()
        return

    start = time.monotonic()
    log = tmp_path_factory.mktemp("packagekit") / "packagekitd.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [PACKAGEKITD, "--disable-timer"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    other: int | None = None
    try:

        def on_bus() -> int | None:
            owner = system_bus.owner_pid(PK_NAME)
            if owner is None and proc.poll() is not None:
                raise RuntimeError(
                    f"packagekitd exited {proc.returncode} before owning {PK_NAME}\n{tail(log)}"
                )
            return owner

        owner = poll(on_bus, f"{PK_NAME} on the system bus", why=lambda: tail(log))
        if owner != proc.pid:
            # Bus-activated meanwhile (the apt hook, another client): ours lost
            # the name and exits; stop that one at the end instead.
            other = owner
        # packagekitd bus-activates polkitd as it starts. Make sure that has
        # happened now: a daemon activated during a test becomes a child of
        # this pytest (a child subreaper) and the leak check would flag it.
        poll(lambda: system_bus.owner_pid(POLKIT_NAME), f"{POLKIT_NAME} on the system bus")
        _timed("packagekit start", start)
        yield addr
    finally:
        start = time.monotonic()
        stop_popen(proc)
        if other is not None:
            stop_pid(other, "packagekitd")
        stop_new_polkitd()
        _timed("packagekit stop", start)


@pytest.fixture(scope="session")
def nspawn_systemd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    """Boot the cached bookworm tree with systemd-nspawn; yield a `Container`.

    The tree gets a tmpfs overlay (`--volatile=overlay`: 0 s, vs ~6-10 s for a
    copy), so tests never dirty the cache and several runs can share it.
    """
    _require_root_and("systemd-nspawn", "nsenter", "busctl")
    if not STAMP.is_file() or not (ROOTFS / "usr/lib/systemd/systemd").is_file():
        cannot(
            f"the bookworm tree is not built ({STAMP} is missing): run {PREPARE} (as root) first"
        )

    start = time.monotonic()
    sweep_stale_containers()
    machine = f"{MACHINE_PREFIX}{os.getpid()}"
    work = tmp_path_factory.mktemp("nspawn")
    log = work / "console.log"
    nspawn_run = Path("/run/systemd/nspawn")

    copy: Path | None = None
    cgroups: list[Path] = []
    nspawn: subprocess.Popen[bytes] | None = None
    container: Container | None = None
    try:
        if overlay_supported():
            root_args = ["--directory", str(ROOTFS), "--volatile=overlay"]
        else:  # no overlayfs in this kernel: boot a throwaway copy instead (~6-10 s)
            copy = Path(tempfile.mkdtemp(prefix="pymgmt-nspawn-", dir="/var/tmp"))
            run(["cp", "-a", "--reflink=auto", f"{ROOTFS}/.", str(copy)], timeout=600)
            root_args = ["--directory", str(copy)]
        binds = container_binds()
        argv = [
            "systemd-nspawn",
            *root_args,
            f"--machine={machine}",
            "--boot",
            "--private-network",
            "--register=no",  # there is no host systemd/machined to register with
            "--keep-unit",  # required: else nspawn asks the (absent) host systemd for a scope
            "--console=read-only",
            "--quiet",
            *(f"--bind-ro={b}" for b in binds),
        ]
        for parent in cgroup_parents():
            with contextlib.suppress(OSError):  # if refused, nspawn still works (shared cgroup)
                (parent / machine).mkdir()
                cgroups.append(parent / machine)
        join = "".join(f"echo $$ > {shlex.quote(str(cg / 'cgroup.procs'))} && " for cg in cgroups)
        with open(log, "wb") as out:
            nspawn = subprocess.Popen(
                ["sh", "-c", f'{join}exec "$@"', "sh", *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
            )
        proc = nspawn
        leader = poll(lambda: find_leader(proc), "the container's PID 1", why=lambda: tail(log))
        container = c = Container(machine, proc, leader, ROOTFS, log, binds)

        def booted() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"systemd-nspawn exited {proc.returncode} during boot\n{tail(log)}"
                )
            return c.system_state() in ("running", "degraded")

        poll(booted, "systemctl is-system-running = running/degraded", why=lambda: tail(log))

        # dbus.service is socket-activated: wait until the host reaches systemd through it.
        def systemd_on_bus() -> bool:
            return (
                c.busctl(
                    "get-property",
                    "org.freedesktop.systemd1",
                    "/org/freedesktop/systemd1",
                    "org.freedesktop.systemd1.Manager",
                    "Version",
                    check=False,
                ).returncode
                == 0
            )

        poll(
            systemd_on_bus, "org.freedesktop.systemd1 on the container's bus", why=lambda: tail(log)
        )
        _timed("nspawn_systemd start", start)
        yield container
    finally:
        start = time.monotonic()
        if nspawn is not None and nspawn.poll() is None:
            # SIGTERM makes nspawn send SIGRTMIN+3 to the container's systemd:
            # an orderly shutdown, like `systemctl poweroff` inside.
            nspawn.terminate()
            try:
                nspawn.wait(STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                # Killing nspawn alone would orphan the container: SIGKILL its
                # PID 1 (that takes the whole PID namespace down), then nspawn.
                if container is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(container.leader, signal.SIGKILL)
                nspawn.kill()
                nspawn.wait(STOP_DEADLINE)
        for cg in cgroups:
            remove_cgroup(cg)
        shutil.rmtree(nspawn_run / "propagate" / machine, ignore_errors=True)
        for d in (nspawn_run / "locks", nspawn_run / "propagate", nspawn_run):
            with contextlib.suppress(OSError):
                d.rmdir()  # only if empty: another container may be using it
        if copy is not None:
            shutil.rmtree(copy, ignore_errors=True)
        _timed("nspawn_systemd stop", start)


# -- report -----------------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        terminalreporter.write_sep("-", "system harness timings")
        for key, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{key}: {seconds:.3f} s")
