"""Files answer AutoEdges' search in one batch: the same edges as every file's walk.

`File.answer_wants` finds each file's nearest managed ancestor once per
directory instead of walking ``wants()`` step by step (issue 13). These
tests build random trees and compare its edges, and their order, with
``add_autoedges(..., batched=False)``, where every vertex walks.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pymgmt.graph.autoedge import add_autoedges
from pymgmt.graph.model import Edge, Graph
from pymgmt.metaparams import MetaParams
from pymgmt.resources.base import Resource
from pymgmt.resources.file import File, _parent_dir
from pymgmt.resources.group import Group
from pymgmt.resources.svc import Svc
from pymgmt.resources.user import User
from pymgmt.traits import UID

#: few names, so that random paths share their directories
_PART = st.sampled_from(["a", "b", "etc", "systemd", "system", "x.service"])


@st.composite
def _paths(draw: st.DrawFn) -> str:
    """A path as a graph may hold one, or as only a test would: `//`, relative, `/`."""
    parts = draw(st.lists(_PART, max_size=5))
    sep = draw(st.sampled_from(["/", "/", "/", "//"]))
    lead = draw(st.sampled_from(["/", "/", "/", "//", ""]))
    trail = draw(st.sampled_from(["", "", "/", "//"]))  # a directory, in mgmt's way
    return lead + sep.join(parts) + trail


@st.composite
def _graphs(draw: st.DrawFn) -> Graph[Resource]:
    g: Graph[Resource] = Graph(name="t")
    for path in draw(st.lists(_paths(), max_size=25)):
        key = ("file", path)
        if key in g.vertices:
            continue
        g.add(
            File(
                name=path,
                source=draw(st.none() | _paths()),
                fragments=draw(st.none() | st.lists(_paths(), max_size=2)),
                owner=draw(st.sampled_from([None, None, "bob", "0"])),
                group=draw(st.sampled_from([None, None, "staff", "10"])),
                state=draw(st.sampled_from(["exists", "exists", "absent"])),
                meta=MetaParams(autoedge=draw(st.booleans() | st.just(True))),
            )
        )
    if draw(st.booleans()):
        g.add(User(name="bob"))
    if draw(st.booleans()):
        g.add(Group(name="staff"))
    if draw(st.booleans()):
        g.add(Svc(name="x"))
    keys = sorted(g.vertices)
    for _ in range(draw(st.integers(0, 4)) if keys else 0):  # edges the user wrote
        a, b = draw(st.sampled_from(keys)), draw(st.sampled_from(keys))
        if a != b:
            g.connect(Edge(a, b, name=f"mine {a} {b}"))
    return g


def _copy(g: Graph[Resource]) -> Graph[Resource]:
    out: Graph[Resource] = Graph(name=g.name)
    for r in g.vertices.values():
        out.add(r)
    out.edges = list(g.edges)
    return out


def _both(g: Graph[Resource]) -> tuple[list[Edge], list[Edge]]:
    def enabled(r: Resource) -> bool:
        return r.meta.autoedge

    walked, batched = _copy(g), _copy(g)
    expected = add_autoedges(walked, enabled, batched=False)
    got = add_autoedges(batched, enabled)
    assert batched.edges == walked.edges
    return got, expected


@settings(max_examples=400, deadline=None)
@given(_graphs())
def test_the_batched_answer_adds_the_walks_edges_in_the_same_order(g: Graph[Resource]) -> None:
    got, expected = _both(g)
    assert got == expected


def test_nested_managed_directories_trailing_slashes_and_unmanaged_parents() -> None:
    g: Graph[Resource] = Graph(name="t")
    for name in ["/", "/a/", "/a/b//", "/a/b/c/d", "/a//b/e", "/x/y/z", "/q/", "/q/r/s/"]:
        g.add(File(name=name))
    got, expected = _both(g)
    assert got == expected
    pairs = {(e.src[1], e.dst[1]) for e in got}
    assert ("/a/b//", "/a/b/c/d") in pairs  # the nearest managed ancestor only
    assert ("/a/", "/a/b/c/d") not in pairs
    assert ("/", "/x/y/z") in pairs  # no managed parent short of the root
    assert ("/q/", "/q/r/s/") in pairs


def test_a_file_provided_by_another_kind_is_found_too() -> None:
    """The batch looks in every UID the graph provides, not in files only."""

    class Dir(Resource, kind="test-dir-provider"):
        def uids(self) -> list[UID]:
            return [UID("file", self.name)]

        def wants(self):  # type: ignore[no-untyped-def]
            return iter(())

    g: Graph[Resource] = Graph(name="t")
    g.add(Dir(name="/srv"))
    g.add(File(name="/srv/data/f"))
    got, expected = _both(g)
    assert [(e.src, e.dst) for e in got] == [
        (("test-dir-provider", "/srv"), ("file", "/srv/data/f"))
    ]
    assert got == expected


def test_the_parent_directory_is_the_walks_first_step() -> None:
    for path, parent in [
        ("/", None),
        ("//", None),
        ("/a", "/"),
        ("/a/", "/"),
        ("/a/b/c", "/a/b"),
        ("/a/b/c/", "/a/b"),
        ("/a//b/c", "/a/b"),
        ("a/b", "/a"),
        ("a", "/"),
    ]:
        assert _parent_dir(path) == parent, path
