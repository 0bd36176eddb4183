"""Smoke tests of the system-test harness: every fixture drives a real daemon.

The D-Bus client tests use dbus-fast (the library the pkg/svc resources will
use); they skip when it is not installed in the venv.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import run_async, wait_for
from syshelpers import (
    PK_NAME,
    POLKIT_NAME,
    ROOTFS,
    Container,
    SystemBus,
    bus_call,
    bus_property,
    proc_comm,
    run,
    stop_pid,
)

pytestmark = [pytest.mark.slow, pytest.mark.system]

needs_dbus_fast = pytest.mark.skipif(
    importlib.util.find_spec("dbus_fast") is None,
    reason="dbus-fast is not installed in this venv (pip install dbus-fast)",
)

SYSTEMD = "org.freedesktop.systemd1"
SYSTEMD_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"


def sleeper_unit(description: str = "pymgmt harness test") -> str:
    return (
        "[Unit]\n"
        f"Description={description}\n"
        "[Service]\n"
        "ExecStart=/bin/sleep infinity\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


@pytest.fixture
def unit(nspawn_systemd: Container) -> Iterator[str]:
    """A fresh `sleep infinity` service in the container; stopped and removed afterwards."""
    name = f"pymgmt-test-{uuid.uuid4().hex[:8]}.service"
    nspawn_systemd.write_unit(name, sleeper_unit())
    yield name
    nspawn_systemd.remove_unit(name)


# -- system bus and PackageKit -------------------------------------------------------


def test_system_bus_activates_packagekit_on_a_call(system_bus: SystemBus) -> None:
    """D-Bus activation on our bus: what the apt hook (and any first client) relies on."""
    already = system_bus.owner_pid(PK_NAME)  # the packagekit fixture's, if it ran first
    polkit_before = system_bus.owner_pid(POLKIT_NAME)
    if already is None:
        assert PK_NAME not in system_bus.names()
    major = bus_property(
        system_bus.address, PK_NAME, "/org/freedesktop/PackageKit", PK_NAME, "VersionMajor"
    )
    assert major == 1
    assert PK_NAME in system_bus.names()
    owner = system_bus.owner_pid(PK_NAME)
    assert owner is not None
    assert proc_comm(owner) == "packagekitd"
    if already is None:
        # Activated daemons end up children of this pytest (a child subreaper):
        # stop them, or the leak check flags them. This packagekitd has the idle
        # timer anyway; the packagekit fixture starts its own.
        stop_pid(owner, "packagekitd")
        wait_for(lambda: system_bus.owner_pid(PK_NAME) is None, what="PackageKit to leave")
    polkitd = system_bus.owner_pid(POLKIT_NAME)  # packagekitd activates polkit as it starts
    if polkitd is not None and polkit_before is None:
        stop_pid(polkitd, "polkitd")


def test_packagekit_fixture_is_on_the_bus(system_bus: SystemBus, packagekit: str) -> None:
    assert packagekit == system_bus.address
    assert PK_NAME in system_bus.names()
    owner = system_bus.owner_pid(PK_NAME)
    assert owner is not None
    assert proc_comm(owner) == "packagekitd"
    # packagekitd --disable-timer: it stays, however idle
    assert "--disable-timer" in Path(f"/proc/{owner}/cmdline").read_text()


def test_the_system_bus_is_private_to_this_run(system_bus: SystemBus, packagekit: str) -> None:
    """Another job using (or stopping) the host's system bus cannot disturb these tests."""
    ours = Path(system_bus.address.removeprefix("unix:path="))
    host = Path("/run/dbus/system_bus_socket")
    assert ours != host
    assert not (host.exists() and host.samefile(ours))
    # packagekitd (it clears its environment) finds our bus at the standard path
    owner = system_bus.owner_pid(PK_NAME)
    assert owner is not None
    assert Path(f"/proc/{owner}/root/run/dbus/system_bus_socket").samefile(ours)


def test_polkit_is_bus_activated(system_bus: SystemBus, packagekit: str) -> None:
    """polkitd (bus-activated while the packagekit fixture started) answers on the bus."""
    backend = bus_property(
        system_bus.address,
        POLKIT_NAME,
        "/org/freedesktop/PolicyKit1/Authority",
        "org.freedesktop.PolicyKit1.Authority",
        "BackendName",
    )
    assert isinstance(backend, str) and backend
    assert POLKIT_NAME in system_bus.names()
    owner = system_bus.owner_pid(POLKIT_NAME)
    assert owner is not None
    assert proc_comm(owner) == "polkitd"


