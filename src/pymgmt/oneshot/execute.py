"""Running a plan by readiness: its files, commands and packages, without the engine (issue 13).

A vertex starts the moment the last vertex it depends on is done, and
every command ready runs at once: the makespan is the graph's critical
path, whatever its shape (W3: A->B->C beside D takes the time of A, B
and C). One process waits for all the commands, without a thread per
command: each one's exit is a pidfd and its output a pipe, both in one
`select.poll`, beside a wakeup pipe for signals.

What each kind does is the engine's:

* a file: checked with the others before anything runs (oneshot/apply.py
  `look`; no file may come after a command, plan.py refuses such graphs),
  and changed in the engine's durable batches once ready;
* a package: checked before anything runs, by the apt backend's own query
  and rule (resources/pkgstate.py); the fast path runs only when every
  package is already as wanted (`pkgs_unchanged`), else the engine does
  the whole run;
* a command: exec's check and apply (resources/exec.py), started as exec
  starts them (resources/spawn.py: the same argv, environment, guard
  that makes it die with the agent, session, stdin, output): ``creates``,
  then ``ifcmd`` (its failure to start or its timeout fails the check; a
  non-zero status means nothing to do), then ``cmd``; ``timeout`` kills
  the process group; a failure says exec's words and skips what comes
  after; an apply that runs long is announced as report/progress.py does.

A stop (SIGINT, SIGTERM, stderr's reader leaving) is the engine's graceful
stop: nothing new starts, the commands under way run to their end (a
second signal exits at once, see oneshot/command.py), an ``ifcmd`` that
ends after the stop leaves its command pending.
"""

from __future__ import annotations

import os
import time

from .apply import Outcome, apply_files, changed_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .apply import Change
    from .plan import Plan

# `select` and resources/spawn.py are imported where commands are run: a plan
# of files alone (W1's first apply or repair) never needs them (~1 ms, issue 13).

#: report/progress.py: an apply is said once it has run this long, then every `_EVERY` seconds
_ANNOUNCE_AFTER = 1.0
_EVERY = 20.0
#: what the engine's stop says, by the signal that caused it (cli/run.py)
STOP_WHY = {
    2: "interrupted by SIGINT",
    13: "stdout was closed (broken pipe)",
    15: "interrupted by SIGTERM",
}
_SIGPIPE, _SIGXFSZ, _SIGKILL = 13, 25, 9


def can_run(plan: Plan) -> bool:
    """Whether this machine lets the fast path start the plan's commands as exec would:
    under the guard (never the ``preexec_fn`` fallback), waited for through pidfds, not
    on a terminal (where the engine shows what runs in a live status line), and
    all at once if they are ready at once (each holds two descriptors while it runs: more
    commands than a quarter of the descriptor limit allows go to the engine)."""
    if not plan.execs:
        return True
    from ..resources import spawn

    if spawn.GUARD is None or not hasattr(os, "pidfd_open"):
        return False
    if os.environ.get("TERM", "") != "dumb" and os.isatty(2):
        return False  # the engine draws a live status line there (report/progress.py)
    from ..batch import batch_cap

    if 2 * len(plan.execs) > batch_cap():
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # a kernel before 5.3
        return False
    return True


def say_stopping(outcome: Outcome, sig: int, running: int) -> None:
    """The lines of the engine's graceful stop; the run is then interrupted by `sig`."""
    outcome.interrupted = sig
    why = STOP_WHY.get(sig, f"interrupted by signal {sig}")
    outcome.note("INFO", -1, f"Stopping: {why} (again to exit at once)")
    if running:
        s = "" if running == 1 else "s"
        text = f"waiting for {running} running resource{s} to finish (^C again to exit at once)"
        outcome.note("WARNING", -1, text)


def execute(plan: Plan, todo: dict[int, list[Change]], stop: list[int], outcome: Outcome) -> None:
    """Run every vertex of the plan as it becomes ready; `outcome` says what happened.

    `todo`: the files to change and every command (a command that turns out
    to have nothing to do leaves it). `stop`: the signals caught meanwhile.
    """
    run = _Run(plan, todo, stop, outcome)
    try:
        run.go()
    finally:
        run.close()


