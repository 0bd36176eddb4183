"""One D-Bus connection per bus, shared by every resource of the agent.

Why shared: a connection costs an authentication round trip and a socket;
100 svc resources need one, not 100. Signals are matched once per rule with
``AddMatch`` and dispatched to subscribers by (path, interface, member), so
a subscription is a dict entry, not a bus round trip, once the rule exists.

If the bus goes away (the daemon restarts), the connection is dropped from
the hub; the next `bus()` call reconnects. Resources see the failure as a
watch error, which the retry metaparams handle.

dbus-fast is imported lazily: agents without pkg/svc resources never load it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ResourceError

SignalHandler = Callable[[Any], None]


def system_bus_address() -> str:
    """The system bus, honouring DBUS_SYSTEM_BUS_ADDRESS like libdbus does."""
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/run/dbus/system_bus_socket")


@dataclass(eq=False)
class _Conn:
    bus: Any
    rules: dict[str, int] = field(default_factory=dict)  # match rule -> refcount
    handlers: dict[tuple[str, str, str], list[SignalHandler]] = field(default_factory=dict)


class DBusHub:
    def __init__(self) -> None:
        self._conns: dict[str, _Conn] = {}
        self._lock = asyncio.Lock()

    async def bus(self, address: str) -> Any:
        """A connected `dbus_fast.aio.MessageBus` for `address` (shared)."""
        return (await self._conn(address)).bus

    async def _conn(self, address: str) -> _Conn:
        async with self._lock:
            conn = self._conns.get(address)
            if conn is not None and conn.bus.connected:
                return conn
            from dbus_fast.aio import MessageBus

            try:
                bus = await MessageBus(bus_address=address).connect()
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
    ) -> list[Any]:
        """A method call; D-Bus errors become ResourceError with the bus's message."""
        from dbus_fast import Message, MessageType

        bus = await self.bus(address)
        reply = await bus.call(
            Message(
                destination=destination,
                path=path,
                interface=interface,
                member=member,
                signature=signature,
                body=body or [],
            )
        )
        if reply is None:
            raise ResourceError(f"no reply from {destination} to {member}")
        if reply.message_type == MessageType.ERROR:
            detail = reply.body[0] if reply.body else reply.error_name
            raise ResourceError(f"{interface}.{member} failed: {detail}")
        return list(reply.body)

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
