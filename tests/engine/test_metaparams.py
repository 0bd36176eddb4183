"""Metaparameters, enforced by the engine, observed on real files and commands."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pymgmt.frontends.api import GraphBuilder, run_async
from pymgmt.metaparams import MetaParams
from pymgmt.resources.base import CONVERGED, Change, Context, Plan, Resource, param

PYMGMT = [sys.executable, "-m", "pymgmt.cli.main"]


def _run_once(tmp: Path, yaml_text: str, *extra: str) -> tuple[int, list[dict[str, Any]]]:
    graph = tmp / "g.yaml"
    graph.write_text(yaml_text)
    proc = subprocess.run(
        [
            *PYMGMT,
            "run",
            "--json",
            "--converged-timeout",
            "0",
            "--prefix",
            str(tmp / "p"),
            *extra,
            str(graph),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, events


class _Agent:
    """A `pymgmt run --json` process whose events are read by a thread."""

    def __init__(self, tmp: Path, yaml_text: str, *extra: str) -> None:
        graph = tmp / "g.yaml"
        graph.write_text(yaml_text)
        self.proc = subprocess.Popen(
            [*PYMGMT, "run", "--json", "--prefix", str(tmp / "p"), *extra, str(graph)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.events.append(json.loads(line))
                self.cond.notify_all()

    def wait(self, pred: Any, what: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for ev in self.events:
                    if pred(ev):
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}; events: {self.events}")
                self.cond.wait(left)

    def count(self, pred: Any) -> int:
        with self.cond:
            return sum(1 for ev in self.events if pred(ev))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=5)
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()
        return self.proc.returncode


@pytest.fixture
def agent(tmp_path):
    started: list[_Agent] = []

    def start(yaml_text: str, *extra: str) -> _Agent:
        a = _Agent(tmp_path, yaml_text, *extra)
        started.append(a)
        return a

    yield start
    for a in started:
        a.stop()


def _wait_until(pred: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def test_retry_runs_the_command_retry_plus_one_times_with_delays(tmp_path):
    log = tmp_path / "tries"
    code, events = _run_once(
        tmp_path,
        f"""
graph: retry
resources:
  exec:
  - name: flaky
    cmd: "echo $(date +%s.%N) >> {log}; exit 1"
    shell: /bin/sh
    meta: {{retry: 3, delay: 100}}
""",
    )
    assert code == 4
    stamps = [float(x) for x in log.read_text().split()]
    assert len(stamps) == 4
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= 0.1, gaps  # the delay is a floor between tries
    fails = [e for e in events if e["event"] == "failed"]
    assert [f["retry_in"] is None for f in fails] == [False, False, False, True]


def test_exponential_backoff_doubles_the_delay(tmp_path):
    log = tmp_path / "tries"
    code, _ = _run_once(
        tmp_path,
        f"""
graph: backoff
resources:
  exec:
  - name: flaky
    cmd: "echo $(date +%s.%N) >> {log}; exit 1"
    shell: /bin/sh
    meta: {{retry: 3, delay: 100, backoff: exponential, maxdelay: 1000}}
""",
    )
    assert code == 4
    stamps = [float(x) for x in log.read_text().split()]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert len(gaps) == 3
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2 and gaps[2] >= 0.4, gaps


def test_timeout_fails_a_slow_check_apply(tmp_path):
    code, events = _run_once(
        tmp_path,
        """
graph: slow
resources:
  exec:
  - name: slow
    cmd: sleep 30
    meta: {timeout: 200}
""",
    )
    assert code == 4
    (fail,) = [e for e in events if e["event"] == "failed"]
    assert "timed out after 200 ms" in fail["error"]


def test_permanent_failure_blocks_descendants_until_an_event_fixes_it(tmp_path, agent):
    d = tmp_path / "later"
    a = agent(f"""
graph: recover
resources:
  file:
  - name: {d}/f
    content: "f\\n"
  - name: {tmp_path}/child
    content: "child\\n"
edges:
- name: e
  from: {{kind: file, name: {d}/f}}
  to: {{kind: file, name: {tmp_path}/child}}
""")
    a.wait(lambda e: e["event"] == "failed" and e["vertex"] == f"File[{d}/f]", "the failure")
    assert not (tmp_path / "child").exists()
    d.mkdir()  # the event that makes it succeed: the inotify hub moves down
    a.wait(
        lambda e: e["event"] == "checked" and e["vertex"] == f"File[{tmp_path}/child]",
        "the child to run after recovery",
    )
    assert (d / "f").read_text() == "f\n"
    assert (tmp_path / "child").read_text() == "child\n"


def test_poll_repairs_drift_and_the_graph_still_converges(tmp_path, agent):
    f = tmp_path / "polled"
    a = agent(
        f"""
graph: poll
resources:
  file:
  - name: {f}
    content: "polled\\n"
    meta: {{poll: 1}}
""",
        "--converged-timeout",
        "2",
    )
    a.wait(lambda e: e["event"] == "checked" and e["changes"], "the first apply")
    polls_before = a.count(lambda e: e["event"] == "checked")
    f.unlink()
    _wait_until(f.exists, "the poll to restore the file", timeout=10)
    assert f.read_text() == "polled\n"
    # Polling keeps checking, yet the graph converges and the agent exits.
    assert a.proc.wait(timeout=20) == 2
    assert a.count(lambda e: e["event"] == "checked") > polls_before
    assert a.events[-1]["event"] == "recap"


def test_limit_and_burst_bound_checks_and_still_end_converged(tmp_path, agent):
    f = tmp_path / "limited"
    a = agent(f"""
