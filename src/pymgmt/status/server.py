"""The agent's side of the status socket (see the package docstring for the protocol).

Safety, since the agent runs as root:

* the socket is made in the state directory reached by the safe walk
  (`fsutil.open_dir`, no symlink another user made is followed) and bound
  through that directory's fd (``/proc/self/fd/N/status.sock``), so the
  path a user could redirect is never used -- and a long ``--prefix``
  does not meet the 108-byte limit of a socket address;
* its mode is 0600 from the first byte: Linux gives the new node the
  mode of the socket's own inode (less the umask), so it is ``fchmod``-ed
  before ``bind`` and checked after (the umask is process-wide: changing it
  would race with every thread that creates a file);
* every peer's uid is read with ``SO_PEERCRED`` and anyone but root and the
  agent's own user is refused: the mode alone would let a process with
  ``CAP_DAC_OVERRIDE`` under another uid in;
* a peer gets a few seconds to send its request and read the answer, and
  only a few are served at once: a stuck client never holds the agent.

A leftover ``status.sock`` (an agent killed with ``kill -9``) is replaced:
the state directory's lock says no other agent uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import AsyncIterator
from pathlib import Path

from .. import fsutil
from ..report.live import LiveState
from . import MAX_REQUEST, SOCKET_NAME

log = logging.getLogger("pymgmt.status")

#: seconds a client may take to send its request, and to read the answer
IO_TIMEOUT = 5.0
#: connections served at once; more are closed at once
MAX_CLIENTS = 8
#: seconds before accepting again after accept() failed (no file descriptor left)
ACCEPT_BACKOFF = 1.0
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a connected unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    return int(_PEERCRED.unpack(raw)[1])


def allowed(uid: int) -> bool:
    """Root, or the user the agent runs as."""
    return uid in (0, os.geteuid())


class StatusServer:
    """Serves `live` on ``<prefix>/status.sock`` until `close`."""

    def __init__(self, live: LiveState, prefix: Path) -> None:
        self.live = live
        self.prefix = prefix
        self.path = prefix / SOCKET_NAME
        self._sock: socket.socket | None = None
        self._node: tuple[int, int] | None = None  # (st_dev, st_ino) of our socket file
        self._accepting: asyncio.Task[None] | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind and listen (raises OSError); connections are served from now on."""
        self._sock, self._node = _bind(self.prefix)
        self._accepting = asyncio.create_task(self._accept(), name="status socket")

    async def close(self) -> None:
        """Stop serving, end the connections under way and remove the socket file."""
        tasks = [t for t in (self._accepting, *self._clients) if t is not None]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        _remove(self.prefix, self._node)

    async def _accept(self) -> None:
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(self._sock)
            except OSError as e:
                # out of file descriptors (EMFILE) and the like: the agent's
                # work matters more; try again in a while, without spinning
                log.warning("status socket: cannot accept a connection: %s", e)
                await asyncio.sleep(ACCEPT_BACKOFF)
                continue
            if len(self._clients) >= MAX_CLIENTS:
                conn.close()
                continue
            task = asyncio.create_task(self._serve(conn), name="status client")
            self._clients.add(task)
            task.add_done_callback(self._clients.discard)

    async def _serve(self, conn: socket.socket) -> None:
        """Answer one request on `conn`, then close it; a client's failure is its own."""
        with conn:
            try:
                reply = await self._reply(conn)
                # a fresh structure nobody changes: encoded off the loop (10k
                # resources take 0.1 s, while every watch must go on)
                data = await asyncio.to_thread(_encode, reply)
                async with asyncio.timeout(IO_TIMEOUT):
                    await asyncio.get_running_loop().sock_sendall(conn, data)
            except (OSError, TimeoutError) as e:
                log.debug("status socket: a client went away: %s", e)
            except Exception:
                # our bug: said, and the agent goes on (the status is not its job)
                log.exception("status socket: internal error answering a client")

    async def _reply(self, conn: socket.socket) -> dict[str, object]:
        # The request is read first, even from a peer about to be refused:
        # closed with its bytes unread, the connection would be reset under
        # the peer before it could read why.
        try:
            async with asyncio.timeout(IO_TIMEOUT):
                raw = await _read_request(conn)
        except TimeoutError:
            return {"ok": False, "error": f"no request came in {IO_TIMEOUT:g} s"}
        except ValueError:
            return {"ok": False, "error": f"the request is longer than {MAX_REQUEST} bytes"}
        uid = peer_uid(conn)
        if not allowed(uid):
            log.warning("status socket: refused uid %d (only root and uid %d)", uid, os.geteuid())
            return {"ok": False, "error": "refused: only root and the agent's user may ask it"}
        try:
            request = json.loads(raw)
        except ValueError:  # UnicodeDecodeError too
            return {"ok": False, "error": "the request is not one line of JSON"}
        if not isinstance(request, dict):
            return {"ok": False, "error": "the request is not a JSON object"}
        return self.answer(request)

    def answer(self, request: dict[str, object]) -> dict[str, object]:
        """The response to one request (an object with a "command")."""
        command = request.get("command")
        if command == "status":
            with_params = request.get("params", True) is not False
            return {"ok": True, "status": self.live.snapshot(params=with_params)}
        if command == "vertex":
            name = request.get("name")
            shown = self.live.vertex(name) if isinstance(name, str) else None
            if shown is None:
                return {"ok": False, "error": f"no resource {name!r} in the running graph"}
            return {"ok": True, "vertex": shown}
        return {"ok": False, "error": f"unknown command {command!r} (status, vertex)"}


