"""exec: run a command, guarded so that it runs only when needed.

``cmd`` is split into an argv list (shell quoting rules, no shell) unless
``shell`` names one, as in mgmt's format: ``shell: /bin/sh`` runs
``/bin/sh -c cmd``. Nothing is ever built into a shell string by pymgmt.

When does it run? Once when the graph starts, then whenever one of its
events fires: a line of output from ``watchcmd``, a tick of ``pollint``, or
the ``creates`` path disappearing. Guards skip a run: ``creates`` (the path
exists), ``ifcmd`` (runs only if it exits 0) and mgmt's ``nifcmd`` (only if
it exits non-zero: Puppet's ``unless``). With ``refresh_only`` (also spelt
``refreshonly``, as Puppet does) it runs on a refresh notification only, as
an Ansible handler does: not at the start, not on a converged run, and not
when ``creates`` disappears. A non-zero exit status, or exceeding
``timeout`` seconds, is a failure.

A refresh asks for one run, not for an unconditional one: the guards are
checked first, as Puppet checks ``creates``/``onlyif``/``unless`` on a
refresh. So a refresh with ``creates`` present, ``ifcmd`` failing or
``nifcmd`` succeeding runs nothing and is not a change. Refreshes that
arrive together (or while a run is under way) ask for one more run, not one
each; a refresh that arrives is kept by the engine across a crash until the
run it asks for has happened.

A ``watchcmd`` line or a ``pollint`` tick is the user's own schedule: the
run it causes is a "tick", never drift. Only ``creates`` disappearing is the
system moving by itself, and its run a repair.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
from collections.abc import Generator
from dataclasses import dataclass

from ..errors import ResourceError
from ..redaction import redact
from ..traits import UID, Want
from ..types import MAX_SECONDS, bound_problem, path_problem
from . import spawn
from .base import CONVERGED, Change, Context, Plan, Resource, param


class Exec(Resource, kind="exec"):
    """A command, run when the graph starts or its events fire.

    It runs once when the graph starts, then on each line ``watchcmd``
    prints, every ``pollint`` seconds, when the ``creates`` path disappears,
    and on a refresh notification (``refresh_only``: only then). ``creates``,
    ``ifcmd`` and ``nifcmd`` skip a run that is not needed, a refresh's too.
    Commands run in ``cwd`` with ``env`` added to the agent's environment;
    one that runs longer than ``timeout`` seconds is killed with its whole
    process group, and that is a failure like a non-zero exit status. No
    shell is involved unless ``shell`` names one. ``user`` and ``group``
    run every command of the resource (the guards and watchcmd too, as
    Puppet runs ``onlyif``) without root's privileges: the guard's
    ``setpriv`` changes them before the command is executed.
    """

    example = """\
graph: build
resources:
  exec:
  - name: make-site
    cmd: make -C /srv/site
    cwd: /srv/site
    env: {LANG: C.UTF-8}
    creates: /srv/site/index.html
    timeout: 600
