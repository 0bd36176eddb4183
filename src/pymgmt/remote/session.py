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
from ..world.base import World, keys
from .spec import DEFAULT_MAX_DEPTH, RemoteSpec
from .ssh import RemoteError, SshOptions

if TYPE_CHECKING:
    import asyncssh

    from ..engine.converger import Converger
    from ..events.inotify import InotifyHub
    from .bundle import Bundle

log = logging.getLogger("pymgmt.remote")

#: how long a remote agent may take to stop once told to (its graph's
#: running applies finish first, as on a local stop)
STOP_TIMEOUT = 30.0
#: how long the clean-up of one host may take (the run directory, the tunnel)
CLEANUP_TIMEOUT = 10.0
#: editors save in bursts: wait for this much quiet before copying a file
DEBOUNCE = 0.05

#: Finds a Python of the bundle's version on the remote's PATH and runs the
#: probe with it. Constant: the arguments come as "$@", never spliced in.
PROBE_SH = r"""
code=$1; shift
for p in python3.11 python3; do
  exe=$(command -v "$p" 2>/dev/null) || continue
  "$exe" -c "$code" "$exe" "$@"
  status=$?
  [ "$status" -eq 3 ] || exit "$status"
done
exit 3
"""

#: Runs on any Python 3 (the version is checked before anything else): says
#: which interpreter it is, makes the run directory, checks the cached bundle.
PROBE_PY = r"""
import hashlib, json, os, sys, tempfile
exe, want, digest, caching = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
version = "%d.%d" % sys.version_info[:2]
if version != want:
    print(json.dumps({"python": exe, "version": version}))
    sys.exit(3)
home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
cache = os.path.join(home, "pymgmt", "bundles")
name = "pymgmt-%s.pyz" % digest[:24]
cached = False
if caching:
    os.makedirs(cache, 0o700, exist_ok=True)
    h = hashlib.sha256()
    try:
        with open(os.path.join(cache, name), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        cached = h.hexdigest() == digest
    except OSError:
        pass
run = tempfile.mkdtemp(prefix="pymgmt-run-")
print(json.dumps({"python": exe, "version": version, "run": run, "cache": cache,
                  "cached": cached}))
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
    """Every remote host of this run: started together, stopped together."""

    def __init__(
        self,
        specs: list[RemoteSpec],
        options: RemoteOptions,
        *,
        etcd: tuple[str, int],
        world: World,
        hub: InotifyHub,
        converger: Converger,
        emit: Callable[[Event], None],
    ) -> None:
        self.specs = specs
        self.options = options
        #: where this host's etcd client port is: each tunnel leads there
        self.etcd = etcd
        self.world = world
        self.hub = hub
        self.converger = converger
        self.emit = emit
        self.slots = asyncio.Semaphore(options.cconns) if options.cconns > 0 else None
        self.sessions = [Session(s, self) for s in specs]
        self._registered: dict[str, asyncio.Event] = {s.hostname: asyncio.Event() for s in specs}
        self._built: asyncio.Future[Bundle] | None = None

    async def run(self) -> None:
        """Set up every host and follow it until it ends; returns when all have."""
        from ..world.cluster import mirror_prefix

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
        await self._registered[host].wait()

    async def bundle(self) -> Bundle:
        """The bundle, built once for every host (in a thread: it zips tens of MB)."""
        if self._built is None:
            from .bundle import build_bundle

            self._built = asyncio.ensure_future(
                asyncio.to_thread(build_bundle, self.options.bundle_cache)
            )
        return await asyncio.shield(self._built)

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
        self.process: asyncssh.SSHClientProcess[str] | None = None
        self.run_dir: str | None = None
        self.stopping = False
        self._done = asyncio.Event()

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

        try:
            if self.remotes.slots is not None:
                async with self.remotes.slots:
                    await self._set_up()
            else:
                await self._set_up()
            await self._joined()
            release()
            code = await self._follow()
            self._emit("exited", _exit_text(code), code)
        except RemoteError as e:
            self._emit("failed", e.message)
        except _Errors() as e:
            self._emit("failed", _error_text(e))
        finally:
            release()
            self._done.set()
            await self._clean_up()

    # -- set-up --------------------------------------------------------------------

    async def _set_up(self) -> None:
        from .ssh import connect

        if self.stopping:
            raise RemoteError(self.host, "not started: the run was stopping")
        opts = self.options.ssh
        if self.spec.children:
            opts = dataclasses.replace(opts, agent_forwarding=True)
        self._emit("connecting", self.spec.target.label)
        self.conn = await connect(self.spec.target, opts)
        bundle = await self.remotes.bundle()
        probe = await self._probe(bundle)
        self.run_dir = probe["run"]
        remote_bundle = await self._copy(bundle, probe)
        assert self.conn is not None
        listener = await self.conn.forward_remote_port("127.0.0.1", 0, *self.remotes.etcd)
        port = listener.get_port()
        log.debug("remote %s: tunnel 127.0.0.1:%d there -> %s:%d here", self.host, port,
                  *self.remotes.etcd)  # fmt: skip
        argv = self._agent_argv(probe["python"], remote_bundle, port)
        log.debug("remote %s: running %s", self.host, shlex.join(argv))
        self.process = await self.conn.create_process(
            "exec " + shlex.join(argv), encoding="utf-8", errors="replace"
        )
        self._emit("running", f"{probe['python']} (Python {probe['version']})")

    async def _probe(self, bundle: Bundle) -> dict[str, Any]:
        """Find the Python, make the run directory, look for the cached bundle."""
        assert self.conn is not None
        want = "{}.{}".format(*bundle.python)
        command = shlex.join(
            ["/bin/sh", "-c", PROBE_SH, "sh", PROBE_PY, want, bundle.digest,
             "1" if self.options.caching else "0"]
        )  # fmt: skip
        result = await self.conn.run(command, check=False)
        lines = [json.loads(x) for x in str(result.stdout).splitlines() if x.startswith("{")]
        if result.exit_status == 0 and lines and "run" in lines[-1]:
            found: dict[str, Any] = lines[-1]
            return found
        if result.exit_status == 3:
            seen = ", ".join(f"{x['python']} is {x['version']}" for x in lines)
            raise RemoteError(
                self.host,
                f"no Python {want} on its PATH (looked for python3.11 and python3"
                + (f"; {seen}" if seen else "")
                + f"): the bundle's compiled parts are built for CPython {want}",
            )
        err = str(result.stderr).strip().splitlines()
        raise RemoteError(
            self.host,
            f"the probe failed (exit {result.exit_status})" + (f": {err[-1]}" if err else ""),
        )

    async def _copy(self, bundle: Bundle, probe: dict[str, Any]) -> str:
        """Copy the bundle (unless cached) and the graph files; the bundle's path there."""
        assert self.conn is not None and self.run_dir is not None
        async with self.conn.start_sftp_client() as sftp:
            if self.options.caching:
                there = f"{probe['cache']}/{bundle.name}"
            else:
                there = f"{self.run_dir}/{bundle.name}"
            if probe["cached"] and self.options.caching:
                log.info("remote %s: the bundle is cached there (%s)", self.host, there)
            else:
                self._emit("copying", f"the bundle ({bundle.size / 1e6:.1f} MB) to {there}")
                await _put(sftp, str(bundle.path), there)
            for local, rel in self.spec.layout().items():
                await _put(sftp, str(local), f"{self.run_dir}/{rel}", mkdirs=True)
            known = self.options.ssh.known_hosts or Path("~/.ssh/known_hosts").expanduser()
            if self.spec.children and known.exists():
                await _put(sftp, str(known), f"{self.run_dir}/known_hosts")
        return there

    def _agent_argv(self, python: str, bundle: str, port: int) -> list[str]:
        """The remote agent's command line (mgmt's, plus the run directory)."""
        o = self.options
        run = self.run_dir
        assert run is not None
        layout = self.spec.layout()
        argv = [python, bundle, "run", "--hostname", self.host, "--no-server"]
        argv += ["--seeds", f"http://127.0.0.1:{port}", "--remote-child", run]
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
        return (["env", f"PYMGMT_LEASE_TTL={ttl}"] if ttl else []) + argv

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

    async def _follow(self) -> int | None:
        """Stream the agent's output and copy saved graph files until it exits."""
        assert self.process is not None
        process = self.process
        async with asyncio.TaskGroup() as tg:
            out = tg.create_task(self._stdout(process))
            err = tg.create_task(self._stderr(process))
            live = tg.create_task(self._live_files() if self.options.watch else _idle())
            await process.wait_closed()
            await asyncio.wait([out, err], timeout=CLEANUP_TIMEOUT)
            for t in (out, err, live):
                t.cancel()
        status = process.exit_status
        if status is None or status < 0:
            signal_name = process.exit_signal[0] if process.exit_signal else None
            raise RemoteError(
                self.host,
                f"the agent was killed by {signal_name}" if signal_name
                else "the connection was lost before the agent exited",
            )  # fmt: skip
        return int(status)

    async def _stdout(self, process: asyncssh.SSHClientProcess[str]) -> None:
        async for line in process.stdout:
            text = line.rstrip("\n")
            if not text.strip():
                continue  # the recap's spacing: nothing to show
            self.remotes.emit(RemoteOutput(self.host, text, self._as_event(text)))

    def _as_event(self, text: str) -> dict[str, object] | None:
        """A remote agent's JSON event, marked with the host it came from (``--json``)."""
        if not self.options.json or not text.startswith("{"):
            return None
        try:
            obj = json.loads(text)
        except ValueError:
            return None
        if not isinstance(obj, dict):
            return None
        if "remote" in obj:  # from deeper down: this host was on the way
            via = obj.get("via")
            obj["via"] = [self.host, *(via if isinstance(via, list) else [])]
        else:
            obj["remote"] = self.host
        return obj

    async def _stderr(self, process: asyncssh.SSHClientProcess[str]) -> None:
        async for line in process.stderr:
            if not line.strip():
                continue
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(redact(f"[{self.host}] {visible(line.rstrip())}\n"))
                sys.stderr.flush()

    async def _live_files(self) -> None:
        """Live remote hacking: a graph file saved here is checked, then copied there."""
        layout = self.spec.layout()
        changed = asyncio.Event()
        subs = [self.remotes.hub.subscribe(str(f), changed.set) for f in layout]
        last = {f: _read(f) for f in layout}
        try:
            while True:
                await changed.wait()
                while True:  # quiet first: editors truncate, write, rename
                    changed.clear()
                    try:
                        async with asyncio.timeout(DEBOUNCE):
                            await changed.wait()
                    except TimeoutError:
                        break
                for f, rel in layout.items():
                    data = _read(f)
                    if data is None or data == last[f]:
                        continue
                    last[f] = data
                    await self._update(f, rel, data)
        finally:
            for s in subs:
                self.remotes.hub.unsubscribe(s)

    async def _update(self, local: Path, rel: str, data: bytes) -> None:
        """Copy one saved graph file over, if it is valid (the remote keeps its graph if not)."""
        from ..frontends.yamlgraph import parse

        try:
            await asyncio.to_thread(parse, data, str(local))
        except InputError as e:
            errors = e.errors if isinstance(e, InputErrors) else [e]
            log.error(
                "remote %s: %s was saved but is invalid, not copied (the remote keeps its "
                "graph):\n%s", self.host, local, "\n".join(f"  {x}" for x in errors),
            )  # fmt: skip
            return
        assert self.conn is not None and self.run_dir is not None
        there = f"{self.run_dir}/{rel}"
        new = f"{there}.new"
        try:
            async with self.conn.start_sftp_client() as sftp:
                async with sftp.open(new, "wb") as fh:
                    await fh.write(data)
                await sftp.posix_rename(new, there)  # the agent never reads half a file
        except _Errors() as e:
            log.error("remote %s: could not copy %s: %s", self.host, local, _error_text(e))
            return
        self._emit("updated", f"copied the new {local.name}")

    # -- the end ---------------------------------------------------------------------

    async def stop(self, message: str) -> None:
        """Tell the agent how to stop; wait for it (then for the clean-up)."""
        self.stopping = True
        process = self.process
        if process is not None and process.exit_status is None:
            with contextlib.suppress(*_Errors()):
                process.stdin.write(message + "\n")
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await process.wait_closed()
            except TimeoutError:
                log.warning("remote %s: the agent did not stop within %g s; closing its "
                            "session", self.host, STOP_TIMEOUT)  # fmt: skip
                process.close()
        elif self.conn is not None and process is None:
            self.conn.close()  # still setting up: give up on it
        await self._done.wait()

    async def _clean_up(self) -> None:
        """Remove the run directory (the agent removes it itself; not if killed); disconnect."""
        conn = self.conn
        if conn is None:
            return
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


async def _put(sftp: Any, local: str, there: str, *, mkdirs: bool = False) -> None:
    """Copy a file to a temporary name beside its place, then rename it into place."""
    parent, _, name = there.rpartition("/")
    if mkdirs and parent:
        await sftp.makedirs(parent, exist_ok=True)
    tmp = f"{parent}/.{name}.part-{os.getpid()}"
    await sftp.put(local, tmp)
    await sftp.posix_rename(tmp, there)


async def _idle() -> None:
    await asyncio.Event().wait()


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
