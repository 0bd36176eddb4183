"""Run-once mode: exit codes, the recap's bottom line and the JSON recap object.

0 nothing changed, 2 changes applied, 4 failures (descendants skipped),
6 both, 1 unusable input (and then nothing on disk changed). A failure must
never make the run hang (mgmt issue #743): every run here has a deadline.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from helpers import graph_doc, json_lines, recap_of, run_once, snapshot, write_graph

WANTED = "wanted\n"


def _file(managed: Path, name: str = "f") -> dict[str, Any]:
    return {"name": name, "path": str(managed / name), "content": WANTED, "mode": "0644"}


def _failing_chain(managed: Path) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """exec `false` -> exec touching a marker -> file: the two below must be skipped."""
    marker = shlex.quote(str(managed / "marker"))
    execs = [
        {"name": "bad", "cmd": "false"},
        {"name": "after", "shell": "/bin/sh", "cmd": f"touch {marker}"},
    ]
    return execs, [("exec:bad", "exec:after"), ("exec:after", "file:blocked")]


def _run(tmp_path: Path, doc: dict[str, Any], *, json_mode: bool):
    graph = tmp_path / "graph.yaml"
    write_graph(graph, doc)
    return run_once(graph, tmp_path / "state", *(["--json"] if json_mode else []), timeout=60)


def _bottom_line(proc) -> str:
    """The recap's last line: on stderr, with the log lines (README "Output")."""
    return proc.stderr.rstrip("\n").rsplit("\n", 1)[-1]


@pytest.mark.parametrize("json_mode", [False, True], ids=["text", "json"])
def test_exit_0_when_everything_already_is_as_wanted(tmp_path, managed, json_mode):
    (managed / "f").write_text(WANTED)
    (managed / "f").chmod(0o644)
    before = snapshot(managed)
    proc = _run(tmp_path, graph_doc("g", files=[_file(managed)]), json_mode=json_mode)
    assert proc.returncode == 0, proc.stderr
    assert snapshot(managed) == before
    if json_mode:
        recap = recap_of(proc)
        assert recap["exit_code"] == 0
        assert recap["totals"] == {"unchanged": 1}
        assert recap["resources"]["File[f]"]["outcome"] == "unchanged"
    else:
        assert _bottom_line(proc) == "OK: 1 resource: 1 unchanged, 0 changed, 0 failed"


@pytest.mark.parametrize("json_mode", [False, True], ids=["text", "json"])
def test_exit_2_when_changes_were_applied(tmp_path, managed, json_mode):
    (managed / "g").write_text(WANTED)
    (managed / "g").chmod(0o644)
    doc = graph_doc("g", files=[_file(managed), _file(managed, "g")])
    proc = _run(tmp_path, doc, json_mode=json_mode)
    assert proc.returncode == 2, proc.stderr
    assert (managed / "f").read_text() == WANTED
    if json_mode:
        recap = recap_of(proc)
        assert recap["exit_code"] == 2
        assert recap["totals"] == {"changed": 1, "unchanged": 1}
        assert recap["resources"]["File[f]"]["changed"] == 1
    else:
        assert re.search(r"^  File\[f\] +changed$", proc.stderr, re.M), proc.stderr
        assert _bottom_line(proc) == "OK: 2 resources: 1 unchanged, 1 changed, 0 failed"
    # and a second run finds nothing to do
    again = _run(tmp_path, doc, json_mode=json_mode)
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize("json_mode", [False, True], ids=["text", "json"])
def test_exit_4_when_a_resource_failed_and_its_descendants_were_skipped(
    tmp_path, managed, json_mode
):
    execs, edges = _failing_chain(managed)
    (managed / "blocked").write_text(WANTED)  # already fine: nothing else changes
    (managed / "blocked").chmod(0o644)
    doc = graph_doc("g", execs=execs, files=[_file(managed, "blocked")], edges=edges)
    proc = _run(tmp_path, doc, json_mode=json_mode)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert not (managed / "marker").exists(), "a descendant of a failed resource ran"
    if json_mode:
        recap = recap_of(proc)
        assert recap["exit_code"] == 4
        assert recap["totals"] == {"failed": 1, "skipped": 2}
        res = recap["resources"]
        assert res["Exec[bad]"]["outcome"] == "failed"
        assert res["Exec[bad]"]["failures"] == ["apply: command exited with status 1"]
        for v in ("Exec[after]", "File[blocked]"):
            assert res[v]["outcome"] == "skipped"
            assert res[v]["blocked_by"] == ["Exec[bad]"]
        finished = [e for e in json_lines(proc.stdout) if e.get("event") == "finished"]
        assert len(finished) == 1
    else:
        for v in (r"Exec\[after\]", r"File\[blocked\]"):
            assert re.search(rf"^  {v} +skipped \(blocked by Exec\[bad\]\)$", proc.stderr, re.M)
        assert _bottom_line(proc) == (
            "FAILED: 3 resources: 0 unchanged, 0 changed, 1 failed, 2 skipped"
        )


