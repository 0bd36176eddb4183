"""svc: a systemd unit's running state and enablement, over systemd's D-Bus API.

Converged means the unit's ActiveState matches ``state`` (``running`` =
active, ``stopped`` = inactive/failed) and its UnitFileState matches
``startup`` (``enabled``/``disabled``); an empty value leaves that aspect
alone. The watch subscribes to the unit's PropertiesChanged and the
manager's UnitFilesChanged signals, so ``systemctl stop`` behind the agent's
back is seen within milliseconds, with no polling. A refresh notification
does reload-or-restart.

Starting and stopping wait for the job's JobRemoved signal and fail unless
its result is ``done``, so a unit that cannot start is a failure, not a
silent success.

A job already queued for the unit (an administrator's ``systemctl stop``,
a restart, a dependency's start) is let finish before the unit is checked:
repairing during it would *replace* that job, so ``systemctl stop`` would
fail with "Job canceled" and the administrator's command would be lost in a
race. After the job the state is checked as usual, so a stopped unit that
should run is started again (issue 8, flaky test): the agent waits its turn,
then repairs.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Generator
from typing import Any, Literal

from ..errors import ResourceError
from ..events.dbus import system_bus_address
from ..traits import UID, Want
from .base import Change, Context, Plan, Resource, param

_SD = "org.freedesktop.systemd1"
_SD_PATH = "/org/freedesktop/systemd1"
_MANAGER = "org.freedesktop.systemd1.Manager"
_UNIT = "org.freedesktop.systemd1.Unit"
_PROPS = "org.freedesktop.DBus.Properties"
_UNIT_DIRS = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
)
#: seconds a unit job (ours, or one we wait for) may take
_JOB_DEADLINE = 300


class Svc(Resource, kind="svc"):
    """A systemd unit (``.service`` is implied when the name has no suffix).

    The name is the unit's. Converged means the unit is active
    (``state: running``) or inactive (``stopped``), and enabled or disabled
    (``startup``); an empty value leaves that alone. systemd's D-Bus signals
    report a ``systemctl stop`` behind the agent's back at once. A refresh
    notification restarts it (reload-or-restart), so a config file edge
    with ``notify: true`` applies a new config.
    """

    example = """\
graph: web
resources:
  file:
  - name: /etc/nginx/conf.d/site.conf
    content: "server { listen 8080; }\\n"
  svc:
  - name: nginx
    state: running
    startup: enabled
edges:
- name: reload-on-change
  from: {kind: file, name: /etc/nginx/conf.d/site.conf}
  to: {kind: svc, name: nginx}
  notify: true
