"""Reading a graph file: a regular file of bounded size, or a clear InputError.

A graph path is input too. ``/dev/zero`` once made ``pymgmt validate`` read
until memory ran out, and a FIFO or ``/dev/urandom`` blocked it for ever
(issue 8, fuzzing). So the file is opened without blocking (a FIFO opens at
once with ``O_NONBLOCK``), the opened descriptor is checked to be a regular
file, and at most `MAX_GRAPH_BYTES` are read. A symlink to a regular file is
fine: graph files are often linked into place.
"""

from __future__ import annotations

import os
import stat

from ..errors import InputError, Location

#: The largest graph file read: 64 MiB (README "Limits"). Room for large
#: inline content (a test writes 20 MB of it) and some 500k resources; a node
#: tree of tiny scalars takes about 50 times its file's size in memory.
MAX_GRAPH_BYTES = 64 << 20

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def read_graph_file(path: str, limit: int = MAX_GRAPH_BYTES) -> bytes:
    """The file's bytes; InputError for a non-regular file or one over `limit` bytes."""
    where = Location(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise InputError(f"cannot read the graph file: {e.strerror}", location=where) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
            raise InputError(
                f"the graph file must be a regular file, and this is {kind}", location=where
            )
        if st.st_size > limit:
            raise _too_big(where, limit)
        chunks: list[bytes] = []
        size = 0
        # Read to the end, not to st_size: the file may grow; stop past the limit.
        while chunk := os.read(fd, min(1 << 20, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise _too_big(where, limit)
        return b"".join(chunks)
    except OSError as e:
        raise InputError(f"cannot read the graph file: {e.strerror}", location=where) from None
    finally:
        os.close(fd)


def _too_big(where: Location, limit: int) -> InputError:
    return InputError(
        f"the graph file is larger than {limit >> 20} MiB, the most pymgmt reads",
        location=where,
        hint="split the graph, or check that this is the file you meant",
    )
