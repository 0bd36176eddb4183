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

from typing import Literal

from ..errors import ResourceError
from .base import Change, Context, Plan, Resource, param
from .systemd import ENABLED_STATES, Systemd, UnitOwner


class Svc(UnitOwner, Resource, kind="svc"):
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

    @property
    def owned_unit(self) -> str:
        # `nginx` and `nginx.service` are one unit (manages, AutoEdges: UnitOwner)
        return self.unit

    async def init(self, ctx: Context) -> None:
        await super().init(ctx)
        self._sd = Systemd(ctx.dbus, session=self.session)
        self._refresh = False

    def refresh(self) -> None:
        self._refresh = True

    # -- watch ---------------------------------------------------------------------------

    async def watch(self, ctx: Context) -> None:
        await self._sd.watch(self.unit, ctx)

    # -- check / apply ---------------------------------------------------------------------

    async def check(self) -> Plan:
        sd = self._sd
        path = await sd.unit_path(self.unit)
        await sd.wait_for_queued_job(path, self.unit, self.ctx.log)
        load = await sd.prop(path, "LoadState")
        if load == "not-found":
            raise ResourceError(f"no unit named {self.unit}")
        changes: list[Change] = []
        if self.state:
            active = await sd.prop(path, "ActiveState")
            running = active in ("active", "activating", "reloading")
            if (self.state == "running") != running:
                changes.append(Change("state", active, self.state))
            elif self._refresh and self.state == "running":
                changes.append(Change("refresh", None, "reload-or-restart"))
        if self.startup:
            ufs = await sd.prop(path, "UnitFileState")
            enabled = ufs in ENABLED_STATES
            if (self.startup == "enabled") != enabled:
                changes.append(Change("startup", ufs, self.startup))
        if not changes:
            self._refresh = False
        return Plan(tuple(changes))

    async def apply(self, plan: Plan) -> None:
        fields = {c.field for c in plan.changes}
        if "startup" in fields:
            await self._sd.enable(self.unit, self.startup == "enabled")
        if "state" in fields:
            member = "StartUnit" if self.state == "running" else "StopUnit"
            await self._sd.job(member, self.unit)
        elif "refresh" in fields:
            await self._sd.job("ReloadOrRestartUnit", self.unit)
        self._refresh = False
