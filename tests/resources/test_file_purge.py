"""file `purge` without a source (mgmt's examples/lang/purge1.mcl, Puppet's purge => true).

The directory holds only what the graph manages in it: every other entry
(file, symlink, whole subtree) is removed, the paths other file resources
manage are spared with the directories above them, and the spared set
follows live graph edits. Real files, real inotify, a real agent.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from helpers import (
    PYMGMT,
    checked,
    event,
    graph_doc,
    json_lines,
    recap_of,
    run_once,
    sentinel_res,
    wait_for,
    write_graph,
    write_in_place,
)


def _purged(top: Path) -> dict[str, Any]:
    return {"name": "dir", "path": f"{top}/", "recurse": True, "purge": True}


def _file(name: str, path: Path) -> dict[str, Any]:
    return {"name": name, "path": str(path), "content": f"i am {name}\n"}


def _entries(top: Path) -> set[str]:
    """Every entry below `top`, relative, never following a symlink."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            out.add(str((Path(dirpath) / name).relative_to(top)))
    return out


def _litter(top: Path, outside: Path) -> None:
    """Unmanaged entries: a file, symlinks to a file and a directory outside, subtrees."""
    (top / "sub" / "deep").mkdir(parents=True)
    (top / "junk").write_bytes(b"unmanaged\n")
    (top / "sub" / "stray").write_bytes(b"unmanaged, next to a managed file\n")
    (top / "sub" / "deep" / "z").write_bytes(b"unmanaged, deeper\n")
    (top / "olddir" / "inner").mkdir(parents=True)
    (top / "olddir" / "inner" / "f").write_bytes(b"a whole unmanaged subtree\n")
    os.symlink(outside / "keep.txt", top / "link-to-file")
    os.symlink(outside, top / "link-to-dir")
    os.symlink(outside, top / "sub" / "link-in-sub")


def _outside(managed: Path) -> Path:
    outside = managed / "outside"
    (outside / "inner").mkdir(parents=True)
    (outside / "keep.txt").write_bytes(b"must survive\n")
    return outside


def test_the_purge1_shape_keeps_only_what_the_graph_manages(tmp_path, managed):
    top, outside = managed / "some_dir", _outside(managed)
    top.mkdir()
    _litter(top, outside)
    graph = tmp_path / "graph.yaml"
    files = [_purged(top), _file("a", top / "fileA"), _file("x", top / "sub" / "x")]
    write_graph(graph, graph_doc("purge1", files=files))
    first = run_once(graph, tmp_path / "state", "--json")
    assert first.returncode == 2, first.stderr
    # managed files kept (made), their parent kept, all else gone
    assert _entries(top) == {"fileA", "sub", "sub/x"}
    assert (top / "fileA").read_bytes() == b"i am a\n"
    assert (top / "sub" / "x").read_bytes() == b"i am x\n"
    # symlinks were removed as entries, never followed
    assert (outside / "keep.txt").read_bytes() == b"must survive\n"
    assert (outside / "inner").is_dir()
    again = run_once(graph, tmp_path / "state", "--json")
    assert again.returncode == 0, again.stderr
    assert recap_of(again)["resources"]["File[dir]"]["outcome"] == "unchanged"


def test_noop_lists_the_removals_and_removes_nothing(tmp_path, managed):
    top, outside = managed / "some_dir", _outside(managed)
    top.mkdir()
    _litter(top, outside)
    (top / "fileA").write_bytes(b"managed, already there\n")
    before = _entries(top)
    graph = tmp_path / "graph.yaml"
    write_graph(graph, graph_doc("noop", files=[_purged(top), _file("a", top / "fileA")]))
    proc = run_once(graph, tmp_path / "state", "--noop")
    assert proc.returncode == 2, proc.stderr
    out = proc.stdout + proc.stderr
    for line in (
        f"remove {top}/junk (a regular file)",
        f"remove {top}/link-to-dir (a symlink)",
        f"remove {top}/olddir (a directory)",
        f"remove {top}/sub (a directory)",  # nothing managed below it here
    ):
        assert line in out, out
    assert f"remove {top}/fileA" not in out
    assert _entries(top) == before


