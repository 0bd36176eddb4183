"""The engine's first pass: the first check of many vertices of one kind, at once.

Why (issue 13): an agent on 10,000 files spent most of its start in one
task per vertex for a first check that, on a converged machine, finds
nothing to do: the task, its coroutine frames, the scheduling steps, and a
safe walk of the file's directory per file. Here the vertices of a kind
that checks in batches (`traits.BatchChecked`: the file) are started and
checked a chunk at a time, in one task, sharing one directory fd per
directory; a vertex found converged is reported like any other and gets
no task until its watch fires (`Worker.poke` starts it then).

What stays as it was, for each vertex:
- its watch is armed (subscribed) before it is checked, so a change made
  after the check is an event, never lost;
- it is judged by its kind's own rule, and it gets its own `Checked` event;
- a vertex that is not clearly converged (a difference, an error, a parent
  not OK yet) gets its task, whose loop checks it again and applies or
  fails as before; a whole batch that raises is handed over that way, so
  it fails only its own vertices, if they truly fail;
- once the engine stops, no check starts: what was not reached stays pending.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Sequence

from ..resources.base import Context, Resource
from .worker import Worker

#: vertices started and checked between two turns of the event loop: a
#: turn every few milliseconds, so the watches of the vertices already
#: running are served while a 100k-file graph starts
CHUNK = 512

Spawn = Callable[[Worker], asyncio.Task[None]]


async def first_pass(
    workers: Sequence[Worker], make_context: Callable[[Worker], Context], spawn: Spawn
) -> None:
    """Start and check `workers` (each `Worker.batchable`) a chunk at a time."""
    for at in range(0, len(workers), CHUNK):
        if not await _chunk(workers[at : at + CHUNK], make_context, spawn):
            return
        # What a chunk made (contexts, subscriptions) lives as long as the
        # graph: out of the collector's sight at once, as the engine does
        # with the whole graph once settled (`Engine._freeze_the_graph`).
        # Each collection walked them before: 2.6 s of a 100k-file start.
        gc.freeze()
        await asyncio.sleep(0)  # the loop's turn: events, the other tasks


async def _chunk(
    chunk: Sequence[Worker], make_context: Callable[[Worker], Context], spawn: Spawn
) -> bool:
    """One chunk; False once the engine stops (nothing more may start)."""
    started: list[Worker] = []
    for w in chunk:
        if w.halting():
            return False
        if await w.start(make_context):
            started.append(w)
        else:
            await w.close()  # init failed (reported): as its task would end
    by_kind: dict[type[Resource], list[Worker]] = {}
    for w in started:
        if w.subscribed:
            by_kind.setdefault(type(w.res), []).append(w)
    #: converged, and the seconds its check took (its share of its batch's)
    converged: dict[Worker, float] = {}
    for kind, ws in by_kind.items():
        converged.update(_converged(kind, ws))
    for w in started:
        seconds = converged.get(w)
        if seconds is not None and w.ready_for_batch():
            w.converged_at_start(seconds)
        elif not w.halting():
            w.task = spawn(w)  # its own check says what differs or fails
    return True


def _converged(kind: type[Resource], ws: list[Worker]) -> dict[Worker, float]:
    """The workers of `ws` (one kind) whose resource is as wanted now, with their share of time."""
    t0 = time.monotonic()
    try:
        verdicts = kind.converged_many([w.res for w in ws])  # type: ignore[attr-defined]
        found = [w for w, ok in zip(ws, verdicts, strict=True) if ok]
    except Exception:  # each one's own check says what is wrong
        return {}
    each = (time.monotonic() - t0) / len(ws)
    return dict.fromkeys(found, each)
