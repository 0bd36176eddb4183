"""Converged detection without polling.

Workers report when they become busy or idle; the converger keeps the count.
The graph is converged once no worker is busy, and the process may exit
after it has stayed that way for ``timeout`` seconds. A permanently failed
vertex is idle (it waits for an event that may never come), and so are the
vertices it blocks, so a broken graph still converges and exits with a
failure status instead of hanging (the bug reported as mgmt issue #743).
"""

from __future__ import annotations

import asyncio
import time


class Converger:
    def __init__(self) -> None:
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._activity = asyncio.Event()
        self.idle_since = time.monotonic()

    def busy_changed(self, delta: int) -> None:
        self._busy += delta
        if self._busy == 0:
            self._idle.set()
            self.idle_since = time.monotonic()
        elif delta > 0 and self._busy == 1:
            self._idle.clear()
            self._activity.set()

    @property
    def busy(self) -> int:
        return self._busy

    async def wait_converged(self, timeout: float) -> None:
        """Return once the graph has been idle for `timeout` seconds."""
        while True:
            await self._idle.wait()
            self._activity.clear()
            remaining = timeout - (time.monotonic() - self.idle_since)
            if remaining <= 0:
                return
            try:
                async with asyncio.timeout(remaining):
                    await self._activity.wait()
            except TimeoutError:
                if self._busy == 0:
                    return
