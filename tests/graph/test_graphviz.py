"""Graphviz output shows kinds, grouped vertices, automatic and notify edges."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from pymgmt.frontends.api import GraphBuilder
from pymgmt.graph.graphviz import to_dot
from pymgmt.resources.file import File
from pymgmt.resources.noop import Noop


def test_dot_marks_automatic_notify_and_sendrecv_edges():
    g = GraphBuilder("shown")
    d = g.add(File(name="/srv/app/"))
    f = g.add(File(name="/srv/app/conf"))
    n = g.add(Noop(name="n"))
    g.edge(f, n, notify=True)
    dot = to_dot(g.build())
    assert '"File[/srv/app/]" -> "File[/srv/app/conf]" [style=dashed];' in dot
    assert '"File[/srv/app/conf]" -> "Noop[n]" [color=red, label="notify"];' in dot
    assert '[label="file\\n/srv/app/"]' in dot
    del d


def test_grouped_vertices_list_their_members():
    a, b = Noop(name="a"), Noop(name="b")
    a.absorb([b])
    g = GraphBuilder("grouped")
    g.add(a)
    dot = to_dot(g.graph)
    assert '"Noop[a]" [label="noop (autogroup)\\na\\nb", peripheries=2];' in dot


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz is installed by scripts/setup")
def test_the_cli_writes_dot_and_renders_svg(tmp_path):
    graph = tmp_path / "g.yaml"
    graph.write_text(
        f"graph: g\nresources:\n  file:\n  - name: {tmp_path}/d/\n  - name: {tmp_path}/d/f\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pymgmt.cli.main",
            "run",
            "-q",
            "--converged-timeout",
            "0",
            "--prefix",
            str(tmp_path / "p"),
            "--graphviz",
            str(tmp_path / "out.svg"),
            str(graph),
        ],
        check=False,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "style=dashed" in (tmp_path / "out.dot").read_text()
    assert (tmp_path / "out.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
