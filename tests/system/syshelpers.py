"""Helpers for the system tests (tests/system): D-Bus calls, processes, the nspawn container.

The fixtures that use them are in conftest.py beside this file. Import what a
test needs from here (`from syshelpers import Container, bus_call`): pytest puts
this directory on sys.path.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

#: the cache `scripts/system/prepare` fills (PYMGMT_TEST_CACHE overrides it)
CACHE = Path(os.environ.get("PYMGMT_TEST_CACHE", "/var/cache/pymgmt-tests"))
ROOTFS = CACHE / "rootfs-bookworm"
#: written by prepare once the tree is complete; a tree without it is never used
STAMP = CACHE / "rootfs-bookworm.complete"
REPO = Path(__file__).resolve().parents[2]
PREPARE = "scripts/system/prepare"

#: the nspawn fixture's machine and cgroup names: MACHINE_PREFIX + the pytest PID
MACHINE_PREFIX = "pymgmt-test-"
#: where the services a system bus can activate are described (PackageKit, polkit)
SYSTEM_SERVICES = "/usr/share/dbus-1/system-services"
PACKAGEKITD = "/usr/libexec/packagekitd"
PK_NAME = "org.freedesktop.PackageKit"
POLKIT_NAME = "org.freedesktop.PolicyKit1"

#: Deadlines bound a hang on a loaded 2-core CI box; they never assert speed.
START_DEADLINE = 60.0
STOP_DEADLINE = 30.0

#: what each fixture cost, printed at the end of the run (pytest_terminal_summary)
TIMINGS: dict[str, float] = {}


# -- small tools ------------------------------------------------------------------


def cannot(reason: str) -> None:
    """This machine cannot run the system tests: skip, or fail under CI."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"system tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def poll(
    probe: Callable[[], T | None],
    what: str,
    timeout: float = START_DEADLINE,
    why: Callable[[], str] | None = None,
) -> T:
    """Call `probe` until it returns something truthy; raise after `timeout` s.

    `why` adds context (say, a daemon's log) to the failure message.
    """
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{why()}" if why else ""
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}{extra}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def run(
    argv: list[str], *, check: bool = True, timeout: float = 60.0, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion (always waited for), capturing its output."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(argv)} exited {proc.returncode}\n"
            f"stdout: {proc.stdout.strip()}\nstderr: {proc.stderr.strip()}"
        )
    return proc


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} unreadable)"
    return f"--- last lines of {path}:\n" + "\n".join(text.splitlines()[-lines:])