def _encode(reply: dict[str, object]) -> bytes:
    return (json.dumps(reply, default=str) + "\n").encode()


async def _read_request(conn: socket.socket) -> bytes:
    """Bytes up to the first newline (or the end); ValueError past `MAX_REQUEST`."""
    loop = asyncio.get_running_loop()
    buf = b""
    while b"\n" not in buf:
        chunk = await loop.sock_recv(conn, MAX_REQUEST)
        if not chunk:
            break
        buf += chunk
        if len(buf) > MAX_REQUEST:
            raise ValueError("request too long")
    return buf.split(b"\n", 1)[0]


def _bind(prefix: Path) -> tuple[socket.socket, tuple[int, int]]:
    """A listening socket at ``<prefix>/status.sock``, mode 0600 from its first byte."""
    dfd = fsutil.open_dir(os.path.abspath(prefix))
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(SOCKET_NAME, dir_fd=dfd)  # a dead agent's: the lock is ours
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            os.fchmod(sock.fileno(), 0o600)  # the node bind makes gets this mode
            sock.bind(f"/proc/self/fd/{dfd}/{SOCKET_NAME}")
            st = os.stat(SOCKET_NAME, dir_fd=dfd, follow_symlinks=False)
            if not stat.S_ISSOCK(st.st_mode) or stat.S_IMODE(st.st_mode) & 0o077:
                os.unlink(SOCKET_NAME, dir_fd=dfd)
                raise PermissionError(f"the socket was made mode {stat.S_IMODE(st.st_mode):o}")
            sock.listen(MAX_CLIENTS)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
    finally:
        os.close(dfd)
    return sock, (st.st_dev, st.st_ino)


def _remove(prefix: Path, node: tuple[int, int] | None) -> None:
    """Remove our socket file, and only ours (never one a later agent made)."""
    if node is None:
        return
    with contextlib.suppress(OSError), fsutil.opened_dir(os.path.abspath(prefix)) as dfd:
        st = os.stat(SOCKET_NAME, dir_fd=dfd, follow_symlinks=False)
        if (st.st_dev, st.st_ino) == node:
            os.unlink(SOCKET_NAME, dir_fd=dfd)


@contextlib.asynccontextmanager
async def serving(live: LiveState, prefix: Path) -> AsyncIterator[StatusServer | None]:
    """Serve the status socket for the duration of the block.

    A socket that cannot be made is a warning, not a failure: the agent's
    job is the graph, and ``pymgmt status`` then says no agent answers.
    """
    server = StatusServer(live, prefix)
    started = True
    try:
        await server.start()
    except OSError as e:
        log.warning("no status socket at %s: %s", server.path, e.strerror or e)
        started = False
    try:
        yield server if started else None
    finally:
        await server.close()  # nothing to do if it never started