def test_a_file_dropped_in_is_removed_as_drift_and_managed_files_are_left_alone(
    agent, tmp_path, managed
):
    top = managed / "some_dir"
    graph = tmp_path / "graph.yaml"
    files = [
        _purged(top),
        _file("a", top / "fileA"),
        {"name": "sub", "path": f"{top}/sub/"},
        _file("x", top / "sub" / "x"),
        sentinel_res(managed),
    ]
    write_graph(graph, graph_doc("drop", files=files))
    a = agent(graph)
    a.wait_checked(["File[dir]", "File[a]", "File[sub]", "File[x]", "File[sentinel]"])
    wait_for(lambda: _entries(top) == {"fileA", "sub", "sub/x"}, what="the first run")

    for dropped in (top / "dropped", top / "sub" / "dropped-deeper"):
        since = a.mark()
        dropped.write_bytes(b"not managed\n")
        wait_for(lambda d=dropped: not d.exists(), what=f"{dropped} to be purged")
        i = a.wait_event(checked("File[dir]", applied=True), since=since, what="the purge")
        assert a.events[i]["drift"], a.events[i]

    # A managed file's edit is its own resource's business: no fight with the purge.
    since = a.mark()
    write_in_place(top / "fileA", "edited behind the agent's back\n")
    wait_for(lambda: (top / "fileA").read_bytes() == b"i am a\n", what="fileA repaired")
    # (it may run first as File[dir]'s downstream, the directory's watch seeing the edit too)
    a.wait_event(checked("File[a]", applied=True), since=since, what="fileA's repair")
    a.barrier(managed / "sentinel")
    assert not a.find(checked("File[dir]", applied=True), since=since)
    assert _entries(top) == {"fileA", "sub", "sub/x"}
    assert a.stop() == 0
    assert a.recap()["resources"]["File[dir]"]["repaired"] == 2


def test_a_live_graph_edit_changes_what_is_spared(agent, tmp_path, managed):
    top = managed / "some_dir"
    graph = tmp_path / "graph.yaml"

    def save(*names: str) -> None:
        files = [_purged(top), *(_file(n, top / f"file{n}") for n in names)]
        write_graph(graph, graph_doc("live", files=[*files, sentinel_res(managed)]))

    save("A", "B")
    a = agent(graph)
    a.wait_checked(["File[dir]", "File[A]", "File[B]", "File[sentinel]"])
    wait_for(lambda: _entries(top) == {"fileA", "fileB"}, what="both files")

    # B leaves the graph: its file is no longer managed, so it is purged (as Puppet does).
    since = a.mark()
    save("A")
    a.wait_event(event("graph_swapped"), since=since, what="B removed")
    wait_for(lambda: _entries(top) == {"fileA"}, what="fileB to be purged")

    # C joins the graph: its file is made and spared from then on.
    since = a.mark()
    save("A", "C")
    a.wait_event(event("graph_swapped"), since=since, what="C added")
    wait_for(lambda: _entries(top) == {"fileA", "fileC"}, what="fileC to be made")
    a.barrier(managed / "sentinel")
    assert _entries(top) == {"fileA", "fileC"}
    assert (top / "fileC").read_bytes() == b"i am C\n"
    assert not a.find(event("failed")), a.find(event("failed"))


