"""The fast path's first apply and repairs: the same files and the same words as a full run.

Each case starts from a converged graph (so a plan is stored), breaks
the system the same way twice, and lets a full run (``--no-cache``, a flag
the fast path does not take) and then the fast path put it right. Both
must leave the same files (type, mode, owner, content) and write the same
lines (dates and durations aside; NOTICE lines compared as a set, since
the engine makes its changes in parallel) and exit alike.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import DEADLINE, dump
from test_fast_path import _normal, _run

from pymgmt.events import linux_inotify as kernel
from pymgmt.events.linux_inotify import Inotify
from pymgmt.oneshot.plan import PLAN_NAME

NOBODY = 65534


def _tree(root: Path) -> dict[str, tuple[object, ...]]:
    """What a run must leave alike: each node's type, mode, owner and content."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath, name)
            st = p.lstat()
            data = p.read_bytes() if stat.S_ISREG(st.st_mode) else b""
            out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), st.st_mode, st.st_uid, data)
    return out


#: report/progress.py's lines about a long apply: whether they come depends on the load
_PROGRESS = re.compile(r"^DATE INFO  \S+: (applying .*\(running for \d+ s\)|still running:)")


def _words(stderr: str) -> tuple[list[str], list[str]]:
    """(the NOTICE and ERROR lines, sorted; every other line, in order); without the
    durations a slow change gets (``(0.12 s)``), which depend on the disk, nor the
    lines about an apply that takes a while (a loaded machine's)."""
    lines = [re.sub(r" \(\d+\.\d\d s\)$", "", x) for x in _normal(stderr).splitlines()]
    lines = [x for x in lines if not _PROGRESS.match(x)]
    changes = sorted(x for x in lines if x.startswith(("DATE NOTICE", "DATE ERROR")))
    return changes, [x for x in lines if x not in changes]


def _graph(tmp_path: Path, files: list[dict[str, Any]], edges: list[tuple[str, str]]) -> Path:
    doc: dict[str, Any] = {"graph": "fast", "resources": {"file": files}}
    doc["edges"] = [
        {"name": f"{a}-{b}", "from": {"kind": "file", "name": a}, "to": {"kind": "file", "name": b}}
        for a, b in edges
    ]
    graph = tmp_path / "graph.yaml"
    graph.write_text(dump(doc))
    return graph


def _w1(m: Path) -> list[dict[str, Any]]:
    files: list[dict[str, Any]] = [{"name": "dir", "path": f"{m}/", "mode": "0755"}]
    files += [
        {"name": f"f{i}", "path": str(m / f"f{i}"), "content": f"i am f{i}\n", "mode": "0644"}
        for i in range(6)
    ]
    files.append({"name": "owned", "path": str(m / "owned"), "content": "", "owner": "root"})
    files.append({"name": "gone", "path": str(m / "gone"), "state": "absent"})
    files.append({"name": "sub", "path": f"{m}/sub/"})
    files.append({"name": "deep", "path": str(m / "sub" / "deep"), "content": "deep\n"})
    return files


def _wipe(m: Path) -> None:
    shutil.rmtree(m)


def _drift(m: Path) -> None:
    (m / "f1").write_text("edited\n")
    (m / "f2").write_text("i am fX\n")  # same size
    os.chmod(m / "f3", 0o600)
    (m / "f4").unlink()
    os.chown(m / "owned", NOBODY, -1)
    (m / "gone").write_text("back\n")
    shutil.rmtree(m / "sub")
    os.chmod(m, 0o700)


def _some_files(m: Path) -> None:
    for i in (0, 5):
        (m / f"f{i}").unlink()


@pytest.mark.parametrize(
    "breaking",
    [
        pytest.param(_wipe, id="first-apply"),
        pytest.param(_drift, id="drift"),
        pytest.param(_some_files, id="some-removed"),
    ],
)
def test_repairs_are_made_and_told_as_a_full_run_makes_them(
    tmp_path: Path, breaking: Callable[[Path], None]
) -> None:
    m = tmp_path / "managed"
    graph, prefix = _graph(tmp_path, _w1(m), [("f0", "f1")]), tmp_path / "state"
    first, _ = _run(graph, prefix)
    assert first.returncode == 2, first.stderr
    assert (prefix / PLAN_NAME).is_file()
    breaking(m)
    full, fast_full = _run(graph, prefix, "--no-cache")
    after_full = _tree(m)
    breaking(m)
    fast, fast_fast = _run(graph, prefix)
    assert not fast_full and fast_fast, fast.stderr
    assert (fast.returncode, _tree(m)) == (full.returncode, after_full)
    assert full.returncode == 2
    assert _words(fast.stderr) == _words(full.stderr), (full.stderr, fast.stderr)
    again, fast_again = _run(graph, prefix)
    assert (again.returncode, fast_again) == (0, True), again.stderr


