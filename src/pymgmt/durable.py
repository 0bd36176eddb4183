"""Durable writes in batches: many files made durable by one sync (issue 13).

A durable file write (`pymgmt.fsutil.atomic_write_at`) fsyncs the new file
before renaming it over the old one, then fsyncs the directory. Each fsync
waits for a journal commit and a disk cache flush of its own, so a first
apply of 1,000 files spent two thirds of its time there (py-spy, issue 13),
one file after another. The guarantee does not need one commit per file,
only that each file is durable before it replaces the old one. So the
engine offers resources a `DurableWrites` service (``ctx.durable``) that
runs the writes of every apply in flight as one batch, in one thread:

1. **stage**: each job of the batch runs (a resource's apply, off the event
   loop); its writes create and fill their temporary files exactly as
   `atomic_write_at` does (final mode and owner before the first byte), but
   do not sync them yet;
2. **sync**: every staged file is made durable at once: on ext4, xfs and
   btrfs one ``syncfs(2)`` per filesystem, which writes back the dirty files
   and commits the journal once; elsewhere (or when syncfs fails, to charge
   the error to the file it belongs to) an fsync of each file, issued from
   several threads so that the filesystem merges them into few commits;
3. **install**: each temporary file is renamed over its target;
4. **directories**: each directory a job changed is fsynced once;
5. every job's awaiter is woken: an apply returns once its change is durable.

A kill -9 or a crash at any moment leaves each file with its old content or
its new one: nothing is renamed before it is durable, and a temporary file
left behind has a fixed name that the next write replaces. A job that fails
(while staging, or its own file's sync or rename) fails alone: its
temporary file is removed and the others of the batch go on.

Batches form by group commit: jobs queue while a batch is written, and the
next batch takes everything queued. A batch opened while idle first lets the
event loop run until an iteration adds no job (every apply already under
way has joined), or `GATHER` seconds, whichever is first; a lone repair
therefore waits one loop iteration, not a timer.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import platform
import resource
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from .fsutil import discard_temp_at, install_temp_at, write_temp_at

T = TypeVar("T")

#: The longest a batch opened while idle waits for more jobs to join (s).
GATHER = 0.005
#: Filesystems (``statfs`` magic) whose syncfs writes back every dirty file
#: and then commits the journal with a cache flush: one call is as durable
#: as an fsync of each file. Others (a FUSE mount may do nothing on syncfs)
#: get an fsync per file.
_SYNCFS_FS = frozenset({0xEF53, 0x58465342, 0x9123683E})  # ext2/3/4, xfs, btrfs
#: Threads issuing the fsyncs of one batch when there is no syncfs: enough
#: for the journal to fold many of them into one commit.
_SYNC_THREADS = 16
#: Threads staging the jobs of one batch: creating a file may wait for the
#: disk (an inode table block to read), and those waits overlap.
_STAGE_THREADS = 4

DirKey = tuple[int, int]


class _Dirs:
    """The directories a batch fsyncs at its end, one fd each, shared by its jobs."""

    def __init__(self) -> None:
        self.fds: dict[DirKey, int] = {}
        #: per filesystem, the fd of the batch's first directory on it: opened
        #: before the batch wrote anything there, so a syncfs through it
        #: reports any writeback error of the batch's files (errseq is sampled
        #: when an fd is opened)
        self.first: dict[int, int] = {}
        self._lock = threading.Lock()

    def add(self, dir_fd: int) -> tuple[DirKey, int]:
        """The key of directory `dir_fd` and the batch's own fd of it.

        The batch's fd is a plain read-only one, which can be fsynced (the
        job's own may be ``O_PATH``), opened from the job's fd: the same
        directory, never a path looked up again.
        """
        st = os.fstat(dir_fd)
        key = (st.st_dev, st.st_ino)
        with self._lock:
            if key not in self.fds:
                fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
                self.fds[key] = fd
                self.first.setdefault(st.st_dev, fd)
            return key, self.fds[key]

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


class _Staged:
    """A temporary file written and still open, waiting for the batch's sync."""

    __slots__ = ("dev", "dir_fd", "fd", "name", "replace")

    def __init__(self, dir_fd: int, name: str, fd: int, replace: bool, dev: int) -> None:
        self.dir_fd = dir_fd
        self.name = name
        self.fd = fd
        self.replace = replace
        self.dev = dev


