"""cron: a systemd timer unit, written, enabled and started (mgmt's ``cron`` resource).

The resource owns ``<name>.timer`` in /etc/systemd/system (with
``session: true``, in the agent user's ~/.config/systemd/user). Converged
means: the file holds exactly what the params say (written atomically and
durably, 0644), systemd has loaded that version, the timer is active, and
it is enabled (``startup: enabled``, the default) or disabled. With
``state: absent`` the timer is stopped, disabled and its file removed.

What the timer starts is another unit: ``unit``, by default
``<name>.service``, as in mgmt and in systemd itself. The resource does not
write that service: a `file` resource does (with the command, the user,
the sandboxing a job needs), and AutoEdges put that file before the timer.
Writing it here would need half of a service unit's settings as params of
this kind, and hide them from the one kind that already manages files.

Validation, before anything runs: the name, ``unit`` and every value are
single lines without control characters (a newline in ``time`` would add
settings to the unit file), time spans (``OnActiveSec`` and the like,
``accuracy_sec``, ``randomized_delay_sec``) follow systemd.time(7), and an
``OnCalendar`` expression uses only the characters calendar events are
made of. The calendar grammar itself is judged by the systemd that will
run the timer, after the daemon-reload that loads it: a timer systemd
refuses fails with systemd's own reason. Not ``systemd-analyze calendar``
at check time: the agent may manage another systemd than its host's (a
container's, see `systemd.SYSTEMD_ROOT_ENV`) whose version accepts other
expressions, and it would cost a child process per check.

Watched: the unit file (inotify: an edit is repaired), the timer's unit
properties (PropertiesChanged: ``systemctl stop`` is repaired) and the
unit files (UnitFilesChanged: ``systemctl disable`` is repaired). The timer
firing changes its properties too; such a check finds nothing to do.

mgmt's params, named in snake case (``accuracy_sec``,
``randomized_delay_sec``, ``wake_system``, ``remain_after_elapse``); mgmt's
own spellings (``accuracysec``...) are accepted as aliases, so mgmt's cron
graphs run unchanged. With ``remain_after_elapse: false`` a timer that
cannot elapse again (``OnActiveSec``) unloads itself once it fired; this
kind starts it again, as mgmt's does, so it fires once per re-arm. That
re-arm is the timer's own schedule coming round: it is reported as a
"tick", never as repaired drift (`Cron._elapsed` tells it from a
``systemctl stop``, which stays drift).
"""

from __future__ import annotations

import os
import pwd
import re
from typing import Literal

from .. import fsutil
from ..errors import ResourceError
from .base import CONVERGED, Change, Context, Plan, Resource, off_loop, param
from .file import _unified
from .systemd import ENABLED_STATES, TIMER, Systemd, UnitOwner, systemd_root

Trigger = Literal[
    "OnCalendar",
    "OnActiveSec",
    "OnBootSec",
    "OnStartupSec",
    "OnUnitActiveSec",
    "OnUnitInactiveSec",
    "",
]

_SYSTEM_DIR = "/etc/systemd/system"
#: systemd's unit name characters (systemd.unit(5)); 256 bytes with the suffix
_UNIT_NAME = re.compile(r"[A-Za-z0-9:_.\\@-]{1,249}")
#: a time span of systemd.time(7): numbers with optional units, "1h 30min", "90", "2.5s"
_SPAN_UNIT = (
    "usec|us|µs|μs|msec|ms|seconds|second|sec|s|minutes|minute|min|m|hours|hour|hr|h|"
    "days|day|d|weeks|week|w|months|month|M|years|year|y"
)
#: (atomic groups: a run of digits is one number, never split, so no backtracking blow-up)
_NUMBER = r"(?>\d+(?:\.\d+)?|\.\d+)(?![.\d])"
_SPAN = re.compile(rf"\s*(?:{_NUMBER}(?>\s*(?:{_SPAN_UNIT})(?![A-Za-zµμ]))?\s*)+")
#: what calendar events (systemd.time(7)) are made of, timezone names included
_CALENDAR = re.compile(r"[A-Za-z0-9 :*/.,~+_-]{1,256}")
_LIVE = ("active", "reloading")
#: longest value accepted in the unit file (a calendar event or a span is short)
_VALUE_MAX = 1024


