"""kv: a key in the cluster's key space, against the in-process World and a real etcd."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from etcdutil import EtcdProcess, world_on
from helpers import EventLog, GraphQueue, event, json_lines, run_async, run_once, until

from pymgmt.engine.engine import Engine
from pymgmt.graph.model import Graph
from pymgmt.resources.base import Resource
from pymgmt.resources.kv import KeyValue
from pymgmt.world.base import KV_VALUE_MAX, keys, kv_key_problem
from pymgmt.world.local import LocalWorld

# -- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["a", "app/db/password", "with space", "ünïcode", "x" * 1024],
)
def test_good_keys_are_accepted(key: str) -> None:
    assert kv_key_problem(key) is None


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("", "empty"),
        ("/abs", "leading"),
        ("a/", "trailing"),
        ("a//b", "empty"),
        ("../exported/h1/file/x", "'..'"),
        ("a/./b", "'.'"),
        ("a\nb", "control"),
        ("a\0b", "control"),
        ("x" * 1025, "longer"),
    ],
)
def test_keys_that_could_leave_the_prefix_are_refused(key: str, why: str) -> None:
    bad = kv_key_problem(key)
    assert bad is not None and why in bad
    assert KeyValue(name=key).problems() == [("name", bad)]


def test_the_name_is_the_key_under_its_own_prefix() -> None:
    assert KeyValue(name="app/x").full_key == keys.KV + "app/x"
    assert KeyValue(name="app/x").manages() == [keys.KV + "app/x"]


# -- in-process: the engine on the local World -------------------------------------------


def _graph(*res: Resource) -> Graph[Resource]:
    g: Graph[Resource] = Graph(name="kv")
    for r in res:
        g.add(r)
    return g


async def _value(world: LocalWorld, key: str) -> bytes | None:
    found, _ = await world.get_prefix(key)
    return next((kv.value for kv in found if kv.key == key), None)


def test_local_world_put_drift_repair_and_graph_change(tmp_path: Path) -> None:
    sink = EventLog()
    key = keys.kv("app/greeting")

    async def scenario() -> None:
        world = LocalWorld("h1")
        engine = Engine(world=world, reporter=sink, state_dir=tmp_path / "state")
        front = GraphQueue()
        front.q.put_nowait(_graph(KeyValue(name="app/greeting", value="hello")))
        task = asyncio.create_task(engine.run(front))
        v = "Kv[app/greeting]"
        await until(lambda: any(c.applied for c in sink.checks(v)), "the first put")
        assert await _value(world, key) == b"hello"
        # a key that only shares the prefix is not this key's business
        n = len(sink.checks(v))
        await world.put(key + "/other", b"x")
        await world.put(key + "x", b"x")
        # someone else changes it: drift, repaired
        await world.put(key, b"tampered")
        await until(lambda: any(c.drift for c in sink.checks(v)[n:]), "the repair")
        assert await _value(world, key) == b"hello"
        drifts = [c for c in sink.checks(v)[n:] if c.drift]
        assert drifts[0].changes[0].old == "tampered"
        # deleted: put back
        n = len(sink.checks(v))
        await world.delete(key)
        await until(lambda: any(c.drift for c in sink.checks(v)[n:]), "the re-put")
        assert await _value(world, key) == b"hello"
        # the graph's value changes: the key follows
        front.q.put_nowait(_graph(KeyValue(name="app/greeting", value="bonjour")))
        await until(lambda: world._data.get(key) and world._data[key].value == b"bonjour", "v2")
        # value unset: the key is deleted
        front.q.put_nowait(_graph(KeyValue(name="app/greeting")))
        await until(lambda: key not in world._data, "the delete")
        engine.stop("test")
        await task

    run_async(scenario())


# -- a real etcd, the CLI agent as a client of it -------------------------------------------


def _kv_graph(path: Path, key: str, value: str) -> Path:
    path.write_text(f"graph: kv\nresources:\n  kv:\n  - name: {key}\n    value: {value}\n")
    return path


def _client_flags(node: EtcdProcess, host: str = "h1") -> list[str]:
    return ["--seeds", node.client_url, "--no-server", "--hostname", host]


async def _etcd_value(node: EtcdProcess, key: str) -> bytes | None:
    async with world_on([node.client_url], "tester") as w:
        found, _ = await w.get_prefix(key)
        return next((kv.value for kv in found if kv.key == key), None)


@pytest.mark.slow
def test_etcd_put_converged_and_outside_changes_repaired(tmp_path, etcd_node, agent):
    key = f"t/{uuid.uuid4().hex[:8]}"
    full = keys.kv(key)
    graph = _kv_graph(tmp_path / "g.yaml", key, "v1")
    first = run_once(graph, tmp_path / "p1", "--json", *_client_flags(etcd_node))
    assert first.returncode == 2, first.stdout + first.stderr
    assert run_async(_etcd_value(etcd_node, full)) == b"v1"
    again = run_once(graph, tmp_path / "p1", "--json", *_client_flags(etcd_node))
    assert again.returncode == 0, again.stdout + again.stderr

    a = agent(graph, *_client_flags(etcd_node, "h2"))
    a.wait_event(event("checked", vertex=f"Kv[{key}]"), what="the first check")

    async def put_from_outside(value: bytes | None) -> None:
        async with world_on([etcd_node.client_url], "other-host") as w:
            if value is None:
                await w.delete(full)
            else:
                await w.put(full, value)

    for outside in (b"changed elsewhere", None):
        since = a.mark()
        run_async(put_from_outside(outside))
        a.wait_event(
            lambda e: e.get("event") == "checked" and e.get("drift"),
            since=since,
            what=f"the repair of {outside!r}",
        )
        assert run_async(_etcd_value(etcd_node, full)) == b"v1"

    since = a.mark()
    _kv_graph(graph, key, "v2")  # the agent watches its graph file
    a.wait_event(lambda e: e.get("event") == "checked" and e.get("applied"), since=since, what="v2")
    assert run_async(_etcd_value(etcd_node, full)) == b"v2"


@pytest.mark.slow
def test_a_received_secret_is_stored_but_never_shown(tmp_path, etcd_node):
    key = f"t/{uuid.uuid4().hex[:8]}"
    graph = tmp_path / "g.yaml"
    graph.write_text(
        "graph: kv\nresources:\n  password:\n  - name: db\n  kv:\n"
        f"  - name: {key}\nedges:\n- name: share\n  from: {{kind: password, name: db}}\n"
        f"  to: {{kind: kv, name: {key}}}\n  send: password\n  recv: value\n"
    )
    proc = run_once(graph, tmp_path / "p", "--json", "-v", *_client_flags(etcd_node))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    stored = run_async(_etcd_value(etcd_node, keys.kv(key)))
    assert stored is not None and len(stored) == 64
    assert stored.decode() not in proc.stdout + proc.stderr
    kv_checks = [e for e in json_lines(proc.stdout) if e.get("vertex") == f"Kv[{key}]"]
    assert any(c["new"] == "<redacted>" for e in kv_checks for c in e.get("changes", [])), kv_checks


@pytest.mark.slow
def test_the_largest_value_is_stored_and_a_larger_one_is_an_input_error(tmp_path, etcd_node):
    """etcd refuses a request over 1.5 MiB: a value past the cap is refused at validation."""
    key = f"t/{uuid.uuid4().hex[:8]}"
    big = _kv_graph(tmp_path / "big.yaml", key, "x" * KV_VALUE_MAX)
    stored = run_once(big, tmp_path / "p", "--json", *_client_flags(etcd_node))
    assert stored.returncode == 2, stored.stdout[-2000:] + stored.stderr[-2000:]
    assert run_async(_etcd_value(etcd_node, keys.kv(key))) == b"x" * KV_VALUE_MAX
    huge = _kv_graph(tmp_path / "huge.yaml", key, "y" * (2 * KV_VALUE_MAX))
    refused = run_once(huge, tmp_path / "p", "--json", *_client_flags(etcd_node))
    assert refused.returncode == 1, refused.stdout[-2000:] + refused.stderr[-2000:]
    (problem,) = [p for e in json_lines(refused.stdout) for p in e.get("errors", [])]
    assert (problem["line"], problem["column"], problem["field"]) == (5, 12, "value"), problem
    assert "is longer than 1,048,576 bytes" in problem["message"], problem
    assert run_async(_etcd_value(etcd_node, keys.kv(key))) == b"x" * KV_VALUE_MAX
