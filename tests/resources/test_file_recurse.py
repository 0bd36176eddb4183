"""file `recurse` and `purge`: a directory kept a byte-identical copy of a source directory.

A change in the source tree is a change of what is wanted (reported
"changed"); a change in the copy behind the agent's back is drift (reported
"repaired"). Purge removes what the source lacks, a symlink as itself (and spares what
other resources manage: test_file_purge.py).
"""

from __future__ import annotations

import itertools
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    PYMGMT,
    checked,
    files_graph,
    recap_of,
    run_once,
    see_drift_repaired,
    sentinel_res,
    wait_for,
    write_atomic,
)

from pymgmt.resources.file import File


def _source(managed: Path) -> Path:
    """A source tree: files at two levels, an empty directory, a binary file, modes."""
    src = managed / "src"
    (src / "css" / "deep").mkdir(parents=True)
    (src / "empty").mkdir()
    (src / "index.html").write_bytes(b"<h1>hi</h1>\n")
    (src / "css" / "site.css").write_bytes(b"body {}\n")
    (src / "css" / "deep" / "x.bin").write_bytes(b"\x00\xff binary")
    os.chmod(src / "css" / "deep" / "x.bin", 0o600)
    os.chmod(src / "empty", 0o750)
    return src


def _tree(top: Path) -> dict[str, tuple[str, int, bytes | None]]:
    """Every entry below `top`: (type, permission bits, bytes for a file)."""
    out: dict[str, tuple[str, int, bytes | None]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(top))
            try:
                st = p.lstat()
                if p.is_symlink():
                    out[rel] = ("link", 0, None)
                elif p.is_dir():
                    out[rel] = ("dir", st.st_mode & 0o777, None)
                else:
                    out[rel] = ("file", st.st_mode & 0o777, p.read_bytes())
            except FileNotFoundError:  # removed by the agent while read: not in the tree
                continue
    return out


def _copy(dst: Path, src: Path, **extra: Any) -> dict[str, Any]:
    return {"name": "www", "path": f"{dst}/", "source": f"{src}/", "recurse": True, **extra}


def test_a_tree_is_copied_and_then_converged(tmp_path, managed):
    src, dst = _source(managed), managed / "www"
    graph = files_graph(tmp_path, "tree", _copy(dst, src, mode="0755"))
    first = run_once(graph, tmp_path / "state", "--json")
    assert first.returncode == 2, first.stderr
    assert _tree(dst) == _tree(src)  # bytes and permission bits, at every level
    assert (dst.stat().st_mode & 0o777) == 0o755  # `mode` is the top directory's
    again = run_once(graph, tmp_path / "state", "--json")
    assert again.returncode == 0, again.stderr
    assert recap_of(again)["resources"]["File[www]"]["outcome"] == "unchanged"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_owner_and_group_are_set_on_every_entry(tmp_path, managed):
    src, dst = _source(managed), managed / "www"
    dst.mkdir()
    (dst / "index.html").write_bytes(b"<h1>hi</h1>\n")  # right bytes, root's
    graph = files_graph(tmp_path, "tree", _copy(dst, src, owner="65534", group="65534"))
    proc = run_once(graph, tmp_path / "state", "--json")
    assert proc.returncode == 2, proc.stderr
    owners = {(p.lstat().st_uid, p.lstat().st_gid) for p in [dst, *dst.rglob("*")]}
    assert owners == {(65534, 65534)}
    assert _tree(dst) == _tree(src)
    again = run_once(graph, tmp_path / "state", "--json")
    assert again.returncode == 0, again.stderr


def test_noop_lists_what_it_would_create_replace_and_remove(tmp_path, managed):
    src, dst = _source(managed), managed / "www"
    dst.mkdir()
    (dst / "index.html").write_bytes(b"old\n")
    (dst / "stale.html").write_bytes(b"stale\n")
    before = _tree(dst)
    graph = files_graph(tmp_path, "tree", _copy(dst, src, purge=True))
    proc = run_once(graph, tmp_path / "state", "--noop")
    assert proc.returncode == 2, proc.stderr
    for line in (
        f"replace {dst}/index.html (0644)",
        f"mkdir {dst}/css (0755)",
        f"create {dst}/css/deep/x.bin (0600)",
        f"remove {dst}/stale.html (a regular file)",
    ):
        assert line in proc.stdout + proc.stderr, proc.stderr
    assert _tree(dst) == before  # noop changed nothing


