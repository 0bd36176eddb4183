"""Whether a file is already as wanted: the one answer both file checks give.

`File.check` asks `matches` before it works out what would change, and
the one-shot fast path (`pymgmt.oneshot`) asks it of every file of a
graph before the rest of pymgmt is even imported. Both must call the same
file converged, so the rule lives here once, with nothing but `os`,
`stat`, `pwd` and `grp` imported.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat

from ..safepath import same_content


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
    return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