"""

    cmd: str = param(doc="the command; split like a shell would, but run without one")
    shell: str = param("", doc="run cmd with this shell's -c (e.g. /bin/sh); empty: no shell")
    cwd: str = param("", doc="working directory (absolute); empty: the agent's")
    env: dict[str, str] = param(
        default_factory=dict, doc="variables added to the agent's environment"
    )
    timeout: int = param(0, doc="seconds before the command is killed (0: no limit)")
    watchcmd: str = param("", doc="a long-running command; each line it prints runs cmd again")
    watchshell: str = param("", doc="shell for watchcmd, like shell")
    ifcmd: str = param("", doc="run cmd only when this command exits 0")
    ifshell: str = param("", doc="shell for ifcmd, like shell")
    nifcmd: str = param("", doc="run cmd only when this command exits non-zero (Puppet's unless)")
    nifshell: str = param("", doc="shell for nifcmd, like shell")
    refresh_only: bool = param(
        False,
        doc="run cmd only when a refresh notification arrives, never at the start"
        " (Puppet's refreshonly, Ansible's handlers)",
        aliases=("refreshonly",),
    )
    creates: str = param(
        "", doc="run cmd only when this path does not exist (and when it disappears)"
    )
    pollint: int = param(0, doc="also run cmd every N seconds (0: never)")
    user: str = param(
        "",
        doc="run cmd, ifcmd, nifcmd and watchcmd as this user (name or uid), with its groups,"
        " HOME, USER and LOGNAME; empty: as the agent",
    )
    group: str = param(
        "", doc="run them with this group (name or gid); empty: the user's primary group"
    )
    state: str = param("", doc="accepted for mgmt's old examples; ignored")

    def wants(self) -> Generator[Want, bool, None]:
        """The account it runs as comes first, when the graph manages it."""
        if self.user and not self.user.isdigit():
            yield Want((UID("user", self.user),))
        if self.group and not self.group.isdigit():
            yield Want((UID("group", self.group),))

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for field, shell in (
            ("cmd", self.shell),
            ("watchcmd", self.watchshell),
            ("ifcmd", self.ifshell),
            ("nifcmd", self.nifshell),
        ):
            text = getattr(self, field)
            if field == "cmd" and not text.strip():
                out.append(("cmd", "must not be empty"))
                continue
            if text and not shell:
                try:
                    if not shlex.split(text):
                        out.append((field, "must not be empty"))
                except ValueError as e:
                    out.append((field, f"cannot be split into arguments: {e}"))
        for name in ("timeout", "pollint"):
            value = getattr(self, name)
            if value < 0:
                out.append((name, "must not be negative"))
            elif bad := bound_problem(value, 0, MAX_SECONDS, "seconds (a day)"):
                out.append((name, bad))
        for name in ("creates", "cwd"):
            if (value := getattr(self, name)) and (bad := path_problem(value)):
                out.append((name, bad))
        if self.refresh_only and (self.watchcmd or self.pollint):
            field = "watchcmd" if self.watchcmd else "pollint"
            out.append((field, "never runs cmd with refresh_only: only a refresh does"))
        for name in ("user", "group"):
            if (value := getattr(self, name)) and not _ACCOUNT.fullmatch(value):
                out.append((name, f"not a {name} name or number: {value!r}"))
        if self.state not in ("", "present"):
            out.append(("state", f"only 'present' is meaningful for exec, got {self.state!r}"))
        return out

    async def init(self, ctx: Context) -> None:
        await super().init(ctx)
        # Runs are asked for by number: a trigger that lands while a run is
        # under way asks for one more, which the run's end must not erase.
        self._asked = 0 if self.refresh_only else 1  # run once when the graph starts
        self._done = 0

    def refresh(self) -> None:
        """A refresh notification runs the command again (guards still apply)."""
        self._asked += 1

    # -- watch ------------------------------------------------------------------

    def _trigger(self, *, tick: bool) -> None:
        """Run again; `tick`: because the user's schedule or trigger said so (not drift)."""
        self._asked += 1
        if tick:
            self.ctx.tick()
        else:
            self.ctx.event()

    async def watch(self, ctx: Context) -> None:
        async with asyncio.TaskGroup() as tg:
            sub = ctx.inotify.subscribe(self.creates, self._on_creates) if self.creates else None
            try:
                if self.watchcmd:
                    started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                    tg.create_task(self._watchcmd(started))
                    await started
                if self.pollint:
                    tg.create_task(self._poll())
                ctx.ready()
                await asyncio.Event().wait()
            finally:
                if sub is not None:
                    ctx.inotify.unsubscribe(sub)

    def _on_creates(self) -> None:
        if not self.refresh_only and not os.path.lexists(self.creates):
            self._trigger(tick=False)  # what the command made went away: drift

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.pollint)
            self._trigger(tick=True)

    async def _watchcmd(self, started: asyncio.Future[None]) -> None:
        proc = await _spawn(self._argv("watchcmd", self.watchshell), self, asyncio.subprocess.PIPE)
        started.set_result(None)
        try:
            assert proc.stdout is not None
            async for line in proc.stdout:
                self.ctx.log.debug("watchcmd: %s", line.decode(errors="replace").rstrip())
                self._trigger(tick=True)
            code = await proc.wait()
            raise ResourceError(f"watchcmd exited with status {code}")
        finally:
            await _reap(proc)

    # -- check / apply ------------------------------------------------------------

    async def check(self) -> Plan:
        asked = self._asked
        if asked <= self._done:
            return CONVERGED
        if self.creates and os.path.lexists(self.creates):
            self._done = asked
            return CONVERGED
        if self.ifcmd:
            argv = self._argv("ifcmd", self.ifshell)
            code, _ = await _run(argv, self)
            if code != 0:
                self.ctx.log.debug("ifcmd exited %d: not running cmd", code)
                self._done = asked
                return CONVERGED
        if self.nifcmd:
            argv = self._argv("nifcmd", self.nifshell)
            code, _ = await _run(argv, self)
            if code == 0:
                self.ctx.log.debug("nifcmd exited 0: not running cmd")
                self._done = asked
                return CONVERGED
        return Plan((Change("run", None, self.cmd),))

    async def apply(self, plan: Plan) -> None:
        asked = self._asked  # what this run answers; later triggers ask for another
        code, out = await _run(self._argv("cmd", self.shell), self)
        tail = out.lines(redact)
        if out.dropped:
            self.ctx.log.debug("output: %d earlier bytes not kept", out.dropped)
        for line in tail:
            self.ctx.log.debug("output: %s", line)
        if code != 0:
            msg = spawn.exit_message(code, tail)
            raise ResourceError(msg, command=self.cmd, exit_status=code)
        self._done = asked

    def _argv(self, field: str, shell: str) -> _Argv:
        """The argv of command param `field`, and how an error may name its program.

        A command received over Send/Recv was never validated, so a split
        that fails is an input problem of this resource, not a crash. And
        when it holds a secret, no piece of its argv is ever shown: shell
        splitting removes quotes, so a piece of a secret would no longer
        match the secret the redactor knows.
        """
        cmd = getattr(self, field)
        try:
            argv = spawn.command_argv(cmd, shell)
        except ValueError as e:
            raise ResourceError(f"{field} cannot be split into arguments: {e}") from None
        if not argv:
            raise ResourceError(f"{field} is empty")
        shown = f"the {field} (it holds a secret)" if self.is_secret(field) else repr(argv[0])
        return _Argv(argv, shown)


