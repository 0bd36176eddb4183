"""--graphviz renders without blocking the agent (issue 8, item 16).

A stand-in `dot` on PATH hangs on demand: while it renders a changed
graph, the running graph must still repair drift, and a stop must kill and
reap it.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from helpers import graph_doc, pid_alive, sentinel_res, wait_for, write_graph


@pytest.fixture
def slow_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A `dot` that renders at once, or, once `block` exists, hangs (PID in `pidfile`)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    block, pidfile = tmp_path / "block", tmp_path / "dot.pid"
    dot = bindir / "dot"
    dot.write_text(
        "#!/bin/sh\n"
        f'if [ -e "{block}" ]; then echo $$ > "{pidfile}"; exec sleep 600 >/dev/null 2>&1; fi\n'
        'while [ $# -gt 0 ]; do [ "$1" = -o ] && : > "$2"; shift; done\n'
    )
    dot.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return block, pidfile


def test_rendering_a_changed_graph_does_not_stop_the_running_one(
    agent, tmp_path, managed, slow_dot
):
    block, pidfile = slow_dot
    graph = tmp_path / "graph.yaml"
    files = [{"name": "f", "path": str(managed / "f")}, sentinel_res(managed)]
    write_graph(graph, graph_doc("g", files=files))
    a = agent(graph, "--graphviz", str(tmp_path / "out.svg"))
    a.wait_checked(["File[f]", "File[sentinel]"])
    # observers are told after the swap: the picture may trail the first checks
    wait_for(lambda: (tmp_path / "out.svg").exists(), what="the first picture")

    block.touch()
    files.append({"name": "h", "path": str(managed / "h")})
    write_graph(graph, graph_doc("g", files=files))
    dot_pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="dot"))
    assert "File[h]" in (tmp_path / "out.dot").read_text()  # DOT first, complete

    # dot hangs, and the agent still repairs drift
    a.barrier(managed / "sentinel")
    assert pid_alive(dot_pid)

    assert a.stop(signal.SIGINT) == 0
    assert not pid_alive(dot_pid), "the renderer must not outlive the agent"
