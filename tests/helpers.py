"""Test helpers: deadlines, a real agent process, graph files, leak probes.

Everything waits on a condition with a deadline; nothing sleeps and hopes.
The deadlines are generous (a loaded 2-core CI box is slow); they bound how
long a broken test hangs, they never assert speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import queue
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

#: How long to wait for something that should happen "at once".
DEADLINE = 15.0


def _pymgmt_argv() -> list[str]:
    script = Path(sys.executable).with_name("pymgmt")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "pymgmt.cli.main"]


#: argv prefix that starts the CLI of the pymgmt under test.
PYMGMT = _pymgmt_argv()


# -- waiting -------------------------------------------------------------------


async def until(
    predicate: Callable[[], object], what: str = "a condition", timeout: float = 15.0
) -> None:
    """Wait (yielding to the loop) until `predicate()` is true; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.002)


def wait_for(predicate: Callable[[], T], timeout: float = DEADLINE, what: str = "a condition") -> T:
    """Poll `predicate` until it returns something truthy; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def run_async(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run `coro` in a fresh event loop; fail if any other task is left pending.

    asyncio.run would silently cancel leftover tasks and so hide the leak; this
    checks first, then cleans up so later tests start from a clean slate.
    `timeout` bounds a hang; it is not an assertion on speed.
    """
    leftover: list[str] = []

    async def main() -> T:
        try:
            async with asyncio.timeout(timeout):
                return await coro
        except TimeoutError:
            raise AssertionError(f"coroutine did not finish within {timeout:g} s") from None
        finally:
            me = asyncio.current_task()
            leftover.extend(repr(t) for t in asyncio.all_tasks() if t is not me and not t.done())

    with asyncio.Runner() as runner:
        result = runner.run(main())
    assert not leftover, f"tasks still pending after the coroutine returned: {leftover}"
    return result


# -- files -----------------------------------------------------------------------


class EventLog:
    """A reporter that keeps every event, for in-process engine tests."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def emit(self, event: Any) -> None:
        self.events.append(event)

    def applied(self, vertex: str) -> int:
        """How many checks of `vertex` applied a change."""
        return sum(
            1
            for e in self.events
            if getattr(e, "vertex", None) == vertex and getattr(e, "applied", False)
        )

    def checks(self, vertex: str) -> list[Any]:
        """The `Checked` events of `vertex`, in order."""
        from pymgmt.report.events import Checked

        return [e for e in self.events if isinstance(e, Checked) and e.vertex == vertex]


class GraphQueue:
    """A frontend the test feeds graphs (or input errors) to, one at a time."""

    def __init__(self) -> None:
        self.q: asyncio.Queue[Any] = asyncio.Queue()

    async def graphs(self, hub: Any) -> Any:
        while True:
            yield await self.q.get()


def write_atomic(path: Path, data: bytes | str) -> None:
    """Replace `path` as an editor does: write a temporary file, rename it over."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.test-tmp")
    tmp.write_bytes(raw)
    os.replace(tmp, path)


def write_in_place(path: Path, data: bytes | str) -> None:
    """Truncate and rewrite `path` in place (the same inode)."""
    raw = data.encode() if isinstance(data, str) else data
    with open(path, "r+b" if path.exists() else "wb") as f:
        f.truncate(0)
        f.write(raw)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything observable about a tree: type, mode, owner, size, mtime, content."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames]:
            p = os.path.normpath(os.path.join(dirpath, name))
            if name == "." and p != os.path.normpath(root):
                continue
            st = os.lstat(p)
            content = b""
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    content = f.read()
            out[os.path.relpath(p, root)] = (
                stat.S_IFMT(st.st_mode),
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                st.st_size,
                st.st_mtime_ns,
                content,
            )
    return out


def resource_context(tmp_path: Path) -> Any:
    """A `Context` for driving one resource's verbs in-process (no engine, no watch)."""
    import logging

    from pymgmt.resources.base import Context

    return Context(
        hostname="test",
        log=logging.getLogger("test"),
        state_root=tmp_path / "state",
        world=None,  # type: ignore[arg-type]
        inotify=None,  # type: ignore[arg-type]
        dbus=None,  # type: ignore[arg-type]
        _event=lambda: None,
        _ready=lambda: None,
    )


