"""SIGINT / SIGTERM: a graceful stop that prints the recap and leaves nothing running.

Exit is awaited with a deadline of a few seconds; that bounds a hang, it
is not a measurement of speed.
"""

from __future__ import annotations

import re
import shlex
import signal
from pathlib import Path

import pytest
from helpers import checked, graph_doc, pid_alive, sentinel_res, wait_for, write_graph

STOP_DEADLINE = 10.0


def _graph(tmp_path: Path, managed: Path, *, execs=()) -> Path:
    graph = tmp_path / "graph.yaml"
    files = [{"name": "f", "path": str(managed / "f"), "content": "x\n"}, sentinel_res(managed)]
    write_graph(graph, graph_doc("sig", files=files, execs=execs))
    return graph


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_idle_stops_gracefully_with_the_recap(agent, tmp_path, managed, sig):
    a = agent(_graph(tmp_path, managed))
    a.wait_checked(["File[f]", "File[sentinel]"])
    a.barrier(managed / "sentinel")  # idle now

    assert a.stop(sig, timeout=STOP_DEADLINE) == 0  # forever mode: a graceful stop
    names = [e["event"] for e in a.events]
    assert names[-3:] == ["stopping", "finished", "recap"]
    stopping = a.events[-3]
    assert sig.name in stopping["reason"]
    assert stopping["interrupted"] is True
    recap = a.recap()
    assert recap["resources"]["File[f]"]["outcome"] == "changed"
    assert recap["interrupted"] is True
    assert recap["exit_code"] == 0
    assert a.stderr == ""


def test_sigint_prints_the_text_recap(agent, tmp_path, managed):
    a = agent(_graph(tmp_path, managed), json_mode=False)
    wait_for(lambda: (managed / "f").exists() and (managed / "sentinel").exists(), what="apply")
    a.wait_event(
        lambda e: "File[sentinel]: CheckApply(apply=True)" in e["line"], what="the console line"
    )
    assert a.stop(signal.SIGINT, timeout=STOP_DEADLINE) == 0
    lines = [e["line"] for e in a.events]
    assert any(
        line.endswith("Stopping: interrupted by SIGINT (again to exit at once)") for line in lines
    )
    start = next(i for i, line in enumerate(lines) if line.startswith("Recap of graph 'sig'"))
    assert lines[-1] == "INTERRUPTED: 2 resources: 0 unchanged, 2 changed, 0 failed, 0 pending"
    assert start < len(lines) - 1


def test_sigint_kills_a_running_command_and_exits(agent, tmp_path, managed):
    pidfile = tmp_path / "cmd.pid"
    slow = {
        "name": "slow",
        "shell": "/bin/sh",
        "cmd": f"echo $$ > {shlex.quote(str(pidfile))}; exec sleep 60",
    }
    a = agent(_graph(tmp_path, managed, execs=[slow]))
    cmd_pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="pid"))
    assert pid_alive(cmd_pid)
    a.wait_checked(["File[f]"])

    # A graceful stop lets the running command finish (issue 8); ^C again exits at once.
    a.send(signal.SIGINT)
    # 1 (the exec) or 2 if File[f]'s re-check of its own write's echo is under way
    notice = re.compile(r"waiting for [12] running resources? to finish")
    wait_for(lambda: notice.search(a.stderr), what="the waiting notice")
    assert pid_alive(cmd_pid)
    assert a.stop(signal.SIGINT, timeout=STOP_DEADLINE) == 130
    assert not pid_alive(cmd_pid), "the interrupted command must not outlive the agent"
    assert a.find(checked("Exec[slow]")) == []