class Staging:
    """What a job writes through, inside a batch (in the batch's thread)."""

    def __init__(self, dirs: _Dirs) -> None:
        #: every directory of the batch to fsync (shared by its jobs)
        self._dirs = dirs
        #: the job's temporary files not yet renamed into place
        self.files: list[_Staged] = []
        #: the directories this job's changes need fsynced
        self.dir_keys: set[DirKey] = set()

    def write_at(
        self,
        dir_fd: int,
        name: str,
        data: bytes,
        mode: int,
        uid: int | None,
        gid: int | None,
        xattrs: dict[str, bytes] | None = None,
        *,
        replace: bool = True,
    ) -> None:
        """`atomic_write_at`, batched: the file replaces `name` once the batch is durable.

        Errors of the write itself (a full disk, a bad owner) raise here;
        errors of its sync and rename fail the job after staging.
        """
        key, batch_fd = self._dirs.add(dir_fd)
        self.dir_keys.add(key)
        fd = write_temp_at(dir_fd, name, data, mode, uid, gid, xattrs)
        self.files.append(_Staged(batch_fd, name, fd, replace, key[0]))

    def sync_dir(self, dir_fd: int) -> None:
        """Have directory `dir_fd` fsynced once the batch's files are in place.

        For changes a job made itself to the directory's entries (a mkdir,
        an unlink): they are durable when the job completes.
        """
        self.dir_keys.add(self._dirs.add(dir_fd)[0])

    def install(self) -> None:
        """Close each (durable) temporary file and rename it over its target."""
        while self.files:
            f = self.files[0]
            os.close(f.fd)
            f.fd = -1
            install_temp_at(f.dir_fd, f.name, replace=f.replace)
            self.files.pop(0)

    def abandon(self) -> None:
        """Close and remove what is staged and not installed (the job failed)."""
        for f in self.files:
            if f.fd >= 0:
                os.close(f.fd)
            discard_temp_at(f.dir_fd, f.name)
        self.files.clear()


class _Job(Generic[T]):
    """One resource's apply: the function, its outcome, and who waits for it."""

    def __init__(self, fn: Callable[[Staging], T], future: asyncio.Future[T]) -> None:
        self.fn = fn
        self.future = future
        self.staging = Staging(_Dirs())
        self.result: T | None = None
        self.error: BaseException | None = None

    def fail(self, error: BaseException) -> None:
        """The job fails (its first error counts); nothing of it is installed any more."""
        if self.error is None:
            self.error = error
        self.staging.abandon()

    def resolve(self) -> None:
        """Hand the outcome to the awaiter (in the event loop's thread)."""
        if self.future.done():
            return
        if self.error is not None:
            self.future.set_exception(self.error)
        else:
            self.future.set_result(self.result)  # type: ignore[arg-type]