def _line_problem(value: str) -> str | None:
    """Why `value` cannot be one value in a unit file, or None."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return "must be one line without control characters (newline, tab, NUL...)"
    if len(value) > _VALUE_MAX:
        return f"is longer than {_VALUE_MAX} characters"
    if value.endswith("\\"):
        return "must not end with a backslash (systemd would join it with the next line)"
    return None


class Cron(UnitOwner, Resource, kind="cron"):
    """A systemd timer (``<name>.timer``) that starts ``unit`` on a schedule.

    ``trigger`` and ``time`` say when (``OnCalendar: daily``,
    ``OnActiveSec: 10min``...); ``unit`` (default ``<name>.service``) is
    what it starts, written by a `file` resource. The timer file is
    written, loaded, enabled and started over systemd's D-Bus API; an edit
    of the file, ``systemctl stop`` or ``disable`` is repaired at once.
    ``state: absent`` stops, disables and removes it.
    """

    example = """\
graph: nightly-backup
resources:
  file:
  - name: /etc/systemd/system/backup.service
    content: |
      [Unit]
      Description=nightly backup
      [Service]
      Type=oneshot
      ExecStart=/usr/local/bin/backup
  cron:
  - name: backup
    trigger: OnCalendar
    time: "*-*-* 02:30:00"
    accuracy_sec: 1min
    randomized_delay_sec: 10min
    persistent: true
