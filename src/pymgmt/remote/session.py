"""The initiator's side of remote execution: every remote host's life, from connect to clean-up.

For each remote graph file (`spec.RemoteSpec`), in parallel, at most
``--cconns`` being set up at once:

1. connect over SSH (`ssh.connect`: known_hosts, keys, the agent, a password);
2. probe: one command finds a Python of the bundle's version on the remote's
   PATH, makes a private run directory (``mkdtemp``) and says whether the
   remote's cache already holds the bundle, checked by its sha256;
3. copy over SFTP the bundle (unless cached; to a temporary name, then
   renamed, so a cut copy is never used) and the graph files;
4. ask sshd for a reverse port forward: a port on the remote's loopback
   leads to this host's etcd, so the remote agent joins the cluster as a
   client (``--no-server --seeds``) needing no other inbound port;
5. run the agent there (``--remote-child DIR``), stream its output here,
   prefixed with its host; a saved graph file is copied over again (live
   remote hacking: the remote agent swaps graphs as it does locally);
6. at the end tell it how to stop on its stdin (`child.py`): "converged"
   (exit with its detailed code) or "stop SIGNAL"; closing the connection
   without a word (this process killed) stops it too. Its run directory
   goes; the cached bundle stays unless ``--no-caching``.

While a host is being set up, and until its agent has registered in the
cluster, this host's converger counts as busy: ``--converged-timeout``
cannot end the run before every remote has joined (or failed), and the
cluster-wide converged state then covers every host.

Nothing here builds a shell string from user data: every remote command is
a constant or `shlex.join` of its arguments.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import re
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, InputErrors
from ..redaction import redact
from ..report.console import visible
from ..report.events import Event, RemoteChanged, RemoteOutput
from ..report.logs import relay
from ..world.base import World, keys
from ..world.etcd.urls import TUNNEL_SOCKET
from .spec import DEFAULT_MAX_DEPTH, RemoteSpec
from .ssh import RemoteError, SshOptions, known_hosts_name, remember_host_keys

if TYPE_CHECKING:
    import asyncssh

    from ..engine.converger import Converger
    from ..events.inotify import InotifyHub
    from .bundle import Bundle, Interpreter

log = logging.getLogger("pymgmt.remote")

#: how long a remote agent may take to stop once told to (its graph's
#: running applies finish first, as on a local stop)
STOP_TIMEOUT = 30.0
#: how long the clean-up of one host may take (the run directory, the tunnel)
CLEANUP_TIMEOUT = 10.0
#: editors save in bursts: wait for this much quiet before copying a file
DEBOUNCE = 0.05

#: Finds a CPython >= 3.11 on the remote's PATH (this host's own version
#: first: its bundle needs no download) and runs the probe with it. Constant:
#: the arguments come as "$@", never spliced in.
PROBE_SH = r"""
code=$1; shift
for p in "python$1" python3 python3.11 python3.12 python3.13 python3.14; do
  exe=$(command -v "$p" 2>/dev/null) || continue
  "$exe" -c "$code" "$exe" "$@"
  status=$?
  [ "$status" -eq 3 ] || exit "$status"
done
exit 3
"""

#: Runs on any Python 3 (old ones say what they are and exit 3): says which
#: interpreter it is and on what, makes the run directory, and checks the
#: cached bundle of this host's own Python when the versions match.
PROBE_PY = r"""
import hashlib, json, os, platform, sys, tempfile
exe, want, digest, caching = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
version = "%d.%d" % sys.version_info[:2]
found = {"python": exe, "version": version, "implementation": platform.python_implementation()}
if sys.version_info < (3, 11) or found["implementation"] != "CPython":
    print("pymgmt-probe " + json.dumps(found))
    sys.exit(3)
try:
    libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
except (ValueError, OSError):
    libc = ""
found["machine"] = platform.machine()
found["glibc"] = libc.split()[1] if libc.startswith("glibc ") else None
home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
found["cache"] = os.path.join(home, "pymgmt", "bundles")
found["cached"] = None
if caching:
    os.makedirs(found["cache"], 0o700, exist_ok=True)
