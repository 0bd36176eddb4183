"""The one-shot fast path (pymgmt/oneshot): answers a file graph exactly as a full run would.

Which path answered is read from the interpreter itself: ``-X importtime``
lists every module imported, and the fast path never imports asyncio.
Every test uses real runs of the CLI, real files and a real state
directory; the full run to compare with is forced by ``--no-cache``, a
flag the fast path does not take.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DEADLINE, dump, graph_doc

from pymgmt import statedir
from pymgmt.oneshot.plan import PLAN_NAME

#: a user and group that are not root's (the tests run as root)
NOBODY = 65534


def _run(graph: Path, prefix: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], bool]:
    """`pymgmt run --converged-timeout 0 ARGS GRAPH`; and whether the fast path answered.

    Its stderr without -X importtime's lines.
    """
    argv = [sys.executable, "-X", "importtime", "-m", "pymgmt.cli.main", "run"]
    argv += ["--prefix", str(prefix), "--converged-timeout", "0", *args, str(graph)]
    proc, imported = _imports(argv)
    return proc, "asyncio" not in imported


def _imports(argv: list[str]) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `argv` (with ``-X importtime``): the process, its stderr without -X
    importtime's lines, and the modules it imported."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=4 * DEADLINE, check=False)
    lines = proc.stderr.splitlines(keepends=True)
    imported = {ln.rsplit("|", 1)[1].strip() for ln in lines if ln.startswith("import time:")}
    proc.stderr = "".join(ln for ln in lines if not ln.startswith("import time:"))
    return proc, imported


def _normal(stderr: str) -> str:
    """Output with its dates and durations replaced: what two runs must share."""
    stderr = re.sub(r"^\d{4}-\d\d-\d\dT[\d:.]+[+-][\d:]+ ", "DATE ", stderr, flags=re.M)
    return re.sub(r"after \d+\.\d\ds", "after Ts", stderr)


def _graph(tmp_path: Path, files: list[dict[str, object]], name: str = "fast") -> Path:
    graph = tmp_path / "graph.yaml"
    graph.write_text(dump(graph_doc(name, files=files)))
    return graph


def _w1(tmp_path: Path, n: int = 5) -> tuple[Path, Path]:
    """A directory and `n` files in it, the peers' W1 workload: the graph and the directory."""
    managed = tmp_path / "managed"
    files: list[dict[str, object]] = [{"name": "dir", "path": f"{managed}/"}]
    files += [
        {"name": f"f{i}", "path": str(managed / f"f{i}"), "content": f"i am f{i}\n", "mode": "0644"}
        for i in range(n)
    ]
    return _graph(tmp_path, files), managed


def _converged_twice(graph: Path, prefix: Path) -> None:
    """Apply `graph`, then check that the next run was answered by the fast path."""
    first, fast = _run(graph, prefix)
    assert first.returncode in (0, 2), first.stderr
    assert not fast  # no plan yet: a full run, which stores one
    assert (prefix / PLAN_NAME).is_file()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda t: _w1(t)[0], id="w1"),
        pytest.param(lambda t: _graph(t, [], name="empty"), id="empty"),
        pytest.param(
            lambda t: _graph(t, [{"name": str(t / "one"), "content": "x"}], name="one"), id="one"
        ),
        pytest.param(
            lambda t: _graph(
                t,
                [
                    {"name": "gone", "path": str(t / "gone"), "state": "absent"},
                    {"name": "owned", "path": str(t / "o"), "content": "", "owner": "root"},
                    {"name": "d", "path": f"{t}/d/", "mode": "0750", "group": "0"},
                    {"name": "quote's", "path": str(t / "q"), "content": "\u00e9\n" * 3},
                ],
                name="mixed 'name'",
            ),
            id="mixed",
        ),
    ],
)
def test_a_converged_graph_is_answered_with_the_full_runs_words(tmp_path: Path, make) -> None:
    graph, prefix = make(tmp_path), tmp_path / "state"
    _converged_twice(graph, prefix)
    full, fast_full = _run(graph, prefix, "--no-cache")
    fast, fast_fast = _run(graph, prefix)
    assert not fast_full and fast_fast
    assert full.returncode == fast.returncode == 0, (full.stderr, fast.stderr)
    assert _normal(fast.stderr) == _normal(full.stderr)
    assert fast.stdout == full.stdout == ""


