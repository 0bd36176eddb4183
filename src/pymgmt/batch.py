"""A batch of durable file writes made with one sync: the synchronous half of `pymgmt.durable`.

`pymgmt.durable` says why and how a batch is written (stage, sync,
install, directories). This module is the batch itself, with no event
loop and nothing heavier than `os` imported up front:
the engine runs it in a thread for every apply in flight, and the
one-shot fast path (`pymgmt.oneshot`) runs it directly, so both write
exactly alike.
"""

from __future__ import annotations

import _thread  # threading imports functools and collections: the fast path cannot afford them
import os

from .safepath import discard_temp_at, install_temp_at, write_temp_at

TYPE_CHECKING = False  # typing costs the fast path milliseconds
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

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
STAGE_THREADS = 4

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
        self._lock = _thread.allocate_lock()

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


#: the fewest jobs a batch may hold, whatever the descriptor limit (`batch_cap`)
SMALLEST_CAP = 16


def batch_cap() -> int:
    """The most jobs one batch may hold: every staged file keeps an fd open until
    the sync, so stay well below the process's limit, whatever else is open."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return max(SMALLEST_CAP, (soft if soft > 0 else 1024) // 4)


def raise_fd_limit(most: int = 1 << 16) -> None:
    """Raise the soft descriptor limit to the hard one (at most `most`), for bigger batches.

    The soft limit is 1,024 on most systems, for programs that still use
    select(); the hard one is far higher. With 1,024, `batch_cap` makes a
    100,000-file first apply 400 batches, each with its own syncs. Only
    for a process that starts no other program (the one-shot fast path
    with files only): a child would inherit the raised limit (systemd
    raises it for its services the same way, and lowers it again for
    their children).
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = most if hard == resource.RLIM_INFINITY else min(hard, most)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:  # noqa: SIM105 (contextlib costs the fast path ~5 ms)
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass  # a container's seccomp or limits: batches stay as they are


class Job:
    """One apply's writes: the function that stages them, and its outcome."""

    def __init__(self, fn: Callable[[Staging], Any]) -> None:
        self.fn = fn
        self.staging = Staging(_Dirs())
        self.result: Any = None
        self.error: BaseException | None = None

    def fail(self, error: BaseException) -> None:
        """The job fails (its first error counts); nothing of it is installed any more."""
        if self.error is None:
            self.error = error
        self.staging.abandon()


def write_batch(jobs: list[Job], threads: int = STAGE_THREADS) -> None:
    """Stage, sync, install and fsync the directories of `jobs` (in a thread).

    `threads`: how many threads stage the jobs (1: this one alone).
    """
    dirs = _Dirs()
    try:
        # One slice of the batch per thread (a future per job cost more than
        # some jobs: 10k files, issue 13).
        slices = [jobs[k::threads] for k in range(min(threads, len(jobs)))]
        if len(slices) > 1:
            from concurrent.futures import ThreadPoolExecutor

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


def _stage_all(jobs: list[Job], dirs: _Dirs) -> None:
    """Run each job's function: it writes its temporary files, unsynced."""
    for job in jobs:
        job.staging = Staging(dirs)
        try:
            job.result = job.fn(job.staging)
        except Exception as e:
            job.fail(e)


def _sync(jobs: list[Job], dirs: _Dirs) -> None:
    """Make every staged file durable; a job whose file's sync fails fails."""
    by_dev: dict[int, list[tuple[Job, int]]] = {}
    for job in jobs:
        for f in job.staging.files:
            by_dev.setdefault(f.dev, []).append((job, f.fd))
    for dev, group in by_dev.items():
        first = dirs.first[dev]
        # Even 10 files: one syncfs took 3-6 ms, their fsyncs from 10 threads
        # 12-13 ms (each flushes the disk cache; bench/sync_modes.py), more
        # than ctypes costs to import (3-5 ms).
        if len(group) > 1 and _syncfs_ok(first):
            try:
                _syncfs(first)
                continue
            except OSError:
                pass  # an error somewhere on the filesystem: find whose, file by file
        _fsync_each(group)


def _fsync_each(group: list[tuple[Job, int]]) -> None:
    """fsync every file, from several threads: their commits and flushes merge."""
    errors: list[tuple[Job, OSError]] = []
    todo = list(group)

    def worker() -> None:
        while todo:
            try:
                job, fd = todo.pop()  # atomic: the threads share the list
            except IndexError:
                return
            try:
                os.fsync(fd)
            except OSError as e:
                errors.append((job, e))

    _in_threads(worker, min(_SYNC_THREADS, len(group)))
    for job, e in errors:
        job.fail(e)


