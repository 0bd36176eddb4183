"""The diff a file's check reports: exactly difflib's unified diff.

A created file's diff (everything added to nothing) is written without
difflib's matcher, which cost a quarter of a millisecond per file of a
first apply (issue 13); it must read the same, byte for byte.
"""

from __future__ import annotations

import difflib
import os

import pytest

from pymgmt.resources.file import _unified

CONTENTS = [
    b"",
    b"one line\n",
    b"no newline at the end",
    b"two\nlines\n",
    b"two\nlines, the last unfinished",
    b"\n\n\n",
    "caf\u00e9 \u2713\n".encode(),
    b"".join(b"line %d\n" % i for i in range(50)),
]


def _difflib(path: str, old: bytes | None, new: bytes) -> str:
    before = [] if old is None else old.decode().splitlines(keepends=True)
    after = new.decode().splitlines(keepends=True)
    lines = difflib.unified_diff(before, after, "/dev/null" if old is None else path, path, n=3)
    return "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )


@pytest.mark.parametrize("new", CONTENTS)
def test_the_diff_of_a_created_file_is_difflibs(new):
    assert _unified("/etc/app.conf", None, new, None) == _difflib("/etc/app.conf", None, new)


@pytest.mark.parametrize("new", CONTENTS)
def test_the_diff_of_an_empty_file_given_content_is_difflibs(new, tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    st = os.stat(empty)
    assert _unified(str(empty), b"", new, st) == _difflib(str(empty), b"", new)


@pytest.mark.parametrize("old", [c for c in CONTENTS if c])
def test_the_diff_of_changed_content_is_difflibs(old, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(old)
    new = b"something else\n" + old
    assert _unified(str(path), old, new, os.stat(path)) == _difflib(str(path), old, new)


def test_a_created_file_shows_as_one_hunk_of_additions():
    assert _unified("/etc/motd", None, b"hello\nworld\n", None) == (
        "--- /dev/null\n+++ /etc/motd\n@@ -0,0 +1,2 @@\n+hello\n+world\n"
    )


def test_show_diff_false_shows_checksums_and_never_the_lines(tmp_path):
    """Puppet's show_diff: a copied key's change is named, its lines are not shown."""
    from helpers import files_graph, json_lines, run_once

    secret_line = "-----BEGIN PRIVATE KEY----- 5ecr3t"
    src, dst = tmp_path / "src.key", tmp_path / "dst.key"
    src.write_text(secret_line + "\n")
    dst.write_text("old line\n")
    quiet = {"name": str(dst), "source": str(src), "mode": "0600", "show_diff": False}
    for args in (("--json", "-v"), ("-v",), ("--noop", "-v"), ("--noop", "--json", "-v")):
        dst.write_text("old line\n")
        proc = run_once(files_graph(tmp_path, "keys", quiet), tmp_path / "state", *args)
        assert proc.returncode == 2, proc.stderr
        assert secret_line not in proc.stdout + proc.stderr, args
        assert "old line" not in proc.stdout + proc.stderr, args
        if "--json" in args:
            (change,) = [
                c
                for e in json_lines(proc.stdout)
                if e.get("event") == "checked"
                for c in e.get("changes", [])
                if c["field"] == "content"
            ]
            assert change["diff"] == "" and change["new"].startswith("sha256:"), change
        noop = "--noop" in args
        assert dst.read_text() == ("old line\n" if noop else secret_line + "\n"), args
    shown = {**quiet, "show_diff": True}
    dst.write_text("old line\n")
    proc = run_once(files_graph(tmp_path, "keys", shown), tmp_path / "state", "-v")
    assert "-old line" in proc.stderr and "+" + secret_line in proc.stderr  # the default shows it
