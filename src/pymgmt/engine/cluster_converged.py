"""Cluster-wide convergence: every host says whether it is converged; one may wait for all.

Every host of a cluster *publishes* its own state under
``keys.converged(host)``, on its lease: ``b"true"`` once it is idle with no
activity for `QUIET` seconds, ``b"false"`` as soon as something happens
again (a change, a failure, a graph swap: the converger's "activity"), or
when a check keeps it busy for longer than `QUIET`. It publishes whether or
not it has a timeout of its own: in mgmt's A/B/C example A and B run
forever and C, run with ``--converged-timeout 5``, exits 5 s after the
whole cluster converged.

A host with ``--converged-timeout N`` *waits* (the Engine's
``converged_wait`` hook) until every host registered under ``keys.HOSTS``
has said true without a break for N seconds, and it is itself converged
for N seconds as the single-host engine means it. A host registered
without a converged key yet counts as not converged. Times are this host's
own monotonic clock at the moment it saw each value, so no clocks need to
agree; a value already true when the wait starts counts from then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from ..world.base import World, keys, valid_hostname
from ..world.cluster import mirror_prefix
from .converger import Converger

log = logging.getLogger("pymgmt.cluster")

#: how long the wait may be held up by the same hosts before the log says so
#: (changes in between are logged at debug level: hosts flip at every apply)
REPORT_AFTER = 5.0

#: seconds without activity after which a host says it is converged; also
#: how long a check may keep it busy (finding nothing) before it says false.
#: Short, so the cluster learns fast; long enough that the burst of
#: no-change checks after a swap does not flap the key.
QUIET = 0.1

TRUE = b"true"
FALSE = b"false"


class ClusterConvergence:
    """Publishes this host's converged state; waits for the whole cluster's."""

    def __init__(self, world: World, *, quiet: float = QUIET) -> None:
        self.world = world
        self.quiet = quiet
        #: the value last written (None: nothing yet)
        self.published: bool | None = None

    # -- publishing ---------------------------------------------------------------------

    def local_state(self, converger: Converger) -> tuple[bool, float | None]:
        """This host's state now, and when to look again (monotonic; None: on change only).

        A busy spell shorter than `quiet` that brings no activity (a check
        that finds everything as wanted) keeps the last published value, so
        watches firing on our own writes do not flap the key.
        """
        now = time.monotonic()
        quiet_end = converger.last_activity + self.quiet
        if now < quiet_end:
            return False, quiet_end
        if converger.busy == 0:
            return True, None
        since = converger.busy_since if converger.busy_since is not None else now
        if now - since >= self.quiet:
            return False, None
        return bool(self.published), since + self.quiet

    async def publish(self, converger: Converger) -> None:
        """Keep ``keys.converged(this host)`` up to date; runs until cancelled."""
        changed = asyncio.Event()
        unsubscribe = converger.observe(changed.set)
        key = keys.converged(self.world.hostname)
        try:
            while True:
                changed.clear()
                state, look_again = self.local_state(converger)
                if state != self.published:
                    await self.world.put(key, TRUE if state else FALSE, lease=True)
                    self.published = state
                    continue  # something may have moved during the write: look again
                await _wait(changed, look_again)
        finally:
            unsubscribe()

    # -- waiting ------------------------------------------------------------------------------

    async def wait(self, converger: Converger, timeout: float) -> None:
        """Return once every registered host, this one included, has been converged
        for `timeout` seconds without a break (the Engine's ``converged_wait``)."""
        view = _ClusterView(self.world.hostname)
        changed = asyncio.Event()

        def hosts_changed(state: dict[str, bytes]) -> None:
            view.set_hosts(state)
            changed.set()

        def converged_changed(state: dict[str, bytes]) -> None:
            view.set_converged(state)
            changed.set()

        unsubscribe = converger.observe(changed.set)
        try:
            async with asyncio.TaskGroup() as tg:
                followers = [
                    tg.create_task(mirror_prefix(self.world, keys.HOSTS, hosts_changed)),
                    tg.create_task(mirror_prefix(self.world, keys.CONVERGED, converged_changed)),
                ]
                try:
                    while True:
                        changed.clear()
                        done_at = view.converged_at(converger, timeout)
                        if done_at is not None and time.monotonic() >= done_at:
                            return
                        report_at = view.report_due()
                        wake = [t for t in (done_at, report_at) if t is not None]
                        await _wait(changed, min(wake) if wake else None)
                finally:
                    for t in followers:
                        t.cancel()
        finally:
            unsubscribe()


class _ClusterView:
    """What this host knows of the cluster: who is registered, who said what since when."""

    def __init__(self, me: str) -> None:
        self.me = me
        self.hosts: set[str] = set()
        #: host -> (its converged value is true, monotonic time we saw it become so)
        self.converged: dict[str, tuple[bool, float]] = {}
        self._waiting_for: tuple[str, ...] | None = None
        #: when the hosts now holding up the wait started to (monotonic)
        self._waiting_since = time.monotonic()
        self._reported: tuple[str, ...] | None = None

    def set_hosts(self, state: dict[str, bytes]) -> None:
        # junk under HOSTS (no valid host name) must not hold up every wait
        self.hosts = {h for h in state if valid_hostname(h)}

    def set_converged(self, state: dict[str, bytes]) -> None:
        now = time.monotonic()
        for host, value in state.items():
            is_true = value == TRUE
            old = self.converged.get(host)
            if old is None or old[0] != is_true:
                self.converged[host] = (is_true, now)
        for host in set(self.converged) - set(state):
            del self.converged[host]

    def converged_at(self, converger: Converger, timeout: float) -> float | None:
        """When the whole cluster will have been converged for `timeout` s (None: not so now)."""
        if converger.busy:
            return None  # this host is at work: it said so itself, or will
        if self.me not in self.hosts:
            self._note_waiting((self.me,))
            return None
        since = converger.last_activity
        waiting: list[str] = []
        for host in sorted(self.hosts):
            value = self.converged.get(host)
            if value is None or not value[0]:
                waiting.append(host)
            else:
                since = max(since, value[1])
        self._note_waiting(tuple(waiting))
        return None if waiting else since + timeout

    def _note_waiting(self, hosts: tuple[str, ...]) -> None:
        """Note which hosts hold up the cluster-wide wait (logged at debug level)."""
        if hosts == self._waiting_for:
            return
        self._waiting_for = hosts
        self._waiting_since = time.monotonic()
        if hosts:
            log.debug("cluster: waiting for %s to converge", ", ".join(hosts))
        elif self._reported != ():
            self._reported = ()
            log.info("cluster: all %d hosts converged", len(self.hosts))

    def report_due(self) -> float | None:
        """Log the hosts holding up the wait once they did so for REPORT_AFTER s
        (an operator wondering why this host does not exit); when to look again."""
        hosts = self._waiting_for
        if not hosts or hosts == self._reported:
            return None
        due = self._waiting_since + REPORT_AFTER
        if time.monotonic() < due:
            return due
        self._reported = hosts
        log.info(
            "cluster: waiting for %s to converge (for %.0f s now)",
            ", ".join(hosts),
            time.monotonic() - self._waiting_since,
        )
        return None


async def _wait(event: asyncio.Event, until: float | None) -> None:
    """Wait for `event`, or until the monotonic time `until` (None: no limit)."""
    if until is None:
        await event.wait()
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, until - time.monotonic())):
            await event.wait()


__all__ = ["QUIET", "ClusterConvergence"]
