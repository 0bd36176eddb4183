"""Walking paths without trusting their names, reading what they lead to, writing temporary files.

The core of `pymgmt.fsutil` (whose docstring says why every path is
walked this way), kept apart with nothing but `os`, `stat` and `errno`:
the one-shot fast path (pymgmt.oneshot) checks files with these same
functions before the rest of pymgmt is imported, and a check there must
walk exactly as the file resource's own check does. `fsutil` re-exports
every name, so the rest of the code base keeps importing them from there.
"""

from __future__ import annotations

import errno
import os
import stat

TYPE_CHECKING = False  # typing costs the fast path milliseconds it does not have
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .fsutil import UnsafePathError

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Opening the final component: never follow a symlink, never block on a FIFO,
#: never acquire a controlling terminal.
_NODE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
#: The kernel's own limit on symlinks followed in one lookup.
_MAX_LINKS = 40


def _trusted_uids() -> frozenset[int]:
    return frozenset({0, os.geteuid()})


def walk(path: str, create: int | None = None) -> int:
    """An ``O_PATH`` fd of directory `path`, walked one component at a time.

    What `fsutil.open_dir` does when its one-syscall fast path cannot:
    follow only the symlinks root (or this user) owns, name the component
    that is missing or refused, and with `create` make missing directories
    on the way. Callers that cannot afford fsutil's imports (the one-shot
    fast path, pymgmt.oneshot) call it directly.
    """
    trusted = _trusted_uids()
    todo = [p for p in reversed(path.split("/")) if p and p != "."]
    shown: list[str] = []  # the path walked so far, for messages
    links = 0
    fd = os.open("/", _DIR_FLAGS)
    try:
        while todo:
            name = todo.pop()
            try:
                nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except NotADirectoryError:
                target = _symlink_target(fd, name, "/" + "/".join([*shown, name]), trusted)
                links += 1
                if links > _MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path) from None
                todo.extend(p for p in reversed(target.split("/")) if p and p != ".")
                if target.startswith("/"):
                    os.close(fd)
                    fd = os.open("/", _DIR_FLAGS)
                    shown = []
                continue
            except FileNotFoundError:
                where = "/" + "/".join([*shown, name])
                if create is None or name == "..":
                    raise FileNotFoundError(
                        errno.ENOENT, os.strerror(errno.ENOENT), where
                    ) from None
                try:  # noqa: SIM105 (contextlib costs the fast path ~5 ms)
                    os.mkdir(name, create, dir_fd=fd)
                except FileExistsError:
                    pass  # made meanwhile: walk it the same
                todo.append(name)
                continue
            os.close(fd)
            fd = nfd
            if name == "..":
                if shown:
                    shown.pop()
            else:
                shown.append(name)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _symlink_target(dir_fd: int, name: str, where: str, trusted: frozenset[int]) -> str:
    """The target of symlink `name` if its owner is trusted; else refuse.

    The link is opened itself (``O_PATH | O_NOFOLLOW``) and its owner and
    target are read from that one fd, so they belong to the same inode.
    """
    try:
        lfd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), where) from None
    try:
        st = os.fstat(lfd)
        if stat.S_ISDIR(st.st_mode):
            # A directory replaced the entry between the two opens: walk it.
            return name
        if not stat.S_ISLNK(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), where)
        if st.st_uid not in trusted:
            raise _unsafe(
                f"refusing to follow {where}: it is a symlink owned by uid {st.st_uid}, "
                "and only symlinks owned by root are followed (another user could "
                "point it anywhere)"
            )
        return os.readlink("", dir_fd=lfd)
    finally:
        os.close(lfd)


def split(path: str) -> tuple[str, str]:
    """(parent directory, final component) of an absolute, normalised path.

    ``/`` itself is ``("/", ".")``: the root, opened relative to itself.
    """
    parent, name = os.path.split(path.rstrip("/") or "/")
    return parent or "/", name or "."


class Parents:
    """The directory fds of many files' parents, each directory walked once.

    Checking thousands of files one safe walk each costs a walk per file;
    files share few directories, so this keeps one fd per directory for as
    long as the `with` block lasts and closes them all at its end. A
    directory that is missing (or is not a directory) is remembered as None:
    no file can be in it. `opener` walks a directory safely: `walk` here,
    or `fsutil.open_dir` (the same walk with a one-syscall fast path).
    """

    def __init__(self, opener: Callable[[str], int] = walk) -> None:
        self._open = opener
        self._fds: dict[str, int | None] = {}

    def __enter__(self) -> Parents:
        return self

    def __exit__(self, *exc: object) -> None:
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            if fd is not None:
                os.close(fd)

    def of(self, path: str) -> tuple[int | None, str]:
        """(fd of `path`'s directory or None if it is missing, `path`'s final name)."""
        parent, name = split(path)
        if parent not in self._fds:
            try:
                self._fds[parent] = self._open(parent)
            except (FileNotFoundError, NotADirectoryError):
                self._fds[parent] = None
        return self._fds[parent], name

    def missing(self, directory: str) -> bool:
        """Whether `directory` was looked up and found missing."""
        return directory in self._fds and self._fds[directory] is None


