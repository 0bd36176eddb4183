"""--noop: report what would change, with a diff, and change nothing at all.

"Nothing" is checked byte for byte: type, mode, owner, size, mtime and
content of every path in the managed tree, before and after.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from helpers import graph_doc, json_lines, recap_of, run_once, snapshot, write_graph


def _setup(tmp_path: Path, managed: Path) -> Path:
    (managed / "content").write_text("old line\nkept line\n")
    (managed / "content").chmod(0o644)
    (managed / "unwanted").write_text("should go\n")
    files: list[dict[str, Any]] = [
        {
            "name": "content",
            "path": str(managed / "content"),
            "content": "new line\nkept line\n",
            "mode": "0600",
        },
        {"name": "missing", "path": str(managed / "missing"), "content": "fresh\n"},
        {"name": "unwanted", "path": str(managed / "unwanted"), "state": "absent"},
        {"name": "dir", "path": f"{managed}/dir/"},
    ]
    execs = [{"name": "touch", "cmd": f"touch {shlex.quote(str(managed / 'ran'))}"}]
    graph = tmp_path / "graph.yaml"
    write_graph(graph, graph_doc("noop", files=files, execs=execs))
    return graph


VERTICES = ("File[content]", "File[missing]", "File[unwanted]", "File[dir]", "Exec[touch]")


def test_noop_changes_nothing_and_reports_every_would_be_change(tmp_path, managed):
    graph = _setup(tmp_path, managed)
    before = snapshot(managed)
    proc = run_once(graph, tmp_path / "state", "--noop", "--json")
    assert proc.returncode == 2, proc.stderr  # changes would be applied
    assert snapshot(managed) == before

    checks = {e["vertex"]: e for e in json_lines(proc.stdout) if e.get("event") == "checked"}
    assert set(checks) == set(VERTICES)
    for ev in checks.values():
        assert ev["noop"] is True and ev["applied"] is False and ev["changes"], ev
    content = {c["field"]: c for c in checks["File[content]"]["changes"]}
    assert set(content) == {"content", "mode"}
    assert content["mode"]["old"] == "0644" and content["mode"]["new"] == "0600"
    diff = content["content"]["diff"].splitlines()
    assert "-old line" in diff and "+new line" in diff and " kept line" in diff
    missing = {c["field"]: c for c in checks["File[missing]"]["changes"]}
    assert "+fresh" in missing["content"]["diff"].splitlines()
    assert [c["field"] for c in checks["File[unwanted]"]["changes"]] == ["state"]

    recap = recap_of(proc)
    assert recap["totals"] == {"would change": len(VERTICES)}
    assert recap["exit_code"] == 2


def test_noop_text_output_shows_the_diff(tmp_path, managed):
    graph = _setup(tmp_path, managed)
    before = snapshot(managed)
    proc = run_once(graph, tmp_path / "state", "--noop")
    assert proc.returncode == 2, proc.stderr
    assert snapshot(managed) == before
    out = proc.stderr  # README "Output": people read stderr
    assert re.search(r"File\[content\]: would change: content .* mode 0644 -> 0600.*\(noop\)", out)
    assert "    -old line\n" in out and "    +new line\n" in out
    assert re.search(r"Exec\[touch\]: would change: run .*\(noop\)", out)
    assert out.rstrip().endswith(
        f"OK: {len(VERTICES)} resources: 0 unchanged, 0 changed, "
        f"{len(VERTICES)} would change, 0 failed"
    )


def test_meta_noop_spares_only_its_own_resource(tmp_path, managed):
    (managed / "spared").write_text("old\n")
    files = [
        {
            "name": "spared",
            "path": str(managed / "spared"),
            "content": "new\n",
            "meta": {"noop": True},
        },
        {"name": "written", "path": str(managed / "written"), "content": "new\n"},
    ]
    graph = tmp_path / "graph.yaml"
    write_graph(graph, graph_doc("noop", files=files))
    proc = run_once(graph, tmp_path / "state", "--json")
    assert proc.returncode == 2, proc.stderr
    assert (managed / "spared").read_text() == "old\n"
    assert (managed / "written").read_text() == "new\n"
    res = recap_of(proc)["resources"]
    assert res["File[spared]"]["outcome"] == "would change"
    assert res["File[written]"]["outcome"] == "changed"


def test_noop_after_a_real_run_reports_only_what_would_still_change(tmp_path, managed):
    graph = _setup(tmp_path, managed)
    real = run_once(graph, tmp_path / "state", "--json")
    assert real.returncode == 2, real.stderr
    (managed / "ran").unlink()  # the exec has no guard: it would run again
    before = snapshot(managed)
    proc = run_once(graph, tmp_path / "state", "--noop", "--json")
    assert snapshot(managed) == before
    assert recap_of(proc)["totals"] == {"unchanged": 4, "would change": 1}
    assert proc.returncode == 2


def test_noop_exits_0_when_nothing_would_change(tmp_path, managed):
    # Puppet's --noop --detailed-exitcodes, Terraform's plan -detailed-exitcode:
    # 2 means "there is something to do", 0 "nothing to do".
    (managed / "f").write_text("as wanted\n")
    graph = tmp_path / "graph.yaml"
    files = [{"name": "f", "path": str(managed / "f"), "content": "as wanted\n"}]
    write_graph(graph, graph_doc("noop", files=files))
    proc = run_once(graph, tmp_path / "state", "--noop", "--json")
    assert proc.returncode == 0, proc.stderr
    assert recap_of(proc)["totals"] == {"unchanged": 1}
