"""Metaparameters, enforced by the engine, observed on real files and commands."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, ClassVar

from helpers import Agent, json_lines, run_once, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pymgmt.frontends.api import GraphBuilder, run_async
from pymgmt.metaparams import MetaParams
from pymgmt.resources.base import CONVERGED, Change, Context, Plan, Resource, param


def _run_once(tmp: Path, yaml_text: str, *extra: str) -> tuple[int, list[dict[str, Any]]]:
    """Write the graph, run it once with --json; (exit code, events)."""
    graph = tmp / "g.yaml"
    graph.write_text(yaml_text)
    proc = run_once(graph, tmp / "p", "--json", *extra)
    return proc.returncode, json_lines(proc.stdout)


def _start(agent: Any, tmp: Path, yaml_text: str, *extra: str) -> Agent:
    graph = tmp / "g.yaml"
    graph.write_text(yaml_text)
    return agent(graph, *extra)


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
    a = _start(
        agent,
        tmp_path,
        f"""
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
""",
    )
    a.wait_event(
        lambda e: e["event"] == "failed" and e["vertex"] == f"File[{d}/f]", what="the failure"
    )
    assert not (tmp_path / "child").exists()
    d.mkdir()  # the event that makes it succeed: the inotify hub moves down
    a.wait_event(
        lambda e: e["event"] == "checked" and e["vertex"] == f"File[{tmp_path}/child]",
        what="the child to run after recovery",
    )
    assert (d / "f").read_text() == "f\n"
    assert (tmp_path / "child").read_text() == "child\n"


def test_poll_repairs_drift_and_the_graph_still_converges(tmp_path, agent):
    f = tmp_path / "polled"
    a = _start(
        agent,
        tmp_path,
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
    a.wait_event(lambda e: e["event"] == "checked" and e["changes"], what="the first apply")
    polls_before = len(a.find(lambda e: e["event"] == "checked"))
    f.unlink()
    wait_for(f.exists, timeout=10, what="the poll to restore the file")
    assert f.read_text() == "polled\n"
    # Polling keeps checking, yet the graph converges and the agent exits.
    assert a.wait_exit(timeout=20) == 2
    assert len(a.find(lambda e: e["event"] == "checked")) > polls_before
    assert a.events[-1]["event"] == "recap"


def test_limit_and_burst_bound_checks_and_still_end_converged(tmp_path, agent):
    f = tmp_path / "limited"
    a = _start(
        agent,
        tmp_path,
        f"""
graph: limit
resources:
  file:
  - name: {f}
    content: "final\\n"
    meta: {{limit: 4, burst: 2}}
""",
    )
    a.wait_event(lambda e: e["event"] == "checked" and e["changes"], what="the first apply")
    before = len(a.find(lambda e: e["event"] == "checked"))
    start = time.monotonic()
    for i in range(1000):
        f.write_text(f"noise {i}\n")
    wait_for(lambda: f.read_text() == "final\n", timeout=10, what="the final state")
    elapsed = time.monotonic() - start
    checks = len(a.find(lambda e: e["event"] == "checked")) - before
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
