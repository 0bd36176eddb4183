"""How an exec's command is started and judged, with nothing but `os` (issue 13).

Two runners start exec's commands: the `exec` resource on the engine's
event loop (asyncio), and the one-shot fast path (`pymgmt.oneshot`),
which runs a graph of commands before asyncio is even imported. Both take
from here what decides what a command sees and what a run says of it, so
that the two cannot drift apart:

* `command_argv`: ``cmd`` split like a shell would (no shell), or given to
  ``shell -c``;
* `prepare`: the argv, environment and ``preexec_fn`` of the spawn, under
  the guard that makes the command die with the agent (see below), after
  `check_runnable` refused a program that cannot run, with exec's words;
* `Identity`: the user and group a command runs as when exec's ``user`` or
  ``group`` asks to drop root's privileges;
* `Tail`: the end of the command's output that is kept, and `exit_message`,
  what a failure says of it.

Nothing here imports asyncio, `shutil`, `shlex` (but to split a command
run without a shell) or `re`: the fast path's budget is milliseconds.
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

#: How much of a failed command's output ends up in the error message.
TAIL_LINES = 10
#: ...and how much of each of those lines.
LINE_MAX = 500
#: How much of a command's output is kept in memory (the rest is read and dropped).
KEEP_OUTPUT = 64 << 10
#: The words of a command that ran out of time.
TIMED_OUT = "command timed out after {}s and was killed"


class CannotRun(Exception):
    """The program cannot be started: ``cannot run 'x': No such file or directory``."""


def cannot_run(shown: str, why: str) -> CannotRun:
    return CannotRun(f"cannot run {shown}: {why}")


def command_argv(cmd: str, shell: str) -> list[str]:
    """The argv of `cmd`: ``[shell, "-c", cmd]``, or `cmd` split by shell rules.

    ValueError: a quote is not closed. No shell is ever involved unless
    `shell` names one, and nothing is built into a shell string.
    """
    if shell:
        return [shell, "-c", cmd]
    import shlex  # only here: it imports re

    return shlex.split(cmd)


def full_env(env: dict[str, str]) -> dict[str, str] | None:
    """The command's environment: the agent's plus `env` (None: the agent's as it is)."""
    return {**os.environ, **env} if env else None


def which(prog: str, path: str, mode: int = os.F_OK | os.X_OK) -> str | None:
    """`prog` looked up as execvp does, in the directories of `path` (shutil.which's rule)."""
    if os.path.dirname(prog):
        return prog if _usable(prog, mode) else None
    seen: set[str] = set()
    for d in path.split(os.pathsep):
        if d not in seen:
            seen.add(d)
            candidate = os.path.join(d, prog)
            if _usable(candidate, mode):
                return candidate
    return None


def _usable(path: str, mode: int) -> bool:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return False
    return not stat.S_ISDIR(st.st_mode) and os.access(path, mode)


def check_runnable(argv: list[str], shown: str, cwd: str, env: dict[str, str] | None) -> None:
    """Refuse a program that cannot run, with the error a direct exec would give.

    Under the guard a missing program is the shell's "not found" and status
    127; this keeps the resource's own message ("cannot run 'x': No such file
    or directory"). The program is looked up as execvp would: in the
    command's PATH, or as a path from its working directory.
    """
    prog = argv[0]
    if "/" in prog:
        path: str | None = os.path.join(cwd, prog) if cwd else prog
    else:
        search = (os.environ if env is None else env).get("PATH", os.defpath)
        path = which(prog, search, mode=os.F_OK)
    if path is None or not os.path.exists(path):
        raise cannot_run(shown, "No such file or directory")
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        raise cannot_run(shown, "Permission denied")


class Identity:
    """Who a command runs as, looked up when it starts (exec's ``user`` and ``group``).

    Like ``su``/``runuser`` and Puppet's exec ``user``: the user's uid, the
    group's gid (default: the user's primary group), the user's
    supplementary groups (none when only a group, or a uid with no account,
    is given), and HOME, USER and LOGNAME set from the account unless the
    resource's ``env`` sets them. Looked up at each start, not at load: an
    account may be created by the graph itself, or changed meanwhile.
    """

    __slots__ = ("env", "gid", "groups", "uid")

    def __init__(
        self, uid: int | None, gid: int | None, groups: list[int] | None, env: dict[str, str]
    ) -> None:
        self.uid = uid
        self.gid = gid
        self.groups = groups  # None: leave root's as they are (only with no uid change)
        self.env = env

    @classmethod
    def lookup(cls, user: str, group: str) -> Identity:
        """The identity of `user` and `group` (names or numbers); CannotRun if unknown."""
        import grp
        import pwd

        uid = gid = None
        groups: list[int] | None = None
        env: dict[str, str] = {}
        if user:
            try:
                pw = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
            except KeyError:
                if not user.isdigit():
                    raise CannotRun(f"user {user!r} does not exist") from None
                uid, groups = int(user), []  # a bare uid: no account, no groups
            else:
                uid, gid = pw.pw_uid, pw.pw_gid
                groups = os.getgrouplist(pw.pw_name, pw.pw_gid)
                env = {"HOME": pw.pw_dir, "USER": pw.pw_name, "LOGNAME": pw.pw_name}
        if group:
            try:
                gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
            except KeyError:
                raise CannotRun(f"group {group!r} does not exist") from None
            if groups is None:
                groups = []
        return cls(uid, gid, groups, env)

    def setpriv_args(self) -> list[str]:
        """The guard's ``setpriv`` options that become this identity."""
        args: list[str] = []
        if self.gid is not None:
            args.append(f"--regid={self.gid}")
        if self.uid is not None:
            args.append(f"--reuid={self.uid}")
        if self.groups:
            args.append("--groups=" + ",".join(map(str, self.groups)))
        elif self.groups is not None:
            args.append("--clear-groups")
        return args


def prepare(
    argv: list[str], shown: str, cwd: str, env: dict[str, str], who: Identity | None = None
) -> tuple[list[str], dict[str, str] | None, Callable[[], None] | None]:
    """(the argv to spawn, its environment (None: the agent's), its ``preexec_fn``).

    The argv is the command under the guard when the guard's programs
    exist, with no ``preexec_fn`` (so CPython vforks); else the command
    itself, with the ``preexec_fn`` fallback. CannotRun: a program that
    cannot run, refused before anything starts. With `who`, the command
    runs as that user and group (the guard's ``setpriv`` drops the
    privileges, then the command is exec'd).
    """
    environ = full_env({**who.env, **env} if who is not None else env)
    if GUARD is None:
        if who is not None:
            raise CannotRun(f"cannot run {shown} as another user: setpriv (util-linux) is missing")
        import functools

        return argv, environ, functools.partial(_die_with_agent, os.getpid())
    check_runnable(argv, shown, cwd, environ)
    return guarded(argv, environ, who), environ, None


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
    setpriv = which("setpriv", "/usr/bin:/bin")  # the system's, not $PATH's
    sh = "/bin/sh"
    if setpriv is None or not os.access(sh, os.X_OK):
        return None
    return setpriv, sh


#: (setpriv, sh) of the guard; None: the ``preexec_fn`` fallback
GUARD = _find_guard()


def guarded(argv: list[str], env: dict[str, str] | None, who: Identity | None = None) -> list[str]:
    """`argv` under the guard; the command gets exactly the environment it would alone.

    The shell exports PWD at start; it is unset again unless the
    environment had it (then the shell keeps it, or corrects a stale one to
    the command's working directory).
    """
    assert GUARD is not None
    setpriv, sh = GUARD
    has_pwd = "PWD" in (os.environ if env is None else env)
    script = _GUARD_SCRIPT if has_pwd else "unset PWD; " + _GUARD_SCRIPT
    become = who.setpriv_args() if who is not None else []
    agent = str(os.getpid())
    return [setpriv, "--pdeathsig", "KILL", *become, "--", sh, "-c", script, agent, *argv]


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
    assert PRCTL is not None  # resolved at import whenever the fallback is in use
    PRCTL(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
    if os.getppid() != agent_pid:
        os._exit(1)


_PR_SET_PDEATHSIG = 1
_SIGKILL = 9


def resolve_prctl() -> Any:
    """libc's prctl, for the fallback only: importing ctypes costs start-up time."""
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


#: resolved in the parent: a forked child must not dlsym (another thread may hold the lock)
PRCTL = resolve_prctl() if GUARD is None else None


# -- what a run says ---------------------------------------------------------------------


class Tail:
    """The end of a command's output (stdout and stderr, interleaved), fed as it is read.

    A command that prints gigabytes must neither fill the agent's memory nor
    block on a full pipe: everything is read, the last `keep` bytes are kept.
    """

    __slots__ = ("_buf", "dropped", "keep")

    def __init__(self, keep: int = KEEP_OUTPUT) -> None:
        self.keep = keep
        self._buf = bytearray()
        #: bytes before `tail` that were read and dropped
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        self._buf += chunk
        if len(self._buf) > self.keep:
            excess = len(self._buf) - self.keep
            del self._buf[:excess]
            self.dropped += excess

    @property
    def tail(self) -> bytes:
        return bytes(self._buf)

    def lines(self, redact: Callable[[str], str]) -> list[str]:
        """The last `TAIL_LINES` kept lines (each cut to `LINE_MAX`), every secret replaced.

        Redaction comes first, on the whole kept text: truncating a line or
        cutting the 64 KiB tail first could leave a piece of a secret that
        no longer matches it. When earlier bytes were dropped, the first kept
        line is only the end of a line (maybe the end of a secret): it is
        dropped too.
        """
        text = self._buf.decode(errors="replace")
        if self.dropped:
            text = text.partition("\n")[2]
        kept = redact(text).strip().splitlines()
        return [line[:LINE_MAX] for line in kept][-TAIL_LINES:]


def exit_message(code: int, tail: list[str]) -> str:
    """What a failed run says: its status and the end of its output."""
    detail = ("; output: " + " | ".join(tail)) if tail else ""
    return f"command exited with status {code}{detail}"