graph: limit
resources:
  file:
  - name: {f}
    content: "final\\n"
    meta: {{limit: 4, burst: 2}}
""")
    a.wait(lambda e: e["event"] == "checked" and e["changes"], "the first apply")
    before = a.count(lambda e: e["event"] == "checked")
    start = time.monotonic()
    for i in range(1000):
        f.write_text(f"noise {i}\n")
    _wait_until(lambda: f.read_text() == "final\n", "the final state", timeout=10)
    elapsed = time.monotonic() - start
    checks = a.count(lambda e: e["event"] == "checked") - before
    assert checks <= 2 + 4 * elapsed + 1, (checks, elapsed)
    assert f.read_text() == "final\n"


class SemaProbe(Resource, kind="test-sema-probe"):
    """Records, per semaphore id, how many probes are inside check at once."""

    active: ClassVar[dict[str, int]] = defaultdict(int)
    peak: ClassVar[dict[str, int]] = defaultdict(int)
    done: ClassVar[set[str]] = set()
    work: float = param(0.005, doc="seconds inside check")

    async def init(self, ctx: Context) -> None:
        await super().init(ctx)

    async def check(self) -> Plan:
        ids = {s.split(":")[0] for s in self.meta.sema} | {"*"}
        for i in ids:
            SemaProbe.active[i] += 1
            SemaProbe.peak[i] = max(SemaProbe.peak[i], SemaProbe.active[i])
        await asyncio.sleep(self.work)
        for i in ids:
            SemaProbe.active[i] -= 1
        if self.name in SemaProbe.done:
            return CONVERGED
        return Plan((Change("run", None, self.name),))

    async def apply(self, plan: Plan) -> None:
        SemaProbe.done.add(self.name)


SEMA_SIZES = {"a": 1, "b": 2, "c": 3}


@st.composite
def dags_with_semaphores(draw: Any) -> tuple[list[list[str]], list[tuple[int, int]], int]:
    n = draw(st.integers(min_value=1, max_value=10))
    semas = [
        draw(st.lists(st.sampled_from(sorted(SEMA_SIZES)), max_size=3, unique=True))
        for _ in range(n)
    ]
    edges = draw(
        st.lists(
            st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(lambda e: e[0] < e[1]),
            max_size=2 * n,
            unique=True,
        )
    )
    global_sema = draw(st.sampled_from([0, 0, 1, 2]))
    return semas, edges, global_sema


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=dags_with_semaphores())
def test_semaphores_never_exceed_their_size_and_never_deadlock(case, tmp_path):
    semas, edges, global_sema = case
    SemaProbe.active.clear()
    SemaProbe.peak.clear()
    SemaProbe.done.clear()
    g = GraphBuilder("sema")
    vs = [
        g.add(SemaProbe(name=f"v{i}", meta=MetaParams(sema=[f"{s}:{SEMA_SIZES[s]}" for s in ids])))
        for i, ids in enumerate(semas)
    ]
    for a, b in edges:
        g.edge(vs[a], vs[b])

    async def go() -> Any:
        async with asyncio.timeout(30):  # a deadlock would hang here
            return await run_async(g, converged_timeout=0, state_dir=tmp_path, sema=global_sema)

    result = asyncio.run(go())
    assert result.exit_code == 2
    assert SemaProbe.done == {f"v{i}" for i in range(len(semas))}
    limits = {**SEMA_SIZES, "*": global_sema or len(semas)}
    for sid, peak in SemaProbe.peak.items():
        assert peak <= limits[sid], (sid, peak)


def test_global_sema_one_serialises_everything(tmp_path):
    log = tmp_path / "log"
    lines = "\n".join(
        f'  - name: e{i}\n    cmd: "echo start >> {log}; sleep 0.1; echo end >> {log}"\n'
        f"    shell: /bin/sh"
        for i in range(4)
    )
    code, _ = _run_once(tmp_path, f"graph: serial\nresources:\n  exec:\n{lines}\n", "--sema", "1")
    assert code == 2
    assert log.read_text().split() == ["start", "end"] * 4


def test_noop_meta_on_one_resource_changes_only_the_others(tmp_path):
    kept = tmp_path / "kept"
    kept.write_text("original\n")
    os.chmod(kept, 0o600)
    code, events = _run_once(
        tmp_path,
        f"""
graph: noop
resources:
  file:
  - name: {kept}
    content: "managed\\n"
    mode: '0644'
    meta: {{noop: true}}
  - name: {tmp_path}/made
    content: "made\\n"
""",
    )
    assert code == 2
    assert kept.read_text() == "original\n" and (kept.stat().st_mode & 0o777) == 0o600
    assert (tmp_path / "made").read_text() == "made\n"
    (would,) = [e for e in events if e["event"] == "checked" and e["noop"]]
    fields = {c["field"]: c for c in would["changes"]}
    assert set(fields) == {"content", "mode"}
    assert "-original\n+managed" in fields["content"]["diff"]
