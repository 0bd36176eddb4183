"""The listen address of ``--prometheus-listen``: pure parsing, no imports.

mgmt takes Go's ``HOST:PORT``: ``127.0.0.1:9233``, ``[::1]:9233``, and
``:9233`` for every interface. pymgmt reads the same spellings; a port of
0 asks the kernel for a free one (the log line names the port it got).
"""

from __future__ import annotations

#: mgmt's default: loopback only, so nothing is exposed unless asked for
DEFAULT_LISTEN = "127.0.0.1:9233"


def parse_listen(text: str) -> tuple[str, int]:
    """(host, port) from ``HOST:PORT``; ValueError naming what is wrong.

    An empty host (``:9233``) is returned as ``""``: every interface, as in Go.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ValueError(f"expected HOST:PORT (such as {DEFAULT_LISTEN}), got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ":" not in host:
            raise ValueError(f"brackets are for IPv6 addresses only, got {text!r}")
    elif ":" in host:
        raise ValueError(f"an IPv6 address goes in brackets ([::1]:9233), got {text!r}")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"expected a port number 0..65535 after the colon, got {text!r}")
    if any(c.isspace() or c in "/?#@" for c in host):
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """True if `host` (as parsed) is reachable from this machine only."""
    if host == "localhost":
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything
