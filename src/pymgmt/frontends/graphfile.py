"""Reading a graph file: a regular file of bounded size, or a clear InputError.

A graph path is input too. ``/dev/zero`` once made ``pymgmt validate`` read
until memory ran out, and a FIFO or ``/dev/urandom`` blocked it for ever
(issue 8, fuzzing). So the file is opened without blocking (a FIFO opens at
once with ``O_NONBLOCK``), the opened descriptor is checked to be a regular
file, and at most `MAX_GRAPH_BYTES` are read. A symlink to a regular file is
fine: graph files are often linked into place.

``-`` reads the graph from standard input (``generate-graph | pymgmt
validate -``), bounded the same way; its errors name it ``<stdin>``.

A file that cannot be read at all is a `GraphFileError`: the command line
named the wrong thing, which is not the same as an invalid graph, and is
reported as such ("no such file", "is a directory").
"""

from __future__ import annotations

import errno
import os
import stat
import sys

from ..errors import InputError, Location

#: The largest graph file read: 64 MiB (README "Limits"). Room for large
#: inline content (a test writes 20 MB of it) and some 500k resources; a node
#: tree of tiny scalars takes about 50 times its file's size in memory.
MAX_GRAPH_BYTES = 64 << 20
#: the path that means standard input, and the name its errors carry
STDIN = "-"
STDIN_NAME = "<stdin>"

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class GraphFileError(InputError):
    """The graph file cannot be read at all: missing, a directory, unreadable, too big."""


def source_name(path: str) -> str:
    """What errors call the graph at `path`: the path, or ``<stdin>`` for ``-``."""
    return STDIN_NAME if path == STDIN else path


def read_graph_file(path: str, limit: int = MAX_GRAPH_BYTES) -> bytes:
    """The file's bytes (``-``: standard input's); GraphFileError if it cannot be read."""
    if path == STDIN:
        return _read_stdin(limit)
    where = Location(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise _unreadable(e, where) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
            raise GraphFileError(
                f"the graph file must be a regular file, and this is {kind}", location=where
            )
        if st.st_size > limit:
            raise _too_big(where, limit)
        return _read_bounded(fd, where, limit)
    except OSError as e:
        raise _unreadable(e, where) from None
    finally:
        os.close(fd)


def _read_stdin(limit: int) -> bytes:
    """Standard input to its end, at most `limit` bytes (a pipe, a file, or a terminal).

    The descriptor is read as it is: a pipe blocks until its writer is done,
    which is what ``generate | pymgmt validate -`` means.
    """
    where = Location(STDIN_NAME)
    if sys.stdin is None or sys.stdin.closed:
        raise GraphFileError("standard input is closed: there is no graph to read", location=where)
    fd = sys.stdin.fileno()
    if os.isatty(fd):
        print("pymgmt: reading the graph from standard input (end it with ^D)", file=sys.stderr)
    try:
        return _read_bounded(fd, where, limit)
    except OSError as e:
        raise _unreadable(e, where) from None


def _read_bounded(fd: int, where: Location, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    # Read to the end, not to st_size: the file may grow; stop past the limit.
    while chunk := os.read(fd, min(1 << 20, limit + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise _too_big(where, limit)
    return b"".join(chunks)


def _unreadable(e: OSError, where: Location) -> GraphFileError:
    if e.errno == errno.ENOENT:
        return GraphFileError("no such file", location=where)
    return GraphFileError(f"cannot read the graph file: {e.strerror}", location=where)


def _too_big(where: Location, limit: int) -> GraphFileError:
    return GraphFileError(
        f"the graph file is larger than {limit >> 20} MiB, the most pymgmt reads",
        location=where,
        hint="split the graph, or check that this is the file you meant",
    )