def test_purge_removes_extras_and_a_symlink_without_following_it(tmp_path, managed):
    src, dst = _source(managed), managed / "www"
    precious = managed / "precious"
    (precious / "inside").mkdir(parents=True)
    (precious / "keep.txt").write_bytes(b"must survive\n")
    dst.mkdir()
    (dst / "extra.txt").write_bytes(b"extra\n")
    (dst / "olddir" / "sub").mkdir(parents=True)
    (dst / "olddir" / "sub" / "f").write_bytes(b"f\n")
    os.symlink(precious, dst / "link-to-dir")
    os.symlink(precious / "keep.txt", dst / "css")  # a symlink where the source has a dir
    graph = files_graph(tmp_path, "tree", _copy(dst, src, purge=True, force=True))
    proc = run_once(graph, tmp_path / "state", "--json")
    assert proc.returncode == 2, proc.stderr
    assert _tree(dst) == _tree(src)
    assert (precious / "keep.txt").read_bytes() == b"must survive\n"  # never followed
    assert (precious / "inside").is_dir()


def test_without_purge_extras_stay_and_a_symlink_in_the_way_is_an_error(tmp_path, managed):
    src, dst = _source(managed), managed / "www"
    dst.mkdir()
    (dst / "extra.txt").write_bytes(b"extra\n")
    graph = files_graph(tmp_path, "tree", _copy(dst, src))
    proc = run_once(graph, tmp_path / "state", "--json")
    assert proc.returncode == 2, proc.stderr
    assert (dst / "extra.txt").read_bytes() == b"extra\n"
    assert _tree(dst) == {**_tree(src), "extra.txt": ("file", 0o644, b"extra\n")}

    (dst / "index.html").unlink()
    os.symlink(managed / "precious", dst / "index.html")
    proc = run_once(graph, tmp_path / "state", "--json")
    assert proc.returncode == 4, proc.stderr
    (err,) = recap_of(proc)["resources"]["File[www]"]["failures"]
    assert f"{dst}/index.html is a symlink where the source has a regular file" in err, err
    assert "force: true" in err


def test_a_symlink_in_the_source_is_refused_and_never_followed(tmp_path, managed):
    src, dst = _source(managed), managed / "www"
    secret = managed / "secret"
    secret.write_text("root only\n")
    os.symlink(secret, src / "css" / "leak")
    graph = files_graph(tmp_path, "tree", _copy(dst, src))
    proc = run_once(graph, tmp_path / "state", "--json")
    assert proc.returncode == 4, proc.stderr
    (err,) = recap_of(proc)["resources"]["File[www]"]["failures"]
    assert f"source entry {src}/css/leak is a symlink" in err, err
    assert not (dst / "css" / "leak").exists()


def test_a_tree_too_deep_is_a_clear_error(tmp_path, managed):
    src, dst = managed / "src", managed / "www"
    (src / "/".join(["d"] * 70)).mkdir(parents=True)
    graph = files_graph(tmp_path, "tree", _copy(dst, src))
    proc = run_once(graph, tmp_path / "state", "--json")
    assert proc.returncode == 4, proc.stderr
    (err,) = recap_of(proc)["resources"]["File[www]"]["failures"]
    assert "is more than 64 directories deep: recurse copies at most that deep" in err, err


def test_the_agent_follows_the_source_tree_and_repairs_the_copy(agent, tmp_path, managed):
    src, dst = _source(managed), managed / "www"
    graph = files_graph(tmp_path, "tree", _copy(dst, src, purge=True), sentinel_res(managed))
    a = agent(graph)
    a.wait_checked(["File[www]", "File[sentinel]"])
    wait_for(lambda: _tree(dst) == _tree(src), what="the first copy")

    steps = [
        lambda: write_atomic(src / "css" / "deep" / "x.bin", b"edited deep down"),
        lambda: (src / "css" / "new.css").write_bytes(b"new\n"),
        lambda: (src / "index.html").unlink(),
        lambda: (src / "empty" / "later").mkdir(),  # a directory made after the first walk
        lambda: (src / "empty" / "later" / "f").write_bytes(b"in it\n"),
        lambda: os.chmod(src / "css" / "site.css", 0o600),
    ]
    for step in steps:
        since = a.mark()
        step()
        wait_for(lambda: _tree(dst) == _tree(src), what="the copy to follow its source")
        i = a.wait_event(checked("File[www]", applied=True), since=since, what="the update")
        assert not a.events[i]["drift"], a.events[i]  # what is wanted changed: not drift

    since = a.mark()
    (dst / "planted").write_bytes(b"not in the source\n")  # drift: purged
    wait_for(lambda: not (dst / "planted").exists(), what="the extra file to be purged")
    i = a.wait_event(checked("File[www]", applied=True), since=since, what="the purge")
    assert a.events[i]["drift"], a.events[i]

    want = (src / "empty" / "later" / "f").read_bytes()
    edited = dst / "empty" / "later" / "f"
    sentinel = managed / "sentinel"
    see_drift_repaired(a, "File[www]", edited, want, sentinel, repairs=2, in_place=True)