@pytest.mark.parametrize("json_mode", [False, True], ids=["text", "json"])
def test_exit_6_when_changes_were_applied_and_something_failed(tmp_path, managed, json_mode):
    execs, edges = _failing_chain(managed)
    doc = graph_doc(
        "g", execs=execs, files=[_file(managed, "blocked"), _file(managed, "f")], edges=edges
    )
    proc = _run(tmp_path, doc, json_mode=json_mode)
    assert proc.returncode == 6, proc.stdout + proc.stderr
    assert (managed / "f").read_text() == WANTED  # the independent branch still ran
    assert not (managed / "blocked").exists()
    if json_mode:
        recap = recap_of(proc)
        assert recap["exit_code"] == 6
        assert recap["totals"] == {"changed": 1, "failed": 1, "skipped": 2}
    else:
        assert _bottom_line(proc) == (
            "FAILED: 4 resources: 0 unchanged, 1 changed, 1 failed, 2 skipped"
        )


@pytest.mark.slow
def test_a_failure_with_a_positive_converged_timeout_still_exits(tmp_path, managed):
    # mgmt issue #743: a failed resource kept the converger from ever firing.
    execs, edges = _failing_chain(managed)
    graph = tmp_path / "graph.yaml"
    write_graph(graph, graph_doc("g", execs=execs, files=[_file(managed, "blocked")], edges=edges))
    proc = run_once(graph, tmp_path / "state", "--json", "--converged-timeout", "1", timeout=30)
    assert proc.returncode == 4, proc.stderr
    events = json_lines(proc.stdout)
    assert [e["event"] for e in events][-4:] == ["converged", "stopping", "finished", "recap"]


@pytest.mark.parametrize("json_mode", [False, True], ids=["text", "json"])
def test_exit_1_for_invalid_input_and_nothing_changes(tmp_path, managed, json_mode):
    (managed / "existing").write_text("old\n")
    doc = graph_doc(
        "g",
        files=[
            _file(managed, "f"),
            {"name": "existing", "path": str(managed / "existing"), "content": WANTED},
            {"name": "typo", "path": str(managed / "typo"), "contnet": "x"},
        ],
        execs=[{"name": "e", "shell": "/bin/sh", "cmd": f"touch {managed}/ran"}],
    )
    graph = tmp_path / "graph.yaml"
    write_graph(graph, doc)
    before = snapshot(tmp_path)
    proc = run_once(graph, tmp_path / "state", *(["--json"] if json_mode else []))
    assert proc.returncode == 1
    assert snapshot(tmp_path) == before, "invalid input must not change anything"
    typo_line = graph.read_text().splitlines().index("    contnet: x") + 1
    if json_mode:
        (ev,) = json_lines(proc.stdout)
        assert ev["event"] == "invalid_input"
        (err,) = ev["errors"]
        assert (err["file"], err["line"], err["field"]) == (str(graph), typo_line, "contnet")
        assert "content" in (err["hint"] or "")
    else:
        assert proc.stdout == ""
        assert "nothing was changed" in proc.stderr
        assert f"{graph}:{typo_line}:" in proc.stderr


@pytest.mark.parametrize("json_mode", [False, True], ids=["text", "json"])
def test_exit_1_for_a_missing_graph_file_saying_no_such_file(tmp_path, json_mode):
    before = snapshot(tmp_path)
    missing = tmp_path / "nope.yaml"
    proc = run_once(missing, tmp_path / "state", *(["--json"] if json_mode else []))
    assert proc.returncode == 1
    if json_mode:
        (ev,) = json_lines(proc.stdout)
        assert ev["event"] == "invalid_input"
        assert [(e["file"], e["message"]) for e in ev["errors"]] == [(str(missing), "no such file")]
    else:
        assert proc.stderr == f"error: {missing}: no such file; nothing was changed\n"
    assert snapshot(tmp_path) == before
