"""Live graph changeover: editing the graph file swaps only what changed.

The agent runs without a converged timeout; the test rewrites its YAML file
(as editors do: a new file renamed over the old, or the same file rewritten)
and reads the JSON `checked` events to see exactly which vertices ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import (
    checked,
    event,
    graph_doc,
    sentinel_res,
    wait_for,
    write_graph,
)


def _f(managed: Path, name: str, content: str) -> dict[str, Any]:
    return {"name": name, "path": str(managed / name), "content": content}


def _v1(managed: Path) -> dict[str, Any]:
    return graph_doc(
        "live",
        files=[
            _f(managed, "keep", "keep\n"),
            _f(managed, "change", "before\n"),
            _f(managed, "remove", "remove\n"),
            sentinel_res(managed),
        ],
    )


def _start(agent, tmp_path: Path, managed: Path):
    graph = tmp_path / "graph.yaml"
    write_graph(graph, _v1(managed))
    a = agent(graph)
    a.wait_checked(["File[keep]", "File[change]", "File[remove]", "File[sentinel]"])
    a.barrier(managed / "sentinel")
    return a, graph


@pytest.mark.parametrize("how", ["replace", "inplace"])
def test_editing_the_graph_restarts_only_what_changed(agent, tmp_path, managed, how):
    a, graph = _start(agent, tmp_path, managed)
    checks_before = len(a.find(checked("File[keep]")))

    v2 = graph_doc(
        "live",
        files=[
            _f(managed, "keep", "keep\n"),
            _f(managed, "change", "after\n"),
            _f(managed, "add", "added\n"),
            sentinel_res(managed),
        ],
    )
    since = a.mark()
    write_graph(graph, v2, how=how)
    swap = a.wait_event(event("graph_swapped"), since=since, what="the changeover")
    ev = a.events[swap]
    assert ev["kept"] == 2  # keep and sentinel
    assert (ev["replaced"], ev["added"], ev["removed"]) == (
        ["File[change]"],
        ["File[add]"],
        ["File[remove]"],
    )

    wait_for(lambda: (managed / "change").read_text() == "after\n", what="the changed file")
    wait_for(lambda: (managed / "add").exists(), what="the added file")
    assert (managed / "add").read_text() == "added\n"
    a.wait_event(checked("File[change]", applied=True, reason="start"), since=swap, what="apply")
    a.wait_event(checked("File[add]", applied=True, reason="start"), since=swap, what="apply")
    end = a.barrier(managed / "sentinel")

    # the unchanged vertex kept its running worker: not one more check
    assert a.find(checked("File[keep]"), since=since, until=end) == []
    assert len(a.find(checked("File[keep]"))) == checks_before
    assert a.find(event("graph_rejected"), since=since) == []
    # the removed vertex's file is left as it was, and is no longer watched
    assert (managed / "remove").read_text() == "remove\n"
    (managed / "remove").unlink()
    end2 = a.barrier(managed / "sentinel")
    assert not (managed / "remove").exists()
    assert a.find(checked("File[remove]"), since=swap, until=end2) == []

    # the kept vertex still repairs drift
    since = a.mark()
    (managed / "keep").unlink()
    wait_for(lambda: (managed / "keep").exists(), what="the kept file to be repaired")
    a.wait_event(checked("File[keep]", applied=True, drift=True), since=since, what="repair")

    assert a.stop() == 0
    res = a.recap()["resources"]
    assert set(res) == {"File[keep]", "File[change]", "File[add]", "File[sentinel]"}
    assert res["File[keep]"]["repaired"] == 1


@pytest.mark.parametrize(
    "broken",
    [
        # a valid new resource next to a bad one: neither may run
        "graph: live\nresources:\n  file:\n  - name: new\n    path: {m}/new\n    content: x\n"
        "  - name: x\n    path: {m}/x\n    contnet: oops\n",
        "graph: live\nresources: [unclosed\n",
        "",
    ],
    ids=["unknown-field", "syntax-error", "empty"],
)
def test_an_invalid_edit_is_rejected_and_the_old_graph_keeps_repairing(
    agent, tmp_path, managed, broken
):
    a, graph = _start(agent, tmp_path, managed)

    since = a.mark()
    graph.write_text(broken.format(m=managed))
    rej = a.wait_event(event("graph_rejected"), since=since, what="the rejection")
    errors = a.events[rej]["errors"]
    assert errors and all(e["file"] == str(graph) for e in errors)
    assert all(e["message"] for e in errors)
    assert a.find(event("graph_swapped"), since=since) == []

    # the old graph is still running, with every vertex watching
    for name in ("keep", "change", "remove"):
        since = a.mark()
        (managed / name).unlink()
        wait_for(lambda name=name: (managed / name).exists(), what=f"{name} to be repaired")
        a.wait_event(checked(f"File[{name}]", applied=True, drift=True), since=since, what="fix")
    assert not (managed / "new").exists(), "the rejected graph must never run"

    # restoring the same graph is a changeover that keeps every vertex
    since = a.mark()
    write_graph(graph, _v1(managed))
    swap = a.wait_event(event("graph_swapped"), since=since, what="the changeover")
    ev = a.events[swap]
    assert (ev["kept"], ev["replaced"], ev["added"], ev["removed"]) == (4, [], [], [])
    end = a.barrier(managed / "sentinel")
    for name in ("keep", "change", "remove"):
        assert a.find(checked(f"File[{name}]"), since=swap, until=end) == []
    assert a.stop() == 0


def test_deleting_the_graph_file_keeps_the_running_graph(agent, tmp_path, managed):
    a, graph = _start(agent, tmp_path, managed)
    since = a.mark()
    graph.unlink()
    a.wait_event(event("graph_rejected"), since=since, what="the rejection")
    (managed / "keep").write_text("drifted\n")
    wait_for(lambda: (managed / "keep").read_text() == "keep\n", what="repair")
    assert a.stop() == 0
