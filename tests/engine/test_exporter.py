"""The Exporter publishes exactly the running graph's exported resources."""

from __future__ import annotations

import logging

import pytest
from helpers import run_async

from pymgmt.engine.exporter import Exporter
from pymgmt.graph.model import Graph
from pymgmt.report.events import Event, Exported
from pymgmt.resources.base import Resource
from pymgmt.resources.file import File
from pymgmt.resources.pkg import Pkg
from pymgmt.world.codec import decode
from pymgmt.world.local import LocalWorld
from pymgmt.world.resworld import PREFIX, ResWorld


def _graph(*res: Resource, exported: tuple[str, ...] = ()) -> Graph[Resource]:
    g: Graph[Resource] = Graph(name="g")
    for r in res:
        g.add(r)
    g.exported = {k for k in g.vertices if k[1] in exported}
    return g


async def _published(world: LocalWorld) -> dict[str, str]:
    kvs, _ = await world.get_prefix(PREFIX)
    return {kv.key.removeprefix(PREFIX): str(decode(kv.value)) for kv in kvs}


def test_exports_follow_the_graph_and_say_so_when_they_change() -> None:
    async def main() -> None:
        world = LocalWorld("a")
        events: list[Event] = []
        exporter = Exporter(ResWorld(world), events.append)
        f1, f2 = File(name="f1", path="/tmp/f1"), File(name="f2", path="/tmp/f2")
        local = File(name="local", path="/tmp/local")
        await exporter.graph_swapped(_graph(f1, f2, local, exported=("f1", "f2")))
        assert await _published(world) == {"a/file/f1": "File[f1]", "a/file/f2": "File[f2]"}
        assert events == [Exported(2, ["File[f1]", "File[f2]"])]
        _, rev = await world.get_prefix(PREFIX)
        # the same exports again (a swap of something else): no write, no event
        await exporter.graph_swapped(_graph(f1, f2, exported=("f1", "f2")))
        assert (await world.get_prefix(PREFIX))[1] == rev
        assert len(events) == 1
        # one changed: published, said
        f1b = File(name="f1", path="/tmp/f1", content="new\n")
        await exporter.graph_swapped(_graph(f1b, f2, exported=("f1", "f2")))
        assert len(events) == 2 and events[-1] == Exported(2, ["File[f1]", "File[f2]"])
        # none left: deleted, said
        await exporter.graph_swapped(_graph(f1b, f2))
        assert await _published(world) == {}
        assert events[-1] == Exported(0, [])

    run_async(main())


def test_a_resource_autogroup_folded_into_another_is_still_exported() -> None:
    async def main() -> None:
        world = LocalWorld("a")
        events: list[Event] = []
        leader, member = Pkg(name="curl"), Pkg(name="wget")
        leader.members.append(member)
        g = _graph(leader, exported=())
        g.exported = {("pkg", "wget")}
        await Exporter(ResWorld(world), events.append).graph_swapped(g)
        assert await _published(world) == {"a/pkg/wget": "Pkg[wget]"}

    run_async(main())


def test_noop_exports_nothing_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        world = LocalWorld("a")
        events: list[Event] = []
        exporter = Exporter(ResWorld(world), events.append, noop=True)
        g = _graph(File(name="f1", path="/tmp/f1"), exported=("f1",))
        with caplog.at_level(logging.INFO, logger="pymgmt.exporter"):
            await exporter.graph_swapped(g)
            await exporter.graph_swapped(g)
        assert await _published(world) == {}
        assert events == []
        said = [r.getMessage() for r in caplog.records if r.name == "pymgmt.exporter"]
        assert len(said) == 1 and "not published" in said[0]

    run_async(main())


def test_exported_reads_well_in_console_and_json() -> None:
    import io
    import json

    from pymgmt.report.console import ConsoleReporter, JsonReporter

    out, js = io.StringIO(), io.StringIO()
    ConsoleReporter(out).emit(Exported(2, ["File[f1]", "File[f2]"]))
    JsonReporter(js).emit(Exported(2, ["File[f1]", "File[f2]"]))
    assert out.getvalue().split(" ", 1)[1] == "INFO  Exported 2 resources: File[f1], File[f2]\n"
    doc = json.loads(js.getvalue())
    assert (doc["event"], doc["count"], doc["keys"]) == ("exported", 2, ["File[f1]", "File[f2]"])


