"""cron against a real systemd (PID 1 of an nspawn container), driven from the host.

The agent runs on the host with DBUS_SYSTEM_BUS_ADDRESS at the container's
system bus and PYMGMT_SYSTEMD_ROOT at the container's / (``/proc/PID/root``),
so the timer file lands in the container's /etc/systemd/system, never the
host's.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import json_lines, recap_of, run_once, wait_for, write_atomic
from syshelpers import Container

from pymgmt.resources.systemd import SYSTEMD_ROOT_ENV

pytestmark = [pytest.mark.slow, pytest.mark.system]


@pytest.fixture
def job(nspawn_systemd: Container, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh oneshot service NAME.service that appends a line to /var/tmp/NAME.ran."""
    c = nspawn_systemd
    name = f"pymgmt-cron-{uuid.uuid4().hex[:8]}"
    c.write_unit(
        f"{name}.service",
        f"[Unit]\nDescription=pymgmt cron test\n[Service]\nType=oneshot\n"
        f"ExecStart=/bin/sh -c 'echo ran >> /var/tmp/{name}.ran'\n",
    )
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", c.bus_address)
    monkeypatch.setenv(SYSTEMD_ROOT_ENV, str(c.root))
    yield name
    c.remove_unit(f"{name}.timer")
    c.remove_unit(f"{name}.service")
    (c.root / f"var/tmp/{name}.ran").unlink(missing_ok=True)


def _graph(path: Path, name: str, trigger: str, time: str, extra: str = "") -> Path:
    path.write_text(
        f"graph: cron\nresources:\n  cron:\n  - name: {name}\n    trigger: {trigger}\n"
        f'    time: "{time}"\n{extra}'
    )
    return path


def _enabled(c: Container, unit: str) -> str:
    return c.systemctl("is-enabled", unit, check=False).stdout.strip()


def _load_state(c: Container, unit: str) -> str:
    return c.systemctl("show", "-p", "LoadState", "--value", unit).stdout.strip()


