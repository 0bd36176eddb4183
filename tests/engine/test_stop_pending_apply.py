"""A stop that comes while a check runs: the apply it found never starts.

Review of issue 8 (finding 1): a graceful stop waited for the running check,
and when that check returned a plan the worker went on to apply it, after
the stop, so a package transaction could begin after ^C. The work is still
to do: the vertex is reported pending and nothing is changed.
"""

from __future__ import annotations

import shlex
import signal

from helpers import event, graph_doc, wait_for, write_graph


def test_a_check_running_at_the_stop_does_not_apply_what_it_found(agent, tmp_path):
    started, release, marker = (tmp_path / n for n in ("started", "release", "marker"))
    q = {p: shlex.quote(str(p)) for p in (started, release, marker)}
    e = {
        "name": "e",
        "cmd": f"touch {q[marker]}",
        "shell": "/bin/sh",
        # The check (the ifcmd) runs until the test lets it go, then says "run".
        "ifcmd": f"touch {q[started]}; while [ ! -e {q[release]} ]; do sleep 0.01; done",
        "ifshell": "/bin/sh",
    }
    graph = tmp_path / "graph.yaml"
    write_graph(graph, graph_doc("stop-check", execs=[e]))
    a = agent(graph, "--converged-timeout", "600")
    wait_for(started.exists, what="the check to start")
    a.send(signal.SIGTERM)
    a.wait_event(event("stopping"), what="the stop")
    release.touch()

    assert a.wait_exit() == 128 + signal.SIGTERM
    assert not marker.exists(), "the command ran after the stop"
    assert a.find(lambda ev: ev.get("event") == "checked" and ev["vertex"] == "Exec[e]") == []
    recap = a.recap()
    assert recap["resources"]["Exec[e]"]["outcome"] == "pending"
    (fin,) = a.find(event("finished"))
    assert fin["states"] == [{"vertex": "Exec[e]", "status": "pending", "blocked_by": []}], fin
