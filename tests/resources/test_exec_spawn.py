"""exec: how a command is started, under the guard that makes it die with the agent.

The guard (setpriv --pdeathsig, then a shell that checks its parent and execs
the command) replaced a ``preexec_fn`` so that spawning no longer forks the
whole agent; what it must keep: the command dies with the agent even on
kill -9, a guard whose agent is already gone runs nothing, the command sees
exactly the environment it would see alone, and a program that cannot run is
refused with the resource's own message.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import PYMGMT, graph_doc, pid_alive, recap_of, run_once, wait_for, write_graph

from pymgmt.errors import ResourceError
from pymgmt.resources import exec as exec_mod
from pymgmt.resources import spawn


def _graph(tmp_path: Path, *execs: dict[str, Any]) -> Path:
    graph = tmp_path / "graph.yaml"
    write_graph(graph, graph_doc("exec", execs=execs))
    return graph


def _read(p: Path) -> str:
    try:
        return p.read_text().strip()
    except FileNotFoundError:
        return ""


def _q(p: Path) -> str:
    return shlex.quote(str(p))


@pytest.mark.parametrize("field", ["cmd", "watchcmd"])
def test_a_command_dies_with_the_agent_even_on_kill_9(agent, tmp_path, field):
    pidfile = tmp_path / "pid"
    long_running = f"echo $$ > {_q(pidfile)}; exec sleep 60"
    res: dict[str, Any] = {"name": "x", "shell": "/bin/sh", "cmd": "true"}
    if field == "cmd":
        res["cmd"] = long_running
    else:
        res.update(watchcmd=long_running, watchshell="/bin/sh")
    a = agent(_graph(tmp_path, res))
    pid = int(wait_for(lambda: _read(pidfile), what="the command's pid"))
    assert pid_alive(pid)
    a.send(signal.SIGKILL)
    a.wait_exit()
    wait_for(lambda: not pid_alive(pid), what="the command to die with the agent")


@pytest.mark.skipif(spawn.GUARD is None, reason="no setpriv or /bin/sh here")
def test_a_guard_whose_agent_is_gone_runs_nothing(tmp_path):
    mark = tmp_path / "ran"
    guarded = spawn.guarded(["touch", str(mark)], None)  # guards for *this* process
    # Started by another process (a forking shell), as if the agent died first:
    # its parent is not the pid the guard checks, so the command never runs.
    orphan = subprocess.run(["/bin/sh", "-c", '"$@"; exit $?', "sh", *guarded], check=False)
    assert orphan.returncode == 1
    assert not mark.exists()
    # Started by this process, the pid it names: the command runs.
    assert subprocess.run(guarded, check=False).returncode == 0
    assert mark.exists()


def _env_dump(out: Path) -> str:
    code = "import json, os, sys; open(sys.argv[1], 'w').write(json.dumps(dict(os.environ)))"
    return shlex.join([sys.executable, "-c", code, str(out)])


@pytest.mark.parametrize("pwd", [None, "set"])
def test_the_command_gets_exactly_the_agents_environment_and_its_env(tmp_path, pwd):
    out = tmp_path / "env.json"
    graph = _graph(tmp_path, {"name": "e", "cmd": _env_dump(out), "env": {"GREETING": "hi"}})
    env = {k: v for k, v in os.environ.items() if k != "PWD"}
    if pwd:
        env["PWD"] = os.getcwd()
    argv = [*PYMGMT, "run", "--prefix", str(tmp_path / "s"), "--converged-timeout", "0", str(graph)]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    seen = json.loads(out.read_text())
    assert seen.get("GREETING") == "hi"
    assert seen.get("PWD") == env.get("PWD")  # the guard's shell adds none
    assert set(seen) == set(env) | {"GREETING"}


def test_a_missing_or_unexecutable_program_is_refused_with_its_own_message(tmp_path):
    plain = tmp_path / "not-executable"
    plain.write_text("#!/bin/sh\n")
    graph = _graph(
        tmp_path,
        {"name": "missing", "cmd": "no-such-program-pymgmt-test --flag"},
        {"name": "plain", "cmd": f"{plain} arg"},
        {"name": "relative", "cmd": "./nowhere", "cwd": str(tmp_path)},
    )
    proc = run_once(graph, tmp_path / "state", "--json")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    res = recap_of(proc)["resources"]
    assert res["Exec[missing]"]["failures"] == [
        "apply: cannot run 'no-such-program-pymgmt-test': No such file or directory"
    ]
    denied = f"apply: cannot run {str(plain)!r}: Permission denied"
    assert res["Exec[plain]"]["failures"] == [denied]
    assert res["Exec[relative]"]["failures"] == [
        "apply: cannot run './nowhere': No such file or directory"
    ]


def test_without_the_guard_programs_the_preexec_fallback_runs_the_command(tmp_path, monkeypatch):
    """Where setpriv or /bin/sh is missing, the command still runs (and dies with the agent
    through a ``preexec_fn``): the same status and output."""
    from helpers import run_async

    monkeypatch.setattr(spawn, "GUARD", None)
    monkeypatch.setattr(spawn, "PRCTL", spawn.resolve_prctl())
    argv = exec_mod._Argv(["/bin/sh", "-c", "echo out; exit 3"], "'/bin/sh'")
    res = exec_mod.Exec(name="x", cmd="true", cwd=str(tmp_path), env={"X": "1"})
    code, out = run_async(exec_mod._run(argv, res))
    assert (code, out.tail) == (3, b"out\n")
    with pytest.raises(ResourceError, match="cannot run 'nope': No such file or directory"):
        run_async(
            exec_mod._run(exec_mod._Argv(["nope"], "'nope'"), exec_mod.Exec(name="y", cmd=""))
        )
    as_nobody = exec_mod.Exec(name="z", cmd="true", user="nobody")
    with pytest.raises(ResourceError, match=r"as another user: setpriv \(util-linux\) is missing"):
        run_async(exec_mod._run(argv, as_nobody))