# -- terminals -------------------------------------------------------------------


def terminal_rows(written: str) -> list[str]:
    """What a terminal shows of `written`, row by row (the last row, unfinished, too):
    a carriage return starts the row again, ESC [ K erases it."""
    import re

    shown: list[str] = []
    row = ""
    for part in re.split(r"(\r\x1b\[K|\r|\n)", written):
        if part in ("\r\x1b[K", "\r"):
            row = ""
        elif part == "\n":
            shown.append(row)
            row = ""
        else:
            row += part
    return [*shown, row]


# -- graph files -------------------------------------------------------------------


def graph_doc(
    name: str,
    *,
    files: Iterable[dict[str, Any]] = (),
    execs: Iterable[dict[str, Any]] = (),
    edges: Iterable[tuple[str, str]] = (),
) -> dict[str, Any]:
    """An mgmt YAML document; edges are ("kind:name", "kind:name") pairs."""
    resources: dict[str, list[dict[str, Any]]] = {}
    if files:
        resources["file"] = list(files)
    if execs:
        resources["exec"] = list(execs)
    doc: dict[str, Any] = {"graph": name, "resources": resources}
    if edges:
        doc["edges"] = [
            {
                "name": f"{a}->{b}",
                "from": dict(zip(("kind", "name"), a.split(":", 1), strict=True)),
                "to": dict(zip(("kind", "name"), b.split(":", 1), strict=True)),
            }
            for a, b in edges
        ]
    return doc


def files_graph(tmp_path: Path, name: str, *files: dict[str, Any]) -> Path:
    """`tmp_path`/graph.yaml: a graph of file resources only."""
    graph = tmp_path / "graph.yaml"
    write_graph(graph, graph_doc(name, files=list(files)))
    return graph


