"""Making a plan's files as wanted, without the engine: the first apply and the repairs.

Three steps, and nothing is changed before the third:

1. **look**: each file is checked as `File.check` checks it, and what is
   not as wanted gets the very changes `File.check` would list (the words
   of the NOTICE lines). A file the fast path is not sure of (a symlink or
   another kind of node in its place, an unknown user, a missing parent
   no managed directory creates, a non-empty directory to remove) hands
   the whole run to the full path, which reports it.
2. **order**: a file is changed once every vertex it depends on is done
   (AutoEdges put a directory before its files); oneshot/execute.py
   schedules, by readiness, with the graph's commands.
3. **apply**: the files ready at once are made in batches of
   `pymgmt.batch` (as many files as a quarter of the descriptor limit
   allows: a staged file is open until the sync), by `filestate.apply_at`,
   the file resource's own apply: temporary files with their final mode
   and owner, one sync, the renames, one fsync per directory. A file that
   fails makes every vertex after it in the graph "skipped", as the engine
   does.
"""

from __future__ import annotations

import gc
import os
import stat
import time

from ..report.textline import change_text
from ..resources.filestate import Wanted, apply_at, gid_of, matches, uid_of
from ..safepath import Parents, lstat_at, open_node, read_fd, sha256_hex, split, walk

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from ..batch import Staging
    from .plan import FileWant, Plan

#: a change as File.check lists it: (field, old, new)
Change = tuple[str, object, object]


class Outcome:
    """What happened to each vertex: changes made, failures, and when each ended."""

    __slots__ = ("changed", "failed", "interrupted", "notices", "say", "todo")

    def __init__(self, todo: dict[int, list[Change]] | None = None) -> None:
        #: the vertices that were to change (a command that turned out not to run leaves it)
        self.todo = todo or {}
        #: the signal that stopped the run between two waves (0: none)
        self.interrupted = 0
        #: file index -> the changes made
        self.changed: dict[int, list[Change]] = {}
        #: file index -> the failure's text
        self.failed: dict[int, str] = {}
        #: (time, level, vertex index or -1, text), in the order they happened
        self.notices: list[tuple[float, str, int, str]] = []
        #: where a line goes: `notices`, kept for the end; or written at once (a run of commands)
        self.say: Callable[[float, str, int, str], None] = self._keep

    def _keep(self, at: float, level: str, i: int, text: str) -> None:
        self.notices.append((at, level, i, text))

    def note(self, level: str, i: int, text: str) -> None:
        """A line about vertex `i` (-1: about the run), now."""
        self.say(time.time(), level, i, text)

    def states(self, plan: Plan) -> dict[int, str]:
        """Each vertex's outcome in the recap's words (report/recap.py)."""
        out: dict[int, str] = {}
        for i in range(len(plan.names)):
            failed = _ancestors(plan, i) & self.failed.keys() if self.failed else ()
            blockers = sorted({plan.names[j] for j in failed})
            if i in self.failed:
                out[i] = f"FAILED: {self.failed[i]}"
            elif blockers:
                out[i] = f"skipped (blocked by {', '.join(blockers)})"
            elif i in self.changed:
                out[i] = "changed"
            elif i in self.todo:
                out[i] = "pending"  # a signal stopped the run before its wave
            else:
                out[i] = "unchanged"
        return out


def look(plan: Plan) -> dict[int, list[Change]] | None:
    """The changes each file needs (index -> changes; converged files are absent).

    None: a file the fast path leaves to the full run (see the module's docstring).
    """
    try:
        with Parents() as parents:
            todo: dict[int, list[Change]] = {}
            for i, f in enumerate(plan.files):
                if f is None:
                    continue  # an exec or a package: oneshot/execute.py
                changes = _look(_resolved(f), parents)
                if changes is None:
                    return None
                if changes:
                    todo[i] = changes
            return todo if _parents_made(plan, todo, parents) else None
    except Exception:  # anything unexpected: the full run knows how to say it
        return None