"""

    state: Literal["running", "stopped", ""] = param("", doc="running, stopped, or '' to ignore")
    startup: Literal["enabled", "disabled", ""] = param(
        "", doc="enabled, disabled, or '' to ignore"
    )
    session: bool = param(False, doc="manage the user's session manager, not the system one")

    @property
    def unit(self) -> str:
        return self.name if "." in self.name else f"{self.name}.service"

    def problems(self) -> list[tuple[str, str]]:
        if "/" in self.name or not self.name.strip():
            return [("name", f"expected a unit name such as 'nginx', got {self.name!r}")]
        return []

    def manages(self) -> list[str]:
        # `nginx` and `nginx.service` are one unit; the user's manager is another.
        return [f"{self.unit} (user)" if self.session else self.unit]

    # -- AutoEdges: a managed unit file comes before the service -----------------------

    def uids(self) -> list[UID]:
        return [UID("svc", self.unit)]

    def wants(self) -> Generator[Want, bool, None]:
        yield Want(tuple(UID("file", f"{d}/{self.unit}") for d in _UNIT_DIRS))

    # -- plumbing ------------------------------------------------------------------------

    def _address(self) -> str:
        if self.session:
            addr = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
            if not addr:
                raise ResourceError("session: true needs DBUS_SESSION_BUS_ADDRESS to be set")
            return addr
        return system_bus_address()

    async def _call(
        self, path: str, iface: str, member: str, sig: str = "", body: list[Any] | None = None
    ) -> list[Any]:
        return await self.ctx.dbus.call(self._address(), _SD, path, iface, member, sig, body)

    async def _unit_path(self) -> str:
        (path,) = await self._call(_SD_PATH, _MANAGER, "LoadUnit", "s", [self.unit])
        return str(path)

    async def _prop(self, path: str, name: str) -> Any:
        (variant,) = await self._call(path, _PROPS, "Get", "ss", [_UNIT, name])
        return variant.value

    async def init(self, ctx: Context) -> None:
        await super().init(ctx)
        self._refresh = False

    def refresh(self) -> None:
        self._refresh = True

    # -- watch ---------------------------------------------------------------------------

    async def watch(self, ctx: Context) -> None:
        addr = self._address()
        await self._call(_SD_PATH, _MANAGER, "Subscribe")
        path = await self._unit_path()
        unsubs = [
            await ctx.dbus.subscribe(
                addr,
                path=path,
                interface=_PROPS,
                member="PropertiesChanged",
                handler=lambda _m: ctx.event(),
            ),
            await ctx.dbus.subscribe(
                addr,
                path=_SD_PATH,
                interface=_MANAGER,
                member="UnitFilesChanged",
                handler=lambda _m: ctx.event(),
            ),
        ]
        try:
            ctx.ready()
            await ctx.dbus.wait_lost(addr)
            raise ResourceError("lost the connection to systemd's D-Bus")
        finally:
            for u in unsubs:
                u()

    # -- check / apply ---------------------------------------------------------------------

    async def check(self) -> Plan:
        path = await self._unit_path()
        await self._wait_for_queued_job(path)
        load = await self._prop(path, "LoadState")
        if load == "not-found":
            raise ResourceError(f"no unit named {self.unit}")
        changes: list[Change] = []
        if self.state:
            active = await self._prop(path, "ActiveState")
            running = active in ("active", "activating", "reloading")
            if (self.state == "running") != running:
                changes.append(Change("state", active, self.state))
            elif self._refresh and self.state == "running":
                changes.append(Change("refresh", None, "reload-or-restart"))
        if self.startup:
            ufs = await self._prop(path, "UnitFileState")
            enabled = ufs in ("enabled", "enabled-runtime", "static", "alias", "indirect")
            if (self.startup == "enabled") != enabled:
                changes.append(Change("startup", ufs, self.startup))
        if not changes:
            self._refresh = False
        return Plan(tuple(changes))

    async def apply(self, plan: Plan) -> None:
        fields = {c.field for c in plan.changes}
        if "startup" in fields:
            if self.startup == "enabled":
                await self._call(
                    _SD_PATH, _MANAGER, "EnableUnitFiles", "asbb", [[self.unit], False, True]
                )
            else:
                await self._call(
                    _SD_PATH, _MANAGER, "DisableUnitFiles", "asb", [[self.unit], False]
                )
            await self._call(_SD_PATH, _MANAGER, "Reload")
        if "state" in fields:
            member = "StartUnit" if self.state == "running" else "StopUnit"
            await self._job(member)
        elif "refresh" in fields:
            await self._job("ReloadOrRestartUnit")
        self._refresh = False

    async def _wait_for_queued_job(self, path: str) -> None:
        """Let the unit's pending job (if any) finish before we judge its state."""
        gone: set[str] = set()
        changed = asyncio.Event()

        def removed(msg: Any) -> None:
            gone.add(str(msg.body[1]))
            changed.set()

        unsub = await self.ctx.dbus.subscribe(
            self._address(), path=_SD_PATH, interface=_MANAGER, member="JobRemoved", handler=removed
        )
        try:
            async with asyncio.timeout(_JOB_DEADLINE):
                while True:
                    job_id, job = await self._prop(path, "Job")  # (0, "/") when none
                    if not job_id:
                        return
                    self.ctx.log.info(
                        "%s has a job queued (systemd job %d): waiting for it first",
                        self.unit,
                        job_id,
                    )
                    while str(job) not in gone:
                        changed.clear()
                        await changed.wait()
        except TimeoutError:
            raise ResourceError(
                f"{self.unit}: a job queued by someone else did not finish within {_JOB_DEADLINE} s"
            ) from None
        finally:
            unsub()

    async def _job(self, member: str) -> None:
        """Run a unit job and wait for systemd to report its result."""
        loop = asyncio.get_running_loop()
        results: dict[str, asyncio.Future[str]] = {}

        def removed(msg: Any) -> None:
            _id, job, _unit, result = msg.body
            fut = results.setdefault(job, loop.create_future())
            if not fut.done():
                fut.set_result(result)

        unsub = await self.ctx.dbus.subscribe(
            self._address(), path=_SD_PATH, interface=_MANAGER, member="JobRemoved", handler=removed
        )
        try:
            (job,) = await self._call(_SD_PATH, _MANAGER, member, "ss", [self.unit, "replace"])
            fut = results.setdefault(str(job), loop.create_future())
            async with asyncio.timeout(_JOB_DEADLINE):
                result = await fut
        finally:
            unsub()
        if result != "done":
            raise ResourceError(f"{member} {self.unit}: job {result}")
