"""Before the engine starts: a signal during validation, and --no-watch reading once.

Review finding 11. Validating a 20k-resource graph takes seconds; a ^C then
printed a KeyboardInterrupt traceback (and SIGTERM killed silently) instead
of saying that nothing was changed. With --no-watch the file was parsed a
second time, on the event loop, after validation.

The test sees the agent's reads of the graph file through the kernel's
inotify (IN_CLOSE_NOWRITE, IN_OPEN on the file itself): no sleeps, no
guessing at phases from the clock.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import DEADLINE, graph_doc, json_lines, run_once, write_graph

from pymgmt.events import linux_inotify as kernel
from pymgmt.events.linux_inotify import Inotify


def _big_graph(path: Path, managed: Path, n: int = 20_000) -> None:
    """n file resources, written as text (yaml.safe_dump takes seconds for this)."""
    lines = ["graph: big", "resources:", "  file:"]
    for i in range(n):
        lines += [f"  - name: f{i}", f"    path: {managed}/f{i}", "    content: x"]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("sig", "json_mode"),
    [(signal.SIGINT, False), (signal.SIGTERM, True)],
    ids=["SIGINT-text", "SIGTERM-json"],
)
def test_a_signal_while_validating_says_nothing_was_changed(
    agent, tmp_path, managed, prefix, sig, json_mode
):
    graph = tmp_path / "graph.yaml"
    _big_graph(graph, managed)
    with Inotify() as ino:
        ino.add_watch(graph, kernel.CLOSE_NOWRITE)
        a = agent(graph, "--converged-timeout", "0", json_mode=json_mode)
        # The agent read the whole file: it is parsing and validating now.
        assert ino.wait(DEADLINE), "the agent never read the graph file"
    a.send(sig)
    assert a.wait_exit(timeout=60) == 128 + sig, a.describe()
    assert "Traceback" not in a.stderr, a.stderr
    # It was still validating: the state directory was not even locked yet.
    assert not prefix.exists()
    assert list(managed.iterdir()) == []
    message = f"interrupted by {sig.name} before start; nothing was changed"
    if json_mode:
        assert a.events == [{"event": "interrupted", "message": message, "signal": sig.name}]
    else:
        assert a.stderr.strip().endswith(message), a.stderr


def test_a_signal_during_an_import_while_validating_says_nothing_was_changed(tmp_path):
    # Validation imports the resource kinds; Python wraps what a class body's
    # __set_name__ raises (the signal handler's exception, if the signal comes
    # then) in a RuntimeError: seen under load, a traceback and exit 1.
    code = textwrap.dedent("""
        import signal, sys
        from pymgmt.cli import main, run
        class Field:
            def __set_name__(self, owner, name):
                run._interrupt_start(signal.SIGINT, None)
        def validating(path, args):
            type("Kind", (), {"field": Field()})
        run._load_graph = validating
        sys.exit(main.main(sys.argv[1:]))
    """)
    graph = tmp_path / "graph.yaml"
    graph.write_text("graph: g\n")
    proc = subprocess.run(
        [sys.executable, "-c", code, "run", str(graph), "--tmp-prefix"],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert proc.returncode == 128 + signal.SIGINT, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().endswith("interrupted by SIGINT before start; nothing was changed")


def test_no_watch_runs_the_validated_graph_without_reading_the_file_again(
    tmp_path, managed, prefix
):
    graph = tmp_path / "graph.yaml"
    target = managed / "f"
    write_graph(graph, graph_doc("once", files=[{"name": "f", "path": str(target)}]))
    with Inotify() as ino:
        # CLOSE too: the kernel merges an event with an identical one queued
        # just before it, so two opens in a row would count as one
        ino.add_watch(graph, kernel.OPEN | kernel.CLOSE_NOWRITE)
        proc = run_once(graph, prefix, "--no-watch", "--json")
        # every open happened before the agent exited: they are all queued
        opens = sum(1 for ev in ino.read() if ev.mask & kernel.OPEN)
    assert proc.returncode == 2, proc.stderr
    assert target.exists()
    assert json_lines(proc.stdout)[-1]["resources"]["File[f]"]["outcome"] == "changed"
    assert opens == 1, f"the graph file was opened {opens} times"
