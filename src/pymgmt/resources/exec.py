"""exec: run a command, guarded so that it runs only when needed.

``cmd`` is split into an argv list (shell quoting rules, no shell) unless
``shell`` names one, as in mgmt's format: ``shell: /bin/sh`` runs
``/bin/sh -c cmd``. Nothing is ever built into a shell string by pymgmt.

When does it run? Once when the graph starts, then whenever one of its
events fires: a line of output from ``watchcmd``, a tick of ``pollint``, or
the ``creates`` path disappearing. Guards skip a run: ``creates`` (the path
exists) and ``ifcmd`` (runs only if it exits 0). A non-zero exit status, or
exceeding ``timeout`` seconds, is a failure.

A ``watchcmd`` line or a ``pollint`` tick is the user's own schedule: the
run it causes is a "tick", never drift. Only ``creates`` disappearing is the
system moving by itself, and its run a repair.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shlex
import shutil
import signal
from dataclasses import dataclass
from typing import Any

from ..errors import ResourceError
from ..redaction import redact
from ..types import MAX_SECONDS, bound_problem, path_problem
from .base import CONVERGED, Change, Context, Plan, Resource, param

#: How much of a failed command's output ends up in the error message.
_TAIL_LINES = 10
#: ...and how much of each of those lines.
_LINE_MAX = 500
#: How much of a command's output is kept in memory (the rest is read and dropped).
_KEEP_OUTPUT = 64 << 10


class Exec(Resource, kind="exec"):
    """A command, run when the graph starts or its events fire.

    It runs once when the graph starts, then on each line ``watchcmd``
    prints, every ``pollint`` seconds, when the ``creates`` path disappears,
    and on a refresh notification. ``creates`` and ``ifcmd`` skip a run
    that is not needed. A non-zero exit status or exceeding ``timeout`` is a
    failure. No shell is involved unless ``shell`` names one.
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
    creates: str = param(
        "", doc="run cmd only when this path does not exist (and when it disappears)"
    )
    pollint: int = param(0, doc="also run cmd every N seconds (0: never)")
    state: str = param("", doc="accepted for mgmt's old examples; ignored")

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for field, shell in (
            ("cmd", self.shell),
            ("watchcmd", self.watchshell),
            ("ifcmd", self.ifshell),
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
        if self.state not in ("", "present"):
            out.append(("state", f"only 'present' is meaningful for exec, got {self.state!r}"))
        return out

    async def init(self, ctx: Context) -> None:
        await super().init(ctx)
        # Runs are asked for by number: a trigger that lands while a run is
        # under way asks for one more, which the run's end must not erase.
        self._asked = 1  # run once when the graph starts
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
        if not os.path.lexists(self.creates):
            self._trigger(tick=False)  # what the command made went away: drift

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.pollint)
            self._trigger(tick=True)

    async def _watchcmd(self, started: asyncio.Future[None]) -> None:
        proc = await _spawn(
            self._argv("watchcmd", self.watchshell),
            self.cwd,
            self.env,
            stdout=asyncio.subprocess.PIPE,
        )
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
            code, _ = await _run(argv, self.cwd, self.env, self.timeout)
            if code != 0:
                self.ctx.log.debug("ifcmd exited %d: not running cmd", code)
                self._done = asked
                return CONVERGED
        return Plan((Change("run", None, self.cmd),))

    async def apply(self, plan: Plan) -> None:
        asked = self._asked  # what this run answers; later triggers ask for another
        code, out = await _run(self._argv("cmd", self.shell), self.cwd, self.env, self.timeout)
        tail = [line[:_LINE_MAX] for line in _kept_lines(out)][-_TAIL_LINES:]
        if out.dropped:
            self.ctx.log.debug("output: %d earlier bytes not kept", out.dropped)
        for line in tail:
            self.ctx.log.debug("output: %s", line)
        if code != 0:
            detail = ("; output: " + " | ".join(tail)) if tail else ""
            msg = f"command exited with status {code}{detail}"
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
        if shell:
            argv = [shell, "-c", cmd]
        else:
            try:
                argv = shlex.split(cmd)
            except ValueError as e:
                raise ResourceError(f"{field} cannot be split into arguments: {e}") from None
            if not argv:
                raise ResourceError(f"{field} is empty")
        shown = f"the {field} (it holds a secret)" if self.is_secret(field) else repr(argv[0])
        return _Argv(argv, shown)