"""

    state: Literal["exists", "absent"] = param(
        "exists", doc="exists (written, enabled per startup, active), or absent (removed)"
    )
    trigger: Trigger = param(
        "", doc="the timer's kind (systemd.timer(5)): OnCalendar, OnActiveSec, OnBootSec, ..."
    )
    time: str = param(
        "", doc="a calendar event for OnCalendar ('daily', 'Mon *-*-* 02:00'), else a time span"
    )
    unit: str = param("", doc="the unit the timer starts; empty: <name>.service")
    startup: Literal["enabled", "disabled", ""] = param(
        "enabled", doc="enabled (started at boot), disabled, or '' to leave it alone"
    )
    session: bool = param(
        False, doc="a timer of the user's session manager (~/.config/systemd/user)"
    )
    accuracy_sec: str = param(
        "", doc="AccuracySec, a time span; empty: systemd's 1min", aliases=("accuracysec",)
    )
    randomized_delay_sec: str = param(
        "",
        doc="RandomizedDelaySec: a random delay up to this time span",
        aliases=("randomizeddelaysec",),
    )
    persistent: bool = param(
        False, doc="OnCalendar: run at startup if a run was missed while powered off"
    )
    wake_system: bool = param(
        False, doc="resume the system from suspend to fire", aliases=("wakesystem",)
    )
    remain_after_elapse: bool = param(
        True,
        doc="an elapsed timer stays active (false: it unloads itself; re-armed, as a tick)",
        aliases=("remainafterelapse",),
    )
    description: str | None = param(
        None, doc="the timer's Description; unset: 'timer generated by pymgmt'; '': none"
    )

    @property
    def timer(self) -> str:
        return f"{self.name}.timer"

    @property
    def target(self) -> str:
        return self.unit or f"{self.name}.service"

    # -- validation ----------------------------------------------------------------------

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if not _UNIT_NAME.fullmatch(self.name) or self.name.startswith("."):
            out.append(("name", f"must be a unit name such as 'backup', got {self.name!r}"))
        elif self.name.endswith("@"):  # backup@.timer: systemd starts only its instances
            out.append(
                ("name", f"is a template: name an instance ('backup@db'), got {self.name!r}")
            )
        if self.unit and (
            not _UNIT_NAME.fullmatch(self.unit)
            or "." not in self.unit.strip(".")
            or self.unit.endswith(".timer")
        ):
            out.append(
                ("unit", f"must be a unit name with its suffix ('x.service'), got {self.unit!r}")
            )
        elif "@." in self.unit:
            out.append(
                ("unit", f"is a template: name an instance ('x@db.service'), got {self.unit!r}")
            )
        for field in ("time", "accuracy_sec", "randomized_delay_sec", "description"):
            value = getattr(self, field)
            if value and (bad := _line_problem(value)):
                out.append((field, bad))
        if self.state == "absent" and not self.trigger and not self.time:
            return out  # removing: nothing to write
        said = {f for f, _ in out}  # one message per field: the first problem
        if not self.trigger or not self.time:
            out.append(
                ("trigger" if not self.trigger else "time", "trigger and time are set together")
            )
        elif "time" in said:
            pass
        elif self.trigger == "OnCalendar":
            if not _CALENDAR.fullmatch(self.time):
                out.append(
                    ("time", f"is not a calendar event (systemd.time(7)), got {self.time!r}")
                )
        elif not _SPAN.fullmatch(self.time):
            out.append(("time", f"is not a time span such as '90s' or '1h 30min': {self.time!r}"))
        for field in ("accuracy_sec", "randomized_delay_sec"):
            value = getattr(self, field)
            if value and field not in said and not _SPAN.fullmatch(value):
                out.append((field, f"is not a time span such as '1min': {value!r}"))
        return out

    @property
    def owned_unit(self) -> str:
        return self.timer

    @property
    def needs_file_of(self) -> str:
        # AutoEdges: the file resource writing the service it starts comes first
        return self.target

    # -- the unit file ------------------------------------------------------------------------

    def content(self) -> bytes:
        """The timer unit file these params describe."""
        lines = [f"# written by pymgmt (cron {self.name}): edits are put back", "[Unit]"]
        description = "timer generated by pymgmt" if self.description is None else self.description
        if description:
            lines.append(f"Description={description.replace('%', '%%')}")
        timer = {
            self.trigger: self.time,
            "AccuracySec": self.accuracy_sec,
            "RandomizedDelaySec": self.randomized_delay_sec,
            "Unit": self.target,
            # systemd's defaults are left unsaid, as mgmt does
            "Persistent": "true" if self.persistent else "",
            "WakeSystem": "true" if self.wake_system else "",
            "RemainAfterElapse": "" if self.remain_after_elapse else "false",
        }
        lines += ["", "[Timer]", *(f"{k}={v}" for k, v in timer.items() if v)]
        lines += ["", "[Install]", "WantedBy=timers.target", ""]
        return "\n".join(lines).encode()

    def _unit_dir(self) -> str:
        """The unit directory as the managed systemd sees it."""
        if self.session:
            return f"{pwd.getpwuid(os.geteuid()).pw_dir.rstrip('/')}/.config/systemd/user"
        return _SYSTEM_DIR

    def _host_path(self) -> str:
        """The unit file as this process reaches it (below PYMGMT_SYSTEMD_ROOT)."""
        return f"{self._root.rstrip('/')}{self._unit_dir()}/{self.timer}"

    def _read(self) -> tuple[bool, bytes | None]:
        """(the file exists, its bytes; None if it is not a regular file)."""
        try:
            dfd = fsutil.open_dir_in(self._root, self._unit_dir())
        except FileNotFoundError:
            return False, None
        try:
            if fsutil.lstat_at(dfd, self.timer) is None:
                return False, None
            try:
                fd = fsutil.open_node(dfd, self.timer)
            except OSError:  # a symlink, a socket: replaced or removed like an edit
                return True, None
            if fd is None:
                return False, None
            try:
                return True, fsutil.read_fd(fd)
            finally:
                os.close(fd)
        finally:
            os.close(dfd)

    def _write(self, data: bytes) -> None:
        create = 0o755 if self.session else None
        with_dir = fsutil.open_dir_in(self._root, self._unit_dir(), create=create)
        try:
            fsutil.atomic_write_at(with_dir, self.timer, data, 0o644, None, None)
        finally:
            os.close(with_dir)

    def _remove(self) -> None:
        try:
            dfd = fsutil.open_dir_in(self._root, self._unit_dir())
        except FileNotFoundError:
            return
        try:
            try:
                os.unlink(self.timer, dir_fd=dfd)
            except FileNotFoundError:
                return
            fsutil.fsync_dir_fd(dfd)
        finally:
            os.close(dfd)

    # -- lifecycle ---------------------------------------------------------------------------

    async def init(self, ctx: Context) -> None:
        await super().init(ctx)
        self._root = systemd_root()
        self._sd = Systemd(ctx.dbus, session=self.session)

    async def watch(self, ctx: Context) -> None:
        sub = ctx.inotify.subscribe(self._host_path(), ctx.event)
        try:
            # a timer that unloads itself must stay loaded to tell why it stopped
            await self._sd.watch(self.timer, ctx, pin=not self.remain_after_elapse)
        finally:
            ctx.inotify.unsubscribe(sub)

    async def check(self) -> Plan:
        exists, stored = await off_loop(self._read)
        sd = self._sd
        path = await sd.unit_path(self.timer)
        await sd.wait_for_queued_job(path, self.timer, self.ctx.log)
        load = await sd.prop(path, "LoadState")
        active = await sd.prop(path, "ActiveState")
        changes: list[Change] = []
        where = self._unit_dir() + "/" + self.timer
        if self.state == "absent":
            if active in _LIVE:
                changes.append(Change("state", active, "absent"))
            if exists:
                changes.append(Change("unit_file", where, None))
            elif load != "not-found":  # removed behind systemd's back, still loaded
                changes.append(Change("loaded", load, "not-found"))
            return Plan(tuple(changes))
        want = self.content()
        if stored != want:
            old = (
                "<missing>" if not exists else "<edited>" if stored is not None else "<not a file>"
            )
            changes.append(
                Change("unit_file", old, where, diff=_unified(where, stored, want, None))
            )
        elif load == "not-found" or await sd.prop(path, "NeedDaemonReload"):
            changes.append(Change("loaded", load, "reloaded"))
        elif load != "loaded":
            # systemd has read this very file and refused it: reloading again
            # would only refuse it again (and wake every watcher of the reload)
            await self._loaded_or_refused()
        if active not in _LIVE:
            await self._target_exists()
            changes.append(Change("state", active, "active"))
        if self.startup:
            ufs = await sd.prop(path, "UnitFileState") if exists else ""
            if (self.startup == "enabled") != (ufs in ENABLED_STATES):
                changes.append(Change("startup", ufs, self.startup))
        if not changes:
            return CONVERGED
        # re-arming a timer that unloaded itself is its schedule, not drift;
        # anything else wrong besides (an edit, a disable) is still drift
        only_stopped = [c.field for c in changes] == ["state"]
        return Plan(tuple(changes), scheduled=only_stopped and await self._elapsed(path))

    async def _elapsed(self, path: str) -> bool:
        """Whether the timer stopped itself by firing (``remain_after_elapse: false``).

        systemd gives both the same end (inactive, Result ``success``), but
        a timer that unloads itself after firing fired during the activation
        it ends: its ``LastTriggerUSec`` is at or after its
        ``ActiveEnterTimestamp`` (both CLOCK_REALTIME, in µs). A
        ``systemctl stop`` of a timer that has not fired since it was
        (re)started has an older trigger, or none (0): that stays drift.
        One stop cannot be told from the timer's own end: one made while
        the service of that very firing still runs, after which the timer
        would have unloaded itself anyway. The watch pins the unit
        (``Unit.Ref``): a disabled timer that unloaded itself would
        otherwise be garbage-collected, and its trigger time forgotten.
        """
        if self.remain_after_elapse:
            return False  # an elapsed timer stays active: stopped means someone stopped it
        fired = await self._sd.prop(path, "LastTriggerUSec", TIMER)
        armed = await self._sd.prop(path, "ActiveEnterTimestamp")
        return bool(fired and armed and fired >= armed)

    async def apply(self, plan: Plan) -> None:
        fields = {c.field for c in plan.changes}
        sd = self._sd
        if self.state == "absent":
            if "state" in fields:
                await sd.job("StopUnit", self.timer)
            if "unit_file" in fields:
                await sd.manager("DisableUnitFiles", "asb", [[self.timer], False])
                await off_loop(self._remove)
            await sd.manager("Reload")
            return
        rewritten = False
        if fields & {"unit_file", "loaded"}:
            # read again: a check that raced with an edit may have seen only
            # "not reloaded"; systemd must load our version, never the edit
            want = self.content()
            if (await off_loop(self._read))[1] != want:
                await off_loop(self._write, want)
                rewritten = True
            await sd.manager("Reload")
            await self._loaded_or_refused()
        if "startup" in fields:
            await sd.enable(self.timer, self.startup == "enabled")
        if "state" in fields:
            await sd.job("StartUnit", self.timer)
        elif rewritten:  # new settings take effect from a restart
            await sd.job("RestartUnit", self.timer)

    async def _target_exists(self) -> None:
        """Refuse to start a timer whose unit systemd does not know.

        systemd would fail the start job ("unit to trigger not loaded"), the
        failure would change the timer's properties, and that event would
        start it again: an error said here, at check, changes nothing.
        """
        path = await self._sd.unit_path(self.target)
        if await self._sd.prop(path, "LoadState") == "not-found":
            where = "the user's" if self.session else "the system"
            raise ResourceError(
                f"{self.timer} starts {self.target}, which {where} manager does not know: "
                "write its unit file (a file resource) or name another 'unit'"
            )

    async def _loaded_or_refused(self) -> None:
        """After a reload: raise systemd's own reason if it refused the timer file."""
        path = await self._sd.unit_path(self.timer)
        load = await self._sd.prop(path, "LoadState")
        if load == "loaded":
            return
        _name, message = await self._sd.prop(path, "LoadError")
        raise ResourceError(
            f"systemd refused {self._unit_dir()}/{self.timer} ({load}): {message or load}; "
            f"check {self.trigger}={self.time!r} (systemd.time(7); its journal says which line)"
        )
