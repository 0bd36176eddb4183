"""Run-forever mode tells when the graph has converged again (mgmt's "converged")."""

from __future__ import annotations

from helpers import write_atomic


def _settled(e: dict) -> bool:
    return e.get("event") == "settled"


def test_settled_after_start_and_after_each_repair_naming_failures(agent, tmp_path, managed):
    f = managed / "f"
    graph = tmp_path / "g.yaml"
    graph.write_text(
        "graph: settle\nresources:\n  file:\n"
        f'  - name: {f}\n    content: "f\\n"\n'
        '  exec:\n  - name: broken\n    cmd: "false"\n'
    )
    a = agent(graph)
    i = a.wait_event(_settled, what="the first convergence")
    assert a.events[i]["vertices"] == 2 and a.events[i]["failed"] == ["Exec[broken]"]
    since = a.mark()
    write_atomic(f, "drift\n")
    j = a.wait_event(
        lambda e: e.get("event") == "checked" and e.get("drift"), since=since, what="the repair"
    )
    a.wait_event(_settled, since=j, what="convergence after the repair")
    assert f.read_text() == "f\n"
