"""/metrics scraped over HTTP from a real agent: mgmt's names, pymgmt's own, and their counts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import PYMGMT, checked, event, graph_doc, write_atomic, write_graph
from webutil import LISTEN, metrics, sample


def _graph(tmp_path: Path, managed: Path) -> Path:
    graph = tmp_path / "g.yaml"
    doc = graph_doc(
        "metrics",
        files=[
            {"name": "a", "path": str(managed / "a"), "content": "a\n"},
            {"name": "b", "path": str(managed / "b"), "content": "b\n"},
        ],
        execs=[{"name": "broken", "cmd": "false", "shell": ""}],
    )
    write_graph(graph, doc)
    return graph


def test_metrics_count_checks_resources_and_failures_with_mgmts_names(served, tmp_path, managed):
    _a, base = served(_graph(tmp_path, managed))
    m = metrics(base)
    # mgmt's names and labels
    assert sample(m, "mgmt_resources", kind="file") == 2
    assert sample(m, "mgmt_resources", kind="exec") == 1
    created = sample(m, "mgmt_checkapply_total", kind="file", apply="true", eventful="true",
                     errorful="false")  # fmt: skip
    assert created == 2  # both files written
    failed = sample(m, "mgmt_checkapply_total", kind="exec", apply="true", eventful="true",
                    errorful="true")  # fmt: skip
    assert failed == 1  # 'false' exits 1 in its apply
    assert sample(m, "mgmt_failures", kind="exec", failure="hard") == 1
    assert sample(m, "mgmt_failures_total", kind="exec", failure="hard") == 1
    # series of a kind exist from the start, at 0 (mgmt issue 259)
    assert sample(m, "mgmt_failures", kind="file", failure="soft") == 0
    assert sample(m, "pymgmt_drift_repairs_total", kind="file") == 0
    assert sample(m, "mgmt_graph_start_time_seconds") > 0
    # pymgmt's own: the live states, and not converged while one resource failed
    assert sample(m, "pymgmt_resources_state", state="converged") == 2
    assert sample(m, "pymgmt_resources_state", state="failed") == 1
    assert sample(m, "pymgmt_converged") == 0
    assert sample(m, "pymgmt_info", version=_version()) == 1
    assert sample(m, "process_open_fds") > 0  # prometheus_client's process collector


def test_a_drift_repair_is_counted_with_its_latency(served, tmp_path, managed):
    graph = tmp_path / "g.yaml"
    write_graph(graph, graph_doc("drift", files=[{"name": "a", "path": str(managed / "a"),
                                                    "content": "a\n"}]))  # fmt: skip
    a, base = served(graph)
    before = metrics(base)
    assert sample(before, "pymgmt_converged") == 1
    assert sample(before, "pymgmt_repair_latency_seconds_count") == 0
    since = a.mark()
    write_atomic(managed / "a", "drifted\n")
    i = a.wait_event(checked("File[a]", applied=True, drift=True), since=since, what="the repair")
    a.wait_event(event("settled"), since=i, what="settled after the repair")
    after = metrics(base)
    assert sample(after, "pymgmt_drift_repairs_total", kind="file") == 1
    assert sample(after, "pymgmt_repair_latency_seconds_count") == 1
    repaired_in = a.events[i]["seconds"]
    assert sample(after, "pymgmt_repair_latency_seconds_sum") == repaired_in
    assert sample(after, "pymgmt_repair_latency_seconds_bucket", le="+Inf") == 1
    assert sample(after, "pymgmt_converged") == 1


def test_a_noop_run_labels_its_checks_apply_false(served, tmp_path, managed):
    _a, base = served(_graph(tmp_path, managed), "--noop")
    m = metrics(base)
    would = sample(m, "mgmt_checkapply_total", kind="file", apply="false", eventful="true",
                   errorful="false")  # fmt: skip
    assert would == 2
    assert not (managed / "a").exists()


def test_prometheus_client_is_imported_only_when_scraped(tmp_path, managed):
    """Start-up pays nothing for it: not without the flag, not with it before a scrape."""
    graph = _graph(tmp_path, managed)
    argv = [sys.executable, "-X", "importtime", "-m", "pymgmt.cli.main", "run"]
    argv += ["--prefix", str(tmp_path / "s"), "--converged-timeout", "0", str(graph)]
    plain = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert plain.returncode == 6, plain.stderr  # files written, the exec failed: it ran
    assert "prometheus_client" not in _imported(plain.stderr)
    assert "pymgmt.web.server" not in _imported(plain.stderr)
    served = subprocess.run(
        [*argv[:-1], *LISTEN, str(graph)], capture_output=True, text=True, timeout=60, check=False
    )
    assert served.returncode == 4, served.stderr  # the files are there already
    assert "pymgmt.web.server" in _imported(served.stderr)
    assert "prometheus_client" not in _imported(served.stderr)  # nobody scraped
    probe = [sys.executable, "-X", "importtime", "-c", "import prometheus_client"]
    seen = subprocess.run(probe, capture_output=True, text=True, timeout=60, check=True)
    assert "prometheus_client" in seen.stderr  # the probe does see it when it is there


def _imported(stderr: str) -> str:
    """-X importtime's lines alone (the log lines name the graph's path, this test's name)."""
    return "\n".join(x for x in stderr.splitlines() if x.startswith("import time:"))


def _version() -> str:
    out = subprocess.run([*PYMGMT, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.split()[1]