def open_node(dir_fd: int, name: str) -> int | None:
    """Open `name` in `dir_fd` read-only, never following a symlink; None if absent.

    A symlink (ELOOP), a socket (ENXIO) or anything else that cannot be
    opened raises OSError; `lstat_at` tells the caller what it is.
    """
    try:
        return os.open(name, _NODE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    """lstat of `name` in `dir_fd`; None if absent."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def read_fd(fd: int) -> bytes:
    """All of an open file's content, from its start."""
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def read_regular(
    path: str,
    *,
    limit: int,
    dir_fd: int | None = None,
    follow: bool = True,
    accept: Callable[[os.stat_result], bool] | None = None,
) -> bytes | None:
    """A regular file's bytes; None if it is absent, unreadable, not a regular
    file, larger than `limit`, or its fstat fails `accept` (an owner check).

    `follow` False: a symlink at `path` is never followed (it is refused).
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        if accept is not None and not accept(st):
            return None
        return read_fd(fd)
    except OSError:
        return None
    finally:
        os.close(fd)


def same_content(fd: int, want: bytes) -> bool:
    """Whether an open file holds exactly `want` (compared chunk by chunk)."""
    view = memoryview(want)
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        if view[offset : offset + len(chunk)] != chunk:
            return False
        offset += len(chunk)
    return offset == len(want)


#: Extended attributes a rewrite does not carry over: they vouch for the old
#: bytes, not for the new ones. The kernel itself drops file capabilities
#: when a file's content is written (privileges granted to one program are
#: never inherited by different content), and IMA/EVM hashes and signatures
#: of old content would be wrong (the kernel refuses to set most of them).
_XATTR_DROPPED = frozenset({"security.capability", "security.ima", "security.evm"})


def read_xattrs(fd: int) -> dict[str, bytes]:
    """The extended attributes a rewrite should carry over (ACLs included)."""
    out: dict[str, bytes] = {}
    try:
        names = os.listxattr(fd)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return out
        raise
    for name in names:
        if name in _XATTR_DROPPED:
            continue
        try:
            out[name] = os.getxattr(fd, name)
        except FileNotFoundError:  # ENODATA: removed meanwhile
            continue
    return out


def write_temp_at(
    dir_fd: int,
    name: str,
    data: bytes | list[bytes],
    mode: int,
    uid: int | None,
    gid: int | None,
    xattrs: dict[str, bytes] | None = None,
) -> int:
    """Write `data` (or its pieces, in order) to `name`'s temporary file; its open fd, unsynced.

    Owner, extended attributes and then the exact mode are set on the
    temporary file before its first byte (the ACL goes before the mode, since
    setting the mode also sets the ACL mask). A leftover temporary file of a
    crash, or anything else squatting on its name, is unlinked (never
    followed) and the create retried once. On failure nothing is left
    behind. The caller makes the file durable (fsync, or a ``syncfs`` of
    its filesystem), closes the fd and calls `install_temp_at`.
    """
    tmp = temp_name(name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(tmp, flags, mode & 0o777, dir_fd=dir_fd)
    except FileExistsError:
        os.unlink(tmp, dir_fd=dir_fd)
        fd = os.open(tmp, flags, mode & 0o777, dir_fd=dir_fd)
    try:
        if uid is not None or gid is not None:
            os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        for key, value in (xattrs or {}).items():
            os.setxattr(fd, key, value)
        os.fchmod(fd, mode)  # exact bits, umask ignored, before the first byte
        for piece in [data] if isinstance(data, bytes) else data:
            view = memoryview(piece)
            while view:
                view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        os.unlink(tmp, dir_fd=dir_fd)
        raise
    return fd


def install_temp_at(dir_fd: int, name: str, *, replace: bool = True) -> None:
    """Move the (already durable) temporary file of `name` into place.

    With `replace` False an existing `name` (whatever it is, made even a
    moment ago) is kept: FileExistsError, and the temporary file is removed.
    The directory still needs an fsync for the new name to be durable.
    """
    tmp = temp_name(name)
    if replace:
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return
    try:  # a hard link is made only where nothing is: no check-then-write race
        os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    finally:
        os.unlink(tmp, dir_fd=dir_fd)


def discard_temp_at(dir_fd: int, name: str) -> None:
    """Remove the temporary file of `name`, if it is there (never following it)."""
    try:  # noqa: SIM105 (contextlib costs the fast path ~5 ms)
        os.unlink(temp_name(name), dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def temp_name(name: str) -> str:
    """The temporary file name used to write `name`: one per target, always short.

    Deriving it by appending to `name` (``.name.pymgmt-tmp``) made names of
    244 to 255 bytes, valid targets, impossible to write (ENAMETOOLONG).
    """
    return ".pymgmt-tmp-" + sha256_hex(os.fsencode(name))[:16]


def sha256_hex(data: bytes) -> str:
    """SHA-256 of `data`, in hex, from CPython's own module: hashlib would first
    load OpenSSL (6 ms of the fast path) for the very same digest."""
    global _sha256
    if _sha256 is None:  # looked up once: an import statement per call was 4 % of a 10k first apply
        _sha256 = _load_sha256()
    return str(_sha256(data).hexdigest())


def _load_sha256() -> Callable[[bytes], Any]:
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]  # Python 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # type: ignore[import-not-found]  # 3.12+
        except ImportError:
            from hashlib import sha256
    return sha256  # type: ignore[no-any-return]


_sha256: Callable[[bytes], Any] | None = None


def fsync_dir_fd(dir_fd: int) -> None:
    """fsync a directory given any fd of it (an ``O_PATH`` fd cannot be fsynced)."""
    rfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.fsync(rfd)
    finally:
        os.close(rfd)


def _unsafe(message: str) -> UnsafePathError:
    """fsutil's `UnsafePathError` (a ResourceError), imported only when a symlink is refused."""
    from .fsutil import UnsafePathError

    return UnsafePathError(message)
