"""svc against a real systemd (PID 1 of an nspawn container), driven from the host.

The agent runs on the host with DBUS_SYSTEM_BUS_ADDRESS pointing at the
container's system bus, exactly the code path of a real host.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import json_lines, run_once, wait_for
from syshelpers import Container

pytestmark = [pytest.mark.slow, pytest.mark.system]


def sleeper(description: str = "pymgmt svc test", exec_stop: str = "") -> str:
    stop = f"ExecStop={exec_stop}\n" if exec_stop else ""
    return (
        f"[Unit]\nDescription={description}\n"
        f"[Service]\nExecStart=/bin/sleep infinity\n{stop}"
        "[Install]\nWantedBy=multi-user.target\n"
    )


@pytest.fixture
def unit(nspawn_systemd: Container, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh stopped, disabled unit; the agent's D-Bus points at the container."""
    name = f"pymgmt-svc-{uuid.uuid4().hex[:8]}"
    nspawn_systemd.write_unit(f"{name}.service", sleeper())
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", nspawn_systemd.bus_address)
    yield name
    nspawn_systemd.remove_unit(f"{name}.service")


def _graph(
    path: Path, name: str, state: str = "running", startup: str = "enabled", extra: str = ""
) -> Path:
    path.write_text(
        f"graph: svc\nresources:\n  svc:\n  - name: {name}\n    state: {state}\n"
        f"    startup: {startup}\n{extra}"
    )
    return path


def _enabled(c: Container, unit: str) -> str:
    return c.systemctl("is-enabled", f"{unit}.service", check=False).stdout.strip()


def test_start_and_enable_then_converged(tmp_path, nspawn_systemd, unit):
    c = nspawn_systemd
    proc = run_once(_graph(tmp_path / "g.yaml", unit), tmp_path / "p", "--json")
    assert proc.returncode == 2, proc.stderr
    assert c.unit_state(f"{unit}.service") == ("active", "running")
    assert _enabled(c, unit) == "enabled"
    again = run_once(_graph(tmp_path / "g.yaml", unit), tmp_path / "p", "--json")
    assert again.returncode == 0, again.stderr


def test_two_services_in_one_graph_both_start(tmp_path, nspawn_systemd, unit):
    """Both watches subscribe to systemd on the agent's one connection (the second is told
    it already is: no failure)."""
    c = nspawn_systemd
    other = f"{unit}-b"
    c.write_unit(f"{other}.service", sleeper())
    try:
        g = tmp_path / "g.yaml"
        g.write_text(
            "graph: svc\nresources:\n  svc:\n"
            + "".join(f"  - name: {n}\n    state: running\n" for n in (unit, other))
        )
        proc = run_once(g, tmp_path / "p", "--json")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert not [e for e in json_lines(proc.stdout) if e["event"] == "failed"], proc.stdout
        assert c.unit_state(f"{other}.service") == ("active", "running")
    finally:
        c.systemctl("stop", f"{other}.service", check=False)
        c.remove_unit(f"{other}.service")


def test_stop_and_disable(tmp_path, nspawn_systemd, unit):
    c = nspawn_systemd
    c.systemctl("enable", "--now", f"{unit}.service")
    proc = run_once(_graph(tmp_path / "g.yaml", unit, "stopped", "disabled"), tmp_path / "p")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert c.unit_state(f"{unit}.service")[0] == "inactive"
    assert _enabled(c, unit) == "disabled"


def test_stopped_from_outside_is_started_again_by_the_signal(tmp_path, nspawn_systemd, unit, agent):
    c = nspawn_systemd
    # Its stop takes a while (ExecStop), so the agent hears "deactivating" while
    # the administrator's stop job still runs: it must let that job finish
    # (systemctl stop succeeds, no "Job canceled"), then start the unit again.
    c.write_unit(f"{unit}.service", sleeper(exec_stop="/bin/sleep 1"))
    a = agent(_graph(tmp_path / "g.yaml", unit))
    a.wait_event(lambda e: e.get("event") == "checked" and e.get("applied"), what="the start")
    since = a.mark()
    c.systemctl("stop", f"{unit}.service")  # fails (check=True) if the agent cancels its job
    i = a.wait_event(
        lambda e: e.get("event") == "checked" and e.get("drift"), since=since, what="the repair"
    )
    assert a.events[i]["changes"] == [
        {"field": "state", "old": "inactive", "new": "running", "diff": ""}
    ], "repaired before the administrator's stop job had finished"
    c.wait_unit_state(f"{unit}.service", "active")
    # disabling from outside is repaired too (UnitFilesChanged)
    since = a.mark()
    c.systemctl("disable", f"{unit}.service")
    a.wait_event(
        lambda e: e.get("event") == "checked" and e.get("drift"), since=since, what="the re-enable"
    )
    wait_for(lambda: _enabled(c, unit) == "enabled", what="the unit to be enabled again")


def test_a_refresh_restarts_the_service(tmp_path, nspawn_systemd, unit, agent):
    c = nspawn_systemd
    conf = tmp_path / "app.conf"
    extra = (
        f'  file:\n  - name: {conf}\n    content: "v1\\n"\n'
        f"edges:\n- name: conf\n  from: {{kind: file, name: {conf}}}\n"
        f"  to: {{kind: svc, name: {unit}}}\n  notify: true\n"
    )
    a = agent(_graph(tmp_path / "g.yaml", unit, extra=extra))
    a.wait_event(
        lambda e: e.get("event") == "checked" and e.get("vertex") == f"Svc[{unit}]",
        what="the service to be handled",
    )
    c.wait_unit_state(f"{unit}.service", "active")

    def main_pid() -> str:
        return c.systemctl("show", "-p", "MainPID", "--value", f"{unit}.service").stdout.strip()

    first = main_pid()
    since = a.mark()
    conf.write_text("tampered\n")  # the file is repaired, which notifies the service
    a.wait_event(
        lambda e: e.get("event") == "checked" and e.get("refreshed"),
        since=since,
        what="the refresh to reach the service",
    )
    wait_for(lambda: main_pid() not in ("0", first), what="a new main PID after the restart")


def test_an_unreachable_bus_fails_clearly(tmp_path, unit, monkeypatch):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    proc = run_once(_graph(tmp_path / "g.yaml", unit), tmp_path / "p", "--json")
    assert proc.returncode == 4
    fails = [e for e in json_lines(proc.stdout) if e["event"] == "failed"]
    assert fails and "cannot connect to D-Bus" in fails[0]["error"]


def test_the_watch_recovers_when_the_bus_comes_back(
    tmp_path, nspawn_systemd, unit, monkeypatch, agent
):
    link = tmp_path / "bus"
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={link}")
    retry = "    meta: {retry: -1, delay: 100}\n"
    a = agent(_graph(tmp_path / "g.yaml", unit, extra=retry))
    a.wait_event(
        lambda e: e.get("event") == "failed" and e.get("retry_in") is not None,
        what="a failed watch that will retry",
    )
    os.symlink(nspawn_systemd.bus_address.removeprefix("unix:path="), link)  # the bus is back
    a.wait_event(
        lambda e: e.get("event") == "checked" and e.get("applied"), what="the start after recovery"
    )
    nspawn_systemd.wait_unit_state(f"{unit}.service", "active")
