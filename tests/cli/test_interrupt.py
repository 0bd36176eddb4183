"""^C before convergence: the run says "interrupted", never "converged" or OK.

Issue 8, item 3. An interrupted run lists what was still pending, counts
what did change, and in run-once mode exits 128 + the signal's number
(130 for SIGINT, 143 for SIGTERM) whatever changed; in forever mode a
graceful stop exits 0 (mgmt's shell tests expect it) but still never
claims a convergence it did not reach.
"""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
from pathlib import Path

import pytest
from helpers import DEADLINE, PYMGMT, event, graph_doc, pid_alive, wait_for, write_graph

SIGNALS = pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])


def _slow_graph(tmp_path: Path, managed: Path) -> tuple[Path, Path]:
    """File[f] (applied at once), Exec[slow] (running when the signal comes) and
    Exec[after] (its child: never started once the stop began, so pending).

    A graceful stop lets a running apply finish (issue 8: an apt removal cut
    short went uncounted), so Exec[slow] runs until the test releases it,
    after the stop began (`_interrupt`); it is then counted as changed.
    """
    pidfile = tmp_path / "slow.pid"
    release = shlex.quote(str(tmp_path / "release"))
    slow = {
        "name": "slow",
        "shell": "/bin/sh",
        "cmd": f"echo $$ > {shlex.quote(str(pidfile))}; i=0; "
        f"while [ ! -e {release} ] && [ $i -lt 3000 ]; do sleep 0.01; i=$((i+1)); done",
    }
    after = {"name": "after", "cmd": "true"}
    graph = tmp_path / "graph.yaml"
    files = [{"name": "f", "path": str(managed / "f"), "content": "x\n"}]
    edges = [("exec:slow", "exec:after")]
    write_graph(graph, graph_doc("slow", files=files, execs=[slow, after], edges=edges))
    return graph, pidfile


def _interrupt(a, sig: int, tmp_path: Path) -> int:
    """Send `sig`; once the agent waits for the running exec, let it finish; the exit code."""
    a.send(sig)
    # "1 running resource" (the exec) or, if File[f]'s apply is still in its
    # thread on a loaded machine, "2 running resources": either way the stop began.
    notice = re.compile(r"waiting for [12] running resources? to finish")
    wait_for(lambda: notice.search(a.stderr), what="the waiting notice")
    (tmp_path / "release").touch()
    return a.wait_exit()


def _wait_running(a, pidfile: Path) -> int:
    a.wait_checked(["File[f]"])
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="pid"))
    assert pid_alive(pid)
    return pid


def _after_stopping(events: list[dict]) -> list[str]:
    i = next(i for i, e in enumerate(events) if e["event"] == "stopping")
    return [e["event"] for e in events[i:]]


@SIGNALS
def test_run_once_interrupted_exits_128_plus_the_signal_and_says_so(agent, tmp_path, managed, sig):
    graph, pidfile = _slow_graph(tmp_path, managed)
    a = agent(graph, "--converged-timeout", "0")
    _wait_running(a, pidfile)

    assert _interrupt(a, sig, tmp_path) == 128 + sig
    # the apply under way finished and is reported; nothing else started
    assert _after_stopping(a.events) == ["stopping", "checked", "finished", "recap"], a.describe()
    assert a.events[-4]["interrupted"] is True
    recap = a.recap()
    assert recap["interrupted"] is True
    assert recap["exit_code"] == 128 + sig
    assert recap["resources"]["File[f]"]["outcome"] == "changed"
    assert recap["resources"]["Exec[slow]"]["outcome"] == "changed"
    assert recap["resources"]["Exec[after]"]["outcome"] == "pending"
    assert recap["totals"] == {"changed": 2, "pending": 1}


def test_run_once_interrupted_text_lists_the_pending_and_never_says_converged_or_ok(
    agent, tmp_path, managed
):
    graph, pidfile = _slow_graph(tmp_path, managed)
    a = agent(graph, "--converged-timeout", "0", json_mode=False)
    a.wait_event(lambda e: "File[f]: CheckApply(apply=True)" in e["line"], what="File[f]")
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the slow command")

    assert _interrupt(a, signal.SIGINT, tmp_path) == 130
    lines = [e["line"] for e in a.events]
    text = "\n".join(lines)
    assert "Converged" not in text, text
    assert not any(line.startswith("OK") for line in lines), text
    start = next(i for i, line in enumerate(lines) if line.startswith("Recap of graph 'slow'"))
    assert "interrupted" in lines[start]
    recap = lines[start + 1 :]
    assert any(line.split() == ["Exec[after]", "pending"] for line in recap), text
    assert any(line.split() == ["Exec[slow]", "changed"] for line in recap), text
    assert any(line.split() == ["File[f]", "changed"] for line in recap), text
    assert lines[-1] == "INTERRUPTED: 3 resources: 0 unchanged, 2 changed, 0 failed, 1 pending"


