"""What systemd is told while the agent runs: ready, watchdog, status, stopping.

A reporter (it sees every event through `Fanout`) that turns the run into
sd_notify messages (`sdnotify.Notifier`):

* ``READY=1`` once the first graph is *watching*: it is swapped in and every
  one of its vertices has its watch in place (or failed for good), so from
  then on no change on the system goes unseen. Its first applies may still
  be running: a package transaction can take minutes, and systemd's start
  timeout is about starting, not converging.
* ``WATCHDOG=1`` every ``WatchdogSec/2``, from the event loop (a timer, no
  task): an agent whose loop is stuck stops pinging and systemd restarts it.
* ``STATUS=`` a line ``systemctl status`` shows: watching, converged (with
  failures), an invalid graph kept out, stopping.
* ``RELOADING=1`` then ``READY=1`` around a reload (`reloading`, `reloaded`),
  ``STOPPING=1`` when a stop begins.

Readiness needs the engine's workers, so the engine is `attach`ed once made;
it is followed without polling: the check runs on each event and on each
change of the converger's busy count, and walks the vertices once in all
(a cursor that only moves forward), so a 10k-vertex start costs O(n).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..report.events import Event, GraphRejected, GraphStarted, GraphSwapped, Settled, Stopping

if TYPE_CHECKING:
    from ..engine.engine import Engine
    from ..engine.worker import Worker
    from ..sdnotify import Notifier


class SystemdReporter:
    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.engine: Engine | None = None
        self.ready = False
        #: the first graph's workers, and how many of them are known to watch
        self._waiting: list[Worker] | None = None
        self._seen = 0
        self._unobserve: Callable[[], None] | None = None
        self._ping: asyncio.TimerHandle | None = None

    @classmethod
    def from_environ(cls) -> SystemdReporter | None:
        """The reporter for a Type=notify unit that runs us; None when none does."""
        from ..sdnotify import Notifier

        notifier = Notifier.from_environ()
        return None if notifier is None else cls(notifier)

    def attach(self, engine: Engine) -> None:
        """Follow `engine` (called on the event loop): readiness, and the watchdog starts."""
        self.engine = engine
        self._unobserve = engine.converger.observe(self._check_ready)
        if self.notifier.watchdog_interval is not None:
            self._watchdog()

    def _watchdog(self) -> None:
        """Ping, and come back in half the watchdog time, for as long as the loop runs."""
        interval = self.notifier.watchdog_interval
        assert interval is not None
        self.notifier.send(watchdog="1")
        self._ping = asyncio.get_running_loop().call_later(interval, self._watchdog)

    def emit(self, event: Event) -> None:
        if isinstance(event, GraphStarted | GraphSwapped):
            # every worker of the graph exists now: the ones to wait for
            if not self.ready and self.engine is not None:
                self._waiting, self._seen = list(self.engine.workers.values()), 0
            if self.ready and (isinstance(event, GraphStarted) or _changed(event)):
                self.notifier.status(_watching(self.engine))
        elif isinstance(event, Settled):
            self._settled(event)
        elif isinstance(event, GraphRejected):
            self.notifier.status("the graph file is invalid: still running the last valid graph")
        elif isinstance(event, Stopping):
            self.notifier.stopping(f"stopping: {event.reason}")
            self.close()
        if not self.ready:
            self._check_ready()

    def _settled(self, event: Settled) -> None:
        if not self.ready:
            return  # the READY=1 that follows says it
        text = f"converged: {event.vertices} resources as wanted"
        if event.failed:
            text = f"settled: {len(event.failed)} of {event.vertices} resources failed"
        self.notifier.status(text)

    def _check_ready(self) -> None:
        """READY=1 if every vertex of the first graph watches; the cursor never goes back."""
        waiting = self._waiting
        if self.ready or waiting is None:
            return
        while self._seen < len(waiting) and (
            waiting[self._seen].watching or waiting[self._seen].dead
        ):
            self._seen += 1
        if self._seen == len(waiting):
            self.ready = True
            self._waiting = None
            self._stop_observing()
            self.notifier.ready(_watching(self.engine))

    def reloading(self) -> None:
        self.notifier.reloading()

    def reloaded(self, note: str = "") -> None:
        """The reload is done (or refused: `note` says why); READY=1 again."""
        status = _watching(self.engine)
        self.notifier.ready(f"{status}; {note}" if note else status)

    def close(self) -> None:
        """Stop the watchdog pings and the readiness check (the agent is stopping)."""
        if self._ping is not None:
            self._ping.cancel()
            self._ping = None
        self._stop_observing()

    def _stop_observing(self) -> None:
        if self._unobserve is not None:
            self._unobserve()
            self._unobserve = None


def _changed(event: GraphSwapped) -> bool:
    """Did the swap change anything (else the status it had, "converged", still holds)?"""
    return bool(event.replaced or event.added or event.removed)


def _watching(engine: Engine | None) -> str:
    n = 0 if engine is None else len(engine.workers)
    return f"watching {n} resource{'s' if n != 1 else ''}"


__all__ = ["SystemdReporter"]
