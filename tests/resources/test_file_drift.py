"""File drift repair, as timelines against a real agent and the real kernel.

Each test: start the agent -> converged -> inject drift behind its back ->
the file is restored (read from disk, with a deadline) -> a barrier proves
nothing else happened -> SIGINT, and the recap counts exactly what was done.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    Agent,
    checked,
    graph_doc,
    sentinel_res,
    wait_for,
    write_atomic,
    write_graph,
    write_in_place,
)

WANTED = "wanted content\nline two\n"


def _content(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _start(agent: Callable[..., Agent], tmp_path: Path, managed: Path, *files: dict[str, Any]):
    graph = tmp_path / "graph.yaml"
    write_graph(graph, graph_doc("drift", files=[*files, sentinel_res(managed)]))
    a = agent(graph)
    a.wait_checked([f"File[{f['name']}]" for f in files] + ["File[sentinel]"])
    a.barrier(managed / "sentinel")
    return a


def _file_res(path: Path) -> dict[str, Any]:
    return {
        "name": "f",
        "path": str(path),
        "content": WANTED,
        "mode": "0640",
        "owner": "root",
        "group": "root",
    }


def _assert_is_wanted(path: Path) -> None:
    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert (st.st_uid, st.st_gid) == (0, 0)
    assert path.read_text() == WANTED


# (drift, the fields the repair must name, exact number of repairs or None for "at least one",
#  whether the repair must keep the same inode)
DRIFTS: list[tuple[str, Callable[[Path], None], set[str], int | None, bool]] = [
    (
        "deleted",
        lambda p: p.unlink(),
        {"state", "content", "mode", "owner", "group"},
        1,
        False,
    ),
    # the new inode is 0644 (umask), so the mode drifted too
    ("replaced-by-rename", lambda p: write_atomic(p, "edited\n"), {"content", "mode"}, 1, False),
    ("rewritten-in-place", lambda p: write_in_place(p, "edited\n"), {"content"}, None, False),
    ("chmod", lambda p: os.chmod(p, 0o777), {"mode"}, 1, True),
    ("chown", lambda p: os.chown(p, 1234, 1234), {"owner", "group"}, 1, True),
]


@pytest.mark.parametrize(
    ("inject", "fields", "repairs", "same_inode"),
    [d[1:] for d in DRIFTS],
    ids=[d[0] for d in DRIFTS],
)
def test_drift_on_a_managed_file_is_repaired_once_and_then_quiet(
    agent, tmp_path, managed, inject, fields, repairs, same_inode
):
    target = managed / "f"
    a = _start(agent, tmp_path, managed, _file_res(target))
    _assert_is_wanted(target)
    inode = os.stat(target).st_ino

    since = a.mark()
    inject(target)
    wait_for(
        lambda: (
            _content(target) == WANTED.encode()
            and stat.S_IMODE(os.stat(target).st_mode) == 0o640
            and os.stat(target).st_uid == 0
        ),
        what="the file to be restored",
    )
    first = a.wait_event(
        checked("File[f]", applied=True, drift=True), since=since, what="the repair event"
    )
    assert {c["field"] for c in a.events[first]["changes"]} == fields
    _assert_is_wanted(target)
    if same_inode:
        assert os.stat(target).st_ino == inode, "a metadata repair must not rewrite the file"

    end = a.barrier(managed / "sentinel")
    repaired = a.find(checked("File[f]", changed=True), since=since, until=end)
    if repairs is not None:
        assert len(repaired) == repairs, repaired
    assert all(e["applied"] and e["drift"] for e in repaired)
    # After the last repair the agent only confirmed the file, it never touched it again.
    last = a.events.index(repaired[-1])
    assert a.find(checked("File[f]", changed=True), since=last + 1) == []
    _assert_is_wanted(target)

    assert a.stop() == 0
    res = a.recap()["resources"]["File[f]"]
    assert res["outcome"] == "repaired"
    assert res["changed"] == 1  # created at start
    assert res["repaired"] == len(repaired)


def test_deleted_directory_is_recreated_with_its_mode(agent, tmp_path, managed):
    target = managed / "d"
    a = _start(agent, tmp_path, managed, {"name": "d", "path": f"{target}/", "mode": "0750"})
    assert target.is_dir()
    assert stat.S_IMODE(target.stat().st_mode) == 0o750

    since = a.mark()
    target.rmdir()
    wait_for(lambda: target.is_dir(), what="the directory to be recreated")
    a.wait_event(checked("File[d]", applied=True, drift=True), since=since, what="the repair")
    assert stat.S_IMODE(target.stat().st_mode) == 0o750

    since = a.mark()
    os.chmod(target, 0o700)
    wait_for(lambda: stat.S_IMODE(target.stat().st_mode) == 0o750, what="the mode to be restored")
    end = a.barrier(managed / "sentinel")
    assert len(a.find(checked("File[d]", changed=True), since=since, until=end)) == 1
    assert a.stop() == 0
    assert a.recap()["resources"]["File[d]"]["repaired"] == 2


def test_absent_file_created_behind_the_agents_back_is_removed(agent, tmp_path, managed):
    target = managed / "gone"
    a = _start(agent, tmp_path, managed, {"name": "gone", "path": str(target), "state": "absent"})
    assert not target.exists()
    assert a.find(checked("File[gone]", changed=True)) == []  # nothing to do at start

    for n in range(2):
        since = a.mark()
        target.write_text(f"intruder {n}\n")
        wait_for(lambda: not os.path.lexists(target), what="the file to be removed")
        a.wait_event(checked("File[gone]", applied=True), since=since, what="the removal event")
    end = a.barrier(managed / "sentinel")
    assert not os.path.lexists(target)
    last = max(i for i, e in enumerate(a.events[:end]) if checked("File[gone]", changed=True)(e))
    assert a.find(checked("File[gone]", changed=True), since=last + 1) == []

    assert a.stop() == 0
    res = a.recap()["resources"]["File[gone]"]
    assert res["outcome"] == "repaired"
    assert res["repaired"] >= 2


def test_file_in_a_missing_directory_is_created_once_the_directory_appears(
    agent, tmp_path, managed
):
    parent = managed / "later" / "deeper"
    target = parent / "f"
    a = _start(agent, tmp_path, managed, {"name": "f", "path": str(target), "content": WANTED})
    fail = a.find(lambda e: e.get("event") == "failed" and e["vertex"] == "File[f]")
    assert fail, a.describe()
    assert "parent directory" in fail[0]["error"]

    since = a.mark()
    parent.mkdir(parents=True)  # two levels: the watch has to move down twice
    wait_for(lambda: _content(target) == WANTED.encode(), what="the file to be created")
    a.wait_event(checked("File[f]", applied=True), since=since, what="the apply event")
    assert a.stop() == 0
    assert a.recap()["resources"]["File[f]"]["outcome"] in ("changed", "repaired")
