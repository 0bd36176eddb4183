"""hostname against a real systemd-hostnamed: the one in the nspawn container, bus-activated.

The agent runs on the host with DBUS_SYSTEM_BUS_ADDRESS pointing at the
container's system bus, so every name it sets is set by the container's
hostnamed, in the container's own UTS namespace and /etc: each test asserts
the host's hostname and /etc/hostname are what they were.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import checked, json_lines, recap_of, run_once, wait_for
from syshelpers import Container

pytestmark = [pytest.mark.slow, pytest.mark.system]

PRETTY = "Test box \u00fc #1"


def _host_identity() -> tuple[str, bytes]:
    return socket.gethostname(), Path("/etc/hostname").read_bytes()


def hostnamectl(c: Container, *args: str) -> None:
    """hostnamectl inside, on the container's own bus (not the address the agent is given)."""
    c.run("env", "-u", "DBUS_SYSTEM_BUS_ADDRESS", "hostnamectl", *args)


def _names(c: Container) -> dict[str, str]:
    """What hostnamed inside reports, and what the container's kernel says."""
    out = {}
    for prop in ("StaticHostname", "Hostname", "PrettyHostname"):
        got = c.busctl(
            "--json=short", "get-property", "org.freedesktop.hostname1",
            "/org/freedesktop/hostname1", "org.freedesktop.hostname1", prop,
        ).stdout  # fmt: skip
        out[prop] = json.loads(got)["data"]
    out["kernel"] = c.run("cat", "/proc/sys/kernel/hostname").stdout.strip()
    return out


@pytest.fixture
def container(nspawn_systemd: Container, monkeypatch: pytest.MonkeyPatch) -> Iterator[Container]:
    """The container, the agent's system bus pointed at it; its names restored after."""
    c = nspawn_systemd
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", c.bus_address)
    host_before = _host_identity()
    before = _names(c)
    yield c
    hostnamectl(c, "set-hostname", "--static", before["StaticHostname"])
    hostnamectl(c, "set-hostname", "--transient", before["kernel"])
    hostnamectl(c, "set-hostname", "--pretty", before["PrettyHostname"])
    assert _host_identity() == host_before, "the HOST's hostname was changed"


def _graph(path: Path, name: str, extra: str = "") -> Path:
    path.write_text(
        f"graph: hn\nresources:\n  hostname:\n  - name: {name}\n"
        f'    pretty_hostname: "{PRETTY}"\n{extra}'
    )
    return path


def test_first_run_sets_the_names_and_the_next_is_converged(tmp_path, container):
    name = f"pymgmt-{uuid.uuid4().hex[:8]}"
    first = run_once(_graph(tmp_path / "g.yaml", name), tmp_path / "p", "--json")
    assert first.returncode == 2, first.stdout + first.stderr
    changed = [e for e in json_lines(first.stdout) if checked("Hostname[" + name + "]")(e)]
    assert {c["field"] for c in changed[0]["changes"]} == {
        "static_hostname",
        "transient_hostname",
        "pretty_hostname",
    }
    assert _names(container) == {
        "StaticHostname": name,
        "Hostname": name,
        "PrettyHostname": PRETTY,
        "kernel": name,
    }
    assert container.run("cat", "/etc/hostname").stdout.strip() == name
    again = run_once(_graph(tmp_path / "g.yaml", name), tmp_path / "p", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert recap_of(again)["resources"][f"Hostname[{name}]"]["outcome"] == "unchanged"


def test_an_empty_name_is_left_alone(tmp_path, container):
    before = _names(container)
    name = f"pymgmt-{uuid.uuid4().hex[:8]}"
    g = _graph(tmp_path / "g.yaml", name, '    static_hostname: ""\n    transient_hostname: ""\n')
    done = run_once(g, tmp_path / "p", "--json")
    assert done.returncode == 2, done.stdout + done.stderr
    after = _names(container)
    assert after["PrettyHostname"] == PRETTY
    assert (after["StaticHostname"], after["kernel"]) == (
        before["StaticHostname"],
        before["kernel"],
    )


def test_a_change_from_outside_is_repaired_as_drift(tmp_path, container, agent):
    name = f"pymgmt-{uuid.uuid4().hex[:8]}"
    vertex = f"Hostname[{name}]"
    a = agent(_graph(tmp_path / "g.yaml", name))
    a.wait_event(checked(vertex, applied=True), what="the first apply")
    wait_for(lambda: _names(container)["StaticHostname"] == name, what="the name set")
    # hostnamed exits when idle: the signal must still come from the one
    # `hostnamectl` activates anew, so stop it first.
    container.systemctl("stop", "systemd-hostnamed.service")
    since = a.mark()
    hostnamectl(container, "set-hostname", "--static", "drifted")
    i = a.wait_event(checked(vertex, applied=True), since=since, what="the repair")
    assert a.events[i]["drift"], a.describe()
    assert "static_hostname" in [c["field"] for c in a.events[i]["changes"]]
    wait_for(lambda: _names(container)["StaticHostname"] == name, what="the name repaired")

    since = a.mark()
    hostnamectl(container, "set-hostname", "--pretty", "someone else's")
    a.wait_event(checked(vertex, applied=True, drift=True), since=since, what="the pretty repair")
    assert _names(container)["PrettyHostname"] == PRETTY
    assert a.stop() == 0


def test_a_transient_name_other_than_the_static_one_fails_clearly(tmp_path, container):
    # systemd-hostnamed (252 in bookworm) keeps the kernel's name at the static
    # one: the graph is warned about, and the run fails saying why, not loops.
    name = f"pymgmt-{uuid.uuid4().hex[:8]}"
    g = _graph(tmp_path / "g.yaml", name, "    transient_hostname: other-name\n")
    done = run_once(g, tmp_path / "p", "--json")
    assert "cannot converge" in done.stderr, done.stderr
    assert done.returncode == 4, done.stdout + done.stderr
    fails = [e for e in json_lines(done.stdout) if e["event"] == "failed"]
    assert "keeps it at the static hostname" in fails[0]["error"], fails
    assert _names(container)["kernel"] == name


def test_the_watch_recovers_when_the_bus_comes_back(tmp_path, container, monkeypatch, agent):
    link = tmp_path / "bus"
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={link}")
    name = f"pymgmt-{uuid.uuid4().hex[:8]}"
    vertex = f"Hostname[{name}]"
    a = agent(_graph(tmp_path / "g.yaml", name, "    meta: {retry: -1, delay: 100}\n"))
    a.wait_event(
        lambda e: e.get("event") == "failed" and e.get("retry_in") is not None,
        what="a failed watch that will retry",
    )
    os.symlink(container.bus_address.removeprefix("unix:path="), link)  # the bus is back
    a.wait_event(checked(vertex, applied=True), what="the names set after recovery")
    wait_for(lambda: _names(container)["StaticHostname"] == name, what="the name set")
    since = a.mark()  # and the signal is heard on the new connection
    hostnamectl(container, "set-hostname", "--pretty", "moved")
    a.wait_event(checked(vertex, applied=True, drift=True), since=since, what="the repair")