@pytest.mark.parametrize(
    ("res", "message"),
    [
        ({"path": "/tmp/x/", "source": "/tmp/s/"}, "source: a source directory is copied with"),
        ({"path": "/tmp/x", "source": "/tmp/s/"}, "source: a directory (ending in '/') is copied"),
        ({"path": "/tmp/x", "source": "/tmp/s", "recurse": True}, "recurse: copies a directory"),
        ({"path": "/tmp/x/", "recurse": True}, "recurse: copies a source directory, or purges"),
        ({"path": "/tmp/x/", "source": "/tmp/s", "recurse": True}, "source: a directory copied"),
        ({"path": "/tmp/x/", "source": "/tmp/x/y/", "recurse": True}, "are inside each other"),
        ({"path": "/tmp/x/y/", "source": "/tmp/x/", "recurse": True}, "are inside each other"),
        # a doubled slash hid a copy inside its own source: deeper at each round
        ({"path": "/tmp/x/y/", "source": "/tmp//x/", "recurse": True}, "are inside each other"),
        ({"path": "/tmp/y/", "source": "/tmp/x/../y/z/", "recurse": True}, "must be a normalised"),
        ({"path": "/tmp/x/", "purge": True}, "purge: is used only with recurse: true"),
        ({"path": "/tmp/x", "force": True}, "force: is used only with recurse: true"),
        (
            {"path": "/tmp/x/", "source": "/tmp/s/", "recurse": True, "state": "absent"},
            "recurse: copies a tree, which cannot be absent",
        ),
        # with fragments, recurse, purge and force went unchecked (valid, then a crash at run)
        ({"path": "/tmp/x", "fragments": ["/tmp/f"], "recurse": True}, "recurse: copies a dir"),
        ({"path": "/tmp/x", "fragments": ["/tmp/f"], "purge": True}, "purge: is used only with"),
        ({"path": "/tmp/x", "fragments": ["/tmp/f"], "force": True}, "force: is used only with"),
        ({"path": "/tmp/x/", "fragments": ["/tmp/f"], "recurse": True}, "cannot have fragments"),
    ],
)
def test_bad_recursive_copies_are_input_errors(tmp_path, res, message):
    graph = files_graph(tmp_path, "bad", {"name": "c", **res})
    proc = subprocess.run(
        [*PYMGMT, "validate", str(graph)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr


def test_only_the_documented_shapes_of_a_file_are_valid():
    """Every combination of the ways to make content, on a file and a directory path."""
    ways: dict[str, dict[str, Any]] = {
        "content": {"content": "x"},
        "source": {"source": "/tmp/s"},
        "source/": {"source": "/tmp/s/"},
        "fragments": {"fragments": ["/tmp/f"]},
        "template": {"template": "t"},
        "recurse": {"recurse": True},
        "purge": {"purge": True},
        "force": {"force": True},
    }
    valid = set()
    for path in ("/tmp/x", "/tmp/x/"):
        for n in range(4):
            for combo in itertools.combinations(ways, n):
                if {"source", "source/"} <= set(combo):
                    continue
                params = {k: v for way in combo for k, v in ways[way].items()}
                if not File(name="c", path=path, **params).problems():
                    valid.add((path, combo))
    alone = [(), ("content",), ("source",), ("fragments",), ("template",)]
    trees = [(), ("source/", "recurse"), ("source/", "recurse", "purge")]
    trees += [("source/", "recurse", "force"), ("recurse", "purge")]  # purge1.mcl's shape
    assert valid == {("/tmp/x", c) for c in alone} | {("/tmp/x/", c) for c in trees}
