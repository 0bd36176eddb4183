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
from typing import TYPE_CHECKING

from ..report.events import Event
from .converger import Converger
from .refresh import RefreshStore
from .semaphores import Semaphores

if TYPE_CHECKING:
    from .worker import Worker


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


#: How many vertices may be between the start of a check and the end of its
#: apply at once. A first apply used to start every vertex's check at once:
#: at 100k files all 100k plans (the wanted content, a diff) and their applies
#: waited together for the durable batches, and the memory they had used
#: stayed with the process, fragmented (RSS 1.57 GB after a 100k first apply,
#: 0.96 GB after a converged run; issue 13). The checks of a converged run
#: rarely queue here (a small file is read without leaving the loop), and a
#: durable batch still holds up to this many files, enough to amortise its sync.
MAX_ATTEMPTS = 1024


class Standing:
    """The workers that keep the graph from being settled, kept as each one changes.

    After every repair the graph comes to rest, and the engine asks whether
    it is truly settled; walking every worker to answer cost O(N) a repair
    (35-54 ms at 100k vertices, issue 13). Each worker moves itself between
    these sets when its status, `dirty` or `would_change` changes
    (`Worker._stand`), so the question costs what is left to do. A worker
    that is OK, clean and would change nothing is in none of them.
    """

    __slots__ = ("failed", "unfinished", "would_change")

    def __init__(self) -> None:
        #: failed (for now or for good)
        self.failed: set[Worker] = set()
        #: noop: OK and clean, but the last check found changes not made
        self.would_change: set[Worker] = set()
        #: not checked yet, running, or dirty: work to do (unless a failure blocks it)
        self.unfinished: set[Worker] = set()

    def shrink(self) -> None:
        """Replace each empty set by a new one.

        A set never shrinks: once it held a first apply's 100k workers, even
        empty it is a table of 256k slots that every iteration walks (0.3 ms
        after each repair). No worker is placed in an empty set, so none
        refers to the one replaced.
        """
        if not self.failed:
            self.failed = set()
        if not self.would_change:
            self.would_change = set()
        if not self.unfinished:
            self.unfinished = set()


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
    #: where the workers of the running graph stand (what `Settled` needs)
    standing: Standing = field(default_factory=Standing)
    #: the checks (and applies) under way at once, at most (see MAX_ATTEMPTS)
    attempts: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_ATTEMPTS))
    #: starts the task of a worker that had none (dormant after the first pass)
    spawn: Callable[[Worker], asyncio.Task[None]] = field(default=lambda w: _no_spawn(w))

    @property
    def stopping(self) -> bool:
        return self.is_stopping()


def _no_spawn(w: Worker) -> asyncio.Task[None]:
    raise RuntimeError(f"no engine to start the task of {w.name}")