#: A user or group as useradd/groupadd accept it (Debian's relaxed rule), or a number.
_ACCOUNT = re.compile(r"[0-9]+|[A-Za-z0-9_.][A-Za-z0-9_.-]{0,31}\$?")


@dataclass(frozen=True)
class _Argv:
    """A command ready to run, and what an error message may call it."""

    argv: list[str]
    shown: str


async def _spawn(cmd: _Argv, res: Exec, stdout: int) -> asyncio.subprocess.Process:
    """Start `cmd` as `spawn.prepare` says (under the guard that makes it die with the agent).

    In `res`'s working directory and environment, as its user and group.
    """
    try:
        who = spawn.Identity.lookup(res.user, res.group) if res.user or res.group else None
        argv, full_env, preexec = spawn.prepare(cmd.argv, cmd.shown, res.cwd, res.env, who)
        return await asyncio.create_subprocess_exec(
            *argv,
            cwd=res.cwd or None,
            env=full_env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=stdout,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as one
            preexec_fn=preexec,
        )
    except spawn.CannotRun as e:
        raise ResourceError(str(e)) from None
    except (FileNotFoundError, PermissionError, NotADirectoryError) as e:
        raise ResourceError(str(spawn.cannot_run(cmd.shown, e.strerror or str(e)))) from None


async def _run(cmd: _Argv, res: Exec) -> tuple[int, spawn.Tail]:
    """Run to completion; kill the whole process group on timeout or cancel."""
    timeout = res.timeout
    proc = await _spawn(cmd, res, asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(timeout or None):
            assert proc.stdout is not None
            out = await _drain(proc.stdout)
            await proc.wait()
    except TimeoutError:
        raise ResourceError(spawn.TIMED_OUT.format(timeout)) from None
    finally:
        await _reap(proc)
    assert proc.returncode is not None
    return proc.returncode, out


async def _drain(stream: asyncio.StreamReader) -> spawn.Tail:
    """Read `stream` to its end, keeping its tail (`spawn.Tail`)."""
    out = spawn.Tail()
    while chunk := await stream.read(1 << 16):
        out.feed(chunk)
    return out


async def _reap(proc: asyncio.subprocess.Process) -> None:
    """Kill the process group if still running and wait, so nothing leaks."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            # shielded: a cancelled caller must still not leave a zombie
            await asyncio.shield(proc.wait())