class DurableWrites:
    """Batches the durable writes of every apply in flight; see the module docstring."""

    def __init__(self, gather: float = GATHER) -> None:
        self._gather = gather
        self._queue: list[_Job[Any]] = []
        self._driver: asyncio.Task[None] | None = None
        # Every staged file holds an fd until the sync: stay well below the
        # process's limit, whatever else is open.
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self._cap = max(16, (soft if soft > 0 else 1024) // 4)
        #: batches written and jobs run so far (tests and metrics read them)
        self.batches = 0
        self.jobs = 0

    async def run(self, fn: Callable[[Staging], T]) -> T:
        """Run `fn` in the next batch; return once its writes are durable.

        `fn` runs in a thread, never on the event loop. A caller cancelled
        while its job is still queued drops the job (nothing was done); once
        the batch has taken it, the caller waits for the batch to end (a
        durable write is never cut in half) and then the cancellation goes on.
        """
        loop = asyncio.get_running_loop()
        job: _Job[T] = _Job(fn, loop.create_future())
        self._queue.append(job)
        if self._driver is None:
            self._driver = loop.create_task(self._drive(), name="pymgmt-durable-writes")
        try:
            return await asyncio.shield(job.future)
        except asyncio.CancelledError:
            if job in self._queue:
                self._queue.remove(job)
                job.future.cancel()
            else:
                await asyncio.wait({job.future})
                if not job.future.cancelled():
                    job.future.exception()  # retrieved: its caller is gone
            raise

    async def _drive(self) -> None:
        """Write batch after batch while jobs are queued."""
        try:
            while self._queue:
                await self._settle()
                jobs, self._queue = self._queue[: self._cap], self._queue[self._cap :]
                if jobs:  # (empty if every caller was cancelled meanwhile)
                    await self._write(jobs)
        finally:
            self._driver = None
            for job in self._queue:  # only at loop teardown: nobody may wait for ever
                job.future.cancel()
            self._queue.clear()

    async def _settle(self) -> None:
        """Let the applies under way join while each loop iteration adds some."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._gather
        seen = 0
        while len(self._queue) > seen and len(self._queue) < self._cap:
            if loop.time() >= deadline:
                return
            seen = len(self._queue)
            await asyncio.sleep(0)

    async def _write(self, jobs: list[_Job[Any]]) -> None:
        self.batches += 1
        self.jobs += len(jobs)
        work = asyncio.ensure_future(asyncio.to_thread(write_batch, jobs))
        try:
            await asyncio.wait({work})  # unlike awaiting it, a cancellation leaves it running
        finally:
            if not work.done():  # cancelled (loop teardown): the writes still finish
                await asyncio.wait({work})
            broken = None if work.cancelled() else work.exception()
            for job in jobs:
                if broken is not None:  # our bug: nobody may believe a write is durable
                    job.fail(broken)
                job.resolve()


def write_batch(jobs: list[_Job[Any]]) -> None:
    """Stage, sync, install and fsync the directories of `jobs` (in a thread)."""
    dirs = _Dirs()
    try:
        # One slice of the batch per thread (a future per job cost more than
        # some jobs: 10k files, issue 13).
        slices = [jobs[k::_STAGE_THREADS] for k in range(min(_STAGE_THREADS, len(jobs)))]
        if len(slices) > 1:
            with ThreadPoolExecutor(len(slices)) as pool:
                list(pool.map(lambda part: _stage_all(part, dirs), slices))
        else:
            _stage_all(jobs, dirs)
        _sync([j for j in jobs if j.error is None and j.staging.files], dirs)
        for job in jobs:
            if job.error is None:
                try:
                    job.staging.install()
                except OSError as e:
                    job.fail(e)
        _sync_dirs([j for j in jobs if j.error is None], dirs)
    finally:
        for job in jobs:
            job.staging.abandon()  # anything not installed
        dirs.close()


def _stage_all(jobs: list[_Job[Any]], dirs: _Dirs) -> None:
    """Run each job's function: it writes its temporary files, unsynced."""
    for job in jobs:
        job.staging = Staging(dirs)
        try:
            job.result = job.fn(job.staging)
        except Exception as e:
            job.fail(e)


def _sync(jobs: list[_Job[Any]], dirs: _Dirs) -> None:
    """Make every staged file durable; a job whose file's sync fails fails."""
    by_dev: dict[int, list[tuple[_Job[Any], int]]] = {}
    for job in jobs:
        for f in job.staging.files:
            by_dev.setdefault(f.dev, []).append((job, f.fd))
    for dev, group in by_dev.items():
        first = dirs.first[dev]
        if len(group) > 1 and _syncfs_ok(first):
            try:
                _syncfs(first)
                continue
            except OSError:
                pass  # an error somewhere on the filesystem: find whose, file by file
        _fsync_each(group)


def _fsync_each(group: list[tuple[_Job[Any], int]]) -> None:
    """fsync every file, from several threads: their commits merge."""
    errors: list[tuple[_Job[Any], OSError]] = []

    def one(item: tuple[_Job[Any], int]) -> None:
        try:
            os.fsync(item[1])
        except OSError as e:
            errors.append((item[0], e))

    if len(group) == 1:
        one(group[0])
    else:
        with ThreadPoolExecutor(min(_SYNC_THREADS, len(group))) as pool:
            list(pool.map(one, group))
    for job, e in errors:
        job.fail(e)


def _sync_dirs(jobs: list[_Job[Any]], dirs: _Dirs) -> None:
    """fsync each directory once; a failure fails every job that changed it."""
    for key, dfd in dirs.fds.items():
        try:
            os.fsync(dfd)
        except OSError as e:
            for job in jobs:
                if key in job.staging.dir_keys:
                    job.fail(e)


# -- syncfs(2) and statfs(2) through libc: Python binds neither ---------------------


def _load_libc() -> Any:
    if platform.machine() not in ("x86_64", "aarch64"):
        return None  # the statfs layout below is that of these two
    return ctypes.CDLL(None, use_errno=True)


_libc = _load_libc()
#: filesystem magic by st_dev, looked up once per device
_fs_magic: dict[int, int] = {}


def _syncfs_ok(fd: int) -> bool:
    """Whether one syncfs makes the files of `fd`'s filesystem durable."""
    if _libc is None:
        return False
    dev = os.fstat(fd).st_dev
    if dev not in _fs_magic:
        buf = (ctypes.c_long * 16)()  # struct statfs: f_type is its first word
        _fs_magic[dev] = buf[0] & 0xFFFFFFFF if _libc.fstatfs(fd, buf) == 0 else 0
    return _fs_magic[dev] in _SYNCFS_FS


def _syncfs(fd: int) -> None:
    if _libc.syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
