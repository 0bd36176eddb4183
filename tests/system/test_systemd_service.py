"""pymgmt as a real systemd service: systemd is PID 1 of an nspawn container.

`pymgmt install-service` runs inside the container (the repo, the venv and
its Python are bound there read-only), writes the unit and the
configuration into the container's /etc, and systemd runs the agent from
them: Type=notify start, watchdog, reload, the journal, stop.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from helpers import PYMGMT, write_atomic
from syshelpers import Container, poll

pytestmark = [pytest.mark.slow, pytest.mark.system]

UNIT = "pymgmt.service"


@pytest.fixture
def service(nspawn_systemd: Container) -> Iterator[Container]:
    """The unit installed in the container (not started); removed with its files after."""
    c = nspawn_systemd
    c.run(PYMGMT[0], "install-service", "--watchdog", "3")
    yield c
    c.systemctl("stop", UNIT, check=False)
    c.remove_unit(UNIT)
    for path in ("etc/pymgmt/pymgmt.yaml", "etc/pymgmt/graph.yaml", "srv/f", "srv/g"):
        (c.root / path).unlink(missing_ok=True)
    c.run("rm", "-rf", "/var/lib/pymgmt", check=False)


def show(c: Container, *props: str) -> dict[str, str]:
    out = c.systemctl("show", *(f"-p{p}" for p in props), UNIT).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def journal(c: Container) -> list[dict[str, str]]:
    out = c.run("journalctl", "-u", UNIT, "-o", "json", "--no-pager", check=False).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def logged(c: Container, text: str) -> dict[str, str] | None:
    """The journal entry of the agent whose message contains `text` (None: not yet)."""
    for entry in journal(c):
        if entry.get("SYSLOG_IDENTIFIER") == "pymgmt" and text in str(entry.get("MESSAGE")):
            return entry
    return None


def messages(c: Container) -> str:
    """The unit's journal, for a failure message."""
    return c.run("journalctl", "-u", UNIT, "--no-pager", "-n", "60", check=False).stdout


def file_graph(*names: str) -> str:
    files = "".join(f'  - name: /srv/{n}\n    content: "managed {n}\\n"\n' for n in names)
    return f"graph: site\nresources:\n  file:\n{files}"


def test_the_service_starts_when_ready_pings_the_watchdog_reloads_logs_and_stops(service):
    c = service
    etc = c.root / "etc/pymgmt"
    # --no-watch: only a reload (SIGHUP) makes the agent read its graph again
    (etc / "pymgmt.yaml").write_text("graph: /etc/pymgmt/graph.yaml\nno-watch: true\n")
    (etc / "graph.yaml").write_text(file_graph("f"))

    # Type=notify: `systemctl start` returns once the agent said READY=1
    c.systemctl("start", UNIT)
    state = show(c, "ActiveState", "SubState", "StatusText", "MainPID", "WatchdogUSec")
    assert (state["ActiveState"], state["SubState"]) == ("active", "running"), state
    assert state["WatchdogUSec"] == "3s"
    status = c.systemctl("status", "--no-pager", UNIT, check=False).stdout
    assert "Active: active (running)" in status, status
    poll(lambda: (c.root / "srv/f").is_file(), "the service's first apply")
    poll(lambda: logged(c, "Converged: all 1 resources"), "the converged line in the journal")

    # WATCHDOG=1 keeps coming: systemd records each ping
    first = show(c, "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"]
    poll(
        lambda: show(c, "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"] != first,
        "a new watchdog ping",
    )

    # drift is repaired by the service
    write_atomic(c.root / "srv/f", "drift\n")
    poll(
        lambda: (c.root / "srv/f").read_text() == "managed f\n",
        "the drift repair",
        why=lambda: messages(c),
    )

    # reload: the graph again (a new file), the configuration again (sema: a restart's)
    (etc / "graph.yaml").write_text(file_graph("f", "g"))
    (etc / "pymgmt.yaml").write_text("graph: /etc/pymgmt/graph.yaml\nno-watch: true\nsema: 2\n")
    c.systemctl("reload", UNIT)
    poll(
        lambda: (c.root / "srv/g").is_file(),
        "the reloaded graph's new file",
        why=lambda: messages(c),
    )
    warning = poll(lambda: logged(c, "--sema (0 -> 2) changed"), "the reload's warning")
    assert show(c, "ActiveState", "MainPID") == {
        "ActiveState": "active",
        "MainPID": state["MainPID"],
    }
    # the journal keeps the agent's lines with their priority (syslog: 4 warning, 6 info)
    assert warning["PRIORITY"] == "4", warning
    info = poll(lambda: logged(c, "SIGHUP: reading /etc/pymgmt/pymgmt.yaml"), "the reload's line")
    assert info["PRIORITY"] == "6", info

    c.systemctl("stop", UNIT)
    after = show(c, "ActiveState", "Result", "ExecMainStatus")
    assert after == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}
    assert logged(c, "Recap of graph 'site'")


def test_pymgmt_run_reads_the_default_configuration_file(service):
    """/etc/pymgmt/pymgmt.yaml is read with no --config (the container's /etc, not the host's)."""
    c = service
    (c.root / "etc/pymgmt/graph.yaml").write_text(file_graph("f"))
    (c.root / "etc/pymgmt/pymgmt.yaml").write_text(
        "graph: /etc/pymgmt/graph.yaml\nconverged-timeout: 0\nprefix: /var/lib/pymgmt-once\n"
    )
    proc = c.run(PYMGMT[0], "run", check=False)
    assert proc.returncode == 2, proc.stderr  # converged, having written /srv/f
    assert (c.root / "srv/f").read_text() == "managed f\n"
    proc = c.run(PYMGMT[0], "run", "--no-config", check=False)
    assert proc.returncode == 1 and "a graph file is required" in proc.stderr
