"""The graph file is input too: only a regular file of bounded size is read.

``/dev/zero`` once read until memory ran out; a FIFO or ``/dev/urandom``
blocked for ever (issue 8, fuzzing). Each is now refused at once, exit 1,
with one clear line and no traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pymgmt.errors import InputError
from pymgmt.frontends.graphfile import MAX_GRAPH_BYTES, read_graph_file


def _refused(pymgmt: Any, path: str, tmp_path: Path) -> list[Any]:
    procs = pymgmt(
        ["validate", path],
        ["run", "--converged-timeout", "0", "--prefix", str(tmp_path / "state"), path],
    )
    for p in procs:
        assert p.returncode == 1, (p.args, p.stderr)
        assert p.stdout == ""
        assert "Traceback" not in p.stderr
    assert not (tmp_path / "state").exists()
    return procs


@pytest.mark.parametrize(
    ("device", "kind"),
    [("/dev/zero", "a character device"), ("/dev/urandom", "a character device")],
)
def test_a_device_is_refused_at_once(device: str, kind: str, pymgmt: Any, tmp_path: Path) -> None:
    for p in _refused(pymgmt, device, tmp_path):
        assert f"{device}: the graph file must be a regular file, and this is {kind}" in p.stderr


def test_a_fifo_is_refused_without_waiting_for_a_writer(pymgmt: Any, tmp_path: Path) -> None:
    fifo = tmp_path / "graph.yaml"
    os.mkfifo(fifo)
    for p in _refused(pymgmt, str(fifo), tmp_path):
        assert "must be a regular file, and this is a FIFO (named pipe)" in p.stderr


def test_a_directory_is_refused(pymgmt: Any, tmp_path: Path) -> None:
    for p in _refused(pymgmt, str(tmp_path), tmp_path):
        assert "must be a regular file, and this is a directory" in p.stderr


def test_a_graph_over_the_limit_is_refused_before_it_is_read(pymgmt: Any, tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:
        f.truncate(MAX_GRAPH_BYTES + 1)  # sparse: nothing to write, 64 MiB + 1 to read
    for p in _refused(pymgmt, str(big), tmp_path):
        assert "the graph file is larger than 64 MiB, the most pymgmt reads" in p.stderr


def test_a_file_growing_past_the_limit_while_read_is_refused() -> None:
    # /proc files claim a size of 0 and hold more: the reader counts what it reads.
    with pytest.raises(InputError, match="larger than"):
        read_graph_file("/proc/self/status", limit=16)


def test_a_symlink_to_a_graph_is_read(tmp_path: Path) -> None:
    (tmp_path / "real.yaml").write_bytes(b"graph: g\n")
    (tmp_path / "link.yaml").symlink_to(tmp_path / "real.yaml")
    assert read_graph_file(str(tmp_path / "link.yaml")) == b"graph: g\n"
