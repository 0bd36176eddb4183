"""systemd's notify protocol: one datagram to ``$NOTIFY_SOCKET`` per state change.

Under a ``Type=notify`` unit systemd hands the agent a unix datagram socket
and waits for ``READY=1`` before it calls the unit started; with
``WatchdogSec=`` it also expects ``WATCHDOG=1`` at least every
``$WATCHDOG_USEC`` microseconds and kills (then restarts) an agent that
stops sending it. The protocol is a few ``KEY=value`` lines per datagram
(sd_notify(3)), so it is written here rather than taken from a dependency.

Outside systemd (no ``NOTIFY_SOCKET``) `Notifier.from_environ` returns None
and nothing here costs anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import MutableMapping

#: the variables systemd sets for the main process only; removed once read so
#: that the commands resources run (exec) never talk to systemd in our name
_ENVIRON = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    """Sends notify messages to systemd; a lost datagram is never an error.

    Sending never blocks the event loop: the socket is non-blocking, and a
    full queue (systemd busy) drops the message, as sd_notify's callers
    accept: the next state change, or the next watchdog ping, says it again.
    """

    def __init__(self, address: str, watchdog_usec: int | None = None) -> None:
        # '@name' is an abstract socket: its name starts with a NUL byte
        self.address = "\0" + address[1:] if address.startswith("@") else address
        #: how often systemd wants a WATCHDOG=1 (None: no watchdog asked for)
        self.watchdog_usec = watchdog_usec
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.setblocking(False)

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None) -> Notifier | None:
        """The notifier systemd asked for, or None when not run by a Type=notify unit.

        The variables are removed from `environ` (``os.environ``), as
        sd_notify's ``unset_environment`` does: children must not inherit them.
        """
        env = os.environ if environ is None else environ
        address, usec, pid = (env.pop(name, None) for name in _ENVIRON)
        if not address or address[0] not in "/@":
            return None
        watchdog: int | None = None
        # WATCHDOG_PID names the process meant to ping: a child that inherited
        # the variables (an exec resource running pymgmt) is not it
        if usec and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            watchdog = int(usec)
        return cls(address, watchdog)

    def send(self, **fields: str) -> bool:
        """Send ``KEY=value`` lines (keyword names upper-cased); False if it was lost."""
        lines = (f"{key.upper()}={_one_line(value)}" for key, value in fields.items())
        try:
            self._sock.sendto("\n".join(lines).encode(), self.address)
        except OSError:
            return False
        return True

    def ready(self, status: str) -> None:
        self.send(ready="1", status=status)

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd >= 253 match this reload to its request
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send(reloading="1", monotonic_usec=str(usec), status="reloading the configuration")

    def stopping(self, status: str) -> None:
        self.send(stopping="1", status=status)

    def status(self, text: str) -> None:
        self.send(status=text)

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between two pings: half the timeout, as sd_watchdog_enabled(3) advises."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 2e6

    async def watchdog(self) -> None:
        """Ping systemd for as long as the event loop runs this task (cancel to stop).

        The pings come from the event loop itself: if anything blocks the loop
        (a hung call that should have been in a thread), they stop, and
        systemd restarts the agent after ``WatchdogSec``.
        """
        interval = self.watchdog_interval
        if interval is None:
            return
        while True:
            self.send(watchdog="1")
            await asyncio.sleep(interval)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


def _one_line(value: str) -> str:
    """A value on one line: a newline would start a new (bogus) assignment."""
    return " ".join(value.split("\n"))


__all__ = ["Notifier"]