if caching:
    # used: touched; others unused for an hour, beyond the two last used, removed
    import glob, shutil, time
    mine = os.path.join(found["cache"], "pymgmt-%s.pyz" % digest[:24])
    try:
        os.utime(mine)
    except OSError:
        pass
    def used(path):
        try:
            return os.stat(path).st_mtime
        except OSError:
            return 0.0
    others = sorted((p for p in glob.glob(os.path.join(found["cache"], "pymgmt-*.pyz"))
                     if p != mine), key=used, reverse=True)
    for old in others[2:]:
        if time.time() - used(old) > 3600:
            shutil.rmtree(old + ".d", True)
            try:
                os.remove(old)
            except OSError:
                pass
if caching and version == want:
    h = hashlib.sha256()
    try:
        with open(os.path.join(found["cache"], "pymgmt-%s.pyz" % digest[:24]), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        found["cached"] = h.hexdigest() == digest
    except OSError:
        found["cached"] = False
found["run"] = tempfile.mkdtemp(prefix="pymgmt-run-")
print("pymgmt-probe " + json.dumps(found))
sys.stdout.flush()
# the guard: the initiator says "keep" once the agent runs, which then owns the
# directory; anything else (its session closed: a failed set-up, the initiator
# killed) removes it, and the temporary copies named after it
if sys.stdin.readline().strip() != "keep":
    import glob, shutil
    shutil.rmtree(found["run"], True)
    parts = ".*.part-" + os.path.basename(found["run"])
    for part in glob.glob(os.path.join(found["cache"], parts)):
        try:
            os.remove(part)
        except OSError:
            pass
"""

#: what starts each line the probe prints (the rest is JSON)
PROBE_MARK = "pymgmt-probe "
#: what starts a line on an intermediate host's stderr saying how one of its own
#: remote hosts ended (hierarchical runs: the initiator's recap lists them all)
ENDED_MARK = "pymgmt-remote-ended "

#: Says whether a cached bundle is there, whole: for a bundle built for the
#: remote's own Python, known only after the probe (exit 0: it is)
CACHED_PY = r"""
import hashlib, os, sys
h = hashlib.sha256()
try:
    with open(sys.argv[1], "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
except OSError:
    sys.exit(1)
if h.hexdigest() != sys.argv[2]:
    sys.exit(1)
os.utime(sys.argv[1])  # used now: kept by the next probes' pruning
"""


@dataclass(frozen=True)
class RemoteOptions:
    """What every remote host of the run gets (from the `run` flags)."""

    ssh: SshOptions
    #: where this host keeps the bundles it builds
    bundle_cache: Path
    #: at most this many hosts being set up at once (0: no limit), mgmt's --cconns
    cconns: int = 0
    #: keep the bundle on the remotes for the next run (mgmt's default)
    caching: bool = True
    converged_timeout: float | None = None
    noop: bool = False
    json: bool = False
    #: "-v", "-q" or nothing: the remote agents talk as much as this one
    verbosity: tuple[str, ...] = ()
    #: the remote agents keep their state in their run directory (gone at the end)
    tmp_prefix: bool = False
    sema: int = 0
    #: copy saved graph files over (live remote hacking); --no-watch: never
    watch: bool = True
    #: this process's depth (0: the initiator)
    depth: int = 0
    max_depth: int = DEFAULT_MAX_DEPTH


class Remotes:
    """Every remote host of this run: started together, stopped together.

    `start` begins every host's set-up at once, before this host's etcd is
    up: connecting, probing and copying need no etcd (only the tunnel and
    the agent do, and they wait for `attach`), so the two overlap. Events
    until then are kept and handed to the engine's reporters at `attach`.
    """

    def __init__(self, specs: list[RemoteSpec], options: RemoteOptions, *,
                 etcd: tuple[str, int] | str) -> None:  # fmt: skip
        self.specs = specs
        self.options = options
        #: where this host reaches etcd, each tunnel leads there: its client port,
        #: or (an agent started by --remote itself) its own tunnel's socket
        self.etcd = etcd
        self.world: World | None = None
        self.hub: InotifyHub | None = None
        self.converger: Converger | None = None
        self._emit_to: Callable[[Event], None] | None = None
        self._early: list[Event] = []
        #: set by `attach`: this host's etcd runs, the agents may start
        self.attached = asyncio.Event()
        self.slots = asyncio.Semaphore(options.cconns) if options.cconns > 0 else None
        self.sessions = [Session(s, self) for s in specs]
        self._registered: dict[str, asyncio.Event] = {s.hostname: asyncio.Event() for s in specs}
        #: the bundles being built or built, per Python (None: this host's own)
        self._built: dict[Interpreter | None, asyncio.Future[Bundle]] = {}

    def emit(self, event: Event) -> None:
        if (
            isinstance(event, RemoteChanged)
            and event.stage in ("exited", "failed")
            and self.options.depth > 0
        ):
            _tell_initiator(event)
        if self._emit_to is None:
            self._early.append(event)
        else:
            self._emit_to(event)

    def start(self) -> None:
        """Begin every host's set-up (up to the tunnel, which waits for `attach`)."""
        for s in self.sessions:
            s.start()

    def attach(
        self, *, world: World, hub: InotifyHub, converger: Converger,
        emit: Callable[[Event], None],
    ) -> None:  # fmt: skip
        """This host's etcd World and engine are up: the agents may start."""
        self.world, self.hub, self.converger = world, hub, converger
        self._emit_to = emit
        early, self._early = self._early, []
        for event in early:
            emit(event)
        self.attached.set()

    async def abort(self) -> None:
        """The run ends before `attach` (a signal, etcd would not start): undo every set-up."""
        await asyncio.gather(*(s.abort() for s in self.sessions))

    async def run(self) -> None:
        """Follow every host until it ends (after `attach`); returns when all have."""
        from ..world.cluster import mirror_prefix

        assert self.world is not None and self.converger is not None
        holds = [self.converger.holding() for _ in self.sessions]
        for h in holds:
            h.__enter__()  # busy from the very start: nothing converges before the hosts join
        async with asyncio.TaskGroup() as tg:
            follow = tg.create_task(mirror_prefix(self.world, keys.HOSTS, self._hosts_changed))
            tasks = [
                tg.create_task(s.run(hold), name=f"remote {s.spec.hostname}")
                for s, hold in zip(self.sessions, holds, strict=True)
            ]
            await asyncio.wait(tasks)
            follow.cancel()

    def _hosts_changed(self, state: dict[str, bytes]) -> None:
        for host, event in self._registered.items():
            if host in state:
                event.set()

    async def registered(self, host: str) -> None:
        """Return once `host`'s agent has registered in the cluster."""
        await self._registered[host].wait()

    async def bundle(self, python: Interpreter | None = None) -> Bundle:
        """The bundle for `python` (None: this host's own), built once for every host
        that needs it, in a thread (it zips tens of MB; another Python's downloads wheels)."""
        built = self._built.get(python)
        if built is None:
            from .bundle import build_bundle

            built = self._built[python] = asyncio.ensure_future(
                asyncio.to_thread(build_bundle, self.options.bundle_cache, python)
            )
        return await asyncio.shield(built)

    async def stop(self, message: str) -> None:
        """Tell every remote agent how to stop ("converged" or "stop SIGNAL"); wait for them."""
        await asyncio.gather(*(s.stop(message) for s in self.sessions))


class Session:
    """One remote host, from connect to clean-up (see the module docstring)."""

    def __init__(self, spec: RemoteSpec, remotes: Remotes) -> None:
        self.spec = spec
        self.host = spec.hostname
        self.remotes = remotes
        self.options = remotes.options
        self.conn: asyncssh.SSHClientConnection | None = None
        #: the probe, kept running as the guard of the run directory until the
        #: agent takes it over: its session ending without "keep" (a failed
        #: set-up, this process killed) removes the directory there
        self.guard: asyncssh.SSHClientProcess[str] | None = None
        self.process: asyncssh.SSHClientProcess[str] | None = None
        self.run_dir: str | None = None
        self.stopping = False
        self._set_up_task: asyncio.Future[None] | None = None
        #: the agent's stdout and stderr readers, from its start
        self._readers: list[asyncio.Future[None]] = []
        self._done = asyncio.Event()
        #: graph file here -> the bytes last copied there (live remote hacking)
        self.copied: dict[Path, bytes] = {}
        self._saved = asyncio.Event()
        #: the host names below this one (hierarchical): the only ones its events may name
        self.deeper = {d.hostname for c in spec.children for d in _subtree(c)}

    def _emit(self, stage: Any, message: str = "", exit_code: int | None = None) -> None:
        self.remotes.emit(RemoteChanged(self.host, stage, message, exit_code))

    async def run(self, hold: contextlib.AbstractContextManager[None]) -> None:
        """Set the host up, follow its agent until it exits; never raises (but a cancel)."""
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                hold.__exit__(None, None, None)

        hub = self.remotes.hub
        assert hub is not None
        # a save during the set-up is copied once it runs: `copied` says what went
        files = self.spec.layout() if self.options.watch else {}
        subs = [hub.subscribe(str(f), self._saved.set) for f in files]
        try:
            await self._set_up_or_stop()
            await self._joined()
            release()
            code = await self._follow()
            self._emit("exited", _exit_text(code), code)
        except RemoteError as e:
            self._emit("failed", e.message)
        except _Errors() as e:
            self._emit("failed", _error_text(e))
        except Exception as e:  # a bug or a surprise on one host must not end the others'
            log.debug("remote %s: unexpected error", self.host, exc_info=True)
            self._emit("failed", f"unexpected error: {type(e).__name__}: {e}")
        finally:
            for sub in subs:
                hub.unsubscribe(sub)
            release()
            self._done.set()
            await self._clean_up()

    # -- set-up --------------------------------------------------------------------

    def start(self) -> None:
        """Begin the set-up, in a task of its own: a stop meanwhile cancels it (a ^C
        while a slow host is connecting must not start anything there afterwards)."""
        self._set_up_task = asyncio.ensure_future(self._set_up_in_slot())

    async def abort(self) -> None:
        """Cancel the set-up and undo it: the run ends before any agent could start."""
        self.stopping = True
        if self._set_up_task is not None:
            self._set_up_task.cancel()
            with contextlib.suppress(BaseException):
                await self._set_up_task
        await self._clean_up()

    async def _set_up_or_stop(self) -> None:
        """Wait for the set-up `start` began (see there)."""
        if self._set_up_task is None:
            self.start()
        assert self._set_up_task is not None
        try:
            await self._set_up_task
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if not self.stopping or (me is not None and me.cancelling()):
                raise
            raise RemoteError(
                self.host, "not started: the run was stopped during its set-up"
            ) from None

    async def _set_up_in_slot(self) -> None:
        if self.remotes.slots is None:
            await self._set_up()
            return
        async with self.remotes.slots:
            await self._set_up()

    async def _set_up(self) -> None:
        from .ssh import connect

        opts = self.options.ssh
        if self.spec.children:
            opts = dataclasses.replace(opts, agent_forwarding=True)
        self._emit("connecting", self.spec.target.label)
        self.conn = await connect(self.spec.target, opts)
        self._go_on()
        own = await self.remotes.bundle()
        probe = await self._probe(own)
        self.run_dir = probe["run"]
        self._go_on()
        bundle = await self._bundle_for(own, probe)
        remote_bundle = await self._copy(bundle, probe)
        await self.remotes.attached.wait()  # this host's etcd is up: the tunnel leads there
        self._go_on()
        socket = await self._tunnel()
        argv = self._agent_argv(probe["python"], remote_bundle, socket)
        log.debug("remote %s: running %s", self.host, shlex.join(argv))
        self._go_on()
        self.process = await self.conn.create_process(
            "exec " + shlex.join(argv), encoding="utf-8", errors="replace"
        )
        if self.stopping:  # the stop came while it started: it was not told, so now
            self.process.stdin.write_eof()  # its stdin's end: it stops at once
        # its words are shown from its first line (say, why it cannot join)
        self._readers = [
            asyncio.ensure_future(self._stdout(self.process)),
            asyncio.ensure_future(self._stderr(self.process)),
        ]
        await self._release_guard(keep=True)  # the agent removes its run directory now
        self._emit("running", f"{probe['python']} (Python {probe['version']})")

    def _go_on(self) -> None:
        """Raise if the run is stopping: a cancel of the set-up may be lost in a
        library's await (seen under load), and nothing may start after a stop."""
        if self.stopping:
            raise RemoteError(self.host, "not started: the run was stopped during its set-up")

    async def _tunnel(self) -> str:
        """A unix socket in the run directory there, leading to this host's etcd.

        A socket, not a TCP port: on the remote's loopback any local user could
        reach the cluster's etcd through a port; the socket lies in the run
        directory, which only the SSH user can enter (mkdtemp's 0700).
        """
        assert self.conn is not None and self.run_dir is not None
        there = f"{self.run_dir}/{TUNNEL_SOCKET}"
        etcd = self.remotes.etcd
        if isinstance(etcd, str):
            await self.conn.forward_remote_path(there, etcd)
        else:
            await self.conn.forward_remote_path_to_port(there, *etcd)
        log.debug("remote %s: tunnel %s there -> %s here", self.host, there, etcd)
        return there

    async def _bundle_for(self, own: Bundle, probe: dict[str, Any]) -> Bundle:
        """The bundle for the remote's Python: ours, or one built for it (is it cached?)."""
        from .bundle import BundleError, Interpreter, local_interpreter

        glibc = probe.get("glibc")
        python = Interpreter(
            version=_version(probe["version"]),
            machine=str(probe.get("machine") or ""),
            glibc=_version(glibc) if glibc else None,
        )
        mine = local_interpreter()
        if (python.version, python.machine) == (mine.version, mine.machine):
            return own
        log.info("remote %s: Python %s on %s: a bundle for it (its compiled parts differ)",
                 self.host, probe["version"], python.machine)  # fmt: skip
        try:
            bundle = await self.remotes.bundle(python)
        except BundleError as e:
            raise RemoteError(self.host, str(e)) from None
        if self.options.caching:
            assert self.conn is not None
            there = f"{probe['cache']}/{bundle.name}"
            check = shlex.join([probe["python"], "-c", CACHED_PY, there, bundle.digest])
            probe["cached"] = (await self.conn.run(check, check=False)).exit_status == 0
        return bundle

    async def _probe(self, bundle: Bundle) -> dict[str, Any]:
        """Find the Python, make the run directory, look for the cached bundle.

        The probe stays running as the run directory's guard (`guard`)."""
        assert self.conn is not None
        want = "{}.{}".format(*bundle.python)
        command = shlex.join(
            ["/bin/sh", "-c", PROBE_SH, "sh", PROBE_PY, want, bundle.digest,
             "1" if self.options.caching else "0"]
        )  # fmt: skip
        self.guard = probe = await self.conn.create_process(
            command, encoding="utf-8", errors="replace"
        )
        lines: list[dict[str, Any]] = []
        async for line in probe.stdout:
            # a login shell may say anything first (a banner): only the probe's lines count
            if line.startswith(PROBE_MARK) and isinstance(
                found := _json(line.removeprefix(PROBE_MARK)), dict
            ):
                lines.append(found)
                if "run" in found:
                    return lines[-1]
        await probe.wait_closed()
        status = probe.exit_status
        if status == 3:
            seen = ", ".join(
                f"{x['python']} is {x.get('implementation', 'Python')} {x['version']}"
                for x in lines
            )
            raise RemoteError(
                self.host,
                "no CPython 3.11 or newer on its PATH (looked for python3, python3.11 to "
                "python3.14" + (f"; {seen}" if seen else "") + "): install python3 there",
            )
        err = str(await probe.stderr.read()).strip().splitlines()
        raise RemoteError(
            self.host, f"the probe failed (exit {status})" + (f": {err[-1]}" if err else "")
        )

    async def _release_guard(self, *, keep: bool) -> None:
        """End the probe: "keep" the run directory (the agent has it), or not (removed)."""
        guard, self.guard = self.guard, None
        if guard is None:
            return
        with contextlib.suppress(TimeoutError, *_Errors()):
            if keep:
                guard.stdin.write("keep\n")
            guard.stdin.write_eof()
            async with asyncio.timeout(CLEANUP_TIMEOUT):
                await guard.wait_closed()

    async def _copy(self, bundle: Bundle, probe: dict[str, Any]) -> str:
        """Copy the bundle (unless cached) and the graph files; the bundle's path there."""
        assert self.conn is not None and self.run_dir is not None
        part = Path(self.run_dir).name  # the guard knows the temporary names by it
        async with self.conn.start_sftp_client() as sftp:
            if self.options.caching:
                there = f"{probe['cache']}/{bundle.name}"
            else:
                there = f"{self.run_dir}/{bundle.name}"
            if probe["cached"] and self.options.caching:
                log.info("remote %s: the bundle is cached there (%s)", self.host, there)
            else:
                self._emit("copying", f"the bundle ({bundle.size / 1e6:.1f} MB) to {there}")
                await _put(sftp, str(bundle.path), there, part)
            for local, rel in self.spec.layout().items():
                data = await asyncio.to_thread(local.read_bytes)
                await _write(sftp, data, f"{self.run_dir}/{rel}")
                self.copied[local] = data
            known = self.options.ssh.known_hosts or Path("~/.ssh/known_hosts").expanduser()
            if self.spec.children and known.exists():
                await _put(sftp, str(known), f"{self.run_dir}/known_hosts", part)
        return there

    def _agent_argv(self, python: str, bundle: str, tunnel: str) -> list[str]:
        """The remote agent's command line (mgmt's, plus the run directory)."""
        o = self.options
        run = self.run_dir
        assert run is not None
        layout = self.spec.layout()
        argv = [python, bundle, "run", "--hostname", self.host, "--no-server"]
        argv += ["--tunnel", tunnel, "--remote-child", run]
        argv += ["--depth", str(o.depth + 1), "--max-depth", str(o.max_depth)]
        if o.converged_timeout is not None:
            argv += ["--converged-timeout", f"{o.converged_timeout:g}"]
        argv += ["--noop"] if o.noop else []
        argv += ["--json"] if o.json else []
        argv += list(o.verbosity)
        argv += ["--sema", str(o.sema)] if o.sema else []
        argv += [] if o.watch else ["--no-watch"]
        argv += ["--prefix", f"{run}/state"] if o.tmp_prefix else []
        for child in self.spec.children:
            argv += ["--remote", f"{run}/{layout[child.file]}"]
        if self.spec.children:
            argv += ["--ssh-known-hosts", f"{run}/known_hosts", "--cconns", str(o.cconns)]
            argv += [] if o.caching else ["--no-caching"]
            argv += ["--ssh-accept-new"] if o.ssh.accept_new else []
        argv.append(f"{run}/{layout[self.spec.file]}")
        ttl = os.environ.get("PYMGMT_LEASE_TTL")
        return (["/usr/bin/env", f"PYMGMT_LEASE_TTL={ttl}"] if ttl else []) + argv

    async def _joined(self) -> None:
        """Wait until the agent registered in the cluster, or exited first."""
        assert self.process is not None
        joined = asyncio.ensure_future(self.remotes.registered(self.host))
        exited = asyncio.ensure_future(self.process.wait_closed())
        try:
            await asyncio.wait([joined, exited], return_when=asyncio.FIRST_COMPLETED)
        finally:
            joined.cancel()
            exited.cancel()

    # -- while it runs ---------------------------------------------------------------

    async def _follow(self) -> int:
        """Stream the agent's output and copy saved graph files until it exits."""
        assert self.process is not None
        process = self.process
        async with asyncio.TaskGroup() as tg:
            live = tg.create_task(self._live_files() if self.options.watch else _idle())
            await process.wait_closed()
            await asyncio.wait(self._readers, timeout=CLEANUP_TIMEOUT)
            live.cancel()
        status = process.exit_status
        if status is None or status < 0:
            signal_name = process.exit_signal[0] if process.exit_signal else None
            raise RemoteError(
                self.host,
                f"the agent was killed by {signal_name}" if signal_name
                else "the SSH connection was lost while its agent ran",
            )  # fmt: skip
        return int(status)

    async def _stdout(self, process: asyncssh.SSHClientProcess[str]) -> None:
        """The agent's lines, to this host's reporters (a lost connection ends them)."""
        with contextlib.suppress(*_Errors()):
            async for line in process.stdout:
                text = line.rstrip("\n")
                if text.strip():  # the recap's spacing: nothing to show
                    self.remotes.emit(RemoteOutput(self.host, text, self._as_event(text)))

    def _as_event(self, text: str) -> dict[str, object] | None:
        """A remote agent's JSON event, marked with the host it came from (``--json``).

        An event may name a host deeper down (``"remote"``) only if that host
        is in this one's subtree: any other claim (another host, none) is
        overwritten with this host, which said it.
        """
        if not self.options.json or not text.startswith("{"):
            return None
        try:
            obj = json.loads(text)
        except ValueError:
            return None
        if not isinstance(obj, dict):
            return None
        via = obj.get("via")
        if obj.get("remote") in self.deeper and isinstance(via, list):
            obj["via"] = [self.host, *(v for v in via if isinstance(v, str))]
        elif obj.get("remote") in self.deeper:
            obj["via"] = [self.host]
        else:
            obj["remote"] = self.host
            obj.pop("via", None)
        return obj

    async def _stderr(self, process: asyncssh.SSHClientProcess[str]) -> None:
        with contextlib.suppress(*_Errors()):
            async for line in process.stderr:
                if not line.strip() or self._deeper_ended(line):
                    continue
                relay(self.host, redact(visible(line.rstrip())))

    def _deeper_ended(self, line: str) -> bool:
        """An intermediate host's word that one of its own hosts ended: into our recap.

        Only hosts of this one's subtree are taken; the line is never shown.
        """
        if not line.startswith(ENDED_MARK) or not self.deeper:
            return False
        ended = _json(line.removeprefix(ENDED_MARK))
        if not isinstance(ended, dict) or ended.get("host") not in self.deeper:
            return False
        code = ended.get("exit_code")
        via = ended.get("via")
        self.remotes.emit(
            RemoteChanged(
                str(ended["host"]),
                "exited" if isinstance(code, int) else "failed",
                visible(str(ended.get("message", ""))),
                code if isinstance(code, int) else None,
                via=(self.host, *(str(v) for v in via if isinstance(v, str)))
                if isinstance(via, list) else (self.host,),
            )
        )  # fmt: skip
        return True

    async def _live_files(self) -> None:
        """Live remote hacking: a graph file saved here is checked, then copied there.

        Saves since the set-up copied the files count too (they were watched
        from the start)."""
        layout = self.spec.layout()
        while True:
            for f, rel in layout.items():
                data = _read(f)
                if data is None or data == self.copied.get(f):
                    continue
                self.copied[f] = data  # an invalid one too: it is not tried again unchanged
                await self._update(f, rel, data)
            await self._saved.wait()
            while True:  # quiet first: editors truncate, write, rename
                self._saved.clear()
                try:
                    async with asyncio.timeout(DEBOUNCE):
                        await self._saved.wait()
                except TimeoutError:
                    break

    async def _update(self, local: Path, rel: str, data: bytes) -> None:
        """Copy one saved graph file over, if it is valid (the remote keeps its graph if not)."""
        from ..frontends.yamlgraph import parse

        try:
            graph = await asyncio.to_thread(parse, data, str(local))
        except InputError as e:
            errors = e.errors if isinstance(e, InputErrors) else [e]
            log.error(
                "remote %s: %s was saved but is invalid, not copied (the remote keeps its "
                "graph):\n%s", self.host, local, "\n".join(f"  {x}" for x in errors),
            )  # fmt: skip
            return
        assert self.conn is not None and self.run_dir is not None
        try:
            async with self.conn.start_sftp_client() as sftp:
                await _write(sftp, data, f"{self.run_dir}/{rel}")
        except _Errors() as e:
            log.error("remote %s: could not copy %s: %s", self.host, local, _error_text(e))
            return
        self._emit("updated", f"copied the new {local.name}")
        spec = next((d for d in _subtree(self.spec) if d.file == local), None)
        header = (graph.remote, graph.hostname, tuple(graph.remotes))
        if spec is not None and header != spec.header:
            log.warning(
                "remote %s: %s now says another remote:, hostname: or remotes:; the "
                "hosts stay as they were until pymgmt run starts again", self.host, local,
            )  # fmt: skip

    # -- the end ---------------------------------------------------------------------

    async def stop(self, message: str) -> None:
        """Tell the agent how to stop (or cancel its set-up); wait for the clean-up."""
        self.stopping = True
        process = self.process
        if process is None:
            if self._set_up_task is not None:
                self._set_up_task.cancel()
        elif process.exit_status is None:
            await self._take_accepted_keys()
            with contextlib.suppress(*_Errors()):
                process.stdin.write(message + "\n")
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await process.wait_closed()
            except TimeoutError:
                log.warning("remote %s: the agent did not stop within %g s; closing its "
                            "session", self.host, STOP_TIMEOUT)  # fmt: skip
                process.close()
        await self._done.wait()

    async def _take_accepted_keys(self) -> None:
        """--ssh-accept-new through an intermediate host: the keys it accepted for its
        own hosts are recorded here too, so the next run checks them.

        Its copy of known_hosts is untrusted input: only lines for the hosts of
        its subtree, in known_hosts' plain form, are taken.
        """
        if not (self.options.ssh.accept_new and self.spec.children) or self.run_dir is None:
            return
        assert self.conn is not None
        names = {known_hosts_name(d.target.host, d.target.port)
                 for c in self.spec.children for d in _subtree(c)}  # fmt: skip
        trouble: tuple[type[BaseException], ...] = (TimeoutError, *_Errors())
        try:
            async with asyncio.timeout(CLEANUP_TIMEOUT):
                data = await self._read_there(f"{self.run_dir}/known_hosts")
            text = data.decode(errors="replace")
        except trouble as e:
            log.debug("remote %s: no known_hosts to take back: %s", self.host, e)
            return
        lines = [x for x in text.splitlines() if _plain_host_key(x, names)]
        path = self.options.ssh.known_hosts_path()
        for line in await asyncio.to_thread(remember_host_keys, path, lines):
            log.warning("remote %s: recorded in %s the host key it accepted: %s",
                        self.host, path, visible(line))  # fmt: skip

    async def _read_there(self, path: str, limit: int = 1 << 20) -> bytes:
        """The first `limit` bytes of a file on the host (over SFTP)."""
        assert self.conn is not None
        async with self.conn.start_sftp_client() as sftp, sftp.open(path, "rb") as fh:
            data: bytes = await fh.read(limit)
        return data

    async def _clean_up(self) -> None:
        """Remove the run directory (the agent removes it itself; not if killed); disconnect."""
        conn = self.conn
        if conn is None:
            return
        await self._release_guard(keep=False)
        for reader in self._readers:
            reader.cancel()
        trouble: tuple[type[BaseException], ...] = (TimeoutError, *_Errors())
        try:
            async with asyncio.timeout(CLEANUP_TIMEOUT):
                if self.run_dir is not None:
                    async with conn.start_sftp_client() as sftp:
                        if await sftp.exists(self.run_dir):
                            await sftp.rmtree(self.run_dir)
        except trouble as e:
            log.warning("remote %s: could not remove %s: %s", self.host, self.run_dir, e)
        finally:
            conn.close()
            with contextlib.suppress(*trouble):
                async with asyncio.timeout(CLEANUP_TIMEOUT):
                    await conn.wait_closed()


def _plain_host_key(line: str, names: set[str]) -> bool:
    """`line` is ``NAME KEYTYPE BASE64`` for one of `names`, and nothing else."""
    parts = line.split()
    return (
        len(parts) == 3
        and parts[0] in names
        and re.fullmatch(r"(ssh|ecdsa|sk)-[a-z0-9@.-]+", parts[1]) is not None
        and re.fullmatch(r"[A-Za-z0-9+/]+=*", parts[2]) is not None
    )


def _subtree(spec: RemoteSpec) -> list[RemoteSpec]:
    return [spec, *(d for c in spec.children for d in _subtree(c))]


async def _put(sftp: Any, local: str, there: str, part: str) -> None:
    """Copy a file to a temporary name beside its place, then rename it into place.

    The temporary name ends in `part` (the run directory's name): the guard
    removes what a killed copy left.
    """
    parent, _, name = there.rpartition("/")
    tmp = f"{parent}/.{name}.part-{part}"
    await sftp.put(local, tmp)
    await sftp.posix_rename(tmp, there)


async def _write(sftp: Any, data: bytes, there: str) -> None:
    """Write `data` as the file `there` (made 0600 first: no reader sees it half
    written, or with a mode it never should have had)."""
    parent, _, name = there.rpartition("/")
    await sftp.makedirs(parent, exist_ok=True)
    new = f"{parent}/.{name}.new"
    async with sftp.open(new, "wb", attrs=_private_attrs()) as fh:
        await fh.write(data)
    await sftp.posix_rename(new, there)


def _private_attrs() -> Any:
    import asyncssh

    return asyncssh.SFTPAttrs(permissions=0o600)


async def _idle() -> None:
    await asyncio.Event().wait()


def _tell_initiator(event: RemoteChanged) -> None:
    """An intermediate host says on stderr how one of its own hosts ended (`ENDED_MARK`)."""
    word = {"host": event.host, "exit_code": event.exit_code, "message": event.message,
            "via": list(event.via)}  # fmt: skip
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(ENDED_MARK + json.dumps(word) + "\n")
        sys.stderr.flush()


def _json(text: str) -> object:
    """The JSON value `text` holds; None if it holds none."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def _version(text: str) -> tuple[int, int]:
    """ "3.12" -> (3, 12)."""
    major, _, minor = str(text).partition(".")
    return int(major), int(minor.split(".")[0] or 0)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _exit_text(code: int | None) -> str:
    return {0: "no change", 2: "changes made", 4: "failures", 6: "changes and failures"}.get(
        code if code is not None else -1, ""
    )


def _Errors() -> tuple[type[BaseException], ...]:
    """What a remote host's SSH, SFTP or network trouble raises."""
    import asyncssh

    return (OSError, asyncssh.Error)


def _error_text(e: BaseException) -> str:
    import asyncssh

    if isinstance(e, asyncssh.Error):
        return e.reason or type(e).__name__
    return str(e) or type(e).__name__


__all__ = ["RemoteOptions", "Remotes", "Session"]
