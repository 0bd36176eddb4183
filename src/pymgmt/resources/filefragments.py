"""file `fragments`: a file's content built from other files, concatenated in order (mgmt's).

Kept apart from `file.py` (which only calls in here) so the file kind stays
one page. mgmt's rule, kept as is: a fragment is an absolute path; one that
ends in ``/`` is a directory, whose regular files, directly in it, are taken
in lexical (byte) order and subdirectories skipped (mgmt reads one level
only). A fragment without the ``/`` must be a regular file.

Every fragment is read the way the file resource reads its ``source``: its
directory is walked safely (`fsutil.open_dir`) and the file is opened
relative to it with ``O_NOFOLLOW``, so a symlink planted among the fragments
(say, by whoever may write to a fragment directory) is refused with an
error, never followed to a file only root may read. Anything else that is
not a regular file (a FIFO, a socket, a device) is refused too: reading
one could block or disclose.

Watched through the hub: a fragment file with `InotifyHub.subscribe`, a
fragment directory with `InotifyHub.subscribe_dir` (an entry created,
edited or removed in it). Those are changes of what is wanted, so the file
resource asks for them as a tick, never as drift.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator

from ..errors import ResourceError
from ..events.inotify import DirSubscription, InotifyHub, Subscription
from ..fsutil import lstat_at, open_dir, read_fd, split
from ..traits import UID, Want
from ..types import dots_problem, path_problem
from . import filestate

#: what `safepath.temp_name` calls the temporary file of a write in progress:
#: a managed fragment being rewritten must not lend its half-written copy
_TEMP_PREFIX = ".pymgmt-tmp-"


def problems(target: str, fragments: list[str]) -> list[tuple[str, str]]:
    """What is wrong with `fragments` for the file at `target` (field, message)."""
    if not fragments:
        return [("fragments", "give at least one fragment (or leave fragments unset)")]
    here = target.rstrip("/")
    for i, frag in enumerate(fragments):
        where = f"fragments[{i}]"
        bad = path_problem(frag)
        if bad:
            return [(where, bad)]
        plain = frag.rstrip("/")
        if dots_problem(frag) or "//" in frag:
            return [(where, f"must be a normalised path, got {frag!r}")]
        if plain == here:
            return [(where, "is the file itself")]
        if frag.endswith("/") and split(here)[0] == (plain or "/"):
            # mgmt's check: the file would be one of its own fragments
            return [(where, f"is the directory the file is in ({frag!r}): it would read itself")]
    return []


def wants(fragments: list[str]) -> Iterator[Want]:
    """AutoEdges: each managed fragment (file or directory) is made right first."""
    for frag in fragments:
        yield Want((UID("file", frag.rstrip("/") or "/"),))


def subscribe(
    hub: InotifyHub, fragments: list[str], tick: Callable[[], None]
) -> Callable[[], None]:
    """Watch every fragment (a directory's entries too); returns the unsubscribe."""
    files: list[Subscription] = []
    dirs: list[DirSubscription] = []
    try:
        for frag in fragments:
            if frag.endswith("/"):
                dirs.append(hub.subscribe_dir(frag.rstrip("/") or "/", tick))
            else:
                files.append(hub.subscribe(frag, tick))
    except BaseException:
        _unsubscribe(hub, files, dirs)
        raise
    return lambda: _unsubscribe(hub, files, dirs)


def _unsubscribe(hub: InotifyHub, files: list[Subscription], dirs: list[DirSubscription]) -> None:
    for sub in files:
        hub.unsubscribe(sub)
    for dsub in dirs:
        hub.unsubscribe_dir(dsub)


def read(fragments: list[str]) -> bytes:
    """The wanted content: every fragment's bytes, in order (blocking: call it off the loop).

    Raises ResourceError naming the fragment that is missing, refused or
    unreadable; nothing is written then.
    """
    parts: list[bytes] = []
    for frag in fragments:
        if frag.endswith("/"):
            parts.extend(_read_dir(frag.rstrip("/") or "/"))
        else:
            parent, name = split(frag)
            parts.append(_read_in(parent, name, frag, missing_ok=False) or b"")
    return b"".join(parts)


def _read_dir(path: str) -> Iterator[bytes]:
    """The regular files directly in directory `path`, in byte order of their names."""
    try:
        dfd = open_dir(path)
    except (FileNotFoundError, NotADirectoryError) as e:
        raise ResourceError(
            f"fragment directory {path}/ does not exist "
            f"({e.filename} is missing or not a directory)"
        ) from None
    try:
        rfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dfd)
        try:
            names = sorted(os.listdir(rfd), key=os.fsencode)
        finally:
            os.close(rfd)
        for name in names:
            if name.startswith(_TEMP_PREFIX):
                continue
            st = lstat_at(dfd, name)
            if st is None or stat.S_ISDIR(st.st_mode):
                continue  # removed meanwhile (its event follows), or one level deeper
            data = _open_read(dfd, name, f"{path.rstrip('/')}/{name}", missing_ok=True)
            if data is not None:
                yield data
    finally:
        os.close(dfd)


def _read_in(parent: str, name: str, path: str, *, missing_ok: bool) -> bytes | None:
    try:
        dfd = open_dir(parent)
    except (FileNotFoundError, NotADirectoryError):
        raise ResourceError(f"fragment {path} does not exist") from None
    try:
        return _open_read(dfd, name, path, missing_ok=missing_ok)
    finally:
        os.close(dfd)


def _open_read(dfd: int, name: str, path: str, *, missing_ok: bool) -> bytes | None:
    """A regular file's bytes, opened without following it; None if gone and `missing_ok`."""
    try:
        fd = filestate.open_at(dfd, name, path)
    except filestate.FileStateError as e:
        raise ResourceError(f"fragment {e}") from None
    if fd is None:
        if missing_ok:
            return None
        raise ResourceError(f"fragment {path} does not exist")
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ResourceError(
                f"fragment {path} is a directory: end it with '/' to take the files in it"
            )
        if not stat.S_ISREG(st.st_mode):
            raise ResourceError(f"fragment {path} is {filestate.what(st)}, not a regular file")
        return read_fd(fd)
    finally:
        os.close(fd)
