"""exec: when it runs (start, watchcmd lines, creates), its guards, timeout, argv.

Each command appends to a log file, so "it ran N times" is read from disk.
"""

from __future__ import annotations

import os
import resource
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    PYMGMT,
    checked,
    graph_doc,
    json_lines,
    pid_alive,
    recap_of,
    run_once,
    sentinel_res,
    wait_for,
    write_graph,
)


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def _q(p: Path) -> str:
    return shlex.quote(str(p))


def _graph(tmp_path: Path, *execs: dict[str, Any], files=()) -> Path:
    graph = tmp_path / "graph.yaml"
    write_graph(graph, graph_doc("exec", execs=execs, files=files))
    return graph


def _logging_exec(name: str, log: Path, **extra: Any) -> dict[str, Any]:
    return {"name": name, "shell": "/bin/sh", "cmd": f"echo run >> {_q(log)}", **extra}


def test_each_line_of_watchcmd_output_triggers_one_run(agent, tmp_path, managed):
    log, req, pidfile = tmp_path / "log", tmp_path / "req", tmp_path / "watch.pid"
    loop = (
        f"echo $$ > {_q(pidfile)}; "
        f"while :; do if [ -e {_q(req)} ]; then rm -f {_q(req)}; echo go; fi; sleep 0.01; done"
    )
    graph = _graph(
        tmp_path,
        _logging_exec("w", log, watchcmd=loop, watchshell="/bin/sh"),
        files=[sentinel_res(managed)],
    )
    a = agent(graph)
    wait_for(lambda: _lines(log) == ["run"], what="the run at start")
    watcher = int(wait_for(lambda: pidfile.read_text().strip(), what="the watchcmd pid"))
    assert pid_alive(watcher)

    for n in (2, 3, 4):
        since = a.mark()
        req.touch()
        wait_for(lambda n=n: len(_lines(log)) == n, what=f"run number {n}")
        a.wait_event(checked("Exec[w]", applied=True), since=since, what=f"check {n}")
    a.barrier(managed / "sentinel")
    assert len(_lines(log)) == 4, "a watchcmd line must cause exactly one run"

    assert a.stop() == 0
    assert not pid_alive(watcher), "the watchcmd must be killed when the agent stops"
    res = a.recap()["resources"]["Exec[w]"]
    # a watchcmd line is the user's trigger, not drift: every run is a change
    assert (res["changed"], res["repaired"]) == (4, 0)


def test_a_watchcmd_line_during_a_run_asks_for_one_more_run(agent, tmp_path, managed):
    # The trigger lands while the command runs (held open by the test): the
    # run's end must not erase it, or the event is lost and the agent says
    # converged with the command's output stale.
    log, req, release = tmp_path / "log", tmp_path / "req", tmp_path / "release"
    loop = f"while :; do if [ -e {_q(req)} ]; then rm -f {_q(req)}; echo go; fi; sleep 0.01; done"
    cmd = (
        f"echo run >> {_q(log)}; "
        f"while [ ! -e {_q(release)} ]; do sleep 0.01; done; rm -f {_q(release)}"
    )
    res = {"name": "w", "shell": "/bin/sh", "cmd": cmd, "watchcmd": loop, "watchshell": "/bin/sh"}
    a = agent(_graph(tmp_path, res, files=[sentinel_res(managed)]), "-v")
    wait_for(lambda: _lines(log) == ["run"], what="the run at start, under way")
    req.touch()
    wait_for(lambda: "watchcmd: go" in a.stderr, what="the agent to read the trigger")
    release.touch()  # the first run ends only now, after the trigger arrived
    wait_for(lambda: len(_lines(log)) == 2, what="the run the trigger asked for")
    release.touch()
    wait_for(lambda: not release.exists(), what="the second run to end")
    a.barrier(managed / "sentinel")
    assert len(_lines(log)) == 2, "one trigger during a run: exactly one more run"
    assert a.stop() == 0


