"""file `fragments`: content built from other files, concatenated in order (mgmt's).

A fragment edited, created or removed is a change of what is wanted
(reported "changed", never drift); an edit of the built file behind the
agent's back is drift (reported "repaired").
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import (
    PYMGMT,
    bytes_or_none,
    checked,
    files_graph,
    recap_of,
    run_once,
    see_drift_repaired,
    sentinel_res,
    wait_for,
    write_atomic,
)


def _graph(tmp_path: Path, *files: dict[str, Any]) -> Path:
    return files_graph(tmp_path, "frags", *files)


def _parts(managed: Path) -> tuple[Path, Path]:
    """A header file and a fragment directory with two files and a subdirectory."""
    head = managed / "head"
    head.write_bytes(b"# head\n")
    d = managed / "conf.d"
    d.mkdir()
    (d / "20-b").write_bytes(b"b\n")
    (d / "10-a").write_bytes(b"a\n")
    (d / "sub").mkdir()
    (d / "sub" / "00-deeper").write_bytes(b"never: one level only\n")
    return head, d


def test_fragments_are_concatenated_in_order_and_then_converged(tmp_path, managed):
    head, d = _parts(managed)
    dst = managed / "built.conf"
    res = {"name": "b", "path": str(dst), "fragments": [str(head), f"{d}/"], "mode": "0640"}
    graph = _graph(tmp_path, res)
    first = run_once(graph, tmp_path / "state", "--json")
    assert first.returncode == 2, first.stderr
    assert dst.read_bytes() == b"# head\na\nb\n"  # a directory's files in name order
    assert (dst.stat().st_mode & 0o777) == 0o640
    again = run_once(graph, tmp_path / "state", "--json")
    assert again.returncode == 0, again.stderr
    assert recap_of(again)["resources"]["File[b]"]["outcome"] == "unchanged"
    (d / "15-new").write_bytes(b"new\n")
    third = run_once(graph, tmp_path / "state", "--json")
    assert third.returncode == 2, third.stderr  # no stored plan answers for fragments
    assert dst.read_bytes() == b"# head\na\nnew\nb\n"


def test_the_agent_follows_fragments_and_repairs_the_file(agent, tmp_path, managed):
    head, d = _parts(managed)
    dst = managed / "built.conf"
    res = {"name": "b", "path": str(dst), "fragments": [f"{d}/", str(head)]}
    a = agent(_graph(tmp_path, res, sentinel_res(managed)))
    a.wait_checked(["File[b]", "File[sentinel]"])
    wait_for(lambda: bytes_or_none(dst) == b"a\nb\n# head\n", what="the first build")

    steps = [
        (lambda: write_atomic(head, "# new head\n"), b"a\nb\n# new head\n"),  # a file edited
        (lambda: (d / "30-c").write_bytes(b"c\n"), b"a\nb\nc\n# new head\n"),  # one created
        (lambda: (d / "10-a").unlink(), b"b\nc\n# new head\n"),  # one removed
        (lambda: (d / "20-b").write_bytes(b"B\n"), b"B\nc\n# new head\n"),  # one rewritten
    ]
    for change, want in steps:
        since = a.mark()
        change()
        wait_for(lambda want=want: bytes_or_none(dst) == want, what=f"the file to become {want!r}")
        i = a.wait_event(checked("File[b]", applied=True), since=since, what="the update")
        assert not a.events[i]["drift"], a.events[i]  # what is wanted changed: not drift

    see_drift_repaired(a, "File[b]", dst, b"B\nc\n# new head\n", managed / "sentinel")


def test_managed_fragments_are_made_before_the_file(tmp_path, managed):
    d = managed / "parts"
    dst = managed / "built"
    graph = _graph(
        tmp_path,
        {"name": "built", "path": str(dst), "fragments": [f"{d}/", str(managed / "tail")]},
        {"name": "tail", "path": str(managed / "tail"), "content": "tail\n"},
        {"name": "one", "path": str(d / "1"), "content": "one\n"},
        {"name": "dir", "path": f"{d}/", "state": "exists"},
    )
    proc = run_once(graph, tmp_path / "state", "--json")
    assert proc.returncode == 2, proc.stderr
    assert dst.read_bytes() == b"one\ntail\n"


@pytest.mark.parametrize("where", ["listed", "in a directory"])
def test_a_symlinked_fragment_is_refused_and_never_followed(tmp_path, managed, where):
    secret = managed / "secret"
    secret.write_text("root only\n")
    d = managed / "d"
    d.mkdir()
    link = managed / "link" if where == "listed" else d / "link"
    os.symlink(secret, link)
    dst = managed / "built"
    dst.write_text("kept\n")
    frag = str(link) if where == "listed" else f"{d}/"
    graph = _graph(tmp_path, {"name": "b", "path": str(dst), "fragments": [frag]})
    proc = run_once(graph, tmp_path / "state", "--json")
    assert proc.returncode == 4, proc.stderr
    (err,) = recap_of(proc)["resources"]["File[b]"]["failures"]
    assert f"fragment {link} exists and is a symlink" in err, err
    assert dst.read_text() == "kept\n"


def test_a_fifo_among_the_fragments_is_refused_without_blocking(tmp_path, managed):
    d = managed / "d"
    d.mkdir()
    os.mkfifo(d / "pipe")
    dst = managed / "built"
    graph = _graph(tmp_path, {"name": "b", "path": str(dst), "fragments": [f"{d}/"]})
    proc = run_once(graph, tmp_path / "state", "--json")
    assert proc.returncode == 4, proc.stderr
    (err,) = recap_of(proc)["resources"]["File[b]"]["failures"]
    assert f"fragment {d}/pipe is not a regular file" in err, err
    assert not dst.exists()


def test_missing_fragments_fail_and_leave_the_file_alone(tmp_path, managed):
    dst = managed / "built"
    dst.write_text("kept\n")
    for frag, message in [
        (str(managed / "nope"), f"fragment {managed}/nope does not exist"),
        (f"{managed}/nodir/", f"fragment directory {managed}/nodir/ does not exist"),
    ]:
        graph = _graph(tmp_path, {"name": "b", "path": str(dst), "fragments": [frag]})
        proc = run_once(graph, tmp_path / "state", "--json")
        assert proc.returncode == 4, proc.stderr
        (err,) = recap_of(proc)["resources"]["File[b]"]["failures"]
        assert message in err, err
        assert dst.read_text() == "kept\n"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"content": "x"}, "fragments: give only one of content, source and fragments"),
        ({"source": "/etc/hostname"}, "fragments: give only one of content, source and fragments"),
        ({"fragments": []}, "fragments: give at least one fragment"),
        ({"fragments": ["relative"]}, "fragments[0]: must be an absolute path"),
        ({"fragments": ["/etc/a", "/etc/../b"]}, "fragments[1]: must be a normalised path"),
        ({"fragments": ["/tmp/"]}, "fragments[0]: is the directory the file is in"),
        ({"fragments": ["/tmp/pymgmt-never-made"]}, "fragments[0]: is the file itself"),
        ({"path": "/tmp/some/dir/"}, "a directory (path ending in '/') cannot have fragments"),
    ],
)
def test_bad_fragments_are_input_errors(tmp_path, extra, message):
    res = {"name": "c", "path": "/tmp/pymgmt-never-made", "fragments": ["/etc/hostname"], **extra}
    proc = subprocess.run(
        [*PYMGMT, "validate", str(_graph(tmp_path, res))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr


def _read_loop_problems(*files: dict[str, object]) -> list[str]:
    from pymgmt.errors import InputErrors
    from pymgmt.frontends.yamlgraph import parse

    text = yaml.safe_dump({"graph": "loops", "resources": {"file": list(files)}})
    try:
        parse(text, "loops.yaml")
    except InputErrors as e:
        return [str(x) for x in e.errors]
    return []


@pytest.mark.parametrize(
    "files",
    [
        # each made of the files in the other's directory: each write grows the other
        [{"name": "/m/x/a", "fragments": ["/m/y/"]}, {"name": "/m/y/b", "fragments": ["/m/x/"]}],
        # spelt with a doubled slash, and through a named fragment file
        [{"name": "/m//x/a", "fragments": ["/m/y/b"]}, {"name": "/m/y/b", "fragments": ["/m/x/"]}],
        # two sources copying each other, through a third file
        [
            {"name": "/m/a", "source": "/m/b"},
            {"name": "/m/b", "fragments": ["/m/c"]},
            {"name": "/m/c", "source": "/m/a"},
        ],
        # a tree copy whose source holds a file made from the copy
        [
            {"name": "/m/www/", "source": "/m/src/", "recurse": True},
            {"name": "/m/src/index.html", "fragments": ["/m/www/"]},
        ],
    ],
)
def test_files_built_from_each_other_are_refused(files):
    """Before: valid, and a running agent grew both files at every round, for ever."""
    # (a loop through named files is an AutoEdges cycle too, named as well)
    (problem,) = [p for p in _read_loop_problems(*files) if "is built from what it makes" in p]
    assert "each write would rebuild the next one for ever" in problem


def test_a_chain_of_files_built_from_others_is_fine():
    assert not _read_loop_problems(
        {"name": "/m/x/a", "fragments": ["/m/y/", "/m/z"]},
        {"name": "/m/y/b", "fragments": ["/m/z"]},
        {"name": "/m/z", "source": "/m/seed"},
        {"name": "/m/y/sub/c", "fragments": ["/m/x/"]},  # x/a reads y/ only, not y/sub/
        {"name": "/m/gone", "state": "absent", "source": "/m/x/a"},
    )