class _Job:
    """A command running for vertex `i`: its process, output and times."""

    __slots__ = (
        "announced",
        "begun",
        "code",
        "deadline",
        "i",
        "next_still",
        "phase",
        "pid",
        "pidfd",
        "rfd",
        "tail",
    )

    def __init__(self, i: int, phase: str, pid: int, rfd: int, timeout: int) -> None:
        self.i, self.phase, self.pid, self.rfd = i, phase, pid, rfd
        self.pidfd: int | None = os.pidfd_open(pid)
        self.begun = time.monotonic()
        self.deadline = self.begun + timeout if timeout else None
        self.code: int | None = None  # its exit status once reaped (negative: its signal)
        from ..resources import spawn

        self.tail = spawn.Tail()
        self.announced = False
        self.next_still = self.begun + _EVERY

    @property
    def over(self) -> bool:
        return self.code is not None and self.rfd < 0


class _Run:
    def __init__(
        self, plan: Plan, todo: dict[int, list[Change]], stop: list[int], outcome: Outcome
    ) -> None:
        self.plan, self.todo, self.stop, self.outcome = plan, todo, stop, outcome
        self.waiting = [len(a) for a in plan.after]
        self.children: list[list[int]] = [[] for _ in plan.after]
        for i, a in enumerate(plan.after):
            for j in a:
                self.children[j].append(i)
        #: vertices whose every prerequisite is done, not started yet
        self.ready = [i for i, n in enumerate(self.waiting) if n == 0]
        self.started: dict[int, float] = {}
        self.jobs: dict[int, _Job] = {}  # by the fd that wakes it: its pipe's and its pidfd
        self.running: set[_Job] = set()
        self.stopping = False
        if plan.execs:  # every command is waited for in one poll
            import select

            self.poll = select.poll()
        self.wake = self._wakeup() if plan.execs else None

    def _wakeup(self) -> tuple[int, int, int]:
        """A pipe a signal writes to, so that a wait for commands ends at once."""
        import _signal  # type: ignore[import-not-found]  # signal.py imports enum: too dear
        import select

        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        old = _signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        self.poll.register(r, select.POLLIN)
        return r, w, old

    def close(self) -> None:
        if self.wake is not None:
            import _signal

            r, w, old = self.wake
            _signal.set_wakeup_fd(old)
            os.close(r)
            os.close(w)

    def go(self) -> None:
        while True:
            if self.stop and not self.stopping:
                self.stopping = True
                say_stopping(self.outcome, self.stop[0], len(self.running))
            if self.ready and not self.stopping:
                batch, self.ready = sorted(self.ready), []
                self._start(batch)
            elif self.running:
                self._wait()
            else:
                return

    # -- vertices --------------------------------------------------------------------------

    def _start(self, batch: list[int]) -> None:
        """Start every vertex of `batch`: commands first, then the files in one batch."""
        files: list[int] = []
        for i in batch:
            if i in self.plan.execs:
                self._begin_command(i)
            elif i in self.todo:
                files.append(i)
            else:
                self._done(i)  # a file or package already as wanted
        if files:
            apply_files(self.plan, self.todo, files, self.outcome)
            for i in files:
                if i in self.outcome.changed:
                    self._done(i)

    def _done(self, i: int) -> None:
        """Vertex `i` succeeded: what waited only for it is ready (a failure blocks them)."""
        for c in self.children[i]:
            self.waiting[c] -= 1
            if self.waiting[c] == 0:
                self.ready.append(c)

    def _unchanged(self, i: int) -> None:
        del self.todo[i]
        self._done(i)

    def _failed(self, i: int, phase: str, why: str) -> None:
        self.outcome.failed[i] = f"{phase}: {why}"
        self.outcome.note("ERROR", i, f"FAILED in {phase}: {why}")

    # -- commands (exec's check and apply) -------------------------------------------------

    def _begin_command(self, i: int) -> None:
        self.started[i] = time.monotonic()
        creates, if_argv, if_shown = self.plan.execs[i][6:]
        if creates and os.path.lexists(creates):
            self._unchanged(i)
        elif if_argv:
            self._spawn(i, "check", if_argv, if_shown)
        else:
            self._spawn_apply(i)

    def _spawn_apply(self, i: int) -> None:
        _, argv, shown = self.plan.execs[i][:3]
        self._spawn(i, "apply", argv, shown)

    def _spawn(self, i: int, phase: str, argv: list[str], shown: str) -> None:
        import select

        from ..resources import spawn

        cwd, env, timeout = self.plan.execs[i][3:6]
        try:
            pid, rfd = start(argv, shown, cwd, dict(env))
        except spawn.CannotRun as e:
            self._failed(i, phase, str(e))
            return
        job = _Job(i, phase, pid, rfd, timeout)
        assert job.pidfd is not None
        self.running.add(job)
        for fd in (rfd, job.pidfd):
            self.jobs[fd] = job
            self.poll.register(fd, select.POLLIN)

    def _ended(self, job: _Job, *, timed_out: bool = False) -> None:
        from ..resources import spawn

        self.running.discard(job)
        i, timeout = job.i, self.plan.execs[job.i][5]
        if timed_out:
            self._failed(i, job.phase, spawn.TIMED_OUT.format(timeout))
        elif job.phase == "check":
            if job.code != 0:
                self._unchanged(i)  # ifcmd said no: nothing to do
            elif not self.stopping:  # else pending: an apply not begun is not under way
                self._spawn_apply(i)
        elif job.code != 0:
            assert job.code is not None
            # a graph with a secret has no plan: nothing to redact here
            self._failed(i, "apply", spawn.exit_message(job.code, job.tail.lines(str)))
        else:
            self.outcome.changed[i] = self.todo[i]
            took = time.monotonic() - self.started[i]
            self.outcome.note("NOTICE", i, changed_text(self.todo[i], took))
            self._done(i)

    # -- waiting ---------------------------------------------------------------------------

    def _wait(self) -> None:
        """Wait for the next thing to happen to a command: output, exit, timeout, a line due."""
        due = self._next_due()
        wait = None if due is None else max(0, int((due - time.monotonic()) * 1000) + 1)
        for fd, _ in self.poll.poll(wait):
            if self.wake is not None and fd == self.wake[0]:
                while _read(fd):
                    pass  # the signal handler noted the signal itself
                continue
            job = self.jobs.get(fd)
            if job is None:
                continue
            if fd == job.rfd:
                self._read_output(job)
            else:
                self._reap(job)
            if job.over:
                self._ended(job)
        now = time.monotonic()
        for job in sorted(self.running, key=lambda j: j.begun):
            if job.deadline is not None and now >= job.deadline:
                self._kill(job)
                self._ended(job, timed_out=True)
            elif job.phase == "apply":
                self._progress(job, now)

    def _next_due(self) -> float | None:
        due = [j.deadline for j in self.running if j.deadline is not None]
        for j in self.running:
            if j.phase == "apply":
                due.append(j.next_still if j.announced else j.begun + _ANNOUNCE_AFTER)
        return min(due) if due else None

    def _progress(self, job: _Job, now: float) -> None:
        """report/progress.py's lines about an apply that takes a while."""
        ran = now - job.begun
        if not job.announced and ran >= _ANNOUNCE_AFTER:
            job.announced = True
            self.outcome.note("INFO", job.i, f"applying run (running for {ran:.0f} s)")
        if now >= job.next_still:
            job.next_still += _EVERY
            self.outcome.note(
                "INFO", job.i, f"still running: applying for {round(ran / _EVERY) * _EVERY:g} s"
            )

    def _read_output(self, job: _Job) -> None:
        data = _read(job.rfd)
        if data:
            job.tail.feed(data)
        elif data is not None:  # its end: every writer closed it
            self._forget(job.rfd)
            job.rfd = -1

    def _reap(self, job: _Job) -> None:
        _, status = os.waitpid(job.pid, 0)
        job.code = os.waitstatus_to_exitcode(status)
        assert job.pidfd is not None
        self._forget(job.pidfd)
        job.pidfd = None

    def _kill(self, job: _Job) -> None:
        """A command out of time: its process group killed, unless it exited already (as
        exec's `_reap`); what its children still write is not waited for."""
        if job.code is None:
            try:  # noqa: SIM105 (contextlib costs the fast path ~5 ms)
                os.killpg(job.pid, _SIGKILL)
            except ProcessLookupError:
                pass
            self._reap(job)
        if job.rfd >= 0:
            self._forget(job.rfd)
            job.rfd = -1

    def _forget(self, fd: int) -> None:
        self.poll.unregister(fd)
        del self.jobs[fd]
        os.close(fd)


