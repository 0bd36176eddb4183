"""The inotify hub at the kernel's watch limit, for real.

The limit is per user and per user namespace (Linux >= 5.11): the agent runs
in a user namespace of its own whose ``user.max_inotify_watches`` is set very
low, so the kernel itself answers ENOSPC, without touching this machine's
limit (which other processes share).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import DEADLINE, PYMGMT, dump, graph_doc, json_lines

pytestmark = pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare")


def _in_userns_with_watch_limit(limit: int, argv: list[str]) -> list[str]:
    script = f"echo {limit} > /proc/sys/user/max_inotify_watches && exec {shlex.join(argv)}"
    return ["unshare", "--user", "--map-root-user", "sh", "-c", script]


def _userns_limit_works() -> bool:
    proc = subprocess.run(
        _in_userns_with_watch_limit(1, ["true"]), capture_output=True, check=False, timeout=30
    )
    return proc.returncode == 0


def _run_with_watch_limit(
    tmp_path: Path, limit: int, files: list[dict[str, object]]
) -> subprocess.CompletedProcess[str]:
    """Run a graph of `files` once, with `limit` inotify watches for the agent's user."""
    graph = tmp_path / "g.yaml"
    graph.write_text(dump(graph_doc("limit", files=files)))
    argv = [*PYMGMT, "run", "--prefix", str(tmp_path / "p"), "--converged-timeout", "0"]
    return subprocess.run(
        _in_userns_with_watch_limit(limit, [*argv, "--json", str(graph)]),
        capture_output=True,
        text=True,
        check=False,
        timeout=4 * DEADLINE,
    )


def test_the_watch_limit_is_a_clear_failure_naming_the_sysctl(tmp_path: Path) -> None:
    if not _userns_limit_works():
        pytest.skip("cannot lower the inotify watch limit in a user namespace here")
    dirs = [tmp_path / f"d{i}" for i in range(3)]
    for d in dirs:
        d.mkdir()
    files = [{"name": str(d / "f"), "content": "x\n"} for d in dirs]
    # Two watches: one for the graph file's directory, one for d0. d1 and d2
    # get ENOSPC from the kernel.
    proc = _run_with_watch_limit(tmp_path, 2, files)
    failed = {e["vertex"]: e for e in json_lines(proc.stdout) if e["event"] == "failed"}
    assert sorted(failed) == [f"File[{dirs[1]}/f]", f"File[{dirs[2]}/f]"], proc.stdout
    for d in dirs[1:]:
        error = failed[f"File[{d}/f]"]["error"]
        assert error.startswith(f"cannot watch {d}/f: the inotify watch limit is reached"), error
        assert "user.max_inotify_watches = 2" in error  # the limit that bit, in this namespace
        assert "sysctl -w user.max_inotify_watches=" in error
        assert failed[f"File[{d}/f]"]["phase"] == "watch"
    assert (dirs[0] / "f").read_text() == "x\n"  # the one that could be watched was managed
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 6, proc.stderr


def test_a_tree_watch_past_the_limit_is_a_clear_failure(tmp_path: Path) -> None:
    # file recurse watches every directory of its source and copy: the
    # graph's directory, m, m/src and then m/src/a would need a fourth
    if not _userns_limit_works():
        pytest.skip("cannot lower the inotify watch limit in a user namespace here")
    src = tmp_path / "m" / "src"
    for d in ("a", "b"):
        (src / d).mkdir(parents=True)
        (src / d / "f").write_text(d)
    www = tmp_path / "m" / "www"
    res = {"name": "www", "path": f"{www}/", "source": f"{src}/", "recurse": True}
    proc = _run_with_watch_limit(tmp_path, 3, [res])
    failed = [e for e in json_lines(proc.stdout) if e["event"] == "failed"]
    assert [e["vertex"] for e in failed] == ["File[www]"], proc.stdout
    error = failed[0]["error"]
    assert error.startswith(f"cannot watch {src}/"), error
    assert "the inotify watch limit is reached" in error, error
    assert "sysctl -w user.max_inotify_watches=" in error
    assert "Traceback" not in proc.stderr
    assert proc.returncode != 0
