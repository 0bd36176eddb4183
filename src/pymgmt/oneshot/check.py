"""Checking a plan's files: converged or not, without the engine.

Each file is judged by `resources.filestate.matches`, the rule
`File.check` applies first, after a walk of its directory by
`safepath.walk`, the walk `fsutil.open_dir` falls back to (it follows
only symlinks root or this user owns). A directory is walked once for all
the files in it. Anything but a clear "converged" (a missing file, an
unknown user, a symlink, an error) is "not converged": the full run then
checks that file again and says precisely what is wrong, or repairs it.
"""

from __future__ import annotations

import os

from ..resources.filestate import gid_of, matches, uid_of
from ..safepath import lstat_at, open_node, split, walk

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .plan import FileWant


def all_converged(files: list[FileWant]) -> bool:
    """Whether every file is exactly as wanted right now."""
    dirs: dict[str, int | None] = {}
    try:
        return all(_converged(f, dirs) for f in files)
    except Exception:  # a refused symlink, an unknown user...: the full check names it
        return False
    finally:
        for fd in dirs.values():
            if fd is not None:
                os.close(fd)


def _converged(f: FileWant, dirs: dict[str, int | None]) -> bool:
    path, is_dir, absent, want, mode, owner, group = f
    parent, name = split(path)
    if parent not in dirs:
        try:
            dirs[parent] = walk(parent)
        except (FileNotFoundError, NotADirectoryError):
            dirs[parent] = None  # no directory: no file either
    dfd = dirs[parent]
    if absent:
        return dfd is None or lstat_at(dfd, name) is None
    if dfd is None:
        return False
    fd = open_node(dfd, name)
    if fd is None:
        return False
    try:
        uid = None if owner is None else uid_of(owner)
        gid = None if group is None else gid_of(group)
        st = os.fstat(fd)
        return matches(fd, st, is_dir=is_dir, want=want, mode=mode, uid=uid, gid=gid)
    finally:
        os.close(fd)