def test_first_apply_writes_enables_and_starts_then_converged(tmp_path, nspawn_systemd, job):
    c = nspawn_systemd
    graph = _graph(tmp_path / "g.yaml", job, "OnCalendar", "*-*-* 03:00:00")
    proc = run_once(graph, tmp_path / "p", "--json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    timer = f"{job}.timer"
    text = c.unit_path(timer).read_text()
    assert "OnCalendar=*-*-* 03:00:00\n" in text and f"Unit={job}.service\n" in text
    assert c.unit_state(timer)[0] == "active"
    assert _enabled(c, timer) == "enabled"
    assert not (Path("/etc/systemd/system") / timer).exists(), "wrote the host's unit dir"
    again = run_once(graph, tmp_path / "p", "--json")
    assert again.returncode == 0, again.stdout + again.stderr


def test_stop_disable_and_edit_from_outside_are_repaired(tmp_path, nspawn_systemd, job, agent):
    c = nspawn_systemd
    timer = f"{job}.timer"
    a = agent(_graph(tmp_path / "g.yaml", job, "OnCalendar", "daily"))
    a.wait_event(lambda e: e.get("event") == "checked" and e.get("applied"), what="the apply")
    c.wait_unit_state(timer, "active")
    written = c.unit_path(timer).read_text()

    def repaired(since: int, what: str) -> dict[str, object]:
        i = a.wait_event(
            lambda e: e.get("event") == "checked" and e.get("drift"), since=since, what=what
        )
        return a.events[i]

    since = a.mark()
    c.systemctl("stop", timer)
    ev = repaired(since, "the restart of the stopped timer")
    assert {"field": "state", "old": "inactive", "new": "active", "diff": ""} in ev["changes"]
    c.wait_unit_state(timer, "active")

    since = a.mark()
    c.systemctl("disable", timer)
    repaired(since, "the re-enable")
    wait_for(lambda: _enabled(c, timer) == "enabled", what="the timer enabled again")

    since = a.mark()
    write_atomic(c.unit_path(timer), written.replace("OnCalendar=daily", "OnCalendar=weekly"))
    repaired(since, "the edited file put back")

    def daily_loaded() -> bool:
        loaded = c.systemctl("show", "-p", "TimersCalendar", "--value", timer).stdout
        return c.unit_path(timer).read_text() == written and "*-*-* 00:00:00" in loaded

    wait_for(daily_loaded, what="the file restored and systemd running it again")
    assert c.unit_state(timer)[0] == "active"


def test_absent_stops_disables_and_removes(tmp_path, nspawn_systemd, job):
    c = nspawn_systemd
    timer = f"{job}.timer"
    graph = _graph(tmp_path / "g.yaml", job, "OnCalendar", "daily")
    assert run_once(graph, tmp_path / "p").returncode == 2
    c.wait_unit_state(timer, "active")
    absent = _graph(tmp_path / "g.yaml", job, "OnCalendar", "daily", "    state: absent\n")
    proc = run_once(absent, tmp_path / "p", "--json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert not c.unit_path(timer).exists()
    assert c.unit_state(timer)[0] == "inactive"
    assert _load_state(c, timer) == "not-found"
    assert not (c.root / "etc/systemd/system/timers.target.wants" / timer).exists()
    again = run_once(absent, tmp_path / "p", "--json")
    assert again.returncode == 0, again.stdout + again.stderr


def test_an_on_active_sec_timer_really_runs_its_service(tmp_path, nspawn_systemd, job):
    c = nspawn_systemd
    graph = _graph(tmp_path / "g.yaml", job, "OnActiveSec", "1s", "    accuracy_sec: 1ms\n")
    proc = run_once(graph, tmp_path / "p", "--json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    ran = c.root / f"var/tmp/{job}.ran"
    wait_for(lambda: ran.exists() and ran.read_text() == "ran\n", 30, "the service's run")
    # elapsed, it stays loaded and active (remain_after_elapse): still converged
    again = run_once(graph, tmp_path / "p", "--json")
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_calendar_event_systemd_refuses_fails_with_its_reason(tmp_path, nspawn_systemd, job):
    graph = _graph(tmp_path / "g.yaml", job, "OnCalendar", "every other tuesday")
    proc = run_once(graph, tmp_path / "p", "--json")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    fails = [e for e in json_lines(proc.stdout) if e["event"] == "failed"]
    assert fails and "systemd refused" in fails[0]["error"], fails
    assert "every other tuesday" in fails[0]["error"]


def test_a_session_timer_goes_to_the_users_manager(
    tmp_path, nspawn_systemd, user_manager, job, monkeypatch
):
    """session: true writes ~/.config/systemd/user (root's, inside) and asks user@0."""
    c = nspawn_systemd
    xdg = "XDG_RUNTIME_DIR=/run/user/0"
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", user_manager)
    units = c.root / "root/.config/systemd/user"
    timer = f"{job}.timer"
    session = "    session: true\n"
    graph = _graph(tmp_path / "g.yaml", job, "OnCalendar", "daily", session)
    # no such user service yet: refused at check, nothing started
    proc = run_once(graph, tmp_path / "p", "--json")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "manager does not know" in proc.stdout
    units.mkdir(parents=True, exist_ok=True)
    (units / f"{job}.service").write_text("[Service]\nType=oneshot\nExecStart=/bin/true\n")
    c.run("env", xdg, "systemctl", "--user", "daemon-reload")
    proc = run_once(graph, tmp_path / "p", "--json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert (units / timer).is_file()
    assert not c.unit_path(timer).exists()
    out = c.run("env", xdg, "systemctl", "--user", "is-active", timer, check=False)
    assert out.stdout.strip() == "active"
    again = run_once(graph, tmp_path / "p", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    gone = _graph(tmp_path / "g.yaml", job, "OnCalendar", "daily", session + "    state: absent\n")
    assert run_once(gone, tmp_path / "p").returncode == 2
    assert not (units / timer).exists()
    (units / f"{job}.service").unlink()


def test_ten_timers_in_one_graph_converge_together(tmp_path, nspawn_systemd, job):
    """Applied in parallel (each its own file, reloads interleaved): changed, never repaired."""
    c = nspawn_systemd
    names = [f"{job}-{i}" for i in range(10)]
    for name in names:
        c.write_unit(f"{name}.service", "[Service]\nType=oneshot\nExecStart=/bin/true\n")
    try:
        crons = "".join(f"  - name: {n}\n    trigger: OnCalendar\n    time: daily\n" for n in names)
        graph = tmp_path / "g.yaml"
        graph.write_text(f"graph: cron\nresources:\n  cron:\n{crons}")
        first = run_once(graph, tmp_path / "p", "--json")
        assert first.returncode == 2, first.stdout + first.stderr
        outcomes = {k: v["outcome"] for k, v in recap_of(first)["resources"].items()}
        assert set(outcomes.values()) == {"changed"}, outcomes
        assert all(c.unit_state(f"{n}.timer")[0] == "active" for n in names)
        again = run_once(graph, tmp_path / "p", "--json")
        assert again.returncode == 0, again.stdout + again.stderr
    finally:
        for name in names:
            c.remove_unit(f"{name}.timer")
            c.remove_unit(f"{name}.service")


def test_a_file_written_by_an_agent_killed_before_its_reload_is_finished(
    tmp_path, nspawn_systemd, job
):
    """kill -9 between the unit file write and the daemon-reload: the next run loads it and
    the timer runs the new schedule (not the one it was started with)."""
    c = nspawn_systemd
    timer = f"{job}.timer"
    assert (
        run_once(_graph(tmp_path / "g.yaml", job, "OnCalendar", "daily"), tmp_path / "p").returncode
        == 2
    )
    weekly = _graph(tmp_path / "g.yaml", job, "OnCalendar", "weekly")
    # what the killed agent left: the new file in place, systemd not told
    text = c.unit_path(timer).read_text().replace("OnCalendar=daily", "OnCalendar=weekly")
    write_atomic(c.unit_path(timer), text)
    proc = run_once(weekly, tmp_path / "p", "--json")
    assert proc.returncode == 2, proc.stdout + proc.stderr

    def calendar() -> str:
        return c.systemctl("show", "-p", "TimersCalendar", "--value", timer).stdout

    assert "OnCalendar=weekly" in calendar() or "Mon *-*-* 00:00:00" in calendar(), calendar()
    next_elapse = c.systemctl("show", "-p", "NextElapseUSecRealtime", "--value", timer).stdout
    assert next_elapse.strip().startswith("Mon"), next_elapse
    assert run_once(weekly, tmp_path / "p").returncode == 0


@pytest.mark.parametrize("startup", ["enabled", "disabled"])
def test_a_timer_that_unloads_itself_is_re_armed_as_a_tick_and_a_stop_is_still_drift(
    tmp_path, nspawn_systemd, job, agent, startup
):
    """remain_after_elapse false: the timer's own end is its schedule, a person's stop is not.

    Disabled, nothing else holds the inactive timer: systemd would
    garbage-collect it, and forget when it fired, but for the watch's pin.
    """
    c = nspawn_systemd
    timer = f"{job}.timer"
    extra = f"    accuracy_sec: 1ms\n    remain_after_elapse: false\n    startup: {startup}\n"
    a = agent(_graph(tmp_path / "g.yaml", job, "OnActiveSec", "3s", extra))

    def applied(reason: str, since: int, what: str) -> dict[str, object]:
        i = a.wait_event(
            lambda e: (
                e.get("event") == "checked" and e.get("applied") and e.get("reason") == reason
            ),
            since=since,
            timeout=30,
            what=what,
        )
        return a.events[i]

    applied("start", 0, "the first start")
    ran = c.root / f"var/tmp/{job}.ran"
    # it fires, unloads itself, and is started again: a tick, never drift
    rearm = applied("tick", 0, "the re-arm after the timer fired")
    assert {"field": "state", "old": "inactive", "new": "active", "diff": ""} in rearm["changes"]
    assert ran.read_text() == "ran\n"  # it had fired (once) when it was re-armed
    assert not a.find(lambda e: e.get("drift")), a.describe()

    # stopped by a person (well before its next firing, 3 s after the re-arm): drift
    since = a.mark()
    c.systemctl("stop", timer)
    i = a.wait_event(
        lambda e: e.get("event") == "checked" and e.get("applied"), since=since, what="the repair"
    )
    assert a.events[i]["drift"] is True and a.events[i]["reason"] == "event", a.events[i]
    c.wait_unit_state(timer, "active")

    # and the next firing is a tick again
    applied("tick", i + 1, "the re-arm after the second firing")
    assert ran.read_text() == "ran\nran\n"
    assert len(a.find(lambda e: e.get("drift"))) == 1, a.describe()
    assert a.stop() == 0
    assert a.recap()["resources"][f"Cron[{job}]"]["repaired"] == 1  # the stop alone
