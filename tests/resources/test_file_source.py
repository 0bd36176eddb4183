"""file `source`: the content is a local file's bytes, copied exactly and kept in step.

A change of the source is a change of what is wanted (reported "changed");
a change of the copy behind the agent's back is drift (reported "repaired").
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
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

#: not UTF-8, with a NUL and no final newline: copied byte for byte
BINARY = b"\x00\xff\xfe binary \x80\n\x01last"


def _graph(tmp_path: Path, *files: dict[str, Any]) -> Path:
    return files_graph(tmp_path, "copy", *files)


def test_a_source_is_copied_byte_for_byte_and_then_converged(tmp_path, managed):
    src, dst = managed / "src.bin", managed / "copy.bin"
    src.write_bytes(BINARY)
    graph = _graph(tmp_path, {"name": "c", "path": str(dst), "source": str(src), "mode": "0600"})
    first = run_once(graph, tmp_path / "state", "--json")
    assert first.returncode == 2, first.stderr
    assert dst.read_bytes() == BINARY
    assert (dst.stat().st_mode & 0o777) == 0o600
    again = run_once(graph, tmp_path / "state", "--json")
    assert again.returncode == 0, again.stderr
    assert recap_of(again)["resources"]["File[c]"]["outcome"] == "unchanged"
    src.write_bytes(b"new\n")
    third = run_once(graph, tmp_path / "state", "--json")
    assert third.returncode == 2, third.stderr  # the source changed: no stale plan answers
    assert dst.read_bytes() == b"new\n"


def test_a_managed_source_is_made_before_its_copy(tmp_path, managed):
    src, dst = managed / "made.conf", managed / "copy.conf"
    graph = _graph(
        tmp_path,
        {"name": "copy", "path": str(dst), "source": str(src)},  # declared first on purpose
        {"name": "orig", "path": str(src), "content": "made by the graph\n"},
    )
    proc = run_once(graph, tmp_path / "state", "--json")
    assert proc.returncode == 2, proc.stderr
    assert dst.read_text() == "made by the graph\n"


def test_the_agent_follows_source_edits_and_repairs_the_copy(agent, tmp_path, managed):
    src, dst = managed / "src", managed / "dst"
    src.write_text("one\n")
    graph = _graph(
        tmp_path, {"name": "c", "path": str(dst), "source": str(src)}, sentinel_res(managed)
    )
    a = agent(graph)
    a.wait_checked(["File[c]", "File[sentinel]"])
    wait_for(lambda: bytes_or_none(dst) == b"one\n", what="the first copy")

    since = a.mark()
    write_atomic(src, "two\n")  # the wanted content changes
    wait_for(lambda: bytes_or_none(dst) == b"two\n", what="the copy to follow its source")
    i = a.wait_event(checked("File[c]", applied=True), since=since, what="the update")
    assert not a.events[i]["drift"], a.events[i]

    see_drift_repaired(a, "File[c]", dst, b"two\n", managed / "sentinel")


def test_a_missing_source_fails_and_leaves_the_file_alone(tmp_path, managed):
    dst = managed / "dst"
    dst.write_text("kept\n")
    graph = _graph(tmp_path, {"name": "c", "path": str(dst), "source": str(managed / "nope")})
    proc = run_once(graph, tmp_path / "state", "--json")
    assert proc.returncode == 4, proc.stderr
    (err,) = recap_of(proc)["resources"]["File[c]"]["failures"]
    assert f"source {managed / 'nope'} does not exist" in err
    assert dst.read_text() == "kept\n"


@pytest.mark.parametrize("what", ["symlink", "directory"])
def test_a_source_that_is_not_a_regular_file_is_refused(tmp_path, managed, what):
    secret = managed / "secret"
    secret.write_text("root only\n")
    src = managed / "src"
    if what == "symlink":
        os.symlink(secret, src)
    else:
        src.mkdir()
    dst = managed / "dst"
    graph = _graph(tmp_path, {"name": "c", "path": str(dst), "source": str(src)})
    proc = run_once(graph, tmp_path / "state")
    assert proc.returncode == 4, proc.stderr
    assert "source" in proc.stderr and what in proc.stderr
    assert not dst.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"content": "x"}, "source: give either content or source, not both"),
        ({"source": "relative/path"}, "source: must be an absolute path"),
        ({"path": "/tmp/some/dir/"}, "source: a directory (path ending in '/') cannot have source"),
        # spelt another way, the file itself (or a climb out) went unseen
        ({"source": "/tmp//pymgmt-never-made"}, "source: is the file itself"),
        ({"source": "/tmp/./pymgmt-never-made"}, "source: must be a normalised path"),
        ({"source": "/tmp/../etc/shadow"}, "source: must be a normalised path"),
    ],
)
def test_bad_sources_are_input_errors(tmp_path, extra, message):
    res = {"name": "c", "path": "/tmp/pymgmt-never-made", "source": "/etc/hostname", **extra}
    proc = subprocess.run(
        [*PYMGMT, "validate", str(_graph(tmp_path, res))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr
