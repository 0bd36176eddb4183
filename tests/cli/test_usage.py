"""Command-line errors exit 1 with a clear message; mgmt's spellings work.

Issue 8, item 4: argparse's own exit status 2 means "changes were applied"
in pymgmt's exit codes. And from the hostile-input list: mgmt's flags, as
its own shell tests use them (`run --converger-timeout=5 --converged-exit
--no-watch --no-pgp --tmp-prefix yaml FILE`), are accepted where they map
onto what pymgmt does, refused with a reason where they do not.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from helpers import PYMGMT, event, graph_doc, snapshot, wait_for, write_graph


def pymgmt(*args: str, cwd: Path, env: dict[str, str] | None = None):
    """The real CLI, run to its end (a hang past the deadline fails)."""
    try:
        return subprocess.run(
            [*PYMGMT, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=cwd,
            env={**os.environ, **(env or {})},
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"pymgmt {args} did not exit (hung?)\n{e.stderr}") from None


def pymgmt_tmpdir(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run the CLI with its own TMPDIR (where --tmp-prefix makes the state directory)."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    return pymgmt(*args, cwd=tmp_path, env={"TMPDIR": str(tmpdir)}), tmpdir


@pytest.fixture
def graph(tmp_path: Path, managed: Path) -> Path:
    g = tmp_path / "g.yaml"
    files = [{"name": "f1", "path": str(managed / "f1"), "content": "i am f1\n"}]
    write_graph(g, graph_doc("mygraph", files=files))
    return g


USAGE_ERRORS = {
    "unknown flag": (["run", "--bogus", "{graph}"], "unrecognized arguments: --bogus"),
    "no file": (["run"], "a graph file is required"),
    "not a number": (
        ["run", "--converged-timeout", "soon", "{graph}"],
        "expected a number of seconds, got 'soon'",
    ),
    "absurd timeout": (["run", "--converged-timeout", "1e30", "{graph}"], "up to 1e+09"),
    "two files": (["run", "{graph}", "{graph}"], "one graph file expected, got 2"),
    "yaml, no file": (["run", "yaml"], "a graph file is required"),
    "no command": (["--bogus"], "unrecognized arguments: --bogus"),
    "validate, no file": (["validate"], "the following arguments are required: file"),
}


@pytest.mark.parametrize("case", USAGE_ERRORS, ids=list(USAGE_ERRORS))
def test_usage_errors_exit_1_with_a_clear_message(tmp_path, managed, graph, case):
    argv, message = USAGE_ERRORS[case]
    before = snapshot(tmp_path)
    proc = pymgmt(*(a.format(graph=graph) for a in argv), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert snapshot(tmp_path) == before


def test_a_missing_graph_file_says_no_such_file_in_validate_too(tmp_path):
    proc = pymgmt("validate", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr == f"error: {tmp_path / 'nope.yaml'}: no such file; nothing was changed\n"


# -- mgmt's spellings ----------------------------------------------------------------


def test_mgmt_shell_test_command_line_runs_and_exits_0_once_converged(tmp_path, managed, graph):
    # test/shell/t2.sh and friends: exit 0 once converged, a temporary prefix.
    argv = "run --converger-timeout=0 --converged-exit --no-watch --no-pgp --tmp-prefix yaml"
    proc, tmpdir = pymgmt_tmpdir(tmp_path, *argv.split(), str(graph))
    assert proc.returncode == 0, proc.stdout + proc.stderr  # mgmt's exit status
    assert (managed / "f1").read_text() == "i am f1\n"
    (state,) = tmpdir.iterdir()  # --tmp-prefix: a fresh directory, locked
    assert state.name.startswith("pymgmt-")
    assert (state / "lock").exists()


def test_mgmt_converged_exit_exits_0_even_when_a_resource_failed(tmp_path):
    # test/shell/exec-fail.sh: "it should shutdown on its own", exit 0
    g = tmp_path / "exec-fail.yaml"
    write_graph(g, graph_doc("mygraph", execs=[{"name": "exec1", "cmd": "false"}]))
    proc = pymgmt(
        "run",
        "--prefix",
        str(tmp_path / "state"),
        "--converger-timeout=0",
        "--converged-exit",
        "yaml",
        str(g),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAILED" in proc.stderr


def test_mgmt_converger_timeout_without_converged_exit_runs_on(agent, graph, managed):
    a = agent(graph, "--converger-timeout=0")
    a.wait_event(event("settled"), what="convergence")
    # stderr is read by its own thread: the warning may trail the stdout event
    wait_for(lambda: "without --converged-exit runs forever" in a.stderr, what="the warning")
    assert a.proc.poll() is None  # converged, and still running, as mgmt does
    assert a.stop(signal.SIGINT) == 0


def test_old_mgmt_converged_timeout_no_exit_runs_on(agent, graph):
    a = agent(graph, "--converged-timeout=0", "--converged-timeout-no-exit")
    a.wait_event(event("settled"), what="convergence")
    assert a.find(event("converged")) == []
    assert a.proc.poll() is None
    assert a.stop(signal.SIGINT) == 0


@pytest.mark.parametrize("flags", [["--pgp-key-path", "k"], ["--pgp-identity", "me"]])
def test_harmless_mgmt_flags_not_implemented_warn_and_run(tmp_path, managed, graph, flags):
    proc = pymgmt(
        "run",
        "--prefix",
        str(tmp_path / "s"),
        "--converged-timeout",
        "0",
        *flags,
        str(graph),
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"warning: {flags[0]} (an mgmt flag) is not implemented yet, ignored" in proc.stderr
    assert (managed / "f1").exists()


REFUSED = {
    "--ssh-url=root@127.0.0.1": "reaching this host's own etcd over SSH is not implemented",
    "--no-autoedges": "not implemented yet; set 'meta: {autoedge: false}' per resource",
    "--max-runtime=5": "not implemented yet",
}


@pytest.mark.parametrize("flag", REFUSED)
def test_mgmt_flags_pymgmt_cannot_honour_are_refused_with_the_reason(
    tmp_path, managed, graph, flag
):
    before = snapshot(tmp_path)
    proc = pymgmt("run", "--tmp-prefix", flag, "yaml", str(graph), cwd=tmp_path)
    assert proc.returncode == 1
    assert f"{flag.split('=')[0]} (an mgmt flag): {REFUSED[flag]}" in proc.stderr
    assert snapshot(tmp_path) == before


FRONTENDS = {"lang": ["lang", "x.mcl"], "empty": ["empty"]}


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_mgmt_frontends_other_than_yaml_are_refused(tmp_path, frontend):
    before = snapshot(tmp_path)
    proc = pymgmt("run", "--tmp-prefix", *FRONTENDS[frontend], cwd=tmp_path)
    assert proc.returncode == 1
    assert f"mgmt's {'mcl language' if frontend == 'lang' else 'empty frontend'}" in proc.stderr
    assert "run [yaml] FILE" in proc.stderr
    assert snapshot(tmp_path) == before


def test_tmp_prefix_and_prefix_together_are_refused(tmp_path, graph):
    proc = pymgmt("run", "--tmp-prefix", "--prefix", str(tmp_path / "p"), str(graph), cwd=tmp_path)
    assert proc.returncode == 1
    assert "--tmp-prefix makes a new state directory" in proc.stderr


def test_a_state_directory_that_cannot_be_made_is_an_error_unless_tmp_is_allowed(
    tmp_path, managed, graph
):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    bad = str(blocker / "state")  # under a regular file: cannot be created
    proc = pymgmt("run", "--prefix", bad, "--converged-timeout", "0", str(graph), cwd=tmp_path)
    assert proc.returncode == 1
    assert f"cannot use the state directory {bad}" in proc.stderr
    assert not (managed / "f1").exists()

    proc, tmpdir = pymgmt_tmpdir(
        tmp_path, "run", "--prefix", bad, "--allow-tmp-prefix", "--converged-timeout=0", str(graph)
    )
    assert proc.returncode == 2, proc.stderr
    assert [p.name[:7] for p in tmpdir.iterdir()] == ["pymgmt-"]
    assert (managed / "f1").exists()


def test_validate_interrupted_says_so_without_a_traceback(tmp_path, monkeypatch, capsys):
    """A ^C while validating (a big graph) is reported as such: exit 130, no traceback.

    The interrupt is raised in-process where the validation runs: a real
    SIGINT would have to land inside a parse that takes milliseconds.
    """
    import pymgmt.cli.run as run_module
    from pymgmt.cli.main import main

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "validate_command", interrupted)
    assert main(["validate", str(tmp_path / "g.yaml")]) == 130
    err = capsys.readouterr().err
    assert "interrupted; nothing was changed" in err and "Traceback" not in err
