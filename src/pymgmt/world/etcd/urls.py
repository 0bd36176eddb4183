"""etcd's URLs: one reading of ``http(s)://IP:PORT`` for the server and the client."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..base import WorldError


def host_port(url: str, *, what: str = "URL") -> tuple[str, int]:
    """(host, port) of an ``http://HOST:PORT`` or ``https://HOST:PORT`` URL.

    Without a scheme, http is meant. Whether TLS is spoken is decided by the
    TLS files, not by the scheme (`secure` says which a URL claims). Raises
    WorldError naming the URL for anything else.
    """
    parts = urlsplit(url if "://" in url else f"http://{url}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        raise WorldError(f"{url!r}: an etcd {what} must look like http(s)://IP:PORT")
    return parts.hostname, port


#: the name of the unix socket through which an agent started by ``--remote``
#: reaches etcd (an SSH tunnel, in its private run directory). aetcd joins
#: its channel target as ``f"{host}:{port}"``: for ``unix:DIR/etcd.sock`` and
#: port 0 that is ``unix:DIR/etcd.sock:0``, so the socket's file is named so.
TUNNEL_SOCKET = "etcd.sock:0"


def unix_endpoint(url: str) -> tuple[str, int] | None:
    """aetcd's (host, port) for a ``unix:/PATH/etcd.sock:0`` endpoint; None if not one."""
    if not url.startswith("unix:/"):
        return None
    head, _, port = url.rpartition(":")
    if not port.isdigit() or not head.startswith("unix:/"):
        raise WorldError(f"{url!r}: a unix socket endpoint must look like unix:/PATH:0")
    return head, int(port)


def secure(url: str) -> bool:
    """`url` says https."""
    return url.startswith("https://")


def with_scheme(url: str, scheme: str) -> str:
    """`url` with its scheme (or none) replaced by `scheme`."""
    rest = url.split("://", 1)[1] if "://" in url else url
    return f"{scheme}://{rest}"