def _read(fd: int) -> bytes | None:
    """Up to 64 KiB from `fd`; b"" at its end; None if nothing is there yet."""
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return None


def start(argv: list[str], shown: str, cwd: str, env: dict[str, str]) -> tuple[int, int]:
    """Start a command as exec's `_spawn` does; (its pid, the read end of its output).

    The same argv under the same guard, environment, working directory and
    session, stdin from /dev/null, stdout and stderr into one pipe, the
    signals Python ignores back to their defaults and no other descriptor
    (as subprocess does); by `posix_spawn`, which vforks. The working
    directory is entered by this process around the spawn (it has no
    threads), since `posix_spawn` has no chdir. CannotRun: exec's words.
    """
    from ..resources import spawn

    run_argv, environ, preexec = spawn.prepare(argv, shown, cwd, env)
    assert preexec is None  # can_run: the guard is there
    r, w = _pipe()
    actions: list[tuple[object, ...]] = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, w, 1),
        (os.POSIX_SPAWN_DUP2, w, 2),
    ]
    actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inherited()]
    here = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) if cwd else -1
    try:
        if cwd:
            os.chdir(cwd)
        pid = os.posix_spawn(
            run_argv[0],
            run_argv,
            os.environ if environ is None else environ,
            file_actions=actions,
            setsid=True,  # its own process group, killed as one
            setsigdef=(_SIGPIPE, _SIGXFSZ),
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as e:
        os.close(r)
        raise spawn.cannot_run(shown, e.strerror or str(e)) from None
    finally:
        os.close(w)
        if here >= 0:
            os.fchdir(here)
            os.close(here)
    os.set_blocking(r, False)
    return pid, r


def _pipe() -> tuple[int, int]:
    """A pipe whose ends are not 0, 1 or 2 (a process started with one of them closed
    would get it from `os.pipe`, and a child's 0-2 are set from it: as subprocess does)."""
    import fcntl

    ends = []
    for fd in os.pipe():
        if fd < 3:
            high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
            os.close(fd)
            fd = high
        ends.append(fd)
    return ends[0], ends[1]


def _inherited() -> list[int]:
    """This process's descriptors a child would inherit beyond 0-2 (subprocess closes them)."""
    out = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    out.append(fd)
            except OSError:
                pass  # the listing's own descriptor, closed since
    return out


# -- packages ------------------------------------------------------------------------------


def pkgs_unchanged(plan: Plan) -> bool:
    """Whether every package of the plan is in its wanted state, by the apt backend's own
    query and rule; False also when the fast path cannot tell (another backend, a failure)."""
    if not plan.pkgs:
        return True
    from ..resources import pkgstate

    if not all(pkgstate.uses_apt(backend) for backend, _ in plan.pkgs.values()):
        return False
    wanted = [w for _, ws in plan.pkgs.values() for w in ws]
    names = [name for name, _ in wanted]
    out = _capture(pkgstate.installed_argv(names), pkgstate.apt_env(), pkgstate.QUERY_OK)
    if out is None:
        return False
    try:
        return not pkgstate.changes(wanted, pkgstate.parse_installed(out, names), {})
    except LookupError:
        return False


def _capture(argv: list[str], env: dict[str, str], ok: tuple[int, ...]) -> str | None:
    """The output of a query (its errors dropped), if it exits with a status of `ok`."""
    r, w = _pipe()
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, w, 1),
        (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
    ]
    try:
        pid = os.posix_spawnp(argv[0], argv, env, file_actions=actions, setsigdef=(_SIGPIPE,))
    except OSError:
        os.close(r)
        return None
    finally:
        os.close(w)
    chunks = []
    with open(r, "rb", buffering=0) as f:
        while chunk := f.read(1 << 16):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) not in ok:
        return None
    return b"".join(chunks).decode(errors="replace")
