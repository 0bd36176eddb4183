"""A changeover lets an apply under way finish, and reports it.

Review of issue 8 (finding 6): editing the graph while a replaced vertex's
command ran killed the command half-way, silently: no `checked`, no
`failed`, a change made (or half made) and never counted.
"""

from __future__ import annotations

import shlex

from helpers import checked, event, graph_doc, wait_for, write_graph


def test_editing_the_graph_lets_the_running_command_of_a_replaced_vertex_finish(agent, tmp_path):
    started, release, done, new = (tmp_path / n for n in ("started", "release", "done", "new"))
    q = {p: shlex.quote(str(p)) for p in (started, release, done, new)}
    old = {
        "name": "a",
        "shell": "/bin/sh",
        "cmd": f"touch {q[started]}; while [ ! -e {q[release]} ]; do sleep 0.01; done; "
        f"touch {q[done]}",
    }
    graph = tmp_path / "graph.yaml"
    write_graph(graph, graph_doc("v1", execs=[old]))
    a = agent(graph)
    wait_for(started.exists, what="the old command to start")
    write_graph(graph, graph_doc("v2", execs=[{"name": "a", "cmd": f"touch {q[new]}"}]))
    wait_for(
        lambda: (
            "changeover: waiting for Exec[a] to finish" in a.stderr
            or a.find(event("graph_swapped"))
        ),
        what="the changeover",
    )
    release.touch()
    swapped = a.wait_event(event("graph_swapped"), what="the changeover")
    a.wait_event(checked("Exec[a]", applied=True), since=swapped, what="the new command")

    assert done.exists(), "the old command was cut in half"
    assert new.exists()
    old_runs = a.find(checked("Exec[a]", applied=True), until=swapped)
    assert len(old_runs) == 1, a.describe()  # reported, before its worker was replaced
    assert a.find(event("failed")) == []
