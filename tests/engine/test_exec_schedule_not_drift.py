"""Exec's own schedule (pollint, watchcmd) is not drift; `creates` vanishing is.

Review of issue 8 (finding 7): `exec {cmd: /bin/true, pollint: 1}` printed
"repaired drift" every second and the recap said "repaired x9". Drift means
the system moved by itself and was put back; a tick of the user's schedule,
or a line of the user's trigger command, is neither.
"""

from __future__ import annotations

import shlex
import signal

from helpers import checked, event, graph_doc, write_graph


def test_pollint_and_watchcmd_runs_are_ticks_never_drift(agent, tmp_path):
    execs = [
        {"name": "poll", "cmd": "true", "pollint": 1},
        {"name": "lines", "cmd": "true", "shell": "/bin/sh", "watchshell": "/bin/sh",
         "watchcmd": "while :; do echo go; sleep 0.2; done"},
    ]  # fmt: skip
    graph = tmp_path / "graph.yaml"
    write_graph(graph, graph_doc("ticks", execs=execs))
    a = agent(graph)
    for v in ("Exec[poll]", "Exec[lines]"):
        i = -1
        for _ in range(3):  # the start, then two runs of its schedule
            i = a.wait_event(checked(v, applied=True), since=i + 1, what=f"a run of {v}")
    assert a.stop(signal.SIGINT) == 0

    runs = [e for e in a.events if e.get("event") == "checked"]
    assert all(e["drift"] is False for e in runs), [e for e in runs if e["drift"]]
    for v in ("Exec[poll]", "Exec[lines]"):
        reasons = [e["reason"] for e in runs if e["vertex"] == v and e["applied"]]
        # (a watchcmd line may come before the first run: then it is a tick too)
        assert reasons[0] in ("start", "tick") and set(reasons[1:]) == {"tick"}, reasons
        assert a.recap()["resources"][v]["repaired"] == 0
        assert a.recap()["resources"][v]["outcome"] != "repaired"


def test_the_path_exec_creates_disappearing_is_still_drift(agent, tmp_path):
    made = tmp_path / "made"
    e = {"name": "mk", "cmd": f"touch {shlex.quote(str(made))}", "shell": "/bin/sh",
         "creates": str(made)}  # fmt: skip
    graph = tmp_path / "graph.yaml"
    write_graph(graph, graph_doc("creates", execs=[e]))
    a = agent(graph)
    a.wait_event(checked("Exec[mk]", applied=True), what="the first run")
    since = a.mark()
    made.unlink()
    a.wait_event(checked("Exec[mk]", applied=True, drift=True), since=since, what="the repair")
    assert made.exists()
    assert a.stop(signal.SIGINT) == 0
    assert a.find(event("failed")) == []
