"""Words that must not lie (issue 8): drift, "received new", converged in noop.

"Drift" means the system moved away from the wanted state by itself (the
watch fired) and the agent put it back. A refresh run, a timer tick, a retry
or an upstream change never is.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from helpers import checked, event, run_once, sentinel_res, write_atomic


def _yaml(tmp_path: Path, body: str) -> Path:
    graph = tmp_path / "g.yaml"
    graph.write_text(f"graph: words\nresources:\n{body}")
    return graph


def test_a_refresh_run_is_not_drift(agent, tmp_path, managed):
    f, log = managed / "f", shlex.quote(str(tmp_path / "log"))
    s = sentinel_res(managed)
    graph = _yaml(
        tmp_path,
        f"""  file:
  - {{name: f, path: {f}, content: "wanted\\n"}}
  - {{name: sentinel, path: {s["path"]}, content: "sentinel\\n"}}
  exec:
  - {{name: e, shell: /bin/sh, cmd: "echo run >> {log}"}}
edges:
- {{name: n, from: {{kind: file, name: f}}, to: {{kind: exec, name: e}}, notify: true}}
""",
    )
    a = agent(graph)
    a.wait_checked(["File[f]", "Exec[e]", "File[sentinel]"])
    a.barrier(managed / "sentinel")
    since = a.mark()
    write_atomic(f, "moved\n")
    a.wait_event(checked("File[f]", applied=True, drift=True), since=since, what="f repaired")
    i = a.wait_event(checked("Exec[e]", applied=True), since=since, what="the refresh run")
    run = a.events[i]
    assert run["refreshed"] and not run["drift"], run
    assert run["reason"] == "upstream"


def test_a_timer_tick_is_not_drift(agent, tmp_path):
    graph = _yaml(tmp_path, "  timer:\n  - {name: t, interval: 1}\n")
    a = agent(graph)
    first = a.wait_event(checked("Timer[t]"), what="the timer's first check")
    i = a.wait_event(checked("Timer[t]", applied=True), since=first + 1, what="a tick")
    tick = a.events[i]
    assert (tick["reason"], tick["drift"]) == ("tick", False), tick


def _sendrecv(tmp_path: Path, managed: Path) -> Path:
    return _yaml(
        tmp_path,
        f"""  password:
  - {{name: pw, length: 16}}
  file:
  - {{name: trigger, path: {managed / "trigger"}, content: "t\\n"}}
  - {{name: target, path: {managed / "target"}, mode: "0600"}}
edges:
- {{name: s, from: {{kind: password, name: pw}}, to: {{kind: file, name: target}},
   send: password, recv: content}}
- {{name: n, from: {{kind: file, name: trigger}}, to: {{kind: password, name: pw}},
   notify: true}}
""",
    )


def test_received_new_is_said_only_when_the_value_changed(agent, prefix, tmp_path, managed):
    graph = _sendrecv(tmp_path, managed)
    for _ in range(2):  # the second run receives the very same password
        proc = run_once(graph, prefix)
        assert proc.returncode in (0, 2), proc.stderr
        assert "received new" not in proc.stderr, proc.stderr

    # A new password (the trigger's repair notifies pw, which regenerates it)
    # is new content for the target: that is news.
    a = agent(graph, json_mode=False)
    a.wait_event(lambda e: "Converged" in e.get("line", ""), what="convergence")
    old = (managed / "target").read_text()
    since = a.mark()
    write_atomic(managed / "trigger", "moved\n")
    a.wait_event(
        lambda e: "File[target]" in e.get("line", "") and "changed" in e["line"],
        since=since,
        what="the target receiving the new password",
    )
    assert (managed / "target").read_text() != old
    a.stop()
    assert a.stderr.count("File[target]: SendRecv: received new content") == 1, a.stderr


def test_noop_does_not_say_all_resources_are_as_wanted(agent, tmp_path, managed):
    graph = _yaml(
        tmp_path,
        f"""  file:
  - {{name: x, path: {managed / "x"}, content: "x\\n"}}
  - {{name: y, path: {managed / "y"}, content: "y\\n"}}
""",
    )
    write_atomic(managed / "y", "y\n")
    a = agent(graph, "--noop")
    i = a.wait_event(event("settled"), what="the noop run going idle")
    assert a.events[i]["would_change"] == ["File[x]"]
    assert not (managed / "x").exists()
