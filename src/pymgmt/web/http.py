"""A small read-only HTTP/1.1 server on asyncio streams.

Why not a framework: the agent serves five GET routes to a Prometheus
scraper and a browser on loopback; a dependency the size of aiohttp would
cost more start-up time and attack surface than these lines. What it
guarantees:

* GET and HEAD only (405 otherwise); one request per connection
  (``Connection: close``), so no connection lingers between scrapes;
* a request head larger than `HEAD_LIMIT`, or slower than `READ_TIMEOUT`,
  is refused; at most `MAX_CONNECTIONS` connections at once (503 beyond);
* bound to loopback, it answers only requests whose ``Host`` names a
  loopback address or ``localhost``: a web page elsewhere cannot read it
  through DNS rebinding;
* an event stream (server-sent events) ends when its client goes away, or
  cannot keep up for `WRITE_TIMEOUT`, and every connection is cancelled
  and awaited when the server closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from .address import is_loopback

log = logging.getLogger("pymgmt.web")

#: the largest request line plus headers accepted (bytes)
HEAD_LIMIT = 16 * 1024
#: how long a client may take to send its request head (s)
READ_TIMEOUT = 10.0
#: how long a write may wait for a client that does not read (s)
WRITE_TIMEOUT = 30.0
#: connections served at once (SSE clients included)
MAX_CONNECTIONS = 64

_REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    421: "Misdirected Request",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}

#: sent with every response: nothing is cached, sniffed, framed or referred
_COMMON_HEADERS = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Connection", "close"),
)


@dataclass(frozen=True)
class Request:
    method: str
    #: the path, percent-decoded, without the query
    path: str
    #: header names in lower case
    headers: dict[str, str]


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Stream:
    """A response whose body is written as it is produced (server-sent events)."""

    chunks: AsyncGenerator[bytes, None]
    content_type: str = "text/event-stream; charset=utf-8"


Handler = Callable[[Request], Awaitable[Response | Stream]]


def text(status: int, message: str) -> Response:
    return Response(status, (message + "\n").encode())


class _BadRequest(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


class _Finished(Exception):
    """One of two racing tasks finished: the other is no longer needed."""


class HttpServer:
    """Serves `handler` at (host, port); `start` binds, `close` ends every connection."""

    def __init__(self, handler: Handler, host: str, port: int) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.loopback = is_loopback(host)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> list[tuple[str, int]]:
        """Bind and listen; the addresses bound (port 0 becomes the port the kernel chose).

        OSError (address in use, cannot assign) propagates: the caller
        refuses to start the agent.
        """
        self._server = await asyncio.start_server(
            self._connection, self.host or None, self.port, limit=HEAD_LIMIT
        )
        return [s.getsockname()[:2] for s in self._server.sockets]

    async def close(self) -> None:
        """Stop listening, cancel every open connection and wait for them."""
        if self._server is not None:
            self._server.close()
        tasks = list(self._connections)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        me = asyncio.current_task()
        assert me is not None
        self._connections.add(me)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, TimeoutError):
            pass  # the client went away or stalled: nothing to tell anyone
        finally:
            self._connections.discard(me)
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) > MAX_CONNECTIONS:
            await _write(writer, text(503, "too many connections"), head_only=False)
            return
        try:
            request = await self._read(reader)
            self._check_host(request)
        except _BadRequest as e:
            await _write(writer, e.response, head_only=False)
            return
        head_only = request.method == "HEAD"
        try:
            answer = await self.handler(request)
        except Exception:
            log.exception("web: %s %s failed", request.method, request.path)
            answer = text(503, "internal error (see the agent's log)")
        if isinstance(answer, Response):
            await _write(writer, answer, head_only=head_only)
        elif head_only:
            await _write(writer, Response(200, content_type=answer.content_type), head_only=True)
        else:
            await _stream(reader, writer, answer)

    async def _read(self, reader: asyncio.StreamReader) -> Request:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise _BadRequest(text(431, "request head too large")) from None
        except asyncio.IncompleteReadError:
            raise ConnectionResetError("closed before a whole request") from None
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadRequest(text(400, "expected an HTTP/1.x request line"))
        method, target, _ = parts
        if method not in ("GET", "HEAD"):
            refused = text(405, "read-only: GET and HEAD only")
            refused.headers.append(("Allow", "GET, HEAD"))
            raise _BadRequest(refused)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        try:
            path = unquote(urlsplit(target).path)
        except ValueError:  # "http://[" and the like
            raise _BadRequest(text(400, "a request target that is no URL")) from None
        return Request(method, path, headers)

    def _check_host(self, request: Request) -> None:
        """Bound to loopback: the Host header must name loopback too (DNS rebinding)."""
        if not self.loopback:
            return
        if not is_loopback(_host_name(request.headers.get("host", ""))):
            raise _BadRequest(text(421, "this server answers to loopback addresses only"))


def _host_name(host: str) -> str:
    """The name in a Host header: ``[::1]:9233`` -> ``::1``, ``localhost:9233`` -> ``localhost``."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    name, sep, port = host.rpartition(":")
    return name if sep and port.isdigit() else host


def _head(
    status: int, content_type: str, extra: list[tuple[str, str]], length: int | None
) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
        f"Content-Type: {content_type}",
    ]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{k}: {v}" for k, v in (*_COMMON_HEADERS, *extra)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _write(writer: asyncio.StreamWriter, r: Response, *, head_only: bool) -> None:
    writer.write(_head(r.status, r.content_type, r.headers, len(r.body)))
    if not head_only:
        writer.write(r.body)
    async with asyncio.timeout(WRITE_TIMEOUT):
        await writer.drain()


async def _stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Stream) -> None:
    """Write `s` until it ends or the client goes away, whichever comes first."""
    writer.write(_head(200, s.content_type, [], None))

    async def pump() -> None:
        # aclosing: the stream's own clean-up (its subscription) runs now, not at GC
        async with contextlib.aclosing(s.chunks) as chunks:
            async for chunk in chunks:
                writer.write(chunk)
                async with asyncio.timeout(WRITE_TIMEOUT):
                    await writer.drain()
        raise _Finished

    async def until_gone() -> None:
        # A client of an event stream sends nothing more: EOF means it left.
        while await reader.read(4096):
            pass
        raise _Finished

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(pump())
            tg.create_task(until_gone())
    except* (_Finished, ConnectionError, TimeoutError):
        pass  # the stream ended, or its client left or stalled