def file_of(plan: Plan, i: int) -> FileWant:
    """The wanted state of vertex `i`, a file (every index of a file `todo` is one)."""
    f = plan.files[i]
    assert f is not None
    return f


def _resolved(f: FileWant) -> Wanted:
    """The file's wanted state with its owner and group looked up (KeyError: unknown)."""
    path, is_dir, absent, content, mode, owner, group = f
    uid = None if owner is None else uid_of(owner)
    gid = None if group is None else gid_of(group)
    return Wanted(path, is_dir=is_dir, absent=absent, content=content, mode=mode, uid=uid, gid=gid)


def _look(w: Wanted, parents: Parents) -> list[Change] | None:
    dfd, name = parents.of(w.path)
    if w.absent:
        st = None if dfd is None else lstat_at(dfd, name)
        if dfd is None or st is None:
            return []
        if stat.S_ISDIR(st.st_mode) and (not w.is_dir or _has_entries(dfd, name)):
            return None  # a directory where a file was, or a rmdir that would fail
        return [("state", "exists", "absent")]
    fd = None if dfd is None else open_node(dfd, name)  # a symlink raises: not ours to say
    if fd is None:
        return _absent_changes(w)
    try:
        st = os.fstat(fd)
        if w.is_dir != stat.S_ISDIR(st.st_mode) or not (w.is_dir or stat.S_ISREG(st.st_mode)):
            return None
        if matches(fd, st, is_dir=w.is_dir, want=w.content, mode=w.mode, uid=w.uid, gid=w.gid):
            return []
        return _differences(w, fd, st)
    finally:
        os.close(fd)


def _has_entries(dfd: int, name: str) -> bool:
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    try:
        return bool(os.listdir(fd))
    finally:
        os.close(fd)


def _absent_changes(w: Wanted) -> list[Change]:
    """What File.check lists for a file or directory that is not there."""
    out: list[Change] = [("state", "absent", "exists")]
    if w.content is not None:
        out.append(("content", None, _digest(w.content)))
    return out + _meta_changes(w, None)


def _differences(w: Wanted, fd: int, st: os.stat_result) -> list[Change]:
    out: list[Change] = []
    want = w.content
    if want is not None:
        have = read_fd(fd)  # once: to compare, and to digest if it differs
        if have != want:
            out.append(("content", _digest(have), _digest(want)))
    return out + _meta_changes(w, st)


def _meta_changes(w: Wanted, st: os.stat_result | None) -> list[Change]:
    out: list[Change] = []
    if w.mode is not None:
        have = None if st is None else stat.S_IMODE(st.st_mode)
        if have != w.mode:
            out.append(("mode", None if have is None else f"{have:04o}", f"{w.mode:04o}"))
    if w.uid is not None and (st is None or st.st_uid != w.uid):
        out.append(("owner", None if st is None else st.st_uid, w.uid))
    if w.gid is not None and (st is None or st.st_gid != w.gid):
        out.append(("group", None if st is None else st.st_gid, w.gid))
    return out


def _digest(data: bytes) -> str:
    return "sha256:" + sha256_hex(data)[:16]


def _parents_made(plan: Plan, todo: dict[int, list[Change]], parents: Parents) -> bool:
    """Whether every file to create whose directory is missing gets it from the plan first.

    The directory must be a managed one that this run creates, and an
    ancestor of the file in the graph (so it is made in an earlier wave).
    """
    made = {
        file_of(plan, i)[0]: i
        for i, ch in todo.items()
        if file_of(plan, i)[1] and not file_of(plan, i)[2] and ch[0][0] == "state"
    }
    for i in todo:
        parent = split(file_of(plan, i)[0])[0]
        if parents.missing(parent) and not file_of(plan, i)[2]:
            maker = made.get(parent)
            if maker is None or maker not in _ancestors(plan, i):
                return False
    return True


