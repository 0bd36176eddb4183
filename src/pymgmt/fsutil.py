"""Durable filesystem writes shared by resources and the engine's own state.

`atomic_write` is the one way pymgmt replaces a file: a temporary file in the
same directory is created with the final mode (and owner) before its first
byte, written, fsynced, renamed over the target, and the directory fsynced.
Readers and crashes see the old content or the new, never a partial or
empty file. The temporary name is fixed per target, so a leftover from a
crash is simply replaced by the next write.
"""

from __future__ import annotations

import contextlib
import os


def atomic_write(path: str, data: bytes, mode: int, uid: int | None, gid: int | None) -> None:
    """Replace `path` with `data` so that readers and crashes see old or new only."""
    directory, base = os.path.split(path)
    tmp = os.path.join(directory, f".{base}.pymgmt-tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(tmp, flags, mode & 0o777)
    except FileExistsError:  # left over by a crash: ours to replace
        os.unlink(tmp)
        fd = os.open(tmp, flags, mode & 0o777)
    try:
        if uid is not None or gid is not None:
            os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        os.fchmod(fd, mode)  # exact bits, umask ignored, before the first byte
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(directory)


def remove_durably(path: str) -> None:
    """Unlink `path` (if present) and fsync its directory."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fsync_dir(os.path.dirname(path))


def fsync_dir(directory: str) -> None:
    dfd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