def test_packagekit_resolves_a_package_with_pkcon(packagekit: str) -> None:
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": packagekit}
    out = run(["pkcon", "--plain", "resolve", "sl"], env=env, timeout=120).stdout
    assert re.search(r"^(Installed|Available)\s+sl-\S+", out, re.M), out


@needs_dbus_fast
def test_packagekit_resolves_a_package_over_dbus(packagekit: str) -> None:
    from dbus_fast.aio import MessageBus

    async def resolve() -> tuple[list[tuple[int, str]], int]:
        bus = await MessageBus(bus_address=packagekit).connect()
        try:
            pk_intro = await bus.introspect(PK_NAME, "/org/freedesktop/PackageKit")
            pk = bus.get_proxy_object(PK_NAME, "/org/freedesktop/PackageKit", pk_intro)
            tid = await pk.get_interface(PK_NAME).call_create_transaction()
            intro = await bus.introspect(PK_NAME, tid)
            tx = bus.get_proxy_object(PK_NAME, tid, intro).get_interface(
                "org.freedesktop.PackageKit.Transaction"
            )
            packages: list[tuple[int, str]] = []
            finished: asyncio.Future[int] = asyncio.get_running_loop().create_future()

            def on_error(code: int, details: str) -> None:
                if not finished.done():
                    finished.set_exception(AssertionError(f"PackageKit error {code}: {details}"))

            def on_finished(exit_code: int, runtime_ms: int) -> None:
                if not finished.done():
                    finished.set_result(exit_code)

            tx.on_package(lambda info, pkg_id, summary: packages.append((info, pkg_id)))
            tx.on_error_code(on_error)
            tx.on_finished(on_finished)
            await tx.call_resolve(1 << 1, ["sl"])  # filter: none
            return packages, await finished
        finally:
            bus.disconnect()
            await bus.wait_for_disconnect()

    packages, exit_code = run_async(resolve(), timeout=120)
    assert exit_code == 1  # PK_EXIT_ENUM_SUCCESS
    assert any(pkg_id.startswith("sl;") for _, pkg_id in packages), packages
    # info 1 = installed, 2 = available
    assert {i for i, pkg_id in packages if pkg_id.startswith("sl;")} <= {1, 2}


# -- systemd in nspawn -------------------------------------------------------------------


def test_container_booted_systemd_with_its_own_root(nspawn_systemd: Container) -> None:
    c = nspawn_systemd
    assert c.system_state() in ("running", "degraded")
    assert c.run("systemd-detect-virt").stdout.strip() == "systemd-nspawn"
    # The host reaches the container's systemd through the container's bus.
    assert (
        bus_property(c.bus_address, SYSTEMD, SYSTEMD_PATH, MANAGER, "Virtualization")
        == "systemd-nspawn"
    )
    assert bus_property(c.bus_address, SYSTEMD, SYSTEMD_PATH, MANAGER, "Version").startswith("252")
    assert c.bus_socket.is_socket()
    assert (c.root / "run/systemd/system").is_dir()  # sd_booted() inside
    # The container has a root of its own: a file in its /tmp is not the host's.
    marker = f"pymgmt-harness-{uuid.uuid4().hex}"
    c.run("touch", f"/tmp/{marker}")
    assert (c.root / "tmp" / marker).exists()
    assert not (Path("/tmp") / marker).exists()