def proc_state(pid: int) -> str | None:
    """The process's state letter (R, S, Z, ...), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def proc_comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def stop_pid(pid: int, comm: str | None = None, timeout: float = STOP_DEADLINE) -> None:
    """SIGTERM `pid`, wait until it is gone, SIGKILL at the deadline.

    `comm` guards against a recycled PID: a process of another name is left
    alone. A process that is our child (this pytest process is a child
    subreaper, so daemons that forked away are re-parented to it) is reaped; a
    zombie that belongs to another parent counts as gone.
    """
    if comm is not None and proc_comm(pid) not in (comm, None):
        return
    sig = signal.SIGTERM
    deadline = time.monotonic() + timeout
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    delay = 0.002
    while True:
        with contextlib.suppress(ChildProcessError):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
        state = proc_state(pid)
        if state is None:
            return
        if state == "Z":
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return  # someone else's zombie: dead, its parent reaps it
            continue
        if time.monotonic() >= deadline:
            if sig == signal.SIGKILL:
                raise RuntimeError(f"pid {pid} ({proc_comm(pid)}) survived SIGKILL")
            sig = signal.SIGKILL
            deadline = time.monotonic() + timeout
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def stop_popen(proc: subprocess.Popen[Any], timeout: float = STOP_DEADLINE) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def busctl(
    address: str, *args: str, check: bool = True, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """`busctl --address=ADDRESS ARGS...` (systemd's D-Bus client)."""
    return run(["busctl", f"--address={address}", *args], check=check, timeout=timeout)


def bus_call(address: str, dest: str, path: str, iface: str, method: str, *sig_args: str) -> Any:
    """Call a D-Bus method with busctl; return the decoded reply body (None if empty)."""
    out = busctl(address, "--json=short", "call", dest, path, iface, method, *sig_args).stdout
    if not out.strip():
        return None
    data = json.loads(out)["data"]
    return data[0] if len(data) == 1 else data


def bus_property(address: str, dest: str, path: str, iface: str, prop: str) -> Any:
    out = busctl(address, "--json=short", "get-property", dest, path, iface, prop).stdout
    return json.loads(out)["data"]


def bus_answers(address: str) -> bool:
    """Does a message bus answer at `address` (Hello + GetId)?"""
    return (
        busctl(
            address,
            "call",
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "GetId",
            check=False,
            timeout=10,
        ).returncode
        == 0
    )


def name_owner_pid(address: str, name: str) -> int | None:
    """PID of the process owning `name` on the bus, or None when nobody owns it."""
    proc = busctl(
        address,
        "--json=short",
        "call",
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "GetConnectionUnixProcessID",
        "s",
        name,
        check=False,
        timeout=10,
    )
    if proc.returncode != 0:
        return None
    pid = int(json.loads(proc.stdout)["data"][0])
    return pid or None


# -- the system bus ----------------------------------------------------------------

#: the standard directory of the system bus socket (system_bus_socket)
RUN_DBUS = "/run/dbus"


def with_run_dbus(directory: Path) -> list[str]:
    """argv prefix: run a command in a mount namespace of its own where /run/dbus is `directory`.

    packagekitd calls clearenv() as it starts, so DBUS_SYSTEM_BUS_ADDRESS
    cannot point it at a private bus: it (and the daemons and apt hooks it
    runs) must find that bus at the standard path instead. The host's /run/dbus
    is untouched (the mount is private to the namespace). `unshare` and `sh`
    exec, so the command keeps the PID of the process started with this.
    """
    Path(RUN_DBUS).mkdir(parents=True, exist_ok=True)  # a mount point must exist
    script = 'mount --bind "$0" ' + RUN_DBUS + ' && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(directory)]


@dataclass
class SystemBus:
    address: str
    #: the private dbus-daemon this pytest run started
    pid: int
    #: the directory of its socket: /run/dbus for the daemons it activates
    run_dir: Path

    def names(self) -> list[str]:
        """org.freedesktop.DBus.ListNames."""
        return list(
            bus_call(
                self.address,
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "ListNames",
            )
        )

    def owner_pid(self, name: str) -> int | None:
        return name_owner_pid(self.address, name)

    def busctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return busctl(self.address, *args, check=check)


# -- systemd in systemd-nspawn ----------------------------------------------------------------


def cgroup_parents() -> list[Path]:
    """Our own cgroup in each hierarchy systemd-nspawn uses (cgroup2, name=systemd v1).

    nspawn --keep-unit makes `payload/` and `supervisor/` sub-cgroups in the
    cgroup it starts in; starting it in a cgroup of its own keeps concurrent
    containers apart and lets us remove everything afterwards.
    """
    own: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        own[controllers] = path
    parents = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, mnt, fstype, opts, *_ = line.split()
        if fstype == "cgroup2" and "" in own:
            parents.append(Path(mnt + own[""]))
        elif fstype == "cgroup" and "name=systemd" in opts.split(",") and "name=systemd" in own:
            parents.append(Path(mnt + own["name=systemd"]))
    return parents


def remove_cgroup(top: Path, timeout: float = STOP_DEADLINE) -> None:
    """rmdir a cgroup tree bottom-up, SIGKILLing anything still in it."""
    deadline = time.monotonic() + timeout
    while top.exists():
        dirs = sorted(
            (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        )
        for d in [*dirs, top]:
            with contextlib.suppress(OSError):
                for pid in (d / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
            with contextlib.suppress(OSError):
                d.rmdir()
        if top.exists():
            if time.monotonic() >= deadline:
                raise RuntimeError(f"cgroup {top} could not be removed")
            time.sleep(0.02)


def sweep_stale_containers() -> list[str]:
    """Remove what harness runs that died left behind: their containers and cgroups.

    The nspawn fixture names its machine and cgroups `pymgmt-test-<pytest PID>`;
    one whose pytest is gone is stale: every process in its cgroups is
    SIGKILLed (the container's PID 1 takes its PID namespace down with it).
    """
    swept: list[str] = []
    stale = [
        d
        for parent in cgroup_parents()
        for d in parent.glob(f"{MACHINE_PREFIX}*")
        if d.name.removeprefix(MACHINE_PREFIX).isdigit()
        and proc_state(int(d.name.removeprefix(MACHINE_PREFIX))) in (None, "Z")
    ]
    for d in stale:
        remove_cgroup(d)
        swept.append(str(d))
    propagate = Path("/run/systemd/nspawn/propagate")
    for d in propagate.glob(f"{MACHINE_PREFIX}*") if propagate.is_dir() else []:
        pid = d.name.removeprefix(MACHINE_PREFIX)
        if pid.isdigit() and proc_state(int(pid)) in (None, "Z"):
            shutil.rmtree(d, ignore_errors=True)
            swept.append(str(d))
    return swept


@dataclass
class Container:
    """A booted systemd (PID 1) in systemd-nspawn, with its own system bus."""

    machine: str
    #: the systemd-nspawn process (our child)
    nspawn: subprocess.Popen[bytes]
    #: the container's PID 1 (systemd), as a host PID
    leader: int
    #: the cached tree the container's root overlays (read-only: never write it)
    image: Path
    log: Path
    #: host paths bound read-only at the same path inside (the repo, the venv, its Python)
    binds: list[Path] = field(default_factory=list)

    @property
    def root(self) -> Path:
        """The container's / as the host sees it (overlay and /run tmpfs included).

        Writes here land in the container's tmpfs overlay, not in `image`.
        """
        return Path(f"/proc/{self.leader}/root")

    @property
    def bus_socket(self) -> Path:
        """The container's system bus socket, reachable from the host.

        `image`/run/dbus/system_bus_socket does not exist: the container's /run
        is a tmpfs in its own mount namespace, reached through /proc/PID/root.
        """
        return self.root / "run/dbus/system_bus_socket"

    @property
    def bus_address(self) -> str:
        """D-Bus address of the container's system bus, for clients on the HOST.

        Root on the host is root in the container (no user namespace), so
        systemd authorises Start/Stop/Enable/Reload calls from the host. Set
        it as DBUS_SYSTEM_BUS_ADDRESS to point a host process (an agent) at
        the container's systemd.
        """
        return f"unix:path={self.bus_socket}"

    def env(self) -> dict[str, str]:
        """os.environ for a host process whose 'system bus' is the container's."""
        return {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.bus_address}

    def argv(self, *cmd: str) -> list[str]:
        """argv that runs `cmd` inside the container (all its namespaces and root)."""
        return ["nsenter", "-t", str(self.leader), "-a", *cmd]

    def python_argv(self, *args: str) -> list[str]:
        """argv that runs this test run's Python (the venv, pymgmt) inside the container.

        The repo, the venv and its base Python are bind-mounted read-only at
        their host paths; inside, the system bus is at its standard address.
        """
        return self.argv(sys.executable, *args)

    def run(
        self, *cmd: str, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return run(self.argv(*cmd), check=check, timeout=timeout)

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--no-pager", *args, check=check)

    def busctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Host busctl on the container's system bus."""
        return busctl(self.bus_address, *args, check=check)

    def unit_path(self, name: str) -> Path:
        return self.root / "etc/systemd/system" / name

    def write_unit(self, name: str, text: str, *, reload: bool = True) -> Path:
        """Write /etc/systemd/system/NAME inside the container, then daemon-reload."""
        path = self.unit_path(name)
        path.write_text(text)
        if reload:
            self.daemon_reload()
        return path

    def remove_unit(self, name: str, *, reload: bool = True) -> None:
        """Stop and disable the unit (if loaded), delete its file, daemon-reload."""
        self.systemctl("disable", "--now", name, check=False)
        with contextlib.suppress(FileNotFoundError):
            self.unit_path(name).unlink()
        if reload:
            self.daemon_reload()
        self.systemctl("reset-failed", name, check=False)

    def daemon_reload(self) -> None:
        self.systemctl("daemon-reload")

    def unit_state(self, name: str) -> tuple[str, str]:
        """(ActiveState, SubState) as systemctl reports them inside."""
        out = self.systemctl("show", "-p", "ActiveState", "-p", "SubState", name).stdout
        props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        return props["ActiveState"], props["SubState"]

    def wait_unit_state(self, name: str, active: str, timeout: float = 30.0) -> tuple[str, str]:
        """Poll until the unit's ActiveState is `active`; return (ActiveState, SubState)."""
        return poll(
            lambda: s if (s := self.unit_state(name))[0] == active else None,
            f"{name} to become {active}",
            timeout,
        )

    def system_state(self) -> str:
        proc = self.run("systemctl", "is-system-running", check=False, timeout=30)
        return proc.stdout.strip()


def container_binds() -> list[Path]:
    """Host directories a Python of this test run needs: the repo, the venv, its base Python."""
    wanted = sorted(
        {REPO, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()},
        key=lambda p: len(p.parts),
    )
    binds: list[Path] = []
    for p in wanted:
        # Never cover the container's own OS (a venv of /usr/bin/python3 lives in
        # /usr): such a Python would need python3 installed in the tree instead.
        if p == Path("/") or any(p.is_relative_to(d) for d in _OS_DIRS):
            continue
        if any(p.is_relative_to(b) for b in binds) or not p.is_dir():
            continue
        binds.append(p)
    return binds


_OS_DIRS = (
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/etc",
    "/boot",
    "/dev",
    "/proc",
    "/sys",
    "/run",
)


def find_leader(nspawn: subprocess.Popen[bytes]) -> int | None:
    """The container's PID 1: the child of nspawn that is PID 1 in its own PID namespace."""
    if nspawn.poll() is not None:
        raise RuntimeError(f"systemd-nspawn exited {nspawn.returncode} during boot")
    kids: list[str] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{nspawn.pid}/task").iterdir():
            with contextlib.suppress(OSError):
                kids += (task / "children").read_text().split()
    for kid in kids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{kid}/status").read_text().splitlines():
                if line.startswith("NSpid:") and line.split()[-1] == "1" and len(line.split()) > 2:
                    return int(kid)
    return None


def overlay_supported() -> bool:
    return any(
        line.split()[-1] == "overlay" for line in Path("/proc/filesystems").read_text().splitlines()
    )
