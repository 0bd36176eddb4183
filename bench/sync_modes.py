"""How to make a batch of N new files durable: one syncfs, or an fsync each from threads.

The basis of `pymgmt.batch.FSYNC_MAX` (issue 13): each round writes N
temporary files in a fresh directory (as a batch stages them), then times
only their sync, each way in turn (interleaved, round after round):

* ``syncfs``: one syncfs(2) of the filesystem (through ctypes);
* ``fsync-T``: an fsync of each file, from T threads (their flushes merge);
* ``serial``: an fsync of each file, one after another.

Usage: ``python bench/sync_modes.py [N [ROUNDS [WAYS]]]`` (default 10 30
syncfs,fsync-16,serial), in a directory on the filesystem to measure
(the current one).
"""

from __future__ import annotations

import _thread
import ctypes
import os
import shutil
import statistics
import sys
import time


def _fsync_threads(fds: list[int], threads: int) -> None:
    todo = list(fds)
    done = []

    def worker(lock: _thread.LockType) -> None:
        try:
            while todo:
                try:
                    fd = todo.pop()
                except IndexError:
                    return
                os.fsync(fd)
        finally:
            lock.release()

    for _ in range(min(threads, len(fds))):
        lock = _thread.allocate_lock()
        lock.acquire()
        _thread.start_new_thread(worker, (lock,))
        done.append(lock)
    for lock in done:
        lock.acquire()


def once(n: int, way: str, where: str) -> float:
    """Seconds the sync of `n` staged files took, done `way`."""
    libc = ctypes.CDLL(None, use_errno=True)
    shutil.rmtree(where, ignore_errors=True)
    os.mkdir(where)
    dfd = os.open(where, os.O_RDONLY | os.O_DIRECTORY)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    fds = [os.open(f".t{i}", flags, 0o644, dir_fd=dfd) for i in range(n)]
    for i, fd in enumerate(fds):
        os.write(fd, b"i am f%04d\n" % i)
    began = time.perf_counter()
    if way == "syncfs":
        libc.syncfs(dfd)
    elif way == "serial":
        for fd in fds:
            os.fsync(fd)
    else:
        _fsync_threads(fds, int(way.removeprefix("fsync-")))
    took = time.perf_counter() - began
    for fd in fds:
        os.close(fd)
    os.close(dfd)
    return took


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    ways = (sys.argv[3] if len(sys.argv) > 3 else "syncfs,fsync-16,serial").split(",")
    times: dict[str, list[float]] = {w: [] for w in ways}
    print(f"load average before: {os.getloadavg()}")
    for _ in range(rounds):
        for way in ways:
            times[way].append(once(n, way, f"sync-modes-{way}"))
    for way in ways:
        shutil.rmtree(f"sync-modes-{way}", ignore_errors=True)
        q = statistics.quantiles(times[way], n=4)
        print(
            f"{n} files, {way}: sync median {1000 * statistics.median(times[way]):.2f} ms "
            f"(quartiles {1000 * q[0]:.2f}-{1000 * q[2]:.2f})"
        )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