@dataclass(frozen=True)
class _Argv:
    """A command ready to run, and what an error message may call it."""

    argv: list[str]
    shown: str


def _kept_lines(out: _Output) -> list[str]:
    """The kept output as lines, every secret already replaced.

    Redaction comes first, on the whole kept text: truncating a line or
    cutting the 64 KiB tail first could leave a piece of a secret that no
    longer matches it. When earlier bytes were dropped, the first kept line
    is only the end of a line (maybe the end of a secret): it is dropped too.
    """
    text = out.tail.decode(errors="replace")
    if out.dropped:
        text = text.partition("\n")[2]
    return redact(text).strip().splitlines()


async def _spawn(
    cmd: _Argv, cwd: str, env: dict[str, str], *, stdout: int
) -> asyncio.subprocess.Process:
    full_env = {**os.environ, **env} if env else None
    argv, preexec = cmd.argv, None
    if _GUARD is not None:
        _check_runnable(cmd, cwd, full_env)
        argv = _guarded(cmd.argv, full_env)
    else:
        preexec = functools.partial(_die_with_agent, os.getpid())
    try:
        return await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd or None,
            env=full_env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=stdout,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as one
            preexec_fn=preexec,
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as e:
        raise ResourceError(f"cannot run {cmd.shown}: {e.strerror}") from None


# -- dying with the agent ----------------------------------------------------------------
#
# A command (or a watchcmd that never ends) must not outlive the agent, even a
# kill -9 of it: the child asks the kernel for SIGKILL when its parent dies
# (PR_SET_PDEATHSIG). That request must be made in the child, between fork and
# the command's exec, and race-free: if the agent died before the request, the
# signal never comes, so the child checks its parent after asking.
#
# Two ways. The fast one runs the command under a guard, ``setpriv --pdeathsig
# KILL -- /bin/sh -c 'check parent && exec "$@"' AGENT_PID ARGV...``: the guard
# is two small execs (about 1 ms), and the agent spawns it without a
# ``preexec_fn``, so CPython uses vfork. A ``preexec_fn`` forces a full fork of
# the agent (its page tables, then copy-on-write faults while Python code runs
# in the child) and blocks the event loop until the child execs: measured here
# at about twice the spawn latency and 2.5x the time the loop is blocked
# (bench/RESULTS.md "Issue 13: W3 and packages"), which W3's chained execs pay
# once per link. The guard is used when setpriv
# and /bin/sh exist (util-linux and dash are essential on Debian); otherwise
# the ``preexec_fn`` below does the same.

#: $0 is the agent's pid; a guard whose agent is already gone exits 1 (nobody sees it)
_GUARD_SCRIPT = '[ "$PPID" = "$0" ] && exec "$@"'


def _find_guard() -> tuple[str, str] | None:
    setpriv = shutil.which("setpriv", path="/usr/bin:/bin")  # the system's, not $PATH's
    sh = "/bin/sh"
    if setpriv is None or not os.access(sh, os.X_OK):
        return None
    return setpriv, sh


_GUARD = _find_guard()


def _guarded(argv: list[str], env: dict[str, str] | None) -> list[str]:
    """`argv` under the guard; the command gets exactly the environment it would alone.

    The shell exports PWD at start; it is unset again unless the
    environment had it (then the shell keeps it, or corrects a stale one to
    the command's working directory).
    """
    assert _GUARD is not None
    setpriv, sh = _GUARD
    has_pwd = "PWD" in (os.environ if env is None else env)
    script = _GUARD_SCRIPT if has_pwd else "unset PWD; " + _GUARD_SCRIPT
    return [setpriv, "--pdeathsig", "KILL", "--", sh, "-c", script, str(os.getpid()), *argv]


