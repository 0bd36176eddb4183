"""etcd's URLs: one reading of ``http://IP:PORT`` for the server and the client."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..base import WorldError


def host_port(url: str, *, what: str = "URL") -> tuple[str, int]:
    """(host, port) of an ``http://HOST:PORT`` URL; without a scheme, http is meant.

    Raises WorldError naming the URL for anything else (https is not
    served yet: TLS is issue 10).
    """
    parts = urlsplit(url if "://" in url else f"http://{url}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None:
        raise WorldError(f"{url!r}: an etcd {what} must look like http://IP:PORT")
    return parts.hostname, port