class _Flaky(LocalWorld):
    """A World whose writes fail while `down` (the cluster unreachable for a while).

    A fake fault: an etcd that refuses writes for a moment and then takes
    them again cannot be produced on cue; the store itself is the real
    in-process one.
    """

    down = False

    async def commit(self, *args: object, **kw: object) -> int:
        if self.down:
            raise ConnectionError("etcd unreachable")
        return await super().commit(*args, **kw)  # type: ignore[arg-type]

    async def put(self, *args: object, **kw: object) -> int:
        if self.down:
            raise ConnectionError("etcd unreachable")
        return await super().put(*args, **kw)  # type: ignore[arg-type]


def test_a_failed_publish_is_retried_until_it_goes_through() -> None:
    import asyncio

    async def main() -> None:
        world = _Flaky("a")
        events: list[Event] = []
        said = asyncio.Event()

        def emit(event: Event) -> None:
            events.append(event)
            said.set()

        exporter = Exporter(ResWorld(world), emit)
        world.down = True
        f1 = File(name="f1", path="/tmp/f1")
        with pytest.raises(ConnectionError):
            await exporter.graph_swapped(_graph(f1, exported=("f1",)))
        assert await _published(world) == {}
        async with asyncio.TaskGroup() as tg:
            retry = tg.create_task(exporter.retry_failed(delays=(0.01,)))
            await asyncio.sleep(0.05)  # a few failed attempts while down
            world.down = False
            async with asyncio.timeout(10):
                await said.wait()  # published: said once it went through
            retry.cancel()
        assert events == [Exported(1, ["File[f1]"])]
        assert await _published(world) == {"a/file/f1": "File[f1]"}

    run_async(main())


class _Stalled(LocalWorld):
    """A World whose writes wait while `gate` is closed (the cluster partitioned away).

    The etcd World waits out a partition inside the call, for as long as it
    lasts; a gate stands for that on cue (tests/cluster/test_partition.py
    cuts a real link).
    """

    def __init__(self, hostname: str) -> None:
        super().__init__(hostname)
        import asyncio

        self.gate = asyncio.Event()
        self.gate.set()

    async def commit(self, *args: object, **kw: object) -> int:
        await self.gate.wait()
        return await super().commit(*args, **kw)  # type: ignore[arg-type]


def test_a_swap_does_not_wait_out_a_partition_and_the_last_exports_go_out_after_it() -> None:
    import asyncio

    async def main() -> None:
        world = _Stalled("a")
        events: list[Event] = []
        both = Exported(2, ["File[f1]", "File[f2]"])
        said = asyncio.Event()

        def emit(event: Event) -> None:
            events.append(event)
            if event == both:
                said.set()

        exporter = Exporter(ResWorld(world), emit, wait=0.05)
        world.gate.clear()
        f1, f2 = File(name="f1", path="/tmp/f1"), File(name="f2", path="/tmp/f2")
        async with asyncio.TaskGroup() as tg:
            retry = tg.create_task(exporter.retry_failed(delays=(0.01,)))
            # two swaps during the partition: each returns, neither is published
            await exporter.graph_swapped(_graph(f1, exported=("f1",)))
            await exporter.graph_swapped(_graph(f1, f2, exported=("f1", "f2")))
            assert events == [] and await _published(world) == {}
            world.gate.set()  # healed
            async with asyncio.timeout(10):
                await said.wait()
            retry.cancel()
        # the last wanted set went out, said once
        assert events == [both], events
        assert await _published(world) == {"a/file/f1": "File[f1]", "a/file/f2": "File[f2]"}

    run_async(main())


def test_an_exported_template_is_rendered_here_and_published_as_content() -> None:
    """Issue 15: the collecting host runs no template; the exporting host renders it."""

    async def main() -> None:
        world = LocalWorld("a")
        exporter = Exporter(ResWorld(world), [].append)
        f = File(name="motd", path="/tmp/motd", template="hello {{ who }}\n", vars={"who": "b"})
        await exporter.graph_swapped(_graph(f, exported=("motd",)))
        (kv,) = (await world.get_prefix(PREFIX))[0]
        got = decode(kv.value)
        assert isinstance(got, File)
        assert (got.content, got.template, got.vars) == ("hello b\n", None, {})
        assert f.template is not None  # the running resource is left as declared

    run_async(main())