def test_mgmt_spellings_of_the_same_command_are_answered_too(tmp_path: Path) -> None:
    graph, _ = _w1(tmp_path)
    prefix = tmp_path / "state"
    _converged_twice(graph, prefix)
    argv = [sys.executable, "-X", "importtime", "-m", "pymgmt.cli.main", "run"]
    argv += [f"--prefix={prefix}", "--converged-timeout=0", "--no-watch", "yaml", str(graph)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=4 * DEADLINE, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "| asyncio\n" not in proc.stderr
    assert "OK: 6 resources: 6 unchanged" in proc.stderr


def test_drift_is_repaired_by_the_fast_path_too(tmp_path: Path) -> None:
    """(tests/oneshot/test_fast_apply.py compares its repairs with a full run's.)"""
    graph, managed = _w1(tmp_path)
    prefix = tmp_path / "state"
    _converged_twice(graph, prefix)
    for drift in (
        lambda: (managed / "f1").write_text("i am f1 but edited\n"),
        lambda: (managed / "f2").write_text("i am f9\n"),  # same size, other bytes
        lambda: os.chmod(managed / "f3", 0o600),
        lambda: os.chown(managed / "f4", NOBODY, -1),  # owner unmanaged: not drift
        lambda: (managed / "f0").unlink(),
    ):
        drift()
        proc, fast = _run(graph, prefix)
        assert fast, proc.stderr
        owner_only = proc.returncode == 0
        if not owner_only:
            assert proc.returncode == 2 and "1 changed" in proc.stderr, proc.stderr
        again, fast_again = _run(graph, prefix)
        assert again.returncode == 0 and fast_again, again.stderr


def test_quiet_runs_are_answered_with_the_full_quiet_runs_words(tmp_path: Path) -> None:
    """-q: the fast path writes what a full -q run writes (the recap, no INFO or NOTICE)."""
    graph, managed = _w1(tmp_path)
    fast_prefix, full_prefix = tmp_path / "state", tmp_path / "full"
    # a first apply: the full run stores the plan and hands the changes to the fast path
    first, _ = _run(graph, fast_prefix, "-q")
    shutil.rmtree(managed)
    full_first, _ = _run(graph, full_prefix, "-q", "--no-cache")
    assert first.returncode == full_first.returncode == 2, (first.stderr, full_first.stderr)
    assert _normal(first.stderr) == _normal(full_first.stderr)
    assert "INFO" not in first.stderr and "NOTICE" not in first.stderr
    assert "6 changed" in first.stderr
    for drift in (None, lambda: (managed / "f1").write_text("edited\n")):
        if drift is not None:
            drift()
        fast, answered = _run(graph, fast_prefix, "-q")
        if drift is not None:
            drift()
        full, answered_full = _run(graph, full_prefix, "-q", "--no-cache")
        assert answered and not answered_full
        assert fast.returncode == full.returncode, (fast.stderr, full.stderr)
        assert _normal(fast.stderr) == _normal(full.stderr)
        assert fast.stdout == full.stdout == ""


def test_a_symlink_in_place_of_a_file_is_never_called_converged(tmp_path: Path) -> None:
    """The full run's error (a symlink is never followed at the target), not the fast 'OK'."""
    target = tmp_path / "real"
    graph = _graph(tmp_path, [{"name": "f", "path": str(tmp_path / "f"), "content": "x"}])
    prefix = tmp_path / "state"
    _converged_twice(graph, prefix)
    target.write_text("x")
    (tmp_path / "f").unlink()
    (tmp_path / "f").symlink_to(target)
    proc, fast = _run(graph, prefix)
    assert not fast and proc.returncode == 4, proc.stderr
    assert "symlink" in proc.stderr


def test_another_agent_holding_the_state_directory_is_named_by_the_full_run(
    tmp_path: Path,
) -> None:
    graph, _ = _w1(tmp_path)
    prefix = tmp_path / "state"
    _converged_twice(graph, prefix)
    with statedir.lock(prefix):
        proc, fast = _run(graph, prefix)
    assert not fast and proc.returncode == 1
    assert f"in use by PID {os.getpid()}" in proc.stderr


def test_an_edited_graph_is_run_in_full_and_then_answered_fast(tmp_path: Path) -> None:
    graph, managed = _w1(tmp_path, n=3)
    prefix = tmp_path / "state"
    _converged_twice(graph, prefix)
    graph.write_text(graph.read_text().replace("i am f1", "i am the new f1"))
    proc, fast = _run(graph, prefix)
    assert not fast and proc.returncode == 2, proc.stderr
    assert (managed / "f1").read_text() == "i am the new f1\n"
    proc, fast = _run(graph, prefix)
    assert fast and proc.returncode == 0, proc.stderr


def test_a_plan_others_could_have_written_is_not_used(tmp_path: Path) -> None:
    graph, _ = _w1(tmp_path)
    prefix = tmp_path / "state"
    _converged_twice(graph, prefix)
    plan = prefix / PLAN_NAME
    os.chmod(plan, 0o620)  # writable by the group
    proc, fast = _run(graph, prefix)
    assert not fast and proc.returncode == 0, proc.stderr
    os.chmod(plan, 0o600)
    os.chown(plan, NOBODY, -1)  # another user's
    proc, fast = _run(graph, prefix)
    assert not fast and proc.returncode == 0, proc.stderr
    plan.unlink()
    (prefix / "elsewhere").write_bytes(b"")
    plan.symlink_to(prefix / "elsewhere")  # never followed
    proc, fast = _run(graph, prefix)
    assert not fast and proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("garbage", [b"", b"\x00" * 64, b"not marshal", b"\xe9\x08\x00\x00\x00"])
def test_a_corrupt_plan_is_a_miss(tmp_path: Path, garbage: bytes) -> None:
    graph, _ = _w1(tmp_path)
    prefix = tmp_path / "state"
    _converged_twice(graph, prefix)
    (prefix / PLAN_NAME).write_bytes(garbage)
    proc, fast = _run(graph, prefix)
    assert not fast and proc.returncode == 0, proc.stderr
    proc, fast = _run(graph, prefix)  # the full run stored a good plan again
    assert fast and proc.returncode == 0, proc.stderr


def test_a_pending_refresh_notification_goes_to_the_full_run(tmp_path: Path) -> None:
    graph, _ = _w1(tmp_path)
    prefix = tmp_path / "state"
    _converged_twice(graph, prefix)
    (prefix / "refresh").mkdir(exist_ok=True)
    (prefix / "refresh" / "marker").write_text("")
    proc, fast = _run(graph, prefix)
    assert not fast, proc.stderr


def test_graphs_of_other_kinds_and_other_flags_always_run_in_full(tmp_path: Path) -> None:
    prefix = tmp_path / "state"
    doc = graph_doc("other", files=[{"name": str(tmp_path / "f"), "content": ""}])
    doc["resources"]["noop"] = [{"name": "n"}]
    graph = tmp_path / "graph.yaml"
    graph.write_text(dump(doc))
    for code in (2, 0):
        proc, fast = _run(graph, prefix)
        assert not fast and proc.returncode == code, proc.stderr
    assert not (prefix / PLAN_NAME).exists()
    graph, _ = _w1(tmp_path)
    _converged_twice(graph, prefix)
    for flags in (["--noop"], ["-v"], ["--json"], ["--hostname", "h1"], ["--sema", "2"]):
        proc, fast = _run(graph, prefix, *flags)
        assert not fast and proc.returncode == 0, (flags, proc.stderr)


def test_a_reader_leaving_stops_the_fast_path_as_a_full_run(tmp_path: Path) -> None:
    """``pymgmt run ... 2>&1 | head -1``: exit 141 (tests/cli/test_output_pipe.py), both ways."""
    managed = tmp_path / "managed"
    managed.mkdir()
    files = [{"name": f"f{i}", "path": str(managed / f"f{i}"), "content": ""} for i in range(1000)]
    graph = _graph(tmp_path, files)  # no AutoEdges: the first line comes from the run itself
    prefix = tmp_path / "state"
    _converged_twice(graph, prefix)
    codes = []
    for flags in (["--no-cache"], []):  # the full run, then the fast path
        for f in managed.iterdir():
            f.write_text("drifted\n")
        argv = [sys.executable, "-m", "pymgmt.cli.main", "run", "--prefix", str(prefix)]
        argv += ["--converged-timeout", "0", *flags, str(graph)]
        with subprocess.Popen(argv, stderr=subprocess.PIPE) as proc:
            assert proc.stderr is not None
            try:
                assert proc.stderr.readline()
                proc.stderr.close()
                codes.append(proc.wait(timeout=4 * DEADLINE))
            finally:
                proc.kill()
    assert codes == [141, 141]


#: the command as installed (pyproject's script-files), run from this checkout
SCRIPT = Path(__file__).resolve().parents[2] / "bin" / "pymgmt"


def _script(graph: Path, prefix: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """bin/pymgmt's one-shot run of `graph`, and the modules it imported."""
    argv = [sys.executable, "-X", "importtime", str(SCRIPT), "run", "--prefix", str(prefix)]
    argv += ["--converged-timeout", "0", str(graph)]
    return _imports(argv)


def test_the_script_answers_before_importing_the_command_line_parser(tmp_path: Path) -> None:
    """A run the fast path answers ends in the script (pymgmt/oneshot/command.py
    `run_or_return`): the same words and exit codes, without argparse's tables."""
    graph, managed = _w1(tmp_path)
    prefix = tmp_path / "state"
    _converged_twice(graph, prefix)
    (managed / "f0").unlink()
    repaired, imported = _script(graph, prefix)
    assert repaired.returncode == 2, repaired.stderr
    assert "pymgmt.cli.main" not in imported and "pymgmt.oneshot.command" in imported
    assert "OK: 6 resources: 5 unchanged, 1 changed, 0 failed\n" in repaired.stderr
    assert (managed / "f0").read_text() == "i am f0\n"
    fast, imported = _script(graph, prefix)
    full, _ = _run(graph, prefix, "--no-cache")
    assert fast.returncode == full.returncode == 0, (fast.stderr, full.stderr)
    assert "pymgmt.cli.main" not in imported
    assert _normal(fast.stderr) == _normal(full.stderr)


def test_a_run_the_script_could_not_answer_stores_the_plan_for_the_next(tmp_path: Path) -> None:
    """The fast path is asked once, by the script; the full run gets its answer
    (store a plan), so the run after it is answered."""
    graph, managed = _w1(tmp_path)
    prefix = tmp_path / "state"
    first, imported = _script(graph, prefix)
    assert first.returncode == 2, first.stderr
    assert "pymgmt.cli.main" in imported  # no plan yet: the full run
    assert (prefix / PLAN_NAME).is_file()
    assert sorted(p.name for p in managed.iterdir()) == [f"f{i}" for i in range(5)]
    second, imported = _script(graph, prefix)
    assert second.returncode == 0, second.stderr
    assert "pymgmt.cli.main" not in imported