@pytest.fixture
def immutable(tmp_path: Path) -> Any:
    """Files made immutable (chattr +i), made mutable again at the end."""
    made: list[Path] = []

    def make(path: Path) -> None:
        subprocess.run(["chattr", "+i", str(path)], check=True)
        made.append(path)

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_a_failed_write_skips_what_comes_after_it_as_a_full_run_does(
    tmp_path: Path, immutable: Any
) -> None:
    """A real failure: the kernel refuses to replace an immutable file (EPERM)."""
    m = tmp_path / "managed"
    graph, prefix = _graph(tmp_path, _w1(m), [("f0", "f1"), ("f1", "f2")]), tmp_path / "state"
    assert _run(graph, prefix)[0].returncode == 2

    def breaking(m: Path) -> None:
        subprocess.run(["chattr", "-i", str(m / "f0")], check=True)
        (m / "f0").write_text("drifted\n")
        (m / "f2").write_text("drifted too\n")
        (m / "f5").write_text("drifted as well\n")
        immutable(m / "f0")

    breaking(m)
    full, _ = _run(graph, prefix, "--no-cache")
    after_full = _tree(m)
    breaking(m)
    fast, fast_fast = _run(graph, prefix)
    assert fast_fast, fast.stderr
    assert full.returncode == 6, full.stderr  # f5 changed; f0 failed; f1, f2 skipped
    assert (fast.returncode, _tree(m)) == (full.returncode, after_full)
    assert _words(fast.stderr) == _words(full.stderr)
    assert re.search(r"File\[f2\] +skipped \(blocked by File\[f0\]\)", fast.stderr)


@pytest.mark.parametrize(
    "unsure",
    [
        pytest.param(lambda m: ((m / "f1").unlink(), (m / "f1").symlink_to(m / "f2")), id="link"),
        pytest.param(lambda m: ((m / "f1").unlink(), (m / "f1").mkdir()), id="a-directory"),
        pytest.param(lambda m: ((m / "gone").mkdir(), (m / "gone" / "x").touch()), id="rmdir"),
        pytest.param(None, id="no-parent"),
    ],
)
def test_what_the_fast_path_is_unsure_of_goes_untouched_to_the_full_run(
    tmp_path: Path, unsure: Callable[[Path], object] | None
) -> None:
    m = tmp_path / "managed"
    files = _w1(m)
    if unsure is None:  # a file whose directory is neither there nor managed
        files.append({"name": "orphan", "path": str(m / "nosuch" / "x"), "content": ""})
    graph, prefix = _graph(tmp_path, files, []), tmp_path / "state"
    assert _run(graph, prefix)[0].returncode in (2, 6)
    (m / "f3").write_text("drifted\n")  # something the fast path could have repaired
    if unsure is not None:
        unsure(m)
    proc, fast = _run(graph, prefix)
    assert not fast, proc.stderr
    # the full run found f3 drifted: the fast path had changed nothing before handing over
    assert "NOTICE File[f3]: CheckApply(apply=True): changed: content" in proc.stderr
    assert proc.returncode & 4, proc.stderr  # and it reports what the fast path was unsure of


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_changing_ends_the_run_interrupted_never_ok(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """The wave under way finishes (no half-written file), and the run says it was stopped."""
    m = tmp_path / "managed"
    files: list[dict[str, Any]] = [{"name": "dir", "path": f"{m}/"}]
    files += [{"name": f"f{i}", "path": str(m / f"f{i}"), "content": "x" * i} for i in range(2000)]
    graph, prefix = _graph(tmp_path, files, []), tmp_path / "state"
    assert _run(graph, prefix)[0].returncode == 2  # the plan is stored
    shutil.rmtree(m)
    argv = [sys.executable, "-m", "pymgmt.cli.main", "run", "--prefix", str(prefix)]
    argv += ["--converged-timeout", "0", str(graph)]
    with Inotify() as ino:
        ino.add_watch(tmp_path, kernel.CREATE)
        proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        try:
            assert ino.wait(DEADLINE), "the fast path never made the directory"
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=4 * DEADLINE)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + sig, err
    assert "(interrupted):" in err and "\nINTERRUPTED: 2001 resources:" in err, err
    for f in m.iterdir():  # every file there is whole
        assert f.read_text() == "x" * int(f.name[1:]), f


