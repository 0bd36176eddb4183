"""Publishes the running graph's exported resources (YAML ``@@name``).

An observer of the engine: after each successful swap it hands the
resources whose key is in ``graph.exported`` to `ResWorld.export`, which
writes only what changed. So a swap that leaves the exports as they were
costs no write and wakes no other host.

With ``--noop`` nothing is exported, as in mgmt: a dry run must not change
what other hosts apply. That is said once in the log.

A swap waits at most `PUBLISH_WAIT` s for its exports to be published:
the cluster World waits out a partition for as long as it lasts, and the
engine must go on swapping in the graphs that come meanwhile. Past that,
the publish is left to `retry_failed`, run beside the engine, which
publishes the latest wanted set once the cluster answers (and, after a
publish that failed, again with back-off capped at 1 s until it goes
through), so exports made during a partition reach the others when it
heals, and never stay missing until the next graph swap. A publish that
fails outright is reported by the engine as the observer's failure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Sequence

from ..graph.model import Graph, Key, key_str
from ..report.events import Event, Exported
from ..resources.base import Resource
from ..world.resworld import ResWorld

log = logging.getLogger("pymgmt.exporter")

#: how long a graph swap waits for its exports to be published (then: in the background)
PUBLISH_WAIT = 5.0


class Exporter:
    """`GraphObserver` that keeps this host's exports equal to the running graph's."""

    def __init__(
        self,
        resworld: ResWorld,
        emit: Callable[[Event], None],
        noop: bool = False,
        wait: float = PUBLISH_WAIT,
    ) -> None:
        self.resworld = resworld
        self.emit = emit
        self.noop = noop
        self.wait = wait
        self._said_noop = False
        #: the keys last published, to tell a changed set from a rewrite of one
        self._keys: list[str] = []
        #: the exports of the running graph, published or still to be
        self._wanted: list[Resource] = []
        #: counts the wanted sets: a publish of an older one leaves `_failed` set
        self._generation = 0
        #: set while the wanted set failed to publish and no publish since went through
        self._failed = asyncio.Event()
        self._lock = asyncio.Lock()

    async def graph_swapped(self, graph: Graph[Resource]) -> None:
        """Publish `graph`'s exports; emit `Exported` when what is published changed."""
        if self.noop:
            count = len(graph.exported) + len(graph.export_only)
            if count and not self._said_noop:
                self._said_noop = True
                log.warning(
                    "noop: the %d exported resource%s of this graph are not published",
                    count,
                    "" if count == 1 else "s",
                )
            return
        self._wanted = sorted(_exported(graph), key=lambda r: r.key)
        self._generation += 1
        bound = asyncio.timeout(self.wait)
        try:
            async with bound:
                await self._publish()
        except TimeoutError:
            if not bound.expired():
                self._failed.set()
                raise
            # Cancelled half-way is safe: the World and ResWorld write the
            # difference again next time, and `retry_failed` does it.
            self._failed.set()
            log.warning(
                "exports not published within %g s (is the cluster unreachable?): they "
                "will be once it answers; the graph runs meanwhile",
                self.wait,
            )
        except Exception:
            self._failed.set()
            raise

    async def _publish(self) -> None:
        async with self._lock:  # one publish at a time: each writes the difference
            generation, resources = self._generation, self._wanted
            changed = await self.resworld.export(resources)
            if generation == self._generation:
                self._failed.clear()
            names = [key_str(r.key) for r in resources]
            if changed or names != self._keys:
                self._keys = names
                self.emit(Exported(len(names), names))

    async def retry_failed(self, delays: Sequence[float] = (0.1, 0.25, 0.5, 1.0)) -> None:
        """After a failed (or unfinished) publish, publish again with back-off until it goes
        through.

        Runs until cancelled; the last delay repeats (at most 1 s by default:
        once a partition heals, the exports go out within about a second).
        """
        attempt = 0
        while True:
            await self._failed.wait()
            await asyncio.sleep(delays[min(attempt, len(delays) - 1)])
            if not self._failed.is_set():
                attempt = 0  # a swap published meanwhile
                continue
            try:
                await self._publish()
            except Exception as e:
                attempt += 1
                log.warning("exports still not published (attempt %d): %s", attempt + 1, e)
            else:
                attempt = 0
                if not self._failed.is_set():
                    log.info("exports published (after a failure or a wait)")


def _exported(graph: Graph[Resource]) -> Iterator[Resource]:
    """The resources of `graph.exported` (also those AutoGroup folded into a leader)
    and of `graph.export_only`."""
    yield from (r.exported_form() for r in graph.export_only)
    wanted: set[Key] = graph.exported
    if not wanted:
        return
    for res in graph.vertices.values():
        for r in (res, *res.members):
            if r.key in wanted:
                yield r.exported_form()  # a file's template: rendered here
