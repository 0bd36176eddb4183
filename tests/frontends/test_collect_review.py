"""What a hostile export can make this host print (review of issue 9).

Names and host names come from other hosts' keys and exports: whatever
reaches a terminal or a log must be short and hold no control character (an
escape sequence can rewrite the screen, a newline can forge a log line).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from helpers import run_async

from pymgmt.frontends.collect import merge
from pymgmt.graph.model import Collect, Graph
from pymgmt.report.console import ConsoleReporter
from pymgmt.resources.base import Resource
from pymgmt.resources.file import File
from pymgmt.world.base import keys
from pymgmt.world.codec import encode
from pymgmt.world.local import LocalWorld
from pymgmt.world.resworld import PREFIX, ResWorld, Snapshot

ESC = "\x1b]0;owned\x07\x1b[2J\n12:00:00 forged line"


def _doc(name: str, path: str) -> bytes:
    doc = {"v": 1, "kind": "file", "name": name, "params": {"path": path, "content": "x"}}
    return json.dumps(doc).encode()


async def _snapshot(world: LocalWorld) -> Snapshot:
    stream = ResWorld(world).collect(["file"])
    try:
        return await anext(stream)
    finally:
        await stream.aclose()


def test_hostile_names_never_reach_the_console_raw(tmp_path: Path) -> None:
    async def main() -> None:
        world = LocalWorld("a")
        # a decodable export whose name is an escape sequence
        await world.put(keys.exported("b", "file", ESC), _doc(ESC, "/x/ok"))
        # a file whose base name is one
        await world.put(keys.exported("b", "file", "f"), _doc("f", "/x/f" + ESC))
        # keys that are not export keys: a "host" part of escapes, and a huge one
        await world.put(PREFIX + ESC + "/file/n", _doc("n", "/x/n"))
        await world.put(PREFIX + "h" * 100_000 + "\x1b[2J/file/n", _doc("n", "/x/n2"))
        # a well-formed key whose name does not match the export's
        await world.put(keys.exported("c", "file", "n" + ESC), _doc("n", "/x/n3"))
        # a host name ending in a newline ('$' matches before it)
        await world.put(keys.exported("d\n", "file", "n4"), _doc("n4", "/x/n4"))
        snap = await _snapshot(world)
        g: Graph[Resource] = Graph(name="g", source="test")
        g.collect.append(Collect(kind="file", pattern=str(tmp_path) + "/"))
        merged = merge(g, snap)
        assert merged.collected == {}, "no vertex may carry such a name or path"
        assert len(merged.refused) == 6
        out = io.StringIO()
        console = ConsoleReporter(out)
        for r in merged.refused:
            console.emit(r)
        text = out.getvalue()
        lines = text.splitlines()
        assert len(lines) == 6, text[:2000]
        assert all(ch.isprintable() for line in lines for ch in line), text[:2000]
        assert all(len(line) < 600 for line in lines)

    run_async(main())


def test_a_printable_export_is_still_collected(tmp_path: Path) -> None:
    async def main() -> None:
        world = LocalWorld("a")
        f = File(name="motd für alle", path="/x/motd-ü", content="hi\n")
        await world.put(keys.exported("b", "file", f.name), encode(f))
        snap = await _snapshot(world)
        g: Graph[Resource] = Graph(name="g", source="test")
        g.collect.append(Collect(kind="file", pattern=str(tmp_path) + "/"))
        merged = merge(g, snap)
        assert [str(r) for r in merged.collected.values()] == ["File[motd für alle@b]"]
        assert merged.refused == []

    run_async(main())


def test_one_host_exporting_thousands_is_capped_and_said_once(tmp_path: Path) -> None:
    """A peer publishing thousands of files (or junk keys) must not make this host
    manage thousands of files, nor print a line for each."""
    from pymgmt.frontends.collect import MAX_PER_HOST, MAX_REFUSALS

    async def main() -> None:
        world = LocalWorld("a")
        n = MAX_PER_HOST + 500
        for i in range(n):
            await world.put(keys.exported("b", "file", f"f{i:05}"), _doc(f"f{i:05}", f"/x/f{i:05}"))
        for i in range(3 * MAX_REFUSALS):
            await world.put(f"{PREFIX}junk{i}", b"")
        await world.put(keys.exported("c", "file", "ok"), _doc("ok", "/x/ok"))
        snap = await _snapshot(world)
        g: Graph[Resource] = Graph(name="g", source="test")
        g.collect.append(Collect(kind="file", pattern=str(tmp_path) + "/"))
        merged = merge(g, snap)
        hosts = [k[1].rsplit("@", 1)[1] for k in merged.collected]
        assert hosts.count("b") == MAX_PER_HOST
        assert hosts.count("c") == 1, "another host's exports are not crowded out"
        assert len(merged.refused) == MAX_REFUSALS + 2
        assert merged.refused[-2].reason == "and 100 more refusals"
        assert merged.refused[-1].host == "b" and "500 past those" in merged.refused[-1].reason

    run_async(main())


def test_a_hostname_no_collector_accepts_is_refused_where_it_is_set() -> None:
    """Exports under such a name were published, then refused by every other
    host as "not an export key": the exporting host itself never heard of it."""
    import pytest

    from pymgmt.world.base import WorldError

    for bad in ("_h", "h@x", "h h", "-h", "h" * 300, "h\x1b[2J", "h\n"):
        with pytest.raises(WorldError, match="hostname"):
            ResWorld(LocalWorld(bad))
    ResWorld(LocalWorld("Host-1.example_2"))


def test_a_diff_of_another_hosts_content_is_shown_not_played() -> None:
    """--noop and -v print the content diff: a collected file's content is the
    exporter's, and its escape sequences must not reach the terminal as such."""
    from pymgmt.report.events import ChangeInfo, Checked

    diff = "--- /x/f\n+++ /x/f\n@@ -0,0 +1 @@\n+hi\x1b]0;owned\x07\x1b[2J\rgone\tok\n"
    ev = Checked(
        "File[f@b]", "start", [ChangeInfo("content", None, "sha256:1", diff)], False, True, False, 0
    )
    out = io.StringIO()
    ConsoleReporter(out).emit(ev)
    text = out.getvalue()
    assert "\x1b" not in text and "\r" not in text and "\x07" not in text
    assert "+hi\\x1b]0;owned\\x07\\x1b[2J\\rgone\tok" in text
