"""A live edit of one resource's entry is re-read alone, and compiled for that vertex alone.

`redeclare` must give exactly what a full read gives, or None (then the
file is read in full): the tests compare it with `declare` on the same bytes,
and check every case where it must not guess. `recompile` must give what
`accept` gives. The live test runs an engine on a real file with real
inotify and checks that a one-line edit was read as one entry, compiled as
one vertex, and applied, while the other vertices kept their workers.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import EventLog, run_async, until

from pymgmt.engine.engine import Engine
from pymgmt.frontends.compile import accept, recompile
from pymgmt.frontends.yamlbuild import declare
from pymgmt.frontends.yamledit import redeclare
from pymgmt.frontends.yamlfile import YamlFrontend
from pymgmt.frontends.yamlmodel import YamlGraph
from pymgmt.world.local import LocalWorld


def _text(root: Path, contents: list[str], extra: str = "") -> bytes:
    out = ["graph: edit", "resources:", "  file:"]
    for i, c in enumerate(contents):
        out += [f"  - name: {root / f'f{i}'}", f"    content: {json.dumps(c)}", "    mode: '0644'"]
    return ("\n".join(out) + "\n" + extra).encode()


def _same(a: YamlGraph, b: YamlGraph) -> None:
    assert list(a.vertices) == list(b.vertices)
    for k in a.vertices:
        assert a.vertices[k].same_as(b.vertices[k]), k
        assert a.locations[k] == b.locations[k], k
    assert a.edges == b.edges and a.exported == b.exported and a.name == b.name


def test_an_edit_inside_one_entry_is_read_as_a_full_read_reads_it(tmp_path: Path) -> None:
    old_text = _text(tmp_path, ["a\n", "b\n", "c\n"])
    new_text = _text(tmp_path, ["a\n", "B, edited\n", "c\n"])
    old = declare(old_text, "g.yaml")
    new = redeclare(old_text, new_text, old)
    assert new is not None
    _same(new, declare(new_text, "g.yaml"))
    key = ("file", str(tmp_path / "f1"))
    assert new.edited_from == (old, key)
    untouched = ("file", str(tmp_path / "f0"))
    assert new.vertices[untouched] is old.vertices[untouched]
    # the old graph is left as it was
    assert old.vertices[key].content == "b\n"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "why, new_contents, extra",
    [
        ("two entries", ["A\n", "B\n", "c\n"], ""),
        ("a line added", ["a\n", "b\n", "c\n"], "edges: []\n"),
        ("a bad value", ["a\n", "b\n", "c\n"], None),
        ("the graph name", None, None),
        ("an alias", ["a\n", "b\n", "c\n"], "*"),
        ("a rename", ["a\n", "b\n", "c\n"], "rename"),
    ],
)
def test_what_redeclare_does_not_guess(
    tmp_path: Path, why: str, new_contents: list[str] | None, extra: str | None
) -> None:
    old_text = _text(tmp_path, ["a\n", "b\n", "c\n"])
    old = declare(old_text, "g.yaml")
    if why == "a bad value":
        new_text = old_text.replace(b"'0644'", b"'9999'", 1)
    elif why == "the graph name":
        new_text = old_text.replace(b"graph: edit", b"graph: other")
    elif why == "an alias":
        new_text = old_text.replace(b"mode: '0644'", b"mode: &m '0644'", 1)
    elif why == "a rename":
        new_text = old_text.replace(b"/f1\n", b"/f9\n")
    else:
        assert new_contents is not None
        new_text = _text(tmp_path, new_contents, extra or "")
    assert redeclare(old_text, new_text, old) is None, why


def test_recompile_gives_what_accept_gives_and_refuses_what_it_cannot(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    old_text = _text(tmp_path / "d", ["a\n", "b\n"])
    old = declare(old_text, "g.yaml")
    prev = accept(old)
    new = redeclare(old_text, old_text.replace(b'"b\\n"', b'"b2\\n"'), old)
    assert new is not None
    fast = recompile(prev, new)
    assert fast is not None and fast.declared is new
    full = accept(new)
    assert list(fast.graph.vertices) == list(full.graph.vertices)
    for k, v in full.graph.vertices.items():
        assert fast.graph.vertices[k].same_as(v)
    assert [(e.src, e.dst) for e in fast.graph.edges] == [(e.src, e.dst) for e in full.graph.edges]
    key = ("file", str(tmp_path / "d" / "f0"))
    assert fast.graph.vertices[key] is prev.graph.vertices[key]  # the running object itself
    # A graph that is no edit of the one compiled before: compiled in full.
    assert recompile(prev, declare(old_text, "g.yaml")) is None
    # A meta change (AutoEdges, semaphores, grouping may see it): compiled in full.
    meta_text = old_text.replace(b"    mode: '0644'\n", b"    meta: {noop: true}\n", 1)
    meta_text = meta_text.replace(b"    content", b"    content", 1)
    meta = declare(meta_text, "g.yaml")
    meta.edited_from = (old, ("file", str(tmp_path / "d" / "f0")))
    assert recompile(prev, meta) is None


def test_a_one_line_edit_of_the_live_file_is_read_and_compiled_for_one_vertex(
    tmp_path: Path,
) -> None:
    files = tmp_path / "files"
    files.mkdir()
    path = tmp_path / "g.yaml"
    contents = [f"{i}\n" for i in range(30)]
    path.write_bytes(_text(files, contents))
    sink = EventLog()
    front = YamlFrontend(str(path), debounce=0.01)

    async def scenario() -> None:
        engine = Engine(world=LocalWorld("t"), reporter=sink, state_dir=tmp_path / "state")
        task = asyncio.create_task(engine.run(front))
        names = [f"File[{files / f'f{i}'}]" for i in range(30)]
        await until(lambda: all(sink.applied(n) for n in names), "first applies")
        kept: dict[Any, Any] = {k: w for k, w in engine.workers.items()}
        contents[7] = "seven, edited\n"
        path.write_bytes(_text(files, contents))
        await until(lambda: (files / "f7").read_text() == "seven, edited\n", "the edit applied")
        assert front.reads == ["entry"]
        for k, w in engine.workers.items():
            assert (w is kept[k]) == (k != ("file", str(files / "f7"))), k
        engine.stop("test")
        await task

    run_async(scenario())


def test_a_graph_read_back_from_the_parse_cache_is_edited_one_entry_too(tmp_path: Path) -> None:
    from pymgmt.frontends import cache

    old_text = _text(tmp_path, ["a\n", "b\n"])
    data = cache.encode(declare(old_text, "g.yaml"), "key")
    assert data is not None
    cached = cache._decode(json.loads(data)["graph"])
    new_text = _text(tmp_path, ["a\n", "b, edited\n"])
    new = redeclare(old_text, new_text, cached)
    assert new is not None
    _same(new, declare(new_text, "g.yaml"))


def test_an_edit_of_a_group_an_absent_user_learns_from_is_compiled_whole() -> None:
    """The fast path keeps the other vertices: a user's fact about its group would go stale."""
    old_text = (
        b"graph: edit\nresources:\n  group:\n  - name: web\n    state: exists\n"
        b"  user:\n  - name: web\n    state: absent\n"
    )
    old = declare(old_text, "g.yaml")
    prev = accept(old)
    assert prev.graph.vertices[("user", "web")].keeps_own_group  # type: ignore[attr-defined]
    new = redeclare(old_text, old_text.replace(b"state: exists", b"state: absent"), old)
    assert new is not None and new.edited_from is not None
    assert recompile(prev, new) is None
    full = accept(new)
    assert not full.graph.vertices[("user", "web")].keeps_own_group  # type: ignore[attr-defined]


def test_a_recompiled_edit_keeps_what_a_purged_tree_spares(tmp_path: Path) -> None:
    """An edit of a file inside a purged tree, or of the tree's own mode, is one vertex."""
    top = tmp_path / "top"
    tree = f"  - name: {top}/\n    recurse: true\n    purge: true\n    mode: '0755'\n"
    old_text = _text(top, ["a\n", "b\n"]).replace(b"  file:\n", b"  file:\n" + tree.encode())
    old = declare(old_text, "g.yaml")
    prev = accept(old)
    key = ("file", f"{top}/")
    assert prev.graph.vertices[key].spares == {f"{top}/f0", f"{top}/f1"}
    for edited in (
        old_text.replace(b'"b\\n"', b'"b2\\n"'),
        old_text.replace(b"mode: '0755'", b"mode: '0700'"),
    ):
        new = redeclare(old_text, edited, old)
        assert new is not None
        fast = recompile(prev, new)
        assert fast is not None
        full = accept(new)
        assert fast.graph.vertices[key].spares == full.graph.vertices[key].spares
        assert fast.graph.vertices[key].same_as(full.graph.vertices[key])
