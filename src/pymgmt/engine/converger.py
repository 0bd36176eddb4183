"""Converged detection without polling.

Two facts decide it: how many workers are *busy* (woken and not yet done),
and when the last *activity* happened -- a check that found something to
change, a failure, or a graph swap. A check that finds everything as wanted
is not activity, so resources that poll (or watches that fire on our own
writes) do not keep the graph from converging, as in mgmt.

The graph has been converged for N seconds when no worker is busy and the
last activity is N seconds old. A permanently failed vertex is idle (it
waits for an event that may never come), and so are the vertices it
blocks, so a broken graph still converges and exits with a failure status
instead of hanging (the bug reported as mgmt issue #743).

Other parts can *observe* the converger (`observe`): a cluster publishes
each host's converged state (engine/cluster_converged.py) and must learn
of every change at once, without polling the counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator


class Converger:
    def __init__(self) -> None:
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._activity = asyncio.Event()
        self.last_activity = time.monotonic()
        #: called when the graph goes idle after some activity (not after
        #: every no-change check), e.g. to tell an operator it converged;
        #: it returns False when it found the graph not truly settled, and is
        #: then asked again the next time the graph goes idle
        self.on_settled: Callable[[], bool] | None = None
        self._unreported = True
        self._observers: list[Callable[[], None]] = []
        #: when the busy count last went from 0 to more (None: idle)
        self.busy_since: float | None = None

    def observe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` (synchronously, so it must be cheap) on every change
        of the busy count and on every activity; returns the unsubscriber."""
        self._observers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._observers.remove(callback)

        return unsubscribe

    def _notify(self) -> None:
        for callback in list(self._observers):
            callback()

    def busy_changed(self, delta: int) -> None:
        was = self._busy
        self._busy += delta
        if self._busy == 0:
            self.busy_since = None
            self._idle.set()
            if self._unreported and self.on_settled is not None:
                self._unreported = not self.on_settled()
        else:
            if was == 0:
                self.busy_since = time.monotonic()
            self._idle.clear()
        self._notify()

    def activity(self) -> None:
        """Something changed (or failed): restart the converged clock."""
        self.last_activity = time.monotonic()
        self._activity.set()
        self._unreported = True
        self._notify()

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Count as busy for the duration (e.g. a watch waiting to retry)."""
        self.busy_changed(+1)
        try:
            yield
        finally:
            self.busy_changed(-1)

    @property
    def busy(self) -> int:
        return self._busy

    async def wait_converged(self, timeout: float) -> None:
        """Return once nothing is busy and nothing happened for `timeout` seconds."""
        while True:
            await self._idle.wait()
            remaining = timeout - (time.monotonic() - self.last_activity)
            if remaining <= 0:
                if self._busy == 0:
                    return
                continue
            self._activity.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._activity.wait()
            except TimeoutError:
                pass
