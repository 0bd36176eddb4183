"""AutoGroup speed: grouping a 10k-vertex graph (the issue asks for ~1 s).

The graph: N vertices in layers of 100; edges from each vertex to 2 random
vertices of the next layer; a third of the vertices are of a groupable kind.
Prints the time for AutoEdges-free compile steps: reachability bitsets plus
grouping (`NonReachabilityGrouper.groups`) and re-attaching edges
(`apply_groups`), and as a floor the topological sort alone, in the same run.

    .venv/bin/python bench/autogroup.py [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from pymgmt.graph.autogroup import NonReachabilityGrouper, apply_groups
from pymgmt.graph.model import Edge, Graph, Key
from pymgmt.graph.toposort import toposort


@dataclass(eq=False)
class V:
    kind: str
    name: str
    members: list[Any] = field(default_factory=list)

    @property
    def key(self) -> Key:
        return (self.kind, self.name)


def build(n: int, seed: int = 1) -> Graph[Any]:
    rnd = random.Random(seed)
    g: Graph[Any] = Graph(name="bench")
    layers = [
        [V(rnd.choice(["pkg", "file", "svc"]), f"v{i}") for i in range(j, min(j + 100, n))]
        for j in range(0, n, 100)
    ]
    for layer in layers:
        for v in layer:
            g.add(v)
    for a, b in itertools.pairwise(layers):
        for v in a:
            for w in rnd.sample(b, 2):
                g.connect(Edge(v.key, w.key))
    return g


def may(a: V, b: V) -> bool:
    return a.kind == "pkg"


def merge(leader: V, others: list[V]) -> V:
    leader.members = others
    return leader


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    sizes = [1000] if args.quick else [1000, 10000]
    print("| vertices | edges | toposort (floor) | group + re-attach | groups | ratio |")
    print("|---|---|---|---|---|---|")
    for n in sizes:
        topo, grp = [], []
        for _ in range(3):
            g = build(n)
            t0 = time.perf_counter()
            toposort(list(g.vertices), [(e.src, e.dst) for e in g.edges])
            t1 = time.perf_counter()
            groups = NonReachabilityGrouper().groups(g, may)
            out = apply_groups(g, groups, merge)
            t2 = time.perf_counter()
            topo.append(t1 - t0)
            grp.append(t2 - t1)
        t, gr = statistics.median(topo), statistics.median(grp)
        print(
            f"| {n} | {len(g.edges)} | {t * 1000:.1f} ms | {gr * 1000:.1f} ms | "
            f"{len(groups)} ({len(out.vertices)} vertices left) | {gr / t:.1f}x |"
        )


if __name__ == "__main__":
    main()