def test_container_unit_start_stop_from_the_host(nspawn_systemd: Container, unit: str) -> None:
    c = nspawn_systemd
    # The unit file went into the container's overlay, never into the cached tree.
    assert (c.root / "etc/systemd/system" / unit).is_file()
    assert not (ROOTFS / "etc/systemd/system" / unit).exists()
    assert c.unit_state(unit) == ("inactive", "dead")

    addr = c.bus_address  # the container's system bus, from the host
    job = bus_call(addr, SYSTEMD, SYSTEMD_PATH, MANAGER, "StartUnit", "ss", unit, "replace")
    assert job.startswith("/org/freedesktop/systemd1/job/")
    assert c.wait_unit_state(unit, "active") == ("active", "running")
    main_pid = int(c.systemctl("show", "-p", "MainPID", "--value", unit).stdout)
    assert main_pid > 0
    assert c.run("cat", f"/proc/{main_pid}/comm").stdout.strip() == "sleep"

    # EnableUnitFiles(files, runtime=false, force=true) -> (carries_install_info, changes)
    _, changes = bus_call(
        addr, SYSTEMD, SYSTEMD_PATH, MANAGER, "EnableUnitFiles", "asbb", "1", unit, "false", "true"
    )
    assert any(kind == "symlink" and dest.endswith(unit) for kind, _, dest in changes), changes
    assert c.systemctl("is-enabled", unit).stdout.strip() == "enabled"

    bus_call(addr, SYSTEMD, SYSTEMD_PATH, MANAGER, "StopUnit", "ss", unit, "replace")
    assert c.wait_unit_state(unit, "inactive") == ("inactive", "dead")
    bus_call(addr, SYSTEMD, SYSTEMD_PATH, MANAGER, "DisableUnitFiles", "asb", "1", unit, "false")
    assert c.systemctl("is-enabled", unit, check=False).stdout.strip() == "disabled"


@needs_dbus_fast
def test_container_unit_state_changes_arrive_as_signals(
    nspawn_systemd: Container, unit: str
) -> None:
    """What the svc resource will do: dbus-fast on the host, signals from the container."""
    from dbus_fast.aio import MessageBus

    async def start_stop() -> dict[str, list[Any]]:
        bus = await MessageBus(bus_address=nspawn_systemd.bus_address).connect()
        try:
            intro = await bus.introspect(SYSTEMD, SYSTEMD_PATH)
            mgr = bus.get_proxy_object(SYSTEMD, SYSTEMD_PATH, intro).get_interface(MANAGER)
            await mgr.call_subscribe()
            path = await mgr.call_load_unit(unit)
            uintro = await bus.introspect(SYSTEMD, path)
            props = bus.get_proxy_object(SYSTEMD, path, uintro).get_interface(
                "org.freedesktop.DBus.Properties"
            )
            states: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
            jobs: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

            def on_changed(iface: str, changed: dict[str, Any], invalidated: list[str]) -> None:
                if "ActiveState" in changed:
                    sub = changed["SubState"].value if "SubState" in changed else ""
                    states.put_nowait((changed["ActiveState"].value, sub))

            props.on_properties_changed(on_changed)
            mgr.on_job_removed(lambda _id, _job, u, result: jobs.put_nowait((u, result)))

            async def until(q: asyncio.Queue[tuple[str, str]], want: tuple[str, str]) -> list[Any]:
                seen = []
                while (item := await q.get()) != want:
                    seen.append(item)
                return [*seen, item]

            out: dict[str, list[Any]] = {}
            t0 = time.monotonic()
            await mgr.call_start_unit(unit, "replace")
            out["start"] = await until(states, ("active", "running"))
            out["start_job"] = await until(jobs, (unit, "done"))
            out["start_s"] = [time.monotonic() - t0]
            t0 = time.monotonic()
            await mgr.call_stop_unit(unit, "replace")
            out["stop"] = await until(states, ("inactive", "dead"))
            out["stop_job"] = await until(jobs, (unit, "done"))
            out["stop_s"] = [time.monotonic() - t0]
            await mgr.call_unsubscribe()
            return out
        finally:
            bus.disconnect()
            await bus.wait_for_disconnect()

    seen = run_async(start_stop(), timeout=60)
    assert seen["start"][-1] == ("active", "running")
    assert seen["stop"][-1] == ("inactive", "dead")
    assert nspawn_systemd.unit_state(unit) == ("inactive", "dead")


def test_container_runs_this_python_and_pymgmt_inside(nspawn_systemd: Container) -> None:
    """The nsenter way: the repo and venv are bound read-only at their host paths."""
    code = (
        "import json, os, sys, pymgmt; "
        "print(json.dumps([sys.prefix, pymgmt.__file__, os.path.exists('/run/systemd/system')]))"
    )
    out = run(nspawn_systemd.python_argv("-c", code), timeout=60).stdout
    prefix, module, booted = json.loads(out)
    assert module.startswith(str(Path(__file__).resolve().parents[2]))
    assert booted is True
    write = subprocess.run(
        nspawn_systemd.argv("touch", f"{prefix}/pymgmt-harness-probe"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert write.returncode != 0  # read-only bind: the container cannot touch the venv