def _in_threads(fn: Callable[[], None], count: int) -> None:
    """Run `fn` in `count` threads, this one among them, and wait for them all.

    Bare `_thread`: concurrent.futures (logging, threading...) costs a
    small run more than its fsyncs.
    """
    done = []
    for _ in range(count - 1):
        lock = _thread.allocate_lock()
        lock.acquire()
        _thread.start_new_thread(_then_release, (fn, lock))
        done.append(lock)
    try:
        fn()
    finally:
        for lock in done:
            lock.acquire()


def _then_release(fn: Callable[[], None], lock: _thread.LockType) -> None:
    try:
        fn()
    finally:
        lock.release()


def _sync_dirs(jobs: list[Job], dirs: _Dirs) -> None:
    """fsync each directory once; a failure fails every job that changed it."""
    for key, dfd in dirs.fds.items():
        try:
            os.fsync(dfd)
        except OSError as e:
            for job in jobs:
                if key in job.staging.dir_keys:
                    job.fail(e)


# -- syncfs(2) and statfs(2) through libc: Python binds neither ---------------------


class _Libc:
    """The two libc functions a batch calls, bound through CPython's `_ctypes` alone.

    The `ctypes` package around it (struct, types, its own type classes)
    costs a small first apply 3-4 ms of CPU to import, a tenth of the run
    (issue 13); the C extension costs 1. The few classes below are what
    ``ctypes.CDLL(None, use_errno=True)``, ``c_int`` and ``c_long`` make of
    the same extension, declared here.
    """

    def __init__(self) -> None:
        import _ctypes

        ct: Any = _ctypes  # typeshed types it for the ctypes package's use only

        class Int(ct._SimpleCData):  # type: ignore[misc]  # ctypes.c_int
            _type_ = "i"

        class Long(ct._SimpleCData):  # type: ignore[misc]  # ctypes.c_long
            _type_ = "l"

        class Function(ct.CFuncPtr):  # type: ignore[misc]  # returns an int, keeps errno
            _flags_ = ct.FUNCFLAG_CDECL | ct.FUNCFLAG_USE_ERRNO
            _restype_ = Int

        class Process:  # what CFuncPtr asks of a library: its dlopen handle
            _handle = ct.dlopen(None, os.RTLD_NOW)

        class StatFs(ct.Array):  # type: ignore[misc]  # struct statfs, whose f_type is first
            _type_ = Long
            _length_ = 16  # 120 bytes on x86_64 and aarch64: room to spare

        self.syncfs: Callable[[int], int] = Function(("syncfs", Process))
        self.fstatfs: Callable[[int, Any], int] = Function(("fstatfs", Process))
        self.statfs_buffer: Callable[[], Any] = StatFs
        self.get_errno: Callable[[], int] = ct.get_errno


def _load_libc() -> _Libc | None:
    """libc's syncfs, bound at the first batch that could use it (None: not here)."""
    global _libc, _libc_loaded
    if not _libc_loaded:
        _libc_loaded = True
        if os.uname().machine in ("x86_64", "aarch64"):  # the statfs layout above
            try:  # noqa: SIM105 (contextlib costs the fast path ~5 ms)
                _libc = _Libc()
            except (ImportError, AttributeError, OSError):
                pass  # no ctypes, or no syncfs in this libc: an fsync per file
    return _libc


_libc: _Libc | None = None
_libc_loaded = False
#: filesystem magic by st_dev, looked up once per device
_fs_magic: dict[int, int] = {}


def _syncfs_ok(fd: int) -> bool:
    """Whether one syncfs makes the files of `fd`'s filesystem durable."""
    libc = _load_libc()
    if libc is None:
        return False
    dev = os.fstat(fd).st_dev
    if dev not in _fs_magic:
        buf = libc.statfs_buffer()
        _fs_magic[dev] = buf[0] & 0xFFFFFFFF if libc.fstatfs(fd, buf) == 0 else 0
    return _fs_magic[dev] in _SYNCFS_FS


def _syncfs(fd: int) -> None:
    libc = _load_libc()
    assert libc is not None  # _syncfs_ok said yes
    if libc.syncfs(fd) != 0:
        err = libc.get_errno()
        raise OSError(err, os.strerror(err))
