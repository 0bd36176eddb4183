"""Commands and packages in the fast path (oneshot/execute.py): the engine's words and order.

Each graph runs three times: a first run (it stores the plan), the fast
path (which must answer: no asyncio imported), and the engine
(``--no-cache``, a flag the fast path does not take). The last two must
write the same lines (dates and durations aside; NOTICE and ERROR lines
as a set, since both run commands in parallel), the same recap and exit
code, and leave what the commands write alike. Order and overlap are read
from stamps the commands write, never from wall time.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import DEADLINE, dump, pid_alive, wait_for
from test_fast_apply import _words
from test_fast_path import _run

from pymgmt.oneshot.plan import PLAN_NAME


def _graph(
    tmp_path: Path,
    execs: list[dict[str, Any]],
    edges: list[tuple[str, str]] = (),  # type: ignore[assignment]
    **kinds: list[dict[str, Any]],
) -> Path:
    doc: dict[str, Any] = {"graph": "cmds", "resources": {"exec": execs, **kinds}}
    kind_of = {r["name"]: k for k, rs in doc["resources"].items() for r in rs}
    doc["edges"] = [
        {
            "name": f"{a}-{b}",
            "from": {"kind": kind_of[a], "name": a},
            "to": {"kind": kind_of[b], "name": b},
        }
        for a, b in edges
    ]
    graph = tmp_path / "graph.yaml"
    graph.write_text(dump(doc))
    return graph


def _sh(name: str, script: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "cmd": script, "shell": "/bin/sh", **more}


def _fast_then_engine(graph: Path, prefix: Path, reset: Any = None) -> tuple[Any, Any]:
    """(the fast path's run, the engine's run) of `graph`, after a first run stored its plan."""
    first, _ = _run(graph, prefix)
    assert (prefix / PLAN_NAME).is_file(), first.stderr
    if reset:
        reset()
    fast, answered = _run(graph, prefix)
    assert answered, fast.stderr
    if reset:
        reset()
    engine, answered = _run(graph, prefix, "--no-cache")
    assert not answered
    return fast, engine


def test_commands_say_what_the_engine_says(tmp_path: Path) -> None:
    """Output and status, a missing program or directory, guards, env and cwd, a skipped child."""
    out = tmp_path / "out"
    out.mkdir()
    execs = [
        _sh("fails", "printf 'one\\ntwo\\n'; exit 3"),
        {"name": "child", "cmd": "true"},
        {"name": "missing", "cmd": "/nonexistent/x a"},
        {"name": "no-cwd", "cmd": "/bin/true", "cwd": str(tmp_path / "nowhere")},
        {"name": "if-false", "cmd": f"touch {out}/never", "ifcmd": "false"},
        {"name": "if-missing", "cmd": "true", "ifcmd": "no-such-program-pymgmt-test"},
        {"name": "if-true", "cmd": f"touch {out}/ran-if-true", "ifcmd": "true"},
        {"name": "created", "cmd": f"touch {out}/never", "creates": str(tmp_path)},
        _sh(
            "env-cwd",
            'pwd > where; echo "$GREETING" >> where',
            cwd=str(out),
            env={"GREETING": "hi"},
        ),
        {"name": "quoted", "cmd": f"sh -c 'echo \"a  b\" > {out}/quoted'"},
    ]
    graph = _graph(tmp_path, execs, [("fails", "child")])

    def reset() -> None:
        shutil.rmtree(out)
        out.mkdir()

    fast, engine = _fast_then_engine(graph, tmp_path / "state", reset)
    assert fast.returncode == engine.returncode == 6, engine.stderr
    assert _words(fast.stderr) == _words(engine.stderr)
    assert "skipped (blocked by Exec[fails])" in fast.stderr
    assert "FAILED in check: cannot run 'no-such-program-pymgmt-test'" in fast.stderr
    assert sorted(p.name for p in out.iterdir()) == ["quoted", "ran-if-true", "where"]
    assert (out / "where").read_text() == f"{out}\nhi\n"
    assert (out / "quoted").read_text() == "a  b\n"


def test_a_timeout_kills_the_command_and_fails_it_as_the_engine_does(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    execs = [
        _sh("slow", f"echo $$ > {pidfile}; exec sleep 60", timeout=1),
        _sh("slow-if", "exec sleep 60", ifcmd="sleep 60", timeout=1),
    ]
    fast, engine = _fast_then_engine(_graph(tmp_path, execs), tmp_path / "state")
    assert fast.returncode == engine.returncode == 4
    assert _words(fast.stderr) == _words(engine.stderr)
    assert "FAILED in apply: command timed out after 1s and was killed" in fast.stderr
    assert "FAILED in check: command timed out after 1s and was killed" in fast.stderr
    assert not pid_alive(int(pidfile.read_text()))


def _stamp(d: Path, name: str, body: str = "") -> dict[str, Any]:
    """A command that stamps its start and end (`date +%s.%N`) around `body`; each
    stamp appears whole (renamed into place), so another command may wait for it."""
    start, end = (
        f"date +%s.%N > {d}/.{name}; mv {d}/.{name} {d}/{name}.{x}" for x in ("start", "end")
    )
    return _sh(name, f"{start}; {body} {end}")


def _at(d: Path, name: str) -> tuple[float, float]:
    return float((d / f"{name}.start").read_text()), float((d / f"{name}.end").read_text())


def _wait_for_file(path: Path) -> str:
    """Shell: wait for `path` to exist, at most DEADLINE seconds (then fail)."""
    tries = int(DEADLINE * 100)
    loop = f"i=$((i+1)); [ $i -gt {tries} ] && exit 9; sleep 0.01"
    return f"i=0; while [ ! -e {path} ]; do {loop}; done;"


def test_a_command_starts_when_its_last_prerequisite_ends_not_with_a_wave(tmp_path: Path) -> None:
    """A -> B and C -> D: B starts once A ends although C (of A's wave) still runs.

    A waits for C to start, C for B: run by waves (B after all of A's wave),
    C would wait for ever (its timeout then fails it) and B start too late;
    run one after the other, A would never end.
    """
    d = tmp_path / "stamps"
    d.mkdir()
    execs = [
        _stamp(d, "A", _wait_for_file(d / "C.start")),
        _stamp(d, "B"),
        {**_stamp(d, "C", _wait_for_file(d / "B.start")), "timeout": int(4 * DEADLINE)},
        _stamp(d, "D"),
    ]
    graph = _graph(tmp_path, execs, [("A", "B"), ("C", "D")])
    prefix = tmp_path / "state"
    assert _run(graph, prefix)[0].returncode == 2  # stores the plan
    shutil.rmtree(d)
    d.mkdir()
    proc, answered = _run(graph, prefix)
    assert answered and proc.returncode == 2, proc.stderr
    a, b, c, dd = (_at(d, x) for x in "ABCD")
    assert a[1] <= b[0] < c[1] <= dd[0]  # B began while C still ran; D after C
    assert c[0] < a[1]  # A and C, both ready at the start, ran at once (A waited for C)


def test_a_signal_lets_the_commands_under_way_finish_and_starts_nothing_new(tmp_path: Path) -> None:
    d = tmp_path / "stamps"
    d.mkdir()
    release = tmp_path / "release"
    execs = [_stamp(d, "A", _wait_for_file(release)), _stamp(d, "B")]
    graph = _graph(tmp_path, execs, [("A", "B")])
    prefix = tmp_path / "state"
    release.touch()
    assert _run(graph, prefix)[0].returncode == 2  # stores the plan
    outputs = []
    for extra in ([], ["--no-cache"]):  # the fast path, then the engine
        release.unlink()
        shutil.rmtree(d)
        d.mkdir()
        err = tmp_path / f"err{len(outputs)}"
        argv = [sys.executable, "-m", "pymgmt.cli.main", "run", "--prefix", str(prefix)]
        argv += ["--converged-timeout", "0", *extra, str(graph)]
        with err.open("w") as f:
            proc = subprocess.Popen(argv, stderr=f)
        try:
            wait_for(lambda: (d / "A.start").exists(), what="A to start")
            proc.send_signal(signal.SIGINT)
            wait_for(lambda e=err: "waiting for 1 running" in e.read_text(), what="the stop")
            release.touch()
            proc.wait(timeout=4 * DEADLINE)
        finally:
            proc.kill()
            proc.wait()
        assert proc.returncode == 130
        assert (d / "A.end").exists() and not (d / "B.start").exists()
        outputs.append(_words(err.read_text()))
    assert outputs[0] == outputs[1]
    assert "Exec[B]  pending" in "\n".join(outputs[0][1])


def test_a_second_signal_exits_at_once_and_the_command_dies_with_the_agent(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    graph = _graph(
        tmp_path, [_sh("long", f"echo $$ > {pidfile}; exec sleep 60", creates=str(pidfile))]
    )
    prefix = tmp_path / "state"
    pidfile.touch()
    assert _run(graph, prefix)[0].returncode == 0  # stores the plan; creates: nothing ran
    pidfile.unlink()
    err = tmp_path / "err"
    argv = [sys.executable, "-m", "pymgmt.cli.main", "run", "--prefix", str(prefix)]
    with err.open("w") as f:
        proc = subprocess.Popen([*argv, "--converged-timeout", "0", str(graph)], stderr=f)
    try:
        pid = int(
            wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="its pid")
        )
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "waiting for 1 running resource" in err.read_text(), what="the stop")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=DEADLINE)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM
    assert "SIGTERM again: exiting at once" in err.read_text()
    wait_for(lambda: not pid_alive(pid), what="the command to die with the agent")


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"watchcmd": "sleep 60"}, id="watchcmd"),
        pytest.param({"pollint": 60}, id="pollint"),
        pytest.param({"meta": {"retry": 2}}, id="retry"),
        pytest.param({"meta": {"sema": ["one"]}}, id="sema"),
    ],
)
def test_what_the_fast_path_does_not_take_goes_to_the_engine_before_anything_runs(
    tmp_path: Path, change: dict[str, Any]
) -> None:
    count = tmp_path / "count"
    graph = _graph(tmp_path, [_sh("c", f"echo x >> {count}", **change)])
    prefix = tmp_path / "state"
    first, _ = _run(graph, prefix)
    assert first.returncode == 2, first.stderr
    proc, answered = _run(graph, prefix)
    assert not answered and proc.returncode == 2, proc.stderr
    assert count.read_text() == "x\n" * 2  # once per run: the fast path ran nothing first


def test_a_file_after_a_command_goes_to_the_engine(tmp_path: Path) -> None:
    """The engine checks that file once the command ran, the fast path before anything."""
    f = tmp_path / "made"
    graph = _graph(
        tmp_path,
        [_sh("make", f"echo made > {f}")],
        [("make", "f")],
        file=[{"name": "f", "path": str(f), "content": "made\n"}],
    )
    prefix = tmp_path / "state"
    assert _run(graph, prefix)[0].returncode == 2
    proc, answered = _run(graph, prefix)
    assert not answered and proc.returncode == 2, proc.stderr
    assert not (prefix / PLAN_NAME).exists()  # no plan is stored for such a graph


def test_a_file_before_a_command_is_made_first(tmp_path: Path) -> None:
    d = tmp_path / "d"
    graph = _graph(
        tmp_path,
        [_sh("use", f"cat {d}/conf > {tmp_path}/seen")],
        [("conf", "use")],
        file=[{"name": "conf", "path": str(d / "conf"), "content": "v1\n"}],
    )
    d.mkdir()
    prefix = tmp_path / "state"

    def reset() -> None:
        (d / "conf").unlink()
        (tmp_path / "seen").unlink()

    fast, engine = _fast_then_engine(graph, prefix, reset)
    assert fast.returncode == engine.returncode == 2
    assert _words(fast.stderr) == _words(engine.stderr)
    assert (tmp_path / "seen").read_text() == "v1\n"


# -- packages ------------------------------------------------------------------------------

needs_apt = pytest.mark.skipif(
    shutil.which("apt-get") is None or shutil.which("dpkg-query") is None, reason="needs apt"
)


def _installed(name: str) -> bool:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Abbrev}", name], capture_output=True, text=True
    )
    return out.stdout.startswith("ii")


@needs_apt
def test_packages_as_wanted_are_answered_by_the_fast_path_as_the_engine_does(
    tmp_path: Path,
) -> None:
    assert _installed("coreutils") and _installed("bash")
    assert not _installed("no-such-package-pymgmt")
    pkgs = [
        {"name": "coreutils"},
        {"name": "bash", "state": "installed"},
        {"name": "no-such-package-pymgmt", "state": "uninstalled"},
    ]
    graph = _graph(tmp_path, [_sh("after", "true")], [("bash", "after")], pkg=pkgs)
    fast, engine = _fast_then_engine(graph, tmp_path / "state")
    assert fast.returncode == engine.returncode == 2
    assert _words(fast.stderr) == _words(engine.stderr)
    assert "Grouping: Success for:" in fast.stderr


@needs_apt
def test_a_package_that_would_change_goes_to_the_engine_before_anything_runs(
    tmp_path: Path,
) -> None:
    """coreutils at a version apt does not have: the engine tries, fails, changes nothing."""
    count = tmp_path / "count"
    graph = _graph(
        tmp_path,
        [_sh("c", f"echo x >> {count}")],
        pkg=[{"name": "coreutils", "state": "0.0-no-such-version"}],
    )
    prefix = tmp_path / "state"
    assert (prefix / PLAN_NAME).exists() is False
    first, _ = _run(graph, prefix)
    assert first.returncode == 6, first.stderr
    proc, answered = _run(graph, prefix)
    assert not answered and proc.returncode == 6, proc.stderr
    assert count.read_text() == "x\n" * 2
    assert os.path.exists("/usr/bin/ls")


def test_a_reader_leaving_stops_the_run_as_a_signal_would(tmp_path: Path) -> None:
    """``| head -1``: the command under way finishes, nothing new starts, exit 141."""
    d = tmp_path / "stamps"
    d.mkdir()
    release = tmp_path / "release"
    graph = _graph(
        tmp_path, [_stamp(d, "A", _wait_for_file(release)), _stamp(d, "B")], [("A", "B")]
    )
    prefix = tmp_path / "state"
    release.touch()
    assert _run(graph, prefix)[0].returncode == 2  # stores the plan
    release.unlink()
    shutil.rmtree(d)
    d.mkdir()
    argv = [sys.executable, "-m", "pymgmt.cli.main", "run", "--prefix", str(prefix)]
    proc = subprocess.Popen([*argv, "--converged-timeout", "0", str(graph)], stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        assert b"Graph[cmds]" in proc.stderr.readline()  # the first line, then the reader leaves
        proc.stderr.close()
        wait_for(lambda: (d / "A.start").exists(), what="A to start")
        release.touch()
        proc.wait(timeout=4 * DEADLINE)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 128 + signal.SIGPIPE
    assert (d / "A.end").exists() and not (d / "B.start").exists()


def test_a_command_started_with_descriptors_0_to_2_closed_runs_as_the_engine_runs_it(
    tmp_path: Path,
) -> None:
    """The output pipe may then get one of their numbers; it must not become the
    command's stdin or stdout for that (subprocess takes the same care)."""
    graph = _graph(tmp_path, [_sh("c", "read x || echo no-stdin; echo out; exit 3")])
    prefix = tmp_path / "state"
    assert _run(graph, prefix)[0].returncode == 4  # stores the plan
    argv = [sys.executable, "-X", "importtime", "-m", "pymgmt.cli.main", "run"]
    argv += ["--prefix", str(prefix), "--converged-timeout", "0", str(graph)]
    runs = []
    for closing in ("<&-", "<&- >&-"):
        proc = subprocess.run(
            ["/bin/sh", "-c", f'exec "$@" {closing}', "sh", *argv],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 4, proc.stderr
        assert "| asyncio" not in proc.stderr  # the fast path answered
        runs.append(proc.stderr)
    for err in runs:
        assert "FAILED in apply: command exited with status 3; output: no-stdin | out" in err


def test_more_commands_than_the_descriptor_limit_allows_at_once_go_to_the_engine(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    graph = _graph(tmp_path, [_sh(f"c{i}", f"touch {out}/{i}") for i in range(40)])
    prefix = tmp_path / "state"
    assert _run(graph, prefix)[0].returncode == 2  # stores the plan
    argv = [sys.executable, "-X", "importtime", "-m", "pymgmt.cli.main", "run"]
    argv += ["--prefix", str(prefix), "--converged-timeout", "0", str(graph)]
    low = ["prlimit", "--nofile=128:128", "--"]  # a quarter: 32 descriptors, 16 commands
    proc = subprocess.run([*low, *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "| asyncio" in proc.stderr  # the engine ran them
    assert len(list(out.iterdir())) == 40