def test_a_first_run_made_by_the_fast_executor_reads_as_the_engines(tmp_path: Path) -> None:
    """A run with no plan yet validates, stores one and hands its graph over (run_stored)."""
    m = tmp_path / "managed"
    graph = _graph(tmp_path, _w1(m), [("f0", "f1")])
    full, _ = _run(graph, tmp_path / "one", "--no-cache")  # the engine
    after_full = _tree(m)
    shutil.rmtree(m)
    handed, _ = _run(graph, tmp_path / "other")  # a new state directory: no plan
    assert (handed.returncode, _tree(m)) == (full.returncode, after_full) == (2, after_full)
    assert _words(handed.stderr) == _words(full.stderr)
    assert (tmp_path / "other" / PLAN_NAME).is_file()


def test_kill_9_while_the_fast_path_rewrites_leaves_every_file_old_or_new(tmp_path: Path) -> None:
    m = tmp_path / "managed"
    n = 2000

    def files(word: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{"name": "dir", "path": f"{m}/"}]
        out += [
            {"name": f"f{i}", "path": str(m / f"f{i}"), "content": f"{word} {i}\n" * 50}
            for i in range(n)
        ]
        return out

    prefix = tmp_path / "state"
    old = _graph(tmp_path, files("old"), [])
    assert _run(old, prefix)[0].returncode == 2
    new = _graph(tmp_path, files("new"), [])
    assert _run(new, prefix, "--no-cache")[0].returncode == 2  # stores nothing: no plan yet
    for i in range(n):
        (m / f"f{i}").write_text(f"old {i}\n" * 50)
    assert _run(new, prefix)[0].returncode == 2  # the plan of the new graph is stored
    for i in range(n):
        (m / f"f{i}").write_text(f"old {i}\n" * 50)
    argv = [sys.executable, "-m", "pymgmt.cli.main", "run", "--prefix", str(prefix)]
    argv += ["--converged-timeout", "0", str(new)]
    with Inotify() as ino:
        ino.add_watch(m, kernel.MOVED_TO)
        proc = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
        try:  # killed among the renames: some files new, the rest still old
            assert ino.wait(DEADLINE), "the fast path never renamed a file into place"
            proc.kill()
        finally:
            proc.kill()
            proc.wait()
    for i in range(n):
        assert (m / f"f{i}").read_text() in (f"old {i}\n" * 50, f"new {i}\n" * 50), i
    proc2, fast = _run(new, prefix)  # the next run finishes the job (and the leftovers go)
    assert fast and proc2.returncode == 2, proc2.stderr
    assert sorted(p.name for p in m.iterdir()) == sorted(f"f{i}" for i in range(n))
    assert all((m / f"f{i}").read_text() == f"new {i}\n" * 50 for i in range(n))


def test_a_wave_larger_than_the_descriptors_allow_is_made_in_several_batches(
    tmp_path: Path,
) -> None:
    """Each staged file holds an fd until its batch's sync: 300 files under a limit of 64."""
    m = tmp_path / "managed"
    files: list[dict[str, Any]] = [{"name": "dir", "path": f"{m}/"}]
    files += [{"name": f"f{i}", "path": str(m / f"f{i}"), "content": f"{i}\n"} for i in range(300)]
    graph, prefix = _graph(tmp_path, files, []), tmp_path / "state"
    assert _run(graph, prefix)[0].returncode == 2  # the plan is stored
    shutil.rmtree(m)
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)); "
        "from pymgmt.cli.main import main; sys.exit(main(sys.argv[1:]))"
    )
    argv = [sys.executable, "-c", code, "run", "--prefix", str(prefix)]
    proc = subprocess.run(
        [*argv, "--converged-timeout", "0", str(graph)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "OK: 301 resources: 0 unchanged, 301 changed, 0 failed" in proc.stderr
    assert all((m / f"f{i}").read_text() == f"{i}\n" for i in range(300))
