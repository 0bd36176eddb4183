"""Real daemons for the system tests: a D-Bus system bus, PackageKit, and systemd.

Session-scoped fixtures, each started at most once per pytest run and stopped
(by PID) at its end; every readiness wait polls a condition with a deadline.

* `system_bus`: a real `dbus-daemon`, configured as a system bus, private to
  this pytest run (its own config and socket, not the host's /run/dbus), so
  no other job on the machine can disturb it.
* `packagekit`: `/usr/libexec/packagekitd --disable-timer` on that bus (in a
  mount namespace where /run/dbus is the private bus's directory: packagekitd
  clears its environment, so DBUS_SYSTEM_BUS_ADDRESS cannot point it there);
  yields the bus address. At the
  end packagekitd and the polkitd it bus-activated are stopped too.
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
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import PrivateBus
from syshelpers import (
    MACHINE_PREFIX,
    PACKAGEKITD,
    PK_NAME,
    POLKIT_NAME,
    PREPARE,
    ROOTFS,
    RUN_DBUS,
    STAMP,
    STOP_DEADLINE,
    SYSTEM_SERVICES,
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
    with_run_dbus,
)


def _timed(key: str, start: float) -> None:
    TIMINGS[key] = time.monotonic() - start


def _require_root_and(*tools: str) -> None:
    if os.geteuid() != 0:
        cannot("the system tests start real daemons and need root")
    missing = [t for t in tools if not (shutil.which(t) or Path(t).is_file())]
    if missing:
        cannot(f"missing {', '.join(missing)}: run {PREPARE} (as root) first")


@pytest.fixture(scope="session")
def system_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SystemBus]:
    """A D-Bus system bus of this pytest run's own: a private dbus-daemon.

    It has its own config and socket (under the run's tmp directory), never
    the host's /run/dbus/system_bus_socket, so another job on this machine
    that uses, restarts or stops the host's system bus cannot disturb these
    tests, and several test runs can go on side by side. Services it
    bus-activates (PackageKit, polkit, from the standard system-services
    directory) run with DBUS_SYSTEM_BUS_ADDRESS pointing at it, so their
    "system bus" is this one too.
    """
    _require_root_and("dbus-daemon", "busctl", "unshare")
    start = time.monotonic()
    run_dbus = tmp_path_factory.mktemp("run-dbus")
    run_dbus.chmod(0o755)  # as the real /run/dbus: polkitd (not root) must reach it
    private = PrivateBus(
        run_dbus,
        bus_type="system",
        servicedirs=[SYSTEM_SERVICES],
        socket_name="system_bus_socket",
        # It and what it activates see the bus at the standard path; polkitd,
        # which drops root, could not reach a socket under pytest's 0700 tmp.
        wrapper=with_run_dbus(run_dbus),
        listen=f"{RUN_DBUS}/system_bus_socket",
        env={"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={RUN_DBUS}/system_bus_socket"},
    )
    bus = SystemBus(private.address, private.pid, run_dbus)
    try:
        poll(lambda: bus_answers(bus.address), "the private system bus to answer")
        _timed("system_bus start", start)
        yield bus
    finally:
        start = time.monotonic()
        # Daemons on our bus (bus-activated ones included): stop the bus first
        # so nothing new gets activated, then them.
        stragglers = [
            (p, proc_comm(p))
            for p in (bus.owner_pid(PK_NAME), bus.owner_pid(POLKIT_NAME))
            if p is not None
        ]
        private.stop()
        for p, comm in stragglers:
            stop_pid(p, comm)
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
            [*with_run_dbus(system_bus.run_dir), PACKAGEKITD, "--disable-timer"],
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


@pytest.fixture
def user_manager(nspawn_systemd: Container) -> Iterator[str]:
    """root's user manager inside the container; yields its bus address for the host."""
    c = nspawn_systemd
    c.systemctl("start", "user@0.service")
    bus = c.root / "run/user/0/bus"
    poll(bus.exists, "the user manager's bus")
    yield f"unix:path={bus}"
    c.systemctl("stop", "user@0.service", check=False)


# -- report -----------------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        terminalreporter.write_sep("-", "system harness timings")
        for key, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{key}: {seconds:.3f} s")
