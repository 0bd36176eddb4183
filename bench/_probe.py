"""In-process timings of one `pymgmt run`, written as JSON to OUT.

Usage:
  _probe.py split OUT GRAPH PREFIX   time imports, each YAML parse, the engine
  _probe.py parse OUT GRAPH          the frontend's load() vs plain libyaml

`split` runs exactly what ``pymgmt run --converged-timeout 0 -q`` runs, with
the frontend's ``parse`` and ``asyncio.run`` wrapped to timestamp them.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import sys  # noqa: E402


def split(out: str, graph: str, prefix: str) -> None:
    import pymgmt.cli.run  # noqa: F401  (imported lazily by main; timed here)
    from pymgmt.cli.main import main

    t_imports = time.perf_counter()
    import asyncio
    import os

    import pymgmt.frontends.yamlgraph as yg

    parses: list[tuple[float, float]] = []
    runs: list[tuple[float, float]] = []
    orig_parse, orig_run = yg.parse, asyncio.run

    def parse(*a, **k):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return orig_parse(*a, **k)
        finally:
            parses.append((t, time.perf_counter()))

    def run(*a, **k):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return orig_run(*a, **k)
        finally:
            runs.append((t, time.perf_counter()))

    yg.parse = parse
    asyncio.run = run
    saved = sys.stdout
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115

    # `pymgmt run` ends with os._exit (skipping teardown): turn that into a
    # return here, so the probe can write its timings (the exit is timed
    # separately by converged_check.py, from the outside).
    def no_exit(code: int) -> None:
        raise SystemExit(code)

    real_exit, os._exit = os._exit, no_exit  # type: ignore[assignment]
    t_main = time.perf_counter()
    try:
        rc = main(["run", "--converged-timeout", "0", "-q", "--prefix", prefix, graph])
    except SystemExit as e:
        rc = int(e.code or 0)
    finally:
        os._exit = real_exit
    t_end = time.perf_counter()
    sys.stdout = saved
    (r0, r1), *_ = runs
    inside = sum(b - a for a, b in parses if r0 <= a <= r1)
    outside = sum(b - a for a, b in parses if not r0 <= a <= r1)
    import json

    result = {
        "rc": rc,
        "imports": t_imports - T0,
        "parse_count": len(parses),
        "parse_validate": outside,
        "parse_in_engine": inside,
        "engine": (r1 - r0) - inside,
        "other": (t_end - t_main) - (r1 - r0) - outside,
        "script": time.perf_counter() - T0,
    }
    with open(out, "w") as f:
        json.dump(result, f)


def parse_times(out: str, graph: str) -> None:
    import statistics

    import yaml

    from pymgmt.frontends.yamlgraph import load

    def timed(fn, reps: int) -> float:  # type: ignore[no-untyped-def]
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return statistics.median(ts)

    t = time.perf_counter()
    g = load(graph)
    first = time.perf_counter() - t
    with open(graph, "rb") as f:
        text = f.read()
    import json

    result = {
        "resources": len(g.vertices),
        "load_first": first,
        "load": timed(lambda: load(graph), 7),
        "compose_c": timed(lambda: yaml.compose(text, Loader=yaml.CSafeLoader), 7),
        "load_c": timed(lambda: yaml.load(text, Loader=yaml.CSafeLoader), 7),
    }
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    if sys.argv[1] == "split":
        split(*sys.argv[2:5])
    else:
        parse_times(*sys.argv[2:4])