def bytes_or_none(path: Path) -> bytes | None:
    """A file's bytes; None while it is missing."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def sendrecv_edge(name: str, src: str, dst: str, send: str, recv: str) -> dict[str, Any]:
    """A Send/Recv edge of an mgmt YAML document; `src` and `dst` are "kind:name"."""
    return {
        "name": name,
        "from": dict(zip(("kind", "name"), src.split(":", 1), strict=True)),
        "to": dict(zip(("kind", "name"), dst.split(":", 1), strict=True)),
        "send": send,
        "recv": recv,
    }


def dump(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1 << 20)


def write_graph(path: Path, doc: dict[str, Any], *, how: str = "replace") -> None:
    """Write a graph file atomically ("replace") or by rewriting it ("inplace")."""
    text = dump(doc)
    if how == "replace":
        write_atomic(path, text)
    elif how == "inplace":
        write_in_place(path, text)
    else:
        raise ValueError(how)


def sentinel_res(directory: Path) -> dict[str, Any]:
    """A file resource that `Agent.barrier` disturbs to prove the agent caught up."""
    return {"name": "sentinel", "path": str(directory / "sentinel"), "content": "sentinel\n"}


# -- JSON event predicates -------------------------------------------------------------


def checked(
    vertex: str,
    *,
    applied: bool | None = None,
    drift: bool | None = None,
    reason: str | None = None,
    changed: bool | None = None,
) -> Callable[[dict[str, Any]], bool]:
    """Match a `checked` event of `vertex`; `changed` means the plan was not empty."""

    def match(ev: dict[str, Any]) -> bool:
        return (
            ev.get("event") == "checked"
            and ev.get("vertex") == vertex
            and (applied is None or ev["applied"] is applied)
            and (drift is None or ev["drift"] is drift)
            and (reason is None or ev["reason"] == reason)
            and (changed is None or bool(ev["changes"]) is changed)
        )

    return match


def see_drift_repaired(
    agent: Agent,
    vertex: str,
    path: Path,
    want: bytes,
    sentinel: Path,
    *,
    repairs: int = 1,
    in_place: bool = False,
) -> None:
    """Edit `path` behind `agent`'s back, see it put back to `want` as drift, stop
    the agent, and check its recap counts `repairs` repairs in all.

    `in_place`: rewrite the file itself, with no temporary file beside it (in a
    purged tree, an editor's temporary file is itself drift, and purged).
    """
    since = agent.mark()
    edit = write_in_place if in_place else write_atomic
    edit(path, "edited behind the agent's back\n")

    wait_for(lambda: bytes_or_none(path) == want, what=f"{path} to be repaired")
    i = agent.wait_event(checked(vertex, applied=True), since=since, what="the repair")
    assert agent.events[i]["drift"], agent.events[i]
    agent.barrier(sentinel)
    assert agent.stop() == 0
    assert agent.recap()["resources"][vertex]["repaired"] == repairs


def event(name: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda ev: ev.get("event") == name and all(ev.get(k) == v for k, v in fields.items())


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- the CLI, run once ----------------------------------------------------------------------


def run_once(
    graph: Path, prefix: Path, *args: str, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """`pymgmt run --converged-timeout 0`; a hang past `timeout` kills it and fails."""
    argv = [*PYMGMT, "run", "--prefix", str(prefix), "--converged-timeout", "0", *args, str(graph)]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(
            f"pymgmt did not exit within {timeout:g} s (hung?)\nstderr:\n{e.stderr}"
        ) from None


def recap_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON `recap` object: always the last line of a --json run."""
    events = json_lines(proc.stdout)
    assert events, f"no JSON output; stderr:\n{proc.stderr}"
    assert events[-1]["event"] == "recap", events[-1]
    return events[-1]


# -- the agent, running --------------------------------------------------------------------


class Agent:
    """A real `pymgmt run` process, its JSON events collected by a reader thread.

    Use through the `agent` fixture, which always kills and reaps it.
    """

    def __init__(
        self,
        graph: Path,
        prefix: Path | None,
        *args: str,
        json_mode: bool = True,
        env: dict[str, str] | None = None,
        wrapper: Sequence[str] = (),
    ) -> None:
        """`wrapper` is an argv prefix the agent runs under: say ``ip netns exec NS``
        (tests/netns.py), which execs it, so `pid` is still the agent's."""
        self.graph = graph
        self.json_mode = json_mode
        where = ["--prefix", str(prefix)] if prefix is not None else []  # None: --tmp-prefix
        self.argv = [*wrapper, *PYMGMT, "run", *where, *args]
        if json_mode:
            self.argv.append("--json")
        self.argv.append(str(graph))
        #: parsed JSON events (json mode) or {"event": "_text", "line": ...}: stderr's lines
        self.events: list[dict[str, Any]] = []
        self.bad_lines: list[str] = []
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._stderr: list[str] = []
        self._eof = False
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=None if env is None else {**os.environ, **env},
        )
        self.pid = self.proc.pid
        self._threads = [
            threading.Thread(target=self._read_stdout, name=f"agent-{self.pid}-out", daemon=True),
            threading.Thread(target=self._read_stderr, name=f"agent-{self.pid}-err", daemon=True),
        ]
        for t in self._threads:
            t.start()

    # -- reader threads ---------------------------------------------------------------

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not self.json_mode:  # stdout is for --json only (README "Output")
                self.bad_lines.append(line)
                continue
            try:
                self._queue.put(json.loads(line))
            except ValueError:
                self.bad_lines.append(line)
        if self.json_mode:
            self._queue.put(None)

    def _read_stderr(self) -> None:
        """The log lines; without --json they are the events (``_text``)."""
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)
            if not self.json_mode:
                self._queue.put({"event": "_text", "line": line.rstrip("\n")})
        if not self.json_mode:
            self._queue.put(None)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def describe(self) -> str:
        self._pull(0)  # what arrived so far: a stop that hangs shows how far it got
        tail = "\n".join(json.dumps(e)[:300] for e in self.events[-15:])
        return (
            f"agent pid {self.pid} returncode {self.proc.poll()}\n"
            f"last events:\n{tail}\nstderr tail:\n{self.stderr[-3000:]}"
        )

    # -- events ---------------------------------------------------------------------------

    def _pull(self, timeout: float) -> bool:
        """Move queued events into `events`; True if anything arrived."""
        try:
            item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return False
        while True:
            if item is None:
                self._eof = True
            else:
                self.events.append(item)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return True

    def mark(self) -> int:
        """The index the next event will have: pass it as `since` later."""
        self._pull(0)
        return len(self.events)

    def find(
        self, pred: Callable[[dict[str, Any]], bool], since: int = 0, until: int | None = None
    ) -> list[dict[str, Any]]:
        self._pull(0)
        return [e for e in self.events[since:until] if pred(e)]

    def wait_event(
        self,
        pred: Callable[[dict[str, Any]], bool],
        *,
        since: int = 0,
        timeout: float = DEADLINE,
        what: str = "an event",
    ) -> int:
        """Wait for an event at index >= `since` matching `pred`; return its index."""
        deadline = time.monotonic() + timeout
        scanned = since
        while True:
            for i in range(scanned, len(self.events)):
                if pred(self.events[i]):
                    return i
            scanned = max(scanned, len(self.events))
            if self._eof:
                raise AssertionError(f"agent exited before {what}\n{self.describe()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout:g} s waiting for {what}\n{self.describe()}"
                )
            self._pull(min(remaining, 0.5))

    def wait_checked(self, vertices: Iterable[str], *, since: int = 0) -> int:
        """Wait until each vertex was checked (or failed) once; return the last index."""
        last = since
        for v in vertices:
            done = checked(v)
            i = self.wait_event(
                lambda e, v=v, done=done: (
                    done(e) or (e.get("event") == "failed" and e.get("vertex") == v)
                ),
                since=since,
                what=f"a check of {v}",
            )
            last = max(last, i)
        return last

    def barrier(self, sentinel: Path) -> int:
        """Disturb the sentinel file and wait for its repair; return that event's index.

        Inotify events reach the agent in order, so by the time the sentinel is
        repaired, every earlier change has been dispatched and handled: events
        before the returned index are all the agent will say about them.
        """
        # Its own creation must be over first, or that event would be taken
        # for the repair, and the disturbance might be "fixed" as a first apply.
        self.wait_checked(["File[sentinel]"])
        since = self.mark()
        write_atomic(sentinel, "disturbed\n")
        i = self.wait_event(
            checked("File[sentinel]", applied=True, drift=True),
            since=since,
            what="the sentinel's repair (barrier)",
        )
        assert sentinel.read_text() == "sentinel\n"
        return i

    # -- the process ----------------------------------------------------------------

    def send(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = DEADLINE) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"agent did not exit within {timeout:g} s\n{self.describe()}"
            ) from None
        self._join()
        return code

    def stop(self, sig: int = signal.SIGINT, timeout: float = DEADLINE) -> int:
        """Send `sig` and wait (with a deadline) for the process to exit."""
        self.send(sig)
        return self.wait_exit(timeout)

    def _join(self) -> None:
        for t in self._threads:
            t.join(timeout=DEADLINE)
        self._pull(0)

    def close(self) -> None:
        """Kill (if still running), reap, join the readers, close the pipes."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        self.proc.wait()
        self._join()
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()

    def recap(self) -> dict[str, Any]:
        """The final JSON `recap` object (after the process exited)."""
        self._pull(0)
        assert self.events and self.events[-1].get("event") == "recap", self.describe()
        return self.events[-1]


#: runs the rest of the argv with the directory $0 bound over /etc, in a new mount namespace
_BIND_ETC = 'mount --bind "$0" /etc && exec "$@"'


def etc_wrapper(etc: Path) -> list[str]:
    """The argv prefix that runs a command with the private /etc copy `etc` as its /etc.

    A new mount namespace, so useradd and the C library's lookups inside it
    see the copy, and the machine's own accounts are never touched.
    """
    return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", _BIND_ETC]


def etc_entries(etc: Path, name: str) -> dict[str, list[str]]:
    """The lines of etc/<name> (passwd, group), as fields by first field."""
    out: dict[str, list[str]] = {}
    for line in (etc / name).read_text().splitlines():
        fields = line.split(":")
        out[fields[0]] = fields
    return out


def in_mounts_of(pid: int, *argv: str) -> None:
    """Run argv in the mount namespace of process `pid` (drift made where the agent looks)."""
    ns = ["nsenter", "--target", str(pid), "--mount", "--"]
    subprocess.run([*ns, *argv], check=True, capture_output=True)


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


# -- packages (the pkg tests change this machine's packages for real) ---------------------


def installed(name: str) -> bool:
    """Is the Debian package `name` installed, according to dpkg?"""
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Abbrev}", name],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.startswith("ii")


def apt(*args: str) -> None:
    """Run apt-get non-interactively (waiting for the dpkg lock); fail loudly."""
    subprocess.run(
        ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=600", *args],
        check=True,
        capture_output=True,
        timeout=600,
        env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )


@contextlib.contextmanager
def without_packages(names: Sequence[str]) -> Iterator[None]:
    """Start with none of `names` installed and leave none behind.

    First checks that dpkg is usable: a package run killed half-way (an
    earlier test run stopped with kill) leaves dpkg "interrupted", and every
    apt-get then fails; say so at once instead of as each test's timeout.
    """
    audit = subprocess.run(["dpkg", "--audit"], capture_output=True, text=True, check=False)
    if audit.stdout.strip():
        raise AssertionError(
            "dpkg was left interrupted by an earlier package run; "
            "scripts/system/prepare finishes it (dpkg --configure -a):\n" + audit.stdout
        )
    _remove_installed(names)
    try:
        yield
    finally:
        _remove_installed(names)


def _remove_installed(names: Sequence[str]) -> None:
    present = [p for p in names if installed(p)]
    if present:
        apt("remove", *present)


# -- a private D-Bus message bus --------------------------------------------------------------

_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>{type}</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  {servicedirs}
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""


class PrivateBus:
    """A real `dbus-daemon` of our own: its own config and socket, nobody else's bus.

    Another job on the machine that restarts or stops the host's system bus
    cannot disturb it. Services it bus-activates (from `servicedirs`) are
    started directly by the daemon (no setuid launch helper) and inherit its
    environment plus `env` (say, DBUS_SYSTEM_BUS_ADDRESS, for daemons that
    use "the system bus").
    """

    def __init__(
        self,
        directory: Path,
        *,
        bus_type: str = "session",
        servicedirs: Iterable[str] = (),
        env: dict[str, str] | None = None,
        socket_name: str = "bus.socket",
        wrapper: Iterable[str] = (),
        listen: str | None = None,
    ) -> None:
        """`wrapper` is an argv prefix the daemon runs under (say, a mount namespace)
        and `listen` the socket's path as the daemon sees it there (default: the
        same as ours, `directory`/`socket_name`)."""
        directory.mkdir(parents=True, exist_ok=True)
        self.socket = directory / socket_name
        self.address = f"unix:path={self.socket}"
        config = directory / "bus.conf"
        config.write_text(
            _BUS_CONFIG.format(
                type=bus_type,
                socket=listen or self.socket,
                servicedirs="\n  ".join(f"<servicedir>{d}</servicedir>" for d in servicedirs),
            )
        )
        #: the daemon's output and that of the services it activates
        self.log = directory / "bus.log"
        ready_r, ready_w = os.pipe()
        try:
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(
                    [
                        *wrapper,
                        "dbus-daemon",
                        f"--config-file={config}",
                        "--nofork",
                        "--nopidfile",
                        f"--print-address={ready_w}",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(ready_w,),
                    env={**os.environ, **(env or {})},
                )
            os.close(ready_w)
            ready_w = -1
            # It prints its address once it listens: that line is the readiness signal.
            with os.fdopen(ready_r, "rb") as ready:
                ready_r = -1
                line = ready.readline()
        finally:
            for fd in (ready_r, ready_w):
                if fd >= 0:
                    os.close(fd)
        if not line.strip():
            self.proc.wait()
            raise RuntimeError(f"dbus-daemon did not start:\n{self.log.read_text()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
