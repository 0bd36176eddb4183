"""Asking a running agent over its status socket (``pymgmt status``).

Plain blocking sockets: the command asks once and prints, so it needs
neither asyncio nor the engine, and starts about as fast as ``--version``.
The socket is reached through the state directory's fd, walked like the
agent walks it (no symlink another user made is followed).
"""

from __future__ import annotations

import errno
import json
import os
import socket
from pathlib import Path

from .. import fsutil
from . import SOCKET_NAME

#: seconds to wait for the agent's answer
TIMEOUT = 10.0
#: the largest answer read (a 10k-resource graph is a few MB)
MAX_ANSWER = 512 * 1024 * 1024


class StatusUnavailable(Exception):
    """No answer: no agent, not allowed, or it did not answer (the message says which)."""


def ask(prefix: Path, request: dict[str, object], timeout: float = TIMEOUT) -> dict[str, object]:
    """The agent's answer to `request` (its "ok" may be false), or StatusUnavailable."""
    where = prefix / SOCKET_NAME
    try:
        dfd = fsutil.open_dir(os.path.abspath(prefix))
    except FileNotFoundError:
        raise StatusUnavailable(f"no agent runs on {prefix}: no such directory") from None
    except PermissionError:
        raise StatusUnavailable(_denied(where)) from None
    except OSError as e:  # UnsafePathError too
        raise StatusUnavailable(f"cannot open {prefix}: {e}") from None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(timeout)
            _connect(sock, f"/proc/self/fd/{dfd}/{SOCKET_NAME}", prefix)
            _send(sock, (json.dumps(request) + "\n").encode())
            raw = _read_all(sock)
    except TimeoutError:
        raise StatusUnavailable(f"the agent on {prefix} did not answer in {timeout:g} s") from None
    except OSError as e:
        raise StatusUnavailable(f"{where}: {e.strerror or e}") from None
    finally:
        os.close(dfd)
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    if not raw:
        raise StatusUnavailable(f"{where}: the agent closed the connection (too many clients?)")
    if not isinstance(answer, dict):
        raise StatusUnavailable(f"{where}: the answer is not JSON (is this a pymgmt agent?)")
    return answer


def _connect(sock: socket.socket, address: str, prefix: Path) -> None:
    try:
        sock.connect(address)
    except FileNotFoundError:
        raise StatusUnavailable(
            f"no agent runs on {prefix}: it has no {SOCKET_NAME} (is --prefix the agent's?)"
        ) from None
    except ConnectionRefusedError:
        raise StatusUnavailable(
            f"no agent answers on {prefix / SOCKET_NAME}: the agent that made it is gone"
        ) from None
    except PermissionError:
        raise StatusUnavailable(_denied(prefix / SOCKET_NAME)) from None


def _send(sock: socket.socket, request: bytes) -> None:
    """Send the request; an agent that closed first (too busy) has its say in the read."""
    try:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
    except BrokenPipeError:
        pass


def _read_all(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := sock.recv(1 << 16):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_ANSWER:
            raise OSError(errno.EMSGSIZE, "the answer is too large")
    return b"".join(chunks)


def _denied(where: Path) -> str:
    return f"permission denied: {where} answers only root and the agent's own user"
