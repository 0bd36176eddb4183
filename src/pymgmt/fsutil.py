"""Safe path walking and durable writes, shared by resources and the engine.

The agent runs as root, and the paths it manages may lie under directories
that other users control (``/home/alice/.config/app.conf``). Any operation
by path name follows symlinks in every component, so a user who replaces
``/home/alice/.config`` with a symlink to ``/root/.ssh`` would make a plain
``open(path, "w")`` write as root wherever the link points (issue 8, item
13). So nothing here trusts a path string:

* `open_dir` walks a directory path from ``/`` one component at a time with
  ``openat(parent_fd, component, O_PATH | O_NOFOLLOW | O_DIRECTORY)``. A
  component that is a symlink is followed only when its owner is root or the
  agent's own user: only they could have made it, and only they can change
  where it points (it is the kernel's ``protected_symlinks`` idea, applied to
  every directory and not just sticky ones). Any other symlink is refused
  with `UnsafePathError` naming the component. Symlink ownership and target
  are read from the link's own fd, so a link swapped in between cannot slip
  through. (A user cannot move root's symlinks into a directory of theirs
  either: renaming needs write access to the link's own directory, and
  ``fs.protected_hardlinks``, on by default, forbids hard-linking them.)
  Directories are not refused for their owner: a managed file under a
  user's home is legitimate, and without symlinks a user can only steer the
  write into directories that user already controls.
* Everything after that is relative to the directory fd: `open_node` opens the
  final component with ``O_NOFOLLOW`` (a symlink there is never followed),
  and callers ``fstat``, ``fchmod``, ``fchown`` and read that fd, so the thing
  checked is the thing changed.
* `atomic_write_at` creates a temporary file in the directory fd with the
  final mode (and owner) before its first byte, copies the old file's
  extended attributes (ACLs included), writes, fsyncs, renames it over the
  target within the same directory fd, and fsyncs the directory. Readers and
  crashes see the old content or the new, never a partial or empty file. The
  temporary name is fixed per target, so a leftover from a crash is simply
  replaced by the next write; it has a fixed length (a hash of the target's
  name), so a target whose name is already at the 255-byte limit can still be
  written. Its two halves, `write_temp_at` and `install_temp_at`, let
  `pymgmt.durable` make a whole batch of files durable with one sync.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
from collections.abc import Callable, Iterator

from .errors import ResourceError
from .safepath import (
    discard_temp_at,
    fsync_dir_fd,
    install_temp_at,
    lstat_at,
    open_node,
    read_fd,
    read_xattrs,
    same_content,
    split,
    temp_name,
    walk,
    write_temp_at,
)


class UnsafePathError(ResourceError):
    """A path leads through a symlink that someone other than root could have made."""


def open_dir(path: str, *, create: int | None = None) -> int:
    """An ``O_PATH`` fd of directory `path`, walked from ``/`` without trusting names.

    Raises FileNotFoundError or NotADirectoryError (naming the component that
    is missing or is not a directory) and `UnsafePathError` for a symlink not
    owned by root (or by the agent's own user). The caller closes the fd.

    With `create` (a mode), missing components are made on the way with that
    mode (``mkdirat`` in the fd walked so far, the way ``mkdir -p`` would but
    never through a symlink it does not trust): the agent's own directories
    (its state directory) are created this way.
    """
    if not path.startswith("/"):
        raise ValueError(f"not an absolute path: {path!r}")
    if _openat2 is not None:
        # Fast path, one syscall: succeeds only if no component is a symlink.
        # Anything else (a symlink, a missing component) takes the walk,
        # which follows trusted symlinks and names the failing component.
        with contextlib.suppress(OSError):
            return _openat2(path)
    return walk(path, create)


def _load_openat2() -> Callable[[str], int] | None:
    """``openat2(path, O_PATH|O_DIRECTORY, RESOLVE_NO_SYMLINKS)`` where available.

    Python has no binding; the syscall number is the same (437) on x86_64
    and aarch64, and the call is used only there. A kernel older than 5.6 or
    a seccomp filter refusing it (ENOSYS, EPERM) turns the fast path off.
    """
    if os.uname().machine not in ("x86_64", "aarch64"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    syscall = libc.syscall
    syscall.restype = ctypes.c_long

    class OpenHow(ctypes.Structure):
        _fields_ = [
            ("flags", ctypes.c_uint64),
            ("mode", ctypes.c_uint64),
            ("resolve", ctypes.c_uint64),
        ]

    how = OpenHow(os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, 0, 0x04)  # RESOLVE_NO_SYMLINKS
    how_ref, how_size = ctypes.byref(how), ctypes.sizeof(how)
    at_fdcwd = ctypes.c_long(-100)
    state = {"on": True}

    def openat2(path: str) -> int:
        if not state["on"]:
            raise OSError(errno.ENOSYS, "openat2 is off")
        fd = syscall(437, at_fdcwd, os.fsencode(path), how_ref, how_size)
        if fd < 0:
            err = ctypes.get_errno()
            if err in (errno.ENOSYS, errno.EPERM):
                state["on"] = False
            raise OSError(err, os.strerror(err), path)
        return int(fd)

    return openat2


_openat2 = _load_openat2()


def open_dir_in(root: str, path: str, *, create: int | None = None) -> int:
    """`open_dir` of absolute `path` as seen inside `root` (another system's ``/``).

    `root` ``/`` is plain `open_dir`. Any other root is opened as given,
    following what it is (``/proc/PID/root`` of a container is a magic
    link the kernel resolves into the container's tree): it is the
    operator's choice, like the bus address that goes with it. Below it no
    symlink is followed at all, since one inside that tree would be
    resolved against this host's ``/``, not the container's; missing
    components are made with `create` when given.
    """
    if root == "/":
        return open_dir(path, create=create)
    below = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in (p for p in path.split("/") if p and p != "."):
            where = f"{root.rstrip('/')}{path}"
            if name == "..":
                raise UnsafePathError(f"refusing '..' in {where}")
            try:
                nfd = os.open(name, below, dir_fd=fd)
            except FileNotFoundError:
                if create is None:
                    raise FileNotFoundError(
                        errno.ENOENT, os.strerror(errno.ENOENT), where
                    ) from None
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, create, dir_fd=fd)
                nfd = os.open(name, below, dir_fd=fd)
            except NotADirectoryError:
                raise UnsafePathError(
                    f"refusing {where}: {name!r} is a symlink or not a directory (below "
                    f"{root} no symlink is followed)"
                ) from None
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def opened_dir(path: str, *, create: int | None = None) -> Iterator[int]:
    """`open_dir` as a context manager that closes the fd."""
    fd = open_dir(path, create=create)
    try:
        yield fd
    finally:
        os.close(fd)


def sha256_fd(fd: int) -> str:
    """The hex SHA-256 of an open file's content, read in 1 MiB chunks."""
    h = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        h.update(chunk)
        offset += len(chunk)
    return h.hexdigest()


def atomic_write_at(
    dir_fd: int,
    name: str,
    data: bytes | list[bytes],
    mode: int,
    uid: int | None,
    gid: int | None,
    xattrs: dict[str, bytes] | None = None,
    *,
    replace: bool = True,
) -> None:
    """Replace `name` in `dir_fd` with `data`: readers and crashes see old or new only.

    `data` may come as a list of pieces, written in order (a large cache
    encoded a piece at a time is never joined in memory).

    `write_temp_at`, fsync, `install_temp_at`, then an fsync of the
    directory. Many files at once are cheaper through `pymgmt.durable`,
    which does the same steps with one sync for the whole batch.
    """
    fd = write_temp_at(dir_fd, name, data, mode, uid, gid, xattrs)
    try:
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        discard_temp_at(dir_fd, name)
        raise
    os.close(fd)
    install_temp_at(dir_fd, name, replace=replace)
    fsync_dir_fd(dir_fd)


def atomic_write(
    path: str, data: bytes, mode: int, uid: int | None, gid: int | None, *, replace: bool = True
) -> None:
    """`atomic_write_at` by path: the parent directory is walked safely first."""
    parent, name = split(os.path.abspath(path))
    with opened_dir(parent) as dfd:
        atomic_write_at(dfd, name, data, mode, uid, gid, replace=replace)


def remove_durably(path: str) -> None:
    """Unlink `path` (if present, never following it) and fsync its directory."""
    parent, name = split(os.path.abspath(path))
    with opened_dir(parent) as dfd:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dfd)
        fsync_dir_fd(dfd)


def state_name(kind: str, name: str) -> str:
    """The file name of one resource's persistent state: readable and injective.

    A sanitised prefix of the name keeps ``ls`` readable; the hash of the
    exact kind and name makes the mapping one-to-one, so ``db/pw`` and
    ``db_pw`` (which sanitise alike) never share a directory or a secret.
    """
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:64]
    digest = hashlib.sha256(f"{kind}\0{name}".encode()).hexdigest()[:16]
    return f"{kind}-{safe}-{digest}"


#: the walking and reading functions live in safepath (lean imports for the
#: one-shot fast path); they are part of this module's interface too
__all__ = [
    "UnsafePathError",
    "atomic_write",
    "atomic_write_at",
    "discard_temp_at",
    "fsync_dir_fd",
    "install_temp_at",
    "lstat_at",
    "open_dir",
    "open_node",
    "opened_dir",
    "read_fd",
    "read_xattrs",
    "remove_durably",
    "same_content",
    "sha256_fd",
    "split",
    "state_name",
    "temp_name",
    "walk",
    "write_temp_at",
]
