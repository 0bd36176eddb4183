"""Whether a file is as wanted, and making it so: one rule for the file resource and the fast path.

`File.check` asks `matches` before it works out what would change, and
the one-shot fast path (`pymgmt.oneshot`) asks it of every file of a
graph before the rest of pymgmt is even imported. Both must call the same
file converged, so the rule lives here once, with nothing but `os`,
`stat` and `pwd` imported (`grp` when a group is named). The same goes
for making a file as wanted (`apply_at`): `File.apply` runs it in the
engine's batch of durable writes, and the fast path in its own batch
(`pymgmt.batch`).
"""

from __future__ import annotations

import os
import pwd
import stat

from ..safepath import lstat_at, open_node, read_xattrs, same_content

TYPE_CHECKING = False  # typing costs the fast path milliseconds
if TYPE_CHECKING:
    from ..batch import Staging


def matches(
    fd: int,
    st: os.stat_result,
    *,
    is_dir: bool,
    want: bytes | None,
    mode: int | None,
    uid: int | None,
    gid: int | None,
) -> bool:
    """Whether the file open as `fd` (its fstat `st`) is exactly as wanted.

    The type first (a directory for a path ending in ``/``, else a regular
    file), then mode, owner and group, then the content, cheapest first. A
    wanted value of None is not managed and always matches.
    """
    if is_dir != stat.S_ISDIR(st.st_mode) or not (is_dir or stat.S_ISREG(st.st_mode)):
        return False
    if mode is not None and stat.S_IMODE(st.st_mode) != mode:
        return False
    if (uid is not None and st.st_uid != uid) or (gid is not None and st.st_gid != gid):
        return False
    return want is None or (st.st_size == len(want) and same_content(fd, want))


def uid_of(owner: str) -> int:
    """The uid of a user name or number; KeyError if there is no such user."""
    return int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid


def gid_of(group: str) -> int:
    """The gid of a group name or number; KeyError if there is no such group."""
    if group.isdigit():
        return int(group)
    import grp  # a shared library to load: only for a graph that names a group

    return grp.getgrnam(group).gr_gid


# -- making it so ------------------------------------------------------------------


class FileStateError(Exception):
    """A file cannot be made as wanted (a symlink in its place...): the message says why.

    `File` raises it again as a ResourceError; the fast path hands such a
    file to the full run, which reports it.
    """


class Wanted:
    """A file's wanted state with owner and group resolved: what `apply_at` makes."""

    __slots__ = ("absent", "content", "gid", "is_dir", "mode", "path", "uid")

    def __init__(
        self,
        path: str,
        *,
        is_dir: bool,
        absent: bool,
        content: bytes | None,
        mode: int | None,
        uid: int | None,
        gid: int | None,
    ) -> None:
        self.path = path
        self.is_dir = is_dir
        self.absent = absent
        self.content = content
        self.mode = mode
        self.uid = uid
        self.gid = gid


def apply_at(w: Wanted, dfd: int, name: str, fields: frozenset[str], staging: Staging) -> None:
    """Make `name` in directory `dfd` as `w` wants, for the changed `fields`.

    Content goes through `staging` (a temporary file with its final mode
    and owner from the first byte, renamed into place once durable); a
    mkdir or an unlink has its directory fsynced by the batch.
    """
    if w.absent:
        _remove(w, dfd, name, staging)
    elif w.is_dir:
        _apply_dir(w, dfd, name, fields, staging)
    elif "content" in fields or "state" in fields:
        _write(w, dfd, name, staging, created="state" in fields)
    else:
        _apply_meta(w, dfd, name)


def _remove(w: Wanted, dfd: int, name: str, staging: Staging) -> None:
    try:
        if w.is_dir:
            os.rmdir(name, dir_fd=dfd)  # refuses a non-empty directory, on purpose
        else:
            os.unlink(name, dir_fd=dfd)  # a symlink here is removed, never followed
    except FileNotFoundError:
        return
    staging.sync_dir(dfd)


def _apply_dir(w: Wanted, dfd: int, name: str, fields: frozenset[str], staging: Staging) -> None:
    mode = w.mode
    if "state" in fields:
        mode = 0o755 if mode is None else mode
        os.mkdir(name, mode & 0o777, dir_fd=dfd)
        staging.sync_dir(dfd)
    _apply_meta(w, dfd, name, mode)


def _apply_meta(w: Wanted, dfd: int, name: str, mode: int | None = None) -> None:
    """Owner and mode, set on the opened node: a symlink is never followed.

    Then the node is fsynced: a change is reported only once it is on disk,
    and a chmod or chown alone would otherwise sit in the page cache (a crash
    right after a "repaired" mode would bring the drifted one back).
    """
    mode = w.mode if mode is None else mode
    fd = open_at(dfd, name, w.path)
    if fd is None:
        raise FileStateError(f"{w.path} disappeared while being changed")
    try:
        changed = False
        if w.uid is not None or w.gid is not None:
            os.fchown(fd, -1 if w.uid is None else w.uid, -1 if w.gid is None else w.gid)
            changed = True
        if mode is not None:
            os.fchmod(fd, mode)  # exact bits (a new directory's mkdir obeyed the umask)
            changed = True
        if changed:
            os.fsync(fd)
    finally:
        os.close(fd)


def _write(w: Wanted, dfd: int, name: str, staging: Staging, *, created: bool) -> None:
    """Replace the content; what is not managed (owner, mode, xattrs) is kept.

    `created`: the file was absent when checked, so there is nothing to keep,
    and it is not looked up again (a lookup in a large directory is a tenth
    of a first apply's time). One that appeared since is replaced as one that
    appears after the lookup would be.
    """
    old = None if created else open_at(dfd, name, w.path)
    uid, gid, mode = w.uid, w.gid, w.mode
    xattrs: dict[str, bytes] = {}
    if old is not None:
        try:
            st = os.fstat(old)
            if not stat.S_ISREG(st.st_mode):
                raise FileStateError(f"{w.path} exists and is {what(st)}")
            uid = st.st_uid if uid is None else uid
            gid = st.st_gid if gid is None else gid
            mode = stat.S_IMODE(st.st_mode) if mode is None else mode
            xattrs = read_xattrs(old)
        finally:
            os.close(old)
    if mode is None:
        mode = 0o644 & ~_umask()
    staging.write_at(dfd, name, w.content or b"", mode, uid, gid, xattrs)


def open_at(dfd: int, name: str, path: str) -> int | None:
    """`open_node`, with a clear error for what cannot be opened (a symlink...)."""
    try:
        return open_node(dfd, name)
    except OSError as e:
        st = lstat_at(dfd, name)
        if st is None:
            return None  # removed meanwhile
        if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
            # a real error (EACCES...), not a wrong kind of file
            raise OSError(e.errno, e.strerror, path) from None
    raise FileStateError(f"{path} exists and is {what(st)}")


def what(st: os.stat_result) -> str:
    """What a node that is neither the file nor the directory wanted is, in words."""
    if stat.S_ISLNK(st.st_mode):
        return "a symlink (never followed: manage its target's path instead)"
    if stat.S_ISDIR(st.st_mode):
        return "a directory"
    return "not a regular file"


def _umask() -> int:
    # os.umask can only be read by setting it; do it once per process.
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


_UMASK: int | None = None
