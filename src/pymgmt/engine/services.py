"""What a Worker may use of the engine, and nothing more.

A Worker used to hold the whole Engine and reach into it; now it gets this
narrow object, so worker.py needs nothing from engine.py (the import runs one
way: engine -> worker -> services) and a Worker can be built in a test
without an Engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from ..report.events import Event
from .converger import Converger
from .refresh import RefreshStore
from .semaphores import Semaphores


class InFlight:
    """Counts checks and applies under way, so a graceful stop can let them finish."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if not self.count:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


@dataclass
class Services:
    """The engine's shared parts a vertex's worker uses."""

    #: counts busy workers; "converged" needs no polling
    converger: Converger
    #: durable refresh notifications along notify edges
    refresh: RefreshStore
    semaphores: Semaphores
    #: checks and applies under way, which a graceful stop lets finish
    in_flight: InFlight
    #: reports an event (secrets are scrubbed on the way)
    emit: Callable[[Event], None]
    #: ``--noop``: check only, never apply
    noop: bool = False
    #: ``--sema N``: semaphores every resource holds
    global_sema: list[str] = field(default_factory=list)
    #: true once the engine stops: no check starts any more
    is_stopping: Callable[[], bool] = lambda: False

    @property
    def stopping(self) -> bool:
        return self.is_stopping()
