"""AutoGroup as tables (input graph -> grouped graph) and as properties."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pymgmt.graph.autogroup import NonReachabilityGrouper, apply_groups
from pymgmt.graph.model import Edge, Graph, Key
from pymgmt.graph.reachability import descendants
from pymgmt.graph.toposort import toposort


@dataclass(eq=False)
class V:
    """A vertex whose kind is the name's letters: p1, p2 are both kind 'p'."""

    name: str
    groupable: bool = True
    members: list[str] = field(default_factory=list)

    @property
    def key(self) -> Key:
        return (self.name.rstrip("0123456789"), self.name)


def _graph(names: str, edges: str = "") -> Graph[Any]:
    g: Graph[Any] = Graph(name="t")
    for n in names.split():
        g.add(V(n, groupable=not n.startswith("x")))
    for pair in edges.split():
        a, b = pair.split(">")
        g.connect(Edge(V(a).key, V(b).key, notify=a.endswith("9")))
    return g


def _may(a: V, b: V) -> bool:
    return a.groupable and b.groupable


def _merge(leader: V, others: list[V]) -> V:
    return V(leader.name, members=[leader.name, *(o.name for o in others)])


def _group(g: Graph[Any]) -> tuple[set[str], set[tuple[str, str]]]:
    groups = NonReachabilityGrouper().groups(g, _may)
    out = apply_groups(g, groups, _merge)
    names = {",".join(v.members) if v.members else v.name for v in out.vertices.values()}
    label = {k: (",".join(v.members) if v.members else v.name) for k, v in out.vertices.items()}
    return names, {(label[e.src], label[e.dst]) for e in out.edges}


def test_the_articles_example_groups_three_packages_into_one():
    # three pkg, two file, one svc: pkg -> file -> svc
    g = _graph(
        "pkg1 pkg2 pkg3 file1 file2 svc1", "pkg1>file1 pkg2>file1 pkg3>file2 file1>svc1 file2>svc1"
    )
    names, edges = _group(g)
    assert names == {"pkg1,pkg2,pkg3", "file1,file2", "svc1"}
    assert edges == {("pkg1,pkg2,pkg3", "file1,file2"), ("file1,file2", "svc1")}


def test_vertices_with_a_path_between_them_are_never_grouped():
    names, edges = _group(_graph("a1 b1 a2", "a1>b1 b1>a2"))
    assert names == {"a1", "b1", "a2"}
    assert edges == {("a1", "b1"), ("b1", "a2")}


def test_chain_merge_and_edge_reattachment():
    names, edges = _group(_graph("a1 b1 b2 c1", "a1>b1 a1>b2 b1>c1 b2>c1"))
    assert names == {"a1", "b1,b2", "c1"}
    assert edges == {("a1", "b1,b2"), ("b1,b2", "c1")}


def test_different_kinds_never_group_and_opt_out_is_respected():
    names, _ = _group(_graph("a1 b1 x1 x2"))
    assert names == {"a1", "b1", "x1", "x2"}


def test_merges_of_two_kinds_cannot_form_a_cycle_together():
    # a1 -> b1 and b2 -> a2: grouping {a1,a2} and {b1,b2} would make a cycle.
    g = _graph("a1 a2 b1 b2", "a1>b1 b2>a2")
    out = apply_groups(g, NonReachabilityGrouper().groups(g, _may), _merge)
    toposort(list(out.vertices), [(e.src, e.dst) for e in out.edges])  # raises on a cycle
    grouped = [v.members for v in out.vertices.values() if v.members]
    assert grouped == [["a1", "a2"]]  # the first kind groups; the second then cannot


def test_notify_survives_when_parallel_edges_collapse():
    g = _graph("a9 b1 b2", "a9>b1 a9>b2")
    out = apply_groups(g, NonReachabilityGrouper().groups(g, _may), _merge)
    assert [e.notify for e in out.edges] == [True]


@st.composite
def dags(draw: Any) -> Graph[Any]:
    n = draw(st.integers(1, 14))
    kinds = draw(st.lists(st.sampled_from("abcx"), min_size=n, max_size=n))
    names = [f"{k}{i}" for i, k in enumerate(kinds)]
    pairs = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=3 * n))
    return _graph(" ".join(names), " ".join(f"{names[a]}>{names[b]}" for a, b in pairs if a < b))


@settings(max_examples=300, deadline=None)
@given(g=dags())
def test_grouping_never_creates_a_cycle_and_keeps_every_dependency(g):
    groups = NonReachabilityGrouper().groups(g, _may)
    out = apply_groups(g, groups, _merge)
    order = toposort(list(out.vertices), [(e.src, e.dst) for e in out.edges])  # raises on a cycle
    owner = {m: grp[0] for grp in groups for m in grp}
    lead = {k: owner.get(k, k) for k in g.vertices}
    assert all(len({k[0] for k in grp}) == 1 for grp in groups)  # one kind per group
    # Every original path still exists between the (grouped) endpoints.
    orig_order = toposort(list(g.vertices), [(e.src, e.dst) for e in g.edges])
    kids: dict[Key, list[Key]] = {k: [] for k in g.vertices}
    for e in g.edges:
        kids[e.src].append(e.dst)
    reach = descendants(orig_order, kids)
    new_kids: dict[Key, list[Key]] = {k: [] for k in out.vertices}
    for e in out.edges:
        new_kids[e.src].append(e.dst)
    new_reach = descendants(order, new_kids)
    new_pos = {k: i for i, k in enumerate(order)}
    for i, u in enumerate(orig_order):
        for j, v in enumerate(orig_order):
            if reach[u] >> j & 1:
                assert lead[u] != lead[v]
                assert new_reach[lead[u]] >> new_pos[lead[v]] & 1, (u, v)
        del i
