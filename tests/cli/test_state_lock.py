"""One agent per state directory (issue 8, item 8).

Two agents on one --prefix fought (hundreds of "repairs" a second between
them). The second is now refused before it touches anything, naming the
PID that holds the directory; the first goes on undisturbed.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from helpers import checked, graph_doc, json_lines, run_once, snapshot, write_graph

from pymgmt import statelock
from pymgmt.frontends import api
from pymgmt.resources.file import File
from pymgmt.statedir import LOCK_NAME, StateDirBusy


def _graphs(tmp_path: Path, managed: Path) -> tuple[Path, Path]:
    """The first agent's graph, and a second one that wants `f` otherwise."""
    first = tmp_path / "first.yaml"
    files = [
        {"name": "f", "path": str(managed / "f"), "content": "first\n"},
        {"name": "sentinel", "path": str(managed / "sentinel"), "content": "sentinel\n"},
    ]
    write_graph(first, graph_doc("first", files=files))
    second = tmp_path / "second.yaml"
    files = [
        {"name": "f", "path": str(managed / "f"), "content": "second\n"},
        {"name": "g", "path": str(managed / "g"), "content": "second\n"},
    ]
    write_graph(second, graph_doc("second", files=files))
    return first, second


@pytest.mark.parametrize("json_mode", [False, True], ids=["text", "json"])
def test_a_second_agent_on_the_same_prefix_is_refused_naming_the_first(
    agent, prefix, tmp_path, managed, json_mode
):
    first, second = _graphs(tmp_path, managed)
    a = agent(first)
    a.wait_checked(["File[f]", "File[sentinel]"])
    assert (prefix / LOCK_NAME).read_text() == f"{a.pid}\n"
    before = snapshot(managed)
    since = a.mark()

    proc = run_once(second, prefix, *(["--json"] if json_mode else []), timeout=30)

    assert proc.returncode == 1, proc.stdout + proc.stderr
    if json_mode:
        (ev,) = json_lines(proc.stdout)
        assert (ev["event"], ev["pid"], ev["prefix"]) == ("refused", a.pid, str(prefix))
    else:
        assert f"in use by PID {a.pid}" in proc.stderr
        assert "nothing was changed" in proc.stderr
    assert snapshot(managed) == before, "the refused agent changed something"
    # The first agent is undisturbed: still running, still repairing, and it
    # never saw a change of its files from the other one.
    i = a.barrier(managed / "sentinel")
    assert a.proc.poll() is None
    assert a.find(checked("File[f]", applied=True), since=since, until=i) == []
    assert (managed / "f").read_text() == "first\n"
    assert a.stop(signal.SIGINT) == 0


def test_the_lock_dies_with_its_holder_even_by_kill_9(agent, prefix, tmp_path, managed):
    first, second = _graphs(tmp_path, managed)
    a = agent(first)
    a.wait_checked(["File[f]"])
    a.send(signal.SIGKILL)
    a.wait_exit()
    assert (prefix / LOCK_NAME).read_text() == f"{a.pid}\n"  # stale, and harmless
    proc = run_once(second, prefix, "--json")
    assert proc.returncode == 2, proc.stderr
    assert (managed / "g").read_text() == "second\n"


def test_the_python_api_is_refused_too(agent, prefix, tmp_path, managed):
    first, _ = _graphs(tmp_path, managed)
    a = agent(first)
    a.wait_checked(["File[f]"])
    g = api.GraphBuilder("api")
    g.add(File(name=str(managed / "h"), content="api\n"))
    with pytest.raises(StateDirBusy, match=f"PID {a.pid}"):
        asyncio.run(api.run_async(g, converged_timeout=0, state_dir=prefix))
    assert not (managed / "h").exists()


def test_the_lock_file_holds_exactly_this_pid_over_a_longer_one(tmp_path: Path) -> None:
    """The PID is written over the last holder's, then cut to its length (not
    truncated first: that waited for the block the last run's sync wrote)."""
    (tmp_path / LOCK_NAME).write_text("12345678901234567890\n")  # longer than any PID
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        held = statelock.lock_at(dfd)
        assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
        statelock.release(held)
    finally:
        os.close(dfd)