def _check_runnable(cmd: _Argv, cwd: str, env: dict[str, str] | None) -> None:
    """Refuse a program that cannot run, with the error a direct exec would give.

    Under the guard a missing program is the shell's "not found" and status
    127; this keeps the resource's own message ("cannot run 'x': No such file
    or directory"). The program is looked up as execvp would: in the
    command's PATH, or as a path from its working directory.
    """
    prog = cmd.argv[0]
    if "/" in prog:
        path: str | None = os.path.join(cwd, prog) if cwd else prog
    else:
        search = (os.environ if env is None else env).get("PATH", os.defpath)
        path = shutil.which(prog, mode=os.F_OK, path=search)
    if path is None or not os.path.exists(path):
        raise ResourceError(f"cannot run {cmd.shown}: No such file or directory")
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        raise ResourceError(f"cannot run {cmd.shown}: Permission denied")


def _die_with_agent(agent_pid: int) -> None:
    """In the child, before exec: get SIGKILL if the agent dies (even by kill -9).

    The fallback where the guard's programs are absent (see above).
    If the agent died between fork and this call, the signal will never
    come: die now instead.

    Why a ``preexec_fn`` although the agent has threads (issue 8, item 17):
    What makes a preexec_fn unsafe is a lock that another thread held at
    fork time and that the child then takes. This one takes none: the
    ``prctl`` symbol is resolved in the parent at import (a ``dlsym`` in the
    child could wait forever on the loader lock), the ctypes call and
    ``getppid``/``_exit`` are plain syscalls, nothing is imported, logged or
    allocated outside the interpreter's own (fork-reinitialised) state.
    Process groups use ``start_new_session``, done natively by subprocess.
    """
    assert _PRCTL is not None  # resolved at import whenever the fallback is in use
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != agent_pid:
        os._exit(1)


_PR_SET_PDEATHSIG = 1


def _resolve_prctl() -> Any:
    """libc's prctl, for the fallback only: importing ctypes costs start-up time."""
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


#: resolved in the parent: a forked child must not dlsym (another thread may hold the lock)
_PRCTL = _resolve_prctl() if _GUARD is None else None


@dataclass(frozen=True)
class _Output:
    """The end of a command's output (stdout and stderr, interleaved)."""

    tail: bytes
    #: bytes before `tail` that were read and dropped
    dropped: int = 0


async def _run(cmd: _Argv, cwd: str, env: dict[str, str], timeout: int) -> tuple[int, _Output]:
    """Run to completion; kill the whole process group on timeout or cancel."""
    proc = await _spawn(cmd, cwd, env, stdout=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(timeout or None):
            assert proc.stdout is not None
            out = await _drain(proc.stdout)
            await proc.wait()
    except TimeoutError:
        raise ResourceError(f"command timed out after {timeout}s and was killed") from None
    finally:
        await _reap(proc)
    assert proc.returncode is not None
    return proc.returncode, out


async def _drain(stream: asyncio.StreamReader, keep: int = _KEEP_OUTPUT) -> _Output:
    """Read `stream` to its end, keeping only the last `keep` bytes.

    A command that prints gigabytes must neither fill the agent's memory nor
    block on a full pipe: everything is read, the tail is kept.
    """
    buf = bytearray()
    dropped = 0
    while chunk := await stream.read(1 << 16):
        buf += chunk
        if len(buf) > keep:
            excess = len(buf) - keep
            del buf[:excess]
            dropped += excess
    return _Output(bytes(buf), dropped)


async def _reap(proc: asyncio.subprocess.Process) -> None:
    """Kill the process group if still running and wait, so nothing leaks."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            # shielded: a cancelled caller must still not leave a zombie
            await asyncio.shield(proc.wait())
