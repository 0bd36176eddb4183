"""cProfile every thread of a benchmark's agents, for finding where CPU goes.

Put this directory on PYTHONPATH and set PYMGMT_PROFILE_DIR: each Python
process started with that environment profiles its main thread and every
thread it starts (the engine compiles graphs in `asyncio.to_thread`), and
at exit writes ``<dir>/<pid>.prof`` (all threads merged, pstats format).
PYMGMT_PROFILE_HOSTS=h10,h30 limits it to the agents with those names in
their argv (profiling every agent slows the run until leases expire)::

    PYTHONPATH=$PWD/bench/profhook PYMGMT_PROFILE_DIR=/tmp/prof \
        PYMGMT_PROFILE_HOSTS=h10,h30,h50 .venv/bin/python bench/fanin.py
    .venv/bin/python bench/profhook/summary.py /tmp/prof/*.prof   # the fan-in's agents

Each profiler times its thread's CPU (`time.thread_time`), not the wall
clock, so waiting for one of 2 shared cores is not counted. Not used for
the benchmarks' figures: profiling slows every Python call down (~2.5x).
"""

from __future__ import annotations

import atexit
import contextlib
import cProfile
import os
import sys
import threading
import time

_DIR = os.environ.get("PYMGMT_PROFILE_DIR")


def _start() -> None:
    if not _DIR or "pymgmt" not in os.path.basename(sys.argv[0] if sys.argv else ""):
        return
    only = os.environ.get("PYMGMT_PROFILE_HOSTS")  # e.g. "h10,h30": only these agents
    if only and not set(only.split(",")) & set(sys.argv):
        return
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()

    def new() -> cProfile.Profile:
        p = cProfile.Profile(time.thread_time)  # CPU, not wall: 2 cores are shared
        with lock:
            profiles.append(p)
        return p

    def in_thread(*_: object) -> None:
        # threading's profile hook runs once as each new thread starts:
        # replace it with a profiler of that thread's own
        sys.setprofile(None)
        new().enable()

    main = new()
    threading.setprofile(in_thread)
    main.enable()

    def dump() -> None:
        import pstats

        main.disable()
        with lock:
            stats = pstats.Stats(profiles[0])
            for p in profiles[1:]:
                with contextlib.suppress(TypeError):  # a profiler that never ran
                    stats.add(p)
        stats.dump_stats(os.path.join(_DIR, f"{os.getpid()}.prof"))

    atexit.register(dump)
    real_exit = os._exit

    def exit_after_dump(code: int) -> None:  # pymgmt run ends with os._exit
        dump()
        real_exit(code)

    os._exit = exit_after_dump  # type: ignore[assignment]


_start()
