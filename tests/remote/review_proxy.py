"""A TCP relay whose connections wait behind a gate: a slow network, on demand (review tests)."""

from __future__ import annotations

import contextlib
import socket
import threading


class GatedProxy:
    """Listens on 127.0.0.1:`port`; every connection is relayed to `target` once `open()`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.gate = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self._socks: list[socket.socket] = [self.sock]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def open(self) -> None:
        self.gate.set()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self._socks.append(c)
            self.accepted.set()
            t = threading.Thread(target=self._relay, args=(c,), daemon=True)
            self._threads.append(t)
            t.start()

    def _relay(self, c: socket.socket) -> None:
        self.gate.wait()
        try:
            u = socket.create_connection(self.target)
        except OSError:
            c.close()
            return
        self._socks.append(u)
        t = threading.Thread(target=_pump, args=(c, u), daemon=True)
        self._threads.append(t)
        t.start()
        _pump(u, c)

    def close(self) -> None:
        self.gate.set()
        for s in list(self._socks):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        for t in list(self._threads):
            t.join(10)
        for s in list(self._socks):
            with contextlib.suppress(OSError):
                s.close()


def _pump(a: socket.socket, b: socket.socket) -> None:
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            b.shutdown(socket.SHUT_WR)