def _ancestors(plan: Plan, i: int) -> set[int]:
    seen: set[int] = set()
    stack = list(plan.after[i])
    while stack:
        j = stack.pop()
        if j not in seen:
            seen.add(j)
            stack.extend(plan.after[j])
    return seen


def apply_files(
    plan: Plan, todo: dict[int, list[Change]], files: list[int], outcome: Outcome
) -> None:
    """Make `files` (each in `todo`, every file they depend on done) as wanted.

    In batches of `pymgmt.batch` (imported here: a converged run never needs
    it): each staged file holds an fd till the sync.
    """
    from ..batch import SMALLEST_CAP, batch_cap, raise_fd_limit

    if len(files) <= SMALLEST_CAP:  # one batch whatever the limit: not worth asking it
        cap = SMALLEST_CAP
    else:
        if not (plan.execs or plan.pkgs):  # no program is started: bigger batches, fewer syncs
            raise_fd_limit()
        cap = batch_cap()
    collecting = gc.isenabled()
    gc.disable()  # the plan lives till the end, a batch is freed by refcounts: GC only walked them
    try:  # (a fifth of a 10k first apply's user CPU, bench/RESULTS.md)
        for start in range(0, len(files), cap):
            failures = len(outcome.failed)
            _apply_batch(plan, todo, files[start : start + cap], outcome)
            if len(outcome.failed) > failures:
                gc.collect()  # a failure's traceback and its frames form cycles
    finally:
        if collecting:
            gc.enable()


def _apply_batch(
    plan: Plan, todo: dict[int, list[Change]], files: list[int], outcome: Outcome
) -> None:
    """One batch of `pymgmt.batch`: the files' changes made durable by one sync."""
    from ..batch import Job, write_batch

    dirs: dict[str, int | BaseException] = {}
    began = time.monotonic()
    try:
        jobs = [Job(_applier(plan, i, todo[i], dirs)) for i in files]
        try:  # one thread: at 100 and 1,000 files, staging threads only cost (measured)
            write_batch(jobs, threads=1)
        except Exception as e:  # a limit or a bug: no file of the batch may pass for done
            for job in jobs:
                job.fail(e)
    finally:
        for fd in dirs.values():
            if isinstance(fd, int):
                os.close(fd)
    took = time.monotonic() - began  # each apply waited for the whole batch's sync
    for i, job in zip(files, jobs, strict=True):
        if job.error is None:
            outcome.changed[i] = todo[i]
            outcome.note("NOTICE", i, changed_text(todo[i], took))
        else:
            outcome.failed[i] = f"apply: {job.error}"
            outcome.note("ERROR", i, f"FAILED in apply: {job.error}")


def _applier(
    plan: Plan, i: int, changes: list[Change], dirs: dict[str, int | BaseException]
) -> Callable[[Staging], None]:
    """The job of file `i`: `filestate.apply_at` in its directory.

    `dirs`: the wave's directories, each walked once (a wave's first step,
    before its jobs run: they may run in threads), shared by its jobs.
    """
    fields = frozenset(c[0] for c in changes)
    parent, name = split(file_of(plan, i)[0])
    if parent not in dirs:
        try:
            dirs[parent] = walk(parent)
        except Exception as e:  # the job fails with it
            dirs[parent] = e

    def run(staging: Staging) -> None:
        dfd = dirs[parent]
        if not isinstance(dfd, int):
            raise dfd
        apply_at(_resolved(file_of(plan, i)), dfd, name, fields, staging)

    return run


def changed_text(changes: list[Change], seconds: float) -> str:
    """The NOTICE line's text of a change made (report/console.py's words)."""
    what = ", ".join(change_text(*c) for c in changes)
    if seconds >= 0.1:
        what += f" ({seconds:.2f} s)"
    return "CheckApply(apply=True): changed: " + what