def test_exec_with_a_watchcmd_still_runs_once_in_run_once_mode(tmp_path):
    # Regression: the worker went idle while its watch was still starting, so
    # --converged-timeout 0 exited "converged" before the command ever ran.
    log, pidfile = tmp_path / "log", tmp_path / "watch.pid"
    graph = _graph(
        tmp_path,
        _logging_exec(
            "w", log, watchcmd=f"echo $$ > {_q(pidfile)}; exec sleep 60", watchshell="/bin/sh"
        ),
    )
    proc = run_once(graph, tmp_path / "state", "--json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert _lines(log) == ["run"]
    assert recap_of(proc)["resources"]["Exec[w]"]["outcome"] == "changed"
    assert not pid_alive(int(pidfile.read_text()))


def test_creates_guard_skips_the_command_once_the_path_exists(tmp_path):
    log, marker = tmp_path / "log", tmp_path / "marker"
    res = {
        "name": "c",
        "shell": "/bin/sh",
        "cmd": f"touch {_q(marker)}; echo run >> {_q(log)}",
        "creates": str(marker),
    }
    graph = _graph(tmp_path, res)
    first = run_once(graph, tmp_path / "state", "--json")
    assert first.returncode == 2, first.stderr
    assert _lines(log) == ["run"]

    second = run_once(graph, tmp_path / "state", "--json")
    assert second.returncode == 0, second.stderr
    assert _lines(log) == ["run"], "creates exists: the command must not run again"
    assert recap_of(second)["resources"]["Exec[c]"]["outcome"] == "unchanged"


def test_removing_the_creates_path_makes_the_command_run_again(agent, tmp_path, managed):
    log, marker = tmp_path / "log", managed / "marker"
    res = {
        "name": "c",
        "shell": "/bin/sh",
        "cmd": f"touch {_q(marker)}; echo run >> {_q(log)}",
        "creates": str(marker),
    }
    a = agent(_graph(tmp_path, res, files=[sentinel_res(managed)]))
    wait_for(lambda: _lines(log) == ["run"] and marker.exists(), what="the first run")
    a.barrier(managed / "sentinel")

    marker.unlink()
    wait_for(lambda: len(_lines(log)) == 2 and marker.exists(), what="the run after removal")
    a.barrier(managed / "sentinel")
    assert len(_lines(log)) == 2
    assert a.stop() == 0


@pytest.mark.parametrize(
    ("guard", "flag", "runs"),
    [("ifcmd", False, 0), ("ifcmd", True, 1), ("nifcmd", False, 1), ("nifcmd", True, 0)],
)
def test_ifcmd_and_nifcmd_decide_whether_the_command_runs(tmp_path, guard, flag, runs):
    """ifcmd: run when it exits 0; mgmt's nifcmd (Puppet's `unless`): when it does not."""
    log, flagfile = tmp_path / "log", tmp_path / "flag"
    if flag:
        flagfile.touch()
    graph = _graph(tmp_path, _logging_exec("i", log, **{guard: f"test -e {_q(flagfile)}"}))
    proc = run_once(graph, tmp_path / "state", "--json")
    assert len(_lines(log)) == runs
    assert proc.returncode == (2 if runs else 0), proc.stderr
    assert recap_of(proc)["resources"]["Exec[i]"]["outcome"] == ("changed" if runs else "unchanged")


def _refresh_graph(tmp_path: Path, managed: Path, content: str, log: Path, **extra: Any) -> Path:
    """A file that notifies a refresh-only exec; `extra` are more exec params."""
    doc = graph_doc(
        "refresh-only",
        files=[{"name": str(managed / "conf"), "content": content}],
        execs=[_logging_exec("reload", log, **{"refresh_only": True, **extra})],
    )
    doc["edges"] = [
        {
            "name": "conf-reload",
            "from": {"kind": "file", "name": str(managed / "conf")},
            "to": {"kind": "exec", "name": "reload"},
            "notify": True,
        }
    ]
    graph = tmp_path / "graph.yaml"
    write_graph(graph, doc)
    return graph


@pytest.mark.parametrize("spelling", ["refresh_only", "refreshonly"])
def test_refresh_only_runs_only_on_a_refresh(tmp_path, managed, spelling):
    """Not at the start, not on a converged run; once per change of what notifies it.

    ``refreshonly`` (Puppet's spelling) is the same param.
    """
    log = tmp_path / "log"

    def graph(content: str) -> Path:
        path = _refresh_graph(tmp_path, managed, content, log)
        if spelling != "refresh_only":
            path.write_text(path.read_text().replace("refresh_only:", f"{spelling}:"))
            assert f"{spelling}: true" in path.read_text()
        return path

    first = run_once(graph("one\n"), tmp_path / "state", "--json")
    assert first.returncode == 2, first.stderr
    assert len(_lines(log)) == 1  # the file changed, and notified it
    again = run_once(graph("one\n"), tmp_path / "state", "--json")
    assert again.returncode == 0, again.stderr
    assert len(_lines(log)) == 1  # nothing changed: no refresh, no run
    assert recap_of(again)["resources"]["Exec[reload]"]["outcome"] == "unchanged"
    third = run_once(graph("two\n"), tmp_path / "state", "--json")
    assert third.returncode == 2, third.stderr
    assert len(_lines(log)) == 2


def test_refresh_only_alone_never_runs(tmp_path):
    """Nothing notifies it: a run-once converges at once, exit 0, nothing run."""
    log = tmp_path / "log"
    graph = _graph(tmp_path, _logging_exec("r", log, refresh_only=True))
    proc = run_once(graph, tmp_path / "state", "--json")
    assert proc.returncode == 0, proc.stderr
    assert not log.exists()
    assert recap_of(proc)["resources"]["Exec[r]"]["outcome"] == "unchanged"


@pytest.mark.parametrize(
    ("guard", "passes", "runs"),
    [
        ("creates", True, 0),  # the path exists: the refresh runs nothing
        ("creates", False, 1),
        ("ifcmd", True, 1),
        ("ifcmd", False, 0),  # ifcmd fails: the refresh runs nothing
        ("nifcmd", True, 0),  # nifcmd succeeds: the refresh runs nothing
        ("nifcmd", False, 1),
    ],
)
def test_a_refresh_checks_the_guards_first(tmp_path, managed, guard, passes, runs):
    """A refresh asks for a run, as Puppet's does: creates/ifcmd/nifcmd still decide it."""
    log, flag = tmp_path / "log", tmp_path / "flag"
    if passes:
        flag.touch()
    value = str(flag) if guard == "creates" else f"test -e {_q(flag)}"
    graph = _refresh_graph(tmp_path, managed, "one\n", log, **{guard: value})
    proc = run_once(graph, tmp_path / "state", "--json")
    assert proc.returncode == 2, proc.stderr  # the file itself changed
    assert len(_lines(log)) == runs
    outcome = recap_of(proc)["resources"]["Exec[reload]"]["outcome"]
    assert outcome == ("changed" if runs else "unchanged")
    again = run_once(graph, tmp_path / "state", "--json")  # the refresh was used up
    assert again.returncode == 0, again.stderr
    assert len(_lines(log)) == runs


def test_refresh_only_spelt_twice_is_refused(tmp_path):
    graph = _graph(
        tmp_path, _logging_exec("r", tmp_path / "log", refresh_only=True, refreshonly=True)
    )
    proc = subprocess.run(
        [*PYMGMT, "validate", str(graph)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1, proc.stderr
    assert "'refreshonly' is another spelling of 'refresh_only', which is given too" in proc.stderr
    assert not (tmp_path / "log").exists()


def test_refresh_only_with_a_schedule_is_refused(tmp_path):
    graph = _graph(tmp_path, _logging_exec("r", tmp_path / "log", refresh_only=True, pollint=5))
    proc = subprocess.run(
        [*PYMGMT, "validate", str(graph)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1
    assert "pollint: never runs cmd with refresh_only: only a refresh does" in proc.stderr


@pytest.mark.slow
def test_timeout_kills_the_command_and_everything_it_started(tmp_path):
    pids = tmp_path / "pids"
    res = {
        "name": "t",
        "shell": "/bin/sh",
        # the shell and a background grandchild: both must die
        "cmd": f"echo $$ >> {_q(pids)}; sleep 60 & echo $! >> {_q(pids)}; wait",
        "timeout": 1,
    }
    proc = run_once(_graph(tmp_path, res), tmp_path / "state", "--json", timeout=30)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    failed = [e for e in json_lines(proc.stdout) if e.get("event") == "failed"]
    assert len(failed) == 1
    assert "timed out after 1s" in failed[0]["error"]
    started = [int(p) for p in _lines(pids)]
    assert len(started) == 2
    assert not any(pid_alive(p) for p in started)


def test_a_failing_command_reports_its_status_and_output(tmp_path):
    res = {"name": "f", "cmd": "sh -c 'echo first; echo boom >&2; exit 3'"}
    proc = run_once(_graph(tmp_path, res), tmp_path / "state", "--json")
    assert proc.returncode == 4
    (err,) = recap_of(proc)["resources"]["Exec[f]"]["failures"]
    assert "status 3" in err
    assert "first" in err and "boom" in err


def test_cmd_is_split_into_argv_without_a_shell(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    res = {"name": "n", "cmd": "touch 'a b' '$(id)' ';' '*'", "cwd": str(work)}
    proc = run_once(_graph(tmp_path, res), tmp_path / "state")
    assert proc.returncode == 2, proc.stderr
    assert sorted(p.name for p in work.iterdir()) == sorted(["a b", "$(id)", ";", "*"])


def test_cwd_and_env_reach_the_command(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    res = {
        "name": "e",
        "cmd": "sh -c 'echo \"$GREETING\" > out'",
        "cwd": str(work),
        "env": {"GREETING": "hello there"},
    }
    proc = run_once(_graph(tmp_path, res), tmp_path / "state")
    assert proc.returncode == 2, proc.stderr
    assert (work / "out").read_text() == "hello there\n"


def test_a_watchcmd_that_exits_fails_the_vertex_with_its_exit_status(tmp_path):
    log = tmp_path / "log"
    graph = _graph(tmp_path, _logging_exec("w", log, watchcmd="exit 3", watchshell="/bin/sh"))
    proc = run_once(graph, tmp_path / "state", "--json")
    assert proc.returncode & 4, proc.stdout + proc.stderr
    res = recap_of(proc)["resources"]["Exec[w]"]
    assert res["outcome"] == "failed"
    assert any("watchcmd exited with status 3" in f for f in res["failures"]), res["failures"]


def test_huge_output_is_drained_but_only_its_tail_is_kept(tmp_path):
    """300 MB of output: the command runs to its end, the agent keeps ~64 KiB of it."""
    res = {
        "name": "loud",
        "shell": "/bin/sh",
        "cmd": "yes 'some output' | head -c 300000000; echo the-end; exit 3",
    }
    argv = [*PYMGMT, "run", "--prefix", str(tmp_path / "state"), "--converged-timeout", "0"]
    out = tmp_path / "out.json"
    with open(out, "w") as stdout, open(tmp_path / "log", "w") as stderr:
        proc = subprocess.Popen(
            [*argv, "--json", str(_graph(tmp_path, res))],
            stdout=stdout,
            stderr=stderr,  # the log lines (progress: it runs for a while)
        )
        # wait4 gives this one child's peak memory (ru_maxrss, in KiB); it
        # counts the test process's own pages the child had before its exec
        ours = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    events = json_lines(out.read_text())
    (err,) = [e["error"] for e in events if e.get("event") == "failed"]
    assert "status 3" in err and "the-end" in err  # ran to its end, the tail is reported
    assert len(err) < 10_000
    assert usage.ru_maxrss < ours + 150 * 1024, f"agent peaked at {usage.ru_maxrss} KiB"
