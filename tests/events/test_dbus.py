"""The shared D-Bus hub against a real dbus-daemon of the test's own.

A hung service is a real process: a tiny D-Bus service (dbus-fast, in a
child Python) that owns a name and swallows every method call without ever
answering, exactly what a stuck systemd or PackageKit looks like to a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import DEADLINE, PrivateBus, json_lines, run_async, run_once

from pymgmt.errors import ResourceError
from pymgmt.events.dbus import DEFAULT_CALL_TIMEOUT, DBusHub

pytestmark = pytest.mark.skipif(shutil.which("dbus-daemon") is None, reason="needs dbus-daemon")

SILENT_SERVICE = """
import asyncio, sys
from dbus_fast import MessageType
from dbus_fast.aio import MessageBus

async def main():
    bus = await MessageBus(bus_address=sys.argv[1]).connect()
    # Claim every method call and never reply (no error either): a hung service.
    bus.add_message_handler(lambda m: m.message_type == MessageType.METHOD_CALL)
    await bus.request_name(sys.argv[2])
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[PrivateBus]:
    b = PrivateBus(tmp_path / "bus")
    yield b
    b.stop()


def silent_service(tmp_path: Path, bus: PrivateBus, name: str) -> subprocess.Popen[str]:
    """Start a service that owns `name` on `bus` and never answers; wait until it does."""
    script = tmp_path / "silent.py"
    script.write_text(SILENT_SERVICE)
    proc = subprocess.Popen(
        [sys.executable, str(script), bus.address, name],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture
def hung_systemd(tmp_path: Path, bus: PrivateBus) -> Iterator[PrivateBus]:
    """A bus on which org.freedesktop.systemd1 is owned by a service that never answers."""
    proc = silent_service(tmp_path, bus, "org.freedesktop.systemd1")
    yield bus
    proc.kill()
    proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()


def test_a_call_that_gets_no_reply_fails_naming_the_service_and_the_method(tmp_path, hung_systemd):
    async def call() -> str:
        hub = DBusHub(call_timeout=0.2)
        try:
            await hub.call(
                hung_systemd.address,
                "org.freedesktop.systemd1",
                "/org/freedesktop/systemd1",
                "org.freedesktop.systemd1.Manager",
                "Subscribe",
            )
        except ResourceError as e:
            return str(e)
        finally:
            await hub.close()
        raise AssertionError("the call returned")

    error = run_async(call(), timeout=DEADLINE)
    assert "org.freedesktop.systemd1 did not answer" in error
    assert "org.freedesktop.systemd1.Manager.Subscribe within 0.2 s" in error
    assert "PYMGMT_DBUS_TIMEOUT" in error


def test_the_call_timeout_defaults_to_25_s_and_is_configurable(monkeypatch):
    monkeypatch.delenv("PYMGMT_DBUS_TIMEOUT", raising=False)
    assert DBusHub().call_timeout == DEFAULT_CALL_TIMEOUT == 25.0
    monkeypatch.setenv("PYMGMT_DBUS_TIMEOUT", "2.5")
    assert DBusHub().call_timeout == 2.5
    for bad in ("soon", "0", "-1", "inf", "nan"):
        monkeypatch.setenv("PYMGMT_DBUS_TIMEOUT", bad)
        assert DBusHub().call_timeout == 25.0
    assert DBusHub(call_timeout=1).call_timeout == 1


def test_a_hung_systemd_fails_the_svc_resource_instead_of_hanging_the_run(
    tmp_path, hung_systemd, monkeypatch
):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", hung_systemd.address)
    monkeypatch.setenv("PYMGMT_DBUS_TIMEOUT", "0.5")
    g = tmp_path / "g.yaml"
    g.write_text("graph: g\nresources:\n  svc:\n  - name: app\n    state: running\n")
    proc = run_once(g, tmp_path / "p", "--json")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    (fail,) = [e for e in json_lines(proc.stdout) if e["event"] == "failed"]
    assert fail["vertex"] == "Svc[app]"
    assert (
        "org.freedesktop.systemd1 did not answer org.freedesktop.systemd1.Manager."
        in (fail["error"])
    )
    assert "Traceback" not in proc.stderr


def test_a_hung_systemd_is_a_failure_the_retry_metaparams_retry(
    tmp_path, hung_systemd, monkeypatch, agent
):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", hung_systemd.address)
    monkeypatch.setenv("PYMGMT_DBUS_TIMEOUT", "0.2")
    g = tmp_path / "g.yaml"
    g.write_text(
        "graph: g\nresources:\n  svc:\n  - name: app\n    state: running\n"
        "    meta: {retry: -1, delay: 50}\n"
    )
    a = agent(g)
    first = a.wait_event(
        lambda e: e.get("event") == "failed" and e.get("retry_in") is not None,
        what="a D-Bus timeout that will be retried",
    )
    assert "did not answer" in a.events[first]["error"]
    a.wait_event(
        lambda e: e.get("event") == "failed" and "did not answer" in e.get("error", ""),
        since=first + 1,
        what="the retry, timing out again",
    )


def test_cancelling_one_waiter_for_a_lost_bus_leaves_the_others_waiting(tmp_path):
    """Many svc watches share one connection; stopping one must not end the others."""
    bus = PrivateBus(tmp_path / "bus")

    async def scenario() -> None:
        hub = DBusHub(call_timeout=DEADLINE)
        try:
            one = asyncio.ensure_future(hub.wait_lost(bus.address))
            other = asyncio.ensure_future(hub.wait_lost(bus.address))
            await asyncio.sleep(0)  # both are waiting now
            await hub.bus(bus.address)
            one.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await one
            assert not other.done()
            bus.stop()  # the bus goes away: the remaining waiter hears it
            async with asyncio.timeout(DEADLINE):
                await other
        finally:
            await hub.close()

    try:
        run_async(scenario(), timeout=2 * DEADLINE)
    finally:
        bus.stop()
