"""Talking to systemd's manager over D-Bus: what the svc and cron kinds share.

One `Systemd` per resource, over the agent's shared D-Bus connection
(`events/dbus.py`): method calls, unit properties, unit jobs that wait for
their JobRemoved result, and the wait for someone else's queued job (why:
see `Systemd.wait_for_queued_job`).

Which systemd: the system manager on the system bus (DBUS_SYSTEM_BUS_ADDRESS
honoured, as libdbus does), or with ``session`` the user's manager on
DBUS_SESSION_BUS_ADDRESS. `SYSTEMD_ROOT_ENV` names the directory that
systemd sees as ``/``, for kinds that write unit files: set together with
DBUS_SYSTEM_BUS_ADDRESS it aims an agent on a host at a container's
systemd (the system tests do exactly that, with ``/proc/PID/root``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ResourceError
from ..events.dbus import system_bus_address
from ..traits import UID, Want

if TYPE_CHECKING:
    from ..events.dbus import DBusHub
    from .base import Context

SD = "org.freedesktop.systemd1"
SD_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
UNIT = "org.freedesktop.systemd1.Unit"
TIMER = "org.freedesktop.systemd1.Timer"
PROPS = "org.freedesktop.DBus.Properties"
#: seconds a unit job (ours, or one we wait for) may take
JOB_DEADLINE = 300
#: the directory the managed systemd sees as / (default /): unit files go below it
SYSTEMD_ROOT_ENV = "PYMGMT_SYSTEMD_ROOT"
#: the system unit directories a `file` resource may write a unit into
UNIT_DIRS = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
)
#: systemd's answer to a second Subscribe on one connection (every resource
#: of a graph shares the agent's connection, and none ever unsubscribes)
ALREADY_SUBSCRIBED = frozenset({"org.freedesktop.systemd1.AlreadySubscribed"})
#: UnitFileState values that mean "starts at boot (or with what pulls it in)"
ENABLED_STATES = frozenset({"enabled", "enabled-runtime", "static", "alias", "indirect"})


def systemd_root() -> str:
    """The managed systemd's / as this process sees it: $PYMGMT_SYSTEMD_ROOT, else /."""
    root = os.environ.get(SYSTEMD_ROOT_ENV, "") or "/"
    if not root.startswith("/"):
        raise ResourceError(f"{SYSTEMD_ROOT_ENV} must be an absolute path, got {root!r}")
    return root


class UnitOwner:
    """`manages`, `uids` and `wants` of a kind that owns one unit (svc, cron).

    It owns `owned_unit` (of the system's manager or, with ``session``, the
    user's: another unit), and the `file` resources that could write
    `needs_file_of` in a unit directory come first (AutoEdges).
    """

    kind: ClassVar[str]
    session: bool

    @property
    def owned_unit(self) -> str:
        raise NotImplementedError

    @property
    def needs_file_of(self) -> str:
        return self.owned_unit

    def manages(self) -> list[str]:
        return [f"{self.owned_unit} (user)" if self.session else self.owned_unit]

    def uids(self) -> list[UID]:
        return [UID(self.kind, self.owned_unit)]

    def wants(self) -> Generator[Want, bool, None]:
        yield Want(tuple(UID("file", f"{d}/{self.needs_file_of}") for d in UNIT_DIRS))