def test_a_purge_with_a_source_spares_what_other_resources_manage(tmp_path, managed):
    src, dst = managed / "src", managed / "www"
    src.mkdir()
    (src / "index.html").write_bytes(b"from the source\n")
    (src / "config.php").write_bytes(b"the source's config\n")
    (src / "gone").write_bytes(b"wanted absent by another resource\n")
    dst.mkdir()
    (dst / "stale").write_bytes(b"purged\n")
    files = [
        {"name": "www", "path": f"{dst}/", "source": f"{src}/", "recurse": True, "purge": True},
        {"name": "cfg", "path": str(dst / "config.php"), "content": "<?php\n"},
        {"name": "gone", "path": str(dst / "gone"), "state": "absent"},
    ]
    graph = tmp_path / "graph.yaml"
    write_graph(graph, graph_doc("both", files=files))
    first = run_once(graph, tmp_path / "state", "--json")
    assert first.returncode == 2, first.stderr
    assert _entries(dst) == {"index.html", "config.php"}
    assert (dst / "config.php").read_bytes() == b"<?php\n"  # the resource's, not the source's
    again = run_once(graph, tmp_path / "state", "--json")
    assert again.returncode == 0, again.stderr


def test_a_purge_never_crosses_into_a_mounted_filesystem(tmp_path, managed):
    top = managed / "some_dir"
    (top / "mnt").mkdir(parents=True)
    (top / "junk").write_bytes(b"unmanaged\n")
    graph = tmp_path / "graph.yaml"
    write_graph(graph, graph_doc("mnt", files=[_purged(top)]))
    # In a mount namespace of its own: a tmpfs over some_dir/mnt, with a file in it.
    script = 'mount -t tmpfs tmpfs "$0" && echo kept > "$0/in-mount" && exec "$@"'
    argv = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script]
    argv += [str(top / "mnt"), *PYMGMT, "run", "--prefix", str(tmp_path / "state"), "--json"]
    done = subprocess.run(
        [*argv, "--converged-timeout", "0", str(graph)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 4, done.stdout + done.stderr
    (failed,) = [e for e in json_lines(done.stdout) if e.get("event") == "failed"]
    assert f"{top}/mnt is on another filesystem" in failed["error"], failed
    assert "purge never crosses into another filesystem" in failed["error"], failed
    assert (top / "junk").exists()  # the plan failed as a whole: nothing removed


def _invalid(tmp_path: Path, doc: dict[str, Any], *argv: str) -> subprocess.CompletedProcess[str]:
    graph = tmp_path / "bad.yaml"
    write_graph(graph, doc)
    return subprocess.run(
        [*PYMGMT, *argv, str(graph)], capture_output=True, text=True, check=False, timeout=60
    )


def test_purging_root_or_a_force_without_source_is_an_input_error(tmp_path):
    files = [
        {"name": "root", "path": "/", "recurse": True, "purge": True},
        {"name": "f", "path": f"{tmp_path}/d/", "recurse": True, "purge": True, "force": True},
        {"name": "r", "path": f"{tmp_path}/e/", "recurse": True},
    ]
    proc = _invalid(tmp_path, graph_doc("bad", files=files), "validate")
    assert proc.returncode == 1, proc.stderr
    for line in (  # file:line:column of the field (a long path is shortened before it)
        "bad.yaml:7:12: purge: refusing to purge '/'",
        "bad.yaml:12:12: force: replaces entries copied from a source: there is no source",
        "bad.yaml:15:14: recurse: copies a source directory, or purges",
    ):
        assert line in proc.stderr, proc.stderr


def test_purging_the_state_directory_s_parent_is_an_input_error(tmp_path, managed):
    top = managed / "some_dir"
    (top / "junk").parent.mkdir()
    (top / "junk").write_bytes(b"unmanaged\n")
    doc = graph_doc("st", files=[_purged(top)])
    proc = _invalid(tmp_path, doc, "run", "--converged-timeout", "0", "--prefix", str(top / "st"))
    assert proc.returncode == 1, proc.stderr
    assert (
        f"purge: File[dir] purges {top}, which holds the agent's state directory {top}/st"
    ) in proc.stderr
    assert (top / "junk").exists()  # nothing was changed
