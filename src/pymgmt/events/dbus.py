"""One D-Bus connection per bus, shared by every resource of the agent.

Why shared: a connection costs an authentication round trip and a socket;
100 svc resources need one, not 100. Signals are matched once per rule with
``AddMatch`` and dispatched to subscribers by (path, interface, member), so
a subscription is a dict entry, not a bus round trip, once the rule exists.

If the bus goes away (the daemon restarts), the connection is dropped from
the hub; the next `bus()` call reconnects. Resources see the failure as a
watch error, which the retry metaparams handle.

Every method call (and every connect) has a deadline, as libdbus's 25 s
default reply timeout: a hung systemd or PackageKit (or a bus daemon that
stopped answering) becomes a ResourceError naming the service and the
method, which the retry metaparams handle, instead of a check() that never
returns (issue 8 item 17: a run sat 600 s in silence). The deadline is
``DBusHub(call_timeout=...)``, or the environment variable
``PYMGMT_DBUS_TIMEOUT`` (seconds), default 25.

dbus-fast is imported lazily: agents without pkg/svc resources never load it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ResourceError

SignalHandler = Callable[[Any], None]

log = logging.getLogger("pymgmt.dbus")

#: seconds to wait for a reply: libdbus's own default
DEFAULT_CALL_TIMEOUT = 25.0
#: environment variable that overrides it (seconds, > 0)
TIMEOUT_ENV = "PYMGMT_DBUS_TIMEOUT"


def call_timeout_from_env() -> float:
    """The reply deadline: PYMGMT_DBUS_TIMEOUT when it is a positive number, else 25 s."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_CALL_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (0 < value < math.inf):
        log.warning(
            "%s=%r is not a positive number of seconds; using %g s",
            TIMEOUT_ENV,
            raw,
            DEFAULT_CALL_TIMEOUT,
        )
        return DEFAULT_CALL_TIMEOUT
    return value


def system_bus_address() -> str:
    """The system bus, honouring DBUS_SYSTEM_BUS_ADDRESS like libdbus does."""
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/run/dbus/system_bus_socket")


@dataclass(eq=False)
class _Conn:
    bus: Any
    rules: dict[str, int] = field(default_factory=dict)  # match rule -> refcount
    handlers: dict[tuple[str, str, str], list[SignalHandler]] = field(default_factory=dict)


class DBusHub:
    def __init__(self, call_timeout: float | None = None) -> None:
        self._conns: dict[str, _Conn] = {}
        self._lock = asyncio.Lock()
        #: seconds to wait for a connection or for a method's reply
        self.call_timeout = call_timeout if call_timeout is not None else call_timeout_from_env()

    async def bus(self, address: str) -> Any:
        """A connected `dbus_fast.aio.MessageBus` for `address` (shared)."""
        return (await self._conn(address)).bus

    async def _conn(self, address: str) -> _Conn:
        async with self._lock:
            conn = self._conns.get(address)
            if conn is not None and conn.bus.connected:
                return conn
            from dbus_fast.aio import MessageBus

            bus = MessageBus(bus_address=address)
            try:
                async with asyncio.timeout(self.call_timeout):
                    await bus.connect()
            except TimeoutError:
                bus.disconnect()
                raise ResourceError(
                    f"cannot connect to D-Bus at {address}: no answer within "
                    f"{self.call_timeout:g} s (is the bus daemon hung?)"
                ) from None
            except (OSError, EOFError) as e:
                raise ResourceError(f"cannot connect to D-Bus at {address}: {e}") from None
            except Exception as e:  # dbus-fast's own auth errors
                raise ResourceError(f"cannot connect to D-Bus at {address}: {e}") from None
            conn = _Conn(bus)
            bus.add_message_handler(functools.partial(self._dispatch, conn))
            self._conns[address] = conn
            return conn

    async def call(
        self,
        address: str,
        destination: str,
        path: str,
        interface: str,
        member: str,
        signature: str = "",
        body: list[Any] | None = None,
        *,
        timeout: float | None = None,
        harmless: frozenset[str] = frozenset(),
    ) -> list[Any]:
        """A method call; D-Bus errors become ResourceError with the bus's message.

        No reply within `timeout` seconds (default: the hub's `call_timeout`)
        is a ResourceError naming the service and the method. An error named
        in `harmless` (the state asked for already holds) is an empty reply.
        """
        from dbus_fast import Message, MessageType

        bus = await self.bus(address)
        deadline = timeout if timeout is not None else self.call_timeout
        msg = Message(
            destination=destination,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=body or [],
        )
        try:
            async with asyncio.timeout(deadline):
                reply = await bus.call(msg)
        except TimeoutError:
            raise ResourceError(
                f"{destination} did not answer {interface}.{member} within {deadline:g} s "
                f"(the service may be hung; the D-Bus timeout is {TIMEOUT_ENV})"
            ) from None
        if reply is None:
            raise ResourceError(f"no reply from {destination} to {member}")
        if reply.message_type == MessageType.ERROR:
            if reply.error_name in harmless:
                return []
            detail = reply.body[0] if reply.body else reply.error_name
            raise ResourceError(f"{interface}.{member} failed: {detail}")
        return list(reply.body)

    async def wait_lost(self, address: str) -> None:
        """Return once the shared connection to `address` is lost.

        Shielded: cancelling one waiter (a watch stopped by a graph swap) must
        not cancel dbus-fast's one disconnect future that every other waiter
        on this connection awaits too.
        """
        bus = await self.bus(address)
        with contextlib.suppress(Exception):  # lost with an error is still lost
            await asyncio.shield(bus.wait_for_disconnect())

    async def subscribe(
        self, address: str, *, path: str, interface: str, member: str, handler: SignalHandler
    ) -> Callable[[], None]:
        """Call `handler(message)` for each matching signal; returns an unsubscribe.

        An empty `path` matches the signal on every object path.
        """
        conn = await self._conn(address)
        where = f"path='{path}'," if path else ""
        rule = f"type='signal',{where}interface='{interface}',member='{member}'"
        if conn.rules.get(rule, 0) == 0:
            await self.call(
                address,
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "AddMatch",
                "s",
                [rule],
            )
        conn.rules[rule] = conn.rules.get(rule, 0) + 1
        key = (path, interface, member)
        conn.handlers.setdefault(key, []).append(handler)

        def unsubscribe() -> None:
            handlers = conn.handlers.get(key, [])
            with contextlib.suppress(ValueError):
                handlers.remove(handler)
            conn.rules[rule] -= 1  # the match rule stays: cheap, and re-used

        return unsubscribe

    def _dispatch(self, conn: _Conn, msg: Any) -> None:
        from dbus_fast import MessageType

        if msg.message_type != MessageType.SIGNAL:
            return
        for key in ((msg.path, msg.interface, msg.member), ("", msg.interface, msg.member)):
            for h in list(conn.handlers.get(key, ())):
                h(msg)

    async def close(self) -> None:
        for conn in self._conns.values():
            conn.bus.disconnect()  # closes the socket; its disconnect future is cancelled
        self._conns.clear()