class Systemd:
    """systemd's manager on one bus, as seen by one resource."""

    def __init__(self, hub: DBusHub, *, session: bool) -> None:
        self.hub = hub
        self.session = session

    @property
    def address(self) -> str:
        if self.session:
            addr = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
            if not addr:
                raise ResourceError("session: true needs DBUS_SESSION_BUS_ADDRESS to be set")
            return addr
        return system_bus_address()

    async def call(
        self, path: str, iface: str, member: str, sig: str = "", body: list[Any] | None = None
    ) -> list[Any]:
        return await self.hub.call(self.address, SD, path, iface, member, sig, body)

    async def manager(self, member: str, sig: str = "", body: list[Any] | None = None) -> Any:
        """Call a Manager method; its reply's first value (None if it has none)."""
        reply = await self.call(SD_PATH, MANAGER, member, sig, body)
        return reply[0] if reply else None

    async def unit_path(self, unit: str) -> str:
        """The object path of `unit`, loading it (a unit without a file: not-found)."""
        return str(await self.manager("LoadUnit", "s", [unit]))

    async def prop(self, path: str, name: str, iface: str = UNIT) -> Any:
        (variant,) = await self.call(path, PROPS, "Get", "ss", [iface, name])
        return variant.value

    async def subscribe(
        self, path: str, iface: str, member: str, handler: Callable[[Any], None]
    ) -> Callable[[], None]:
        return await self.hub.subscribe(
            self.address, path=path, interface=iface, member=member, handler=handler
        )

    async def watch_unit(
        self, unit: str, on_change: Callable[[], None]
    ) -> list[Callable[[], None]]:
        """Call `on_change` whenever `unit`'s properties or the unit files change.

        Returns the unsubscribes. systemd sends PropertiesChanged only to
        subscribed clients, hence Subscribe first (once per connection: the
        other resources on it find it already done). The end of a
        daemon-reload counts too: ``systemctl disable`` sends
        UnitFilesChanged *before* its reload, and a check run then can still
        read the old UnitFileState; after the reload there is no other signal.
        """
        await self.hub.call(
            self.address, SD, SD_PATH, MANAGER, "Subscribe", harmless=ALREADY_SUBSCRIBED
        )
        path = await self.unit_path(unit)

        def reloaded(msg: Any) -> None:
            if msg.body and not msg.body[0]:  # Reloading(false): done
                on_change()

        return [
            await self.subscribe(path, PROPS, "PropertiesChanged", lambda _m: on_change()),
            await self.subscribe(SD_PATH, MANAGER, "UnitFilesChanged", lambda _m: on_change()),
            await self.subscribe(SD_PATH, MANAGER, "Reloading", reloaded),
        ]

    async def watch(self, unit: str, ctx: Context, *, pin: bool = False) -> None:
        """A kind's watch of `unit`: events on every change, until the bus is lost.

        `pin`: hold a reference on the unit meanwhile (``Unit.Ref``), so
        that systemd never garbage-collects it while it is inactive and
        unreferenced otherwise (a disabled timer that unloaded itself), which
        would forget its runtime properties (``LastTriggerUSec``). systemd
        drops the reference itself when this bus connection closes; it is
        dropped here when the watch ends.
        """
        unsubs = await self.watch_unit(unit, ctx.event)
        path = await self.unit_path(unit) if pin else None
        try:
            if path is not None:
                await self.call(path, UNIT, "Ref")
            ctx.ready()
            await self.hub.wait_lost(self.address)
            raise ResourceError("lost the connection to systemd's D-Bus")
        finally:
            for u in unsubs:
                u()
            if path is not None:
                await self._unpin(path, ctx.log)

    async def _unpin(self, path: str, log: logging.Logger) -> None:
        """Drop `watch`'s reference; a lost bus has dropped it already."""
        try:
            await self.call(path, UNIT, "Unref")
        except Exception as e:  # the bus is gone, or the unit was never pinned
            log.debug("Unref %s: %s", path, e)

    async def enable(self, unit: str, enabled: bool) -> None:
        """Enable (or disable) `unit`'s unit file, then reload so systemd sees it."""
        if enabled:
            await self.manager("EnableUnitFiles", "asbb", [[unit], False, True])
        else:
            await self.manager("DisableUnitFiles", "asb", [[unit], False])
        await self.manager("Reload")

    async def wait_for_queued_job(self, path: str, unit: str, log: logging.Logger) -> None:
        """Let the unit's pending job (if any) finish before we judge its state.

        A job already queued for the unit (an administrator's ``systemctl
        stop``, a restart, a dependency's start) is let finish: repairing
        during it would *replace* that job, so ``systemctl stop`` would fail
        with "Job canceled" and the administrator's command would be lost
        in a race (issue 8, flaky test). After it the state is checked as
        usual: the agent waits its turn, then repairs.
        """
        gone: set[str] = set()
        changed = asyncio.Event()

        def removed(msg: Any) -> None:
            gone.add(str(msg.body[1]))
            changed.set()

        unsub = await self.subscribe(SD_PATH, MANAGER, "JobRemoved", removed)
        try:
            async with asyncio.timeout(JOB_DEADLINE):
                while True:
                    job_id, job = await self.prop(path, "Job")  # (0, "/") when none
                    if not job_id:
                        return
                    log.info(
                        "%s has a job queued (systemd job %d): waiting for it first", unit, job_id
                    )
                    while str(job) not in gone:
                        changed.clear()
                        await changed.wait()
        except TimeoutError:
            raise ResourceError(
                f"{unit}: a job queued by someone else did not finish within {JOB_DEADLINE} s"
            ) from None
        finally:
            unsub()

    async def job(self, member: str, unit: str) -> None:
        """Run a unit job (StartUnit, StopUnit, ...) and wait for systemd's result.

        Anything but ``done`` is a failure, so a unit that cannot start is
        an error, not a silent success.
        """
        loop = asyncio.get_running_loop()
        results: dict[str, asyncio.Future[str]] = {}

        def removed(msg: Any) -> None:
            _id, job, _unit, result = msg.body
            fut = results.setdefault(job, loop.create_future())
            if not fut.done():
                fut.set_result(result)

        unsub = await self.subscribe(SD_PATH, MANAGER, "JobRemoved", removed)
        try:
            job = str(await self.manager(member, "ss", [unit, "replace"]))
            fut = results.setdefault(job, loop.create_future())
            async with asyncio.timeout(JOB_DEADLINE):
                result = await fut
        finally:
            unsub()
        if result != "done":
            raise ResourceError(f"{member} {unit}: job {result}")
