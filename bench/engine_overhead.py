"""Engine overhead per check/apply: metaparams at defaults vs sema/limit set.

A graph of N independent vertices of a trivial kind (check returns "changed"
once, then "converged") runs to convergence in-process; the time per vertex
is the engine's cost for one check+apply plus the follow-up check. The floor
is the same resources' check/apply called in a plain loop, measured in the
same run. Prints the per-check cost of each configuration and its ratio to
the defaults.

    .venv/bin/python bench/engine_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

from pymgmt.frontends.api import GraphBuilder, run_async
from pymgmt.metaparams import MetaParams
from pymgmt.resources.base import CONVERGED, Change, Plan, Resource, param


class Trivial(Resource, kind="bench-trivial"):
    """Changes once, then reports converged; no I/O at all."""

    done: bool = param(False, doc="already applied")

    async def check(self) -> Plan:
        return CONVERGED if self.done else Plan((Change("x", 0, 1),))

    async def apply(self, plan: Plan) -> None:
        self.done = True


def _graph(n: int, meta: MetaParams) -> GraphBuilder:
    g = GraphBuilder("overhead")
    for i in range(n):
        g.add(Trivial(name=f"t{i}", meta=meta))
    return g


async def _floor(n: int) -> float:
    res = [Trivial(name=f"t{i}") for i in range(n)]
    start = time.perf_counter()
    for r in res:
        plan = await r.check()
        await r.apply(plan)
    return time.perf_counter() - start


async def _engine(n: int, meta: MetaParams, state: str) -> float:
    g = _graph(n, meta)
    start = time.perf_counter()
    await run_async(g, converged_timeout=0, state_dir=state)
    return time.perf_counter() - start


CONFIGS = {
    "defaults": MetaParams(),
    "sema a:1000": MetaParams(sema=["a:1000"]),
    "sema a,b,c": MetaParams(sema=["a:1000", "b:1000", "c:1000"]),
    "limit 1e9/burst 1e6": MetaParams(limit=1e9, burst=1_000_000),
    "sema + limit + timeout": MetaParams(
        sema=["a:1000"], limit=1e9, burst=1_000_000, timeout=60_000
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("-n", type=int, default=None)
    args = ap.parse_args()
    n = args.n or (500 if args.quick else 5000)
    runs = 3 if args.quick else 7
    with tempfile.TemporaryDirectory() as state:
        floor = statistics.median(asyncio.run(_floor(n)) for _ in range(runs))
        results = {
            name: statistics.median(asyncio.run(_engine(n, meta, state)) for _ in range(runs))
            for name, meta in CONFIGS.items()
        }
    base = results["defaults"]
    print(f"engine overhead per vertex, N={n}, median of {runs} runs")
    print("| configuration | µs per vertex | ratio to defaults |")
    print("|---|---|---|")
    print(f"| plain loop (floor) | {floor / n * 1e6:.1f} | {floor / base:.3f} |")
    for name, t in results.items():
        print(f"| {name} | {t / n * 1e6:.1f} | {t / base:.2f} |")


if __name__ == "__main__":
    main()
