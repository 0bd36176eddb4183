"""Hosts on a private network of their own: network namespaces, for partition tests.

`Network` builds, with ``ip`` (we are root), a *switch* namespace holding a
bridge, and one namespace per host joined to it by a veth pair: ``eth0``
in the host's namespace with the address 10.231.0.N/24, its peer ``vN``
in the switch's, enslaved to the bridge. Nothing is created in the root
namespace (no link, no address, no route), so nothing here can disturb the
machine's own network or another test's. Names carry the test process's
pid and a counter, so concurrent runs never share one.

`cut(host)` sets the host's ``eth0`` down: its packets go nowhere and
nothing reaches it, as when its cable is pulled (connections hang; none is
refused or reset). `heal(host)` sets it up again. `prefix(host)` is the
argv prefix that runs a process inside the host's namespace
(``ip netns exec NS``, which execs it: the pid is the process's own).

`close` deletes every namespace it made (their veths and the bridge go
with them) and fails naming any left; `network()` is a context manager
that always closes, even when building failed half-way. There is
no ``ping`` on this machine: `connects` tries a TCP connection instead.

Recipe and timings: shared/research/components.md §7.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

#: the subnet every Network uses (only inside its own namespaces)
SUBNET = "10.231.0"
_counter = itertools.count(1)


class NetnsUnavailable(Exception):
    """``ip netns`` cannot work here (not root, no ip binary, no namespaces)."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS``; on failure (with `check`), raise naming the command and its error."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc


def namespaces() -> set[str]:
    """The names of the network namespaces that exist now (``ip netns list``)."""
    out = ip("netns", "list").stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


@dataclass(frozen=True)
class NetHost:
    """One host of a `Network`: its namespace and address."""

    name: str
    namespace: str
    address: str
    #: the switch-side end of its veth pair
    port: str

    @property
    def prefix(self) -> tuple[str, ...]:
        """The argv prefix that runs a command in this host's namespace."""
        return ("ip", "netns", "exec", self.namespace)


class Network:
    """A switch namespace with a bridge, and hosts joined to it; see the module doc."""

    def __init__(self, tag: str = "t") -> None:
        self.base = f"pymgmt-{os.getpid()}-{next(_counter)}{tag}"
        self.switch = f"{self.base}-sw"
        self.hosts: dict[str, NetHost] = {}
        #: every namespace made, in order (deleted in reverse)
        self._made: list[str] = []

    def start(self) -> None:
        """Make the switch: its namespace and bridge."""
        self._add_namespace(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")

    def _add_namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self._made.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def add(self, name: str) -> NetHost:
        """A new host `name` on the switch, its link up; its address is 10.231.0.N."""
        if name in self.hosts:
            raise ValueError(f"host {name!r} is already on the network")
        n = len(self.hosts) + 1
        if n > 250:
            raise ValueError("at most 250 hosts on one network")
        ns = f"{self.base}-{name}"
        port = f"v{n}"
        self._add_namespace(ns)
        # made in the host's namespace, the peer moved straight into the switch's:
        # neither end ever exists in the root namespace
        ip(
            "-n",
            ns,
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            port,
            "netns",
            self.switch,
        )
        ip("-n", self.switch, "link", "set", port, "master", "br0")
        ip("-n", self.switch, "link", "set", port, "up")
        address = f"{SUBNET}.{n}"
        ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        host = NetHost(name, ns, address, port)
        self.hosts[name] = host
        return host

    def cut(self, name: str) -> None:
        """Pull host `name`'s cable: its link goes down, nothing reaches it or leaves it."""
        ip("-n", self.hosts[name].namespace, "link", "set", "eth0", "down")

    def heal(self, name: str) -> None:
        """Plug host `name`'s cable back in."""
        ip("-n", self.hosts[name].namespace, "link", "set", "eth0", "up")

    def connects(self, src: str, address: str, port: int, timeout: float = 1.0) -> bool:
        """A TCP connection from host `src` to `address`:`port` is accepted (or refused:
        either way the packets got there and back); False if it times out."""
        code = (
            "import socket, sys\n"
            "s = socket.socket(); s.settimeout(float(sys.argv[3]))\n"
            "try: s.connect((sys.argv[1], int(sys.argv[2])))\n"
            "except ConnectionRefusedError: pass\n"
            "except OSError: sys.exit(1)\n"
        )
        argv = [*self.hosts[src].prefix, "python3", "-c", code, address, str(port), str(timeout)]
        return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode == 0

    def close(self) -> None:
        """Delete every namespace made (the veths and the bridge go with them)."""
        failed = []
        for ns in reversed(self._made):
            proc = ip("netns", "del", ns, check=False)
            if proc.returncode != 0:
                failed.append(f"{ns}: {proc.stderr.strip()}")
        self._made.clear()
        left = {ns for ns in namespaces() if ns.startswith(self.base + "-")}
        assert not failed and not left, f"network namespaces left behind: {failed or sorted(left)}"


@contextlib.contextmanager
def network(hosts: Sequence[str], tag: str = "t") -> Iterator[Network]:
    """A `Network` with `hosts` on it for the block; always deleted afterwards.

    Raises `NetnsUnavailable` (before making anything that would stay) if
    ``ip netns`` cannot work here, so a test can skip with the reason.
    """
    probe()
    net = Network(tag)
    try:
        net.start()
        for name in hosts:
            net.add(name)
        yield net
    finally:
        net.close()


@contextlib.contextmanager
def cluster_network(hosts: Sequence[str], tag: str, stop: Callable[[], None]) -> Iterator[Network]:
    """`network` for a test's cluster: `stop` (its agents and their etcd) runs before the
    network is deleted; skipped (failed under CI) when namespaces cannot work here."""
    try:
        with network(hosts, tag=tag) as n:
            try:
                yield n
            finally:
                stop()
    except NetnsUnavailable as e:
        unavailable(e)


def probe() -> None:
    """Raise `NetnsUnavailable`, saying why, unless a namespace can be made here."""
    name = f"pymgmt-{os.getpid()}-probe"
    try:
        made = ip("netns", "add", name, check=False)
    except OSError as e:
        raise NetnsUnavailable(f"cannot run ip: {e}") from None
    if made.returncode != 0:
        raise NetnsUnavailable(f"ip netns add: {made.stderr.strip()}")
    ip("netns", "del", name, check=False)


def unavailable(e: NetnsUnavailable) -> None:
    """Skip the test saying why namespaces cannot work here; under CI (CI=true), fail:
    a CI run never passes without its partition tests."""
    import os

    import pytest

    reason = f"network namespaces cannot work here: {e}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)