def test_run_once_interrupted_while_idle_still_exits_130(agent, tmp_path, managed):
    graph = tmp_path / "graph.yaml"
    write_graph(graph, graph_doc("idle", files=[{"name": "f", "path": str(managed / "f")}]))
    a = agent(graph, "--converged-timeout", "600")
    a.wait_checked(["File[f]"])
    assert a.stop(signal.SIGINT) == 130
    assert a.find(event("converged")) == []
    assert a.recap()["exit_code"] == 130


@SIGNALS
def test_forever_mode_stop_exits_0_and_never_claims_convergence(agent, tmp_path, managed, sig):
    graph, pidfile = _slow_graph(tmp_path, managed)
    a = agent(graph)
    _wait_running(a, pidfile)
    settled_before = len(a.find(event("settled")))

    assert _interrupt(a, sig, tmp_path) == 0
    assert settled_before == 0  # the exec had not finished: nothing converged
    assert _after_stopping(a.events) == ["stopping", "checked", "finished", "recap"], a.describe()
    recap = a.recap()
    assert recap["interrupted"] is True
    assert recap["exit_code"] == 0
    assert recap["resources"]["Exec[slow]"]["outcome"] == "changed"
    assert recap["resources"]["Exec[after]"]["outcome"] == "pending"


def test_forever_mode_text_never_prints_converged_after_the_stop(agent, tmp_path, managed):
    graph, pidfile = _slow_graph(tmp_path, managed)
    a = agent(graph, json_mode=False)
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the slow command")
    assert _interrupt(a, signal.SIGINT, tmp_path) == 0
    lines = [e["line"] for e in a.events]
    text = "\n".join(lines)
    assert "Converged" not in text, text
    assert lines[-1].startswith("INTERRUPTED: "), text


def _blocked_writing(pid: int) -> bool:
    with open(f"/proc/{pid}/wchan") as f:
        return "pipe_write" in f.read()


def _pending(pid: int, sig: int) -> bool:
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    mask = int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16)
    return bool(mask & (1 << (sig - 1)))


def _handled_and_blocked_again(pid: int, sig: int) -> bool:
    """`sig` was taken (its C-level handler ran) and the write blocks again."""
    return not _pending(pid, sig) and _blocked_writing(pid)


def test_a_second_signal_exits_at_once_with_128_plus_that_signal(tmp_path, managed):
    # Both signals must reach the agent before its event loop handles the
    # first. The loop is held in a write to a full stdout pipe (nobody
    # reads); each signal is recorded (its byte on the loop's wakeup fd) and
    # the write resumes blocking before the next is sent, so the loop sees
    # them in order once the pipe is drained: SIGINT starts the graceful
    # stop, SIGTERM then exits at once. (Sent together, Linux would run the
    # higher-numbered signal's handler first.)
    # noop: each event carries a 10 KB diff, and nothing is written to disk
    content = "a line of the wanted content\n" * 400
    files = [
        {"name": f"f{i}", "path": str(managed / f"f{i}"), "content": content} for i in range(20)
    ]
    graph = tmp_path / "graph.yaml"
    write_graph(graph, graph_doc("many", files=files))
    argv = [*PYMGMT, "run", "--prefix", str(tmp_path / "state"), "--noop", "--json", str(graph)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            wait_for(lambda: _blocked_writing(proc.pid), what="stdout to fill up")
            proc.send_signal(signal.SIGINT)
            wait_for(lambda: _handled_and_blocked_again(proc.pid, signal.SIGINT), what="SIGINT")
            proc.send_signal(signal.SIGTERM)
            wait_for(lambda: _handled_and_blocked_again(proc.pid, signal.SIGTERM), what="TERM")
            _, err = proc.communicate(timeout=DEADLINE)
        finally:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert b"SIGTERM again: exiting at once" in err
