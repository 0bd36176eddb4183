"""Shared fixtures: every test proves it left nothing behind.

The autouse `no_leaks` fixture compares, before and after each test, the
test process's open file descriptors, inotify instances and watches, child
processes and threads. Things get a short deadline to settle (a reaped child,
a reader thread finishing); a leak still there at the deadline fails the test
at teardown, and is then cleaned up so it cannot poison the next test.

The test process makes itself a *child subreaper* (prctl), so a grandchild
orphaned by a dying agent (say, a command an exec resource started and
forgot) is re-parented to us and shows up as a leaked child, instead of
silently living on under init.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from etcdutil import etcd_cluster, etcd_node, etcd_processes, parent_of  # noqa: F401 (fixtures)
from helpers import DEADLINE, Agent

_PR_SET_CHILD_SUBREAPER = 36
#: how long leftovers may take to go away on their own (reaping, thread exit)
SETTLE = 5.0


def pytest_configure(config: pytest.Config) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """PYMGMT_NO_SYSTEM=1 (./scripts/test --no-system) skips the `system` tests.

    Those run real daemons as root or change this machine's packages. Under
    CI=true the variable is ignored: CI always runs everything.
    """
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if os.environ.get("PYMGMT_NO_SYSTEM") != "1" or ci:
        return
    skip = pytest.mark.skip(
        reason="PYMGMT_NO_SYSTEM=1 (./scripts/test --no-system): real daemons and real apt not run"
    )
    for item in items:
        if item.get_closest_marker("system") is not None:
            item.add_marker(skip)


# -- probes -------------------------------------------------------------------------


def open_fds() -> dict[int, str]:
    """fd -> what it points to, for this process."""
    out: dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own fd, closed by now
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return out


def inotify_usage(fds: dict[int, str]) -> tuple[int, int]:
    """(inotify instances, inotify watches) held by this process."""
    instances = watches = 0
    for fd, target in fds.items():
        if target != "anon_inode:inotify":
            continue
        instances += 1
        with contextlib.suppress(OSError), open(f"/proc/self/fdinfo/{fd}") as f:
            watches += sum(1 for line in f if line.startswith("inotify"))
    return instances, watches


def child_pids() -> set[int]:
    """Children of every thread of this process (zombies included)."""
    pids: set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError), open(f"/proc/self/task/{tid}/children") as f:
            pids.update(int(p) for p in f.read().split())
    return pids


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def describe_pid(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return f"pid {pid} (gone)"
    return f"pid {pid} [{state}] {cmd or '(zombie)'}"


def _settle(probe: Callable[[], list[str]]) -> list[str]:
    """Re-run `probe` until it reports nothing or the deadline passes."""
    deadline = time.monotonic() + SETTLE
    while True:
        found = probe()
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.01)


def _kill_and_reap(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + SETTLE
    left = set(pids)
    while left and time.monotonic() < deadline:
        for pid in list(left):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                left.discard(pid)
        time.sleep(0.01)


# -- the leak check -------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    fds_before = open_fds()
    ino_before = inotify_usage(fds_before)
    kids_before = child_pids()
    threads_before = set(threading.enumerate())

    yield

    problems: list[str] = []

    zombie_since: dict[int, float] = {}

    def new_children() -> list[str]:
        out = []
        for pid in sorted(child_pids() - kids_before):
            if _state(pid) == "Z":
                # Dead, and nobody has waited for it for a while: a grandchild
                # that died after its parent, re-parented to us (the subreaper).
                # Dead is not leaked; reap it as init would have.
                first = zombie_since.setdefault(pid, time.monotonic())
                if time.monotonic() - first >= 0.2:
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, os.WNOHANG)
                    continue
            out.append(describe_pid(pid))
        return out

    if kids := _settle(new_children):
        problems.append("child processes left behind: " + "; ".join(kids))
        _kill_and_reap(child_pids() - kids_before)

    def new_threads() -> list[str]:
        return [t.name for t in threading.enumerate() if t not in threads_before and t.is_alive()]

    if threads := _settle(new_threads):
        problems.append(f"threads left running: {threads}")

    def new_fds() -> list[str]:
        now = open_fds()
        return [
            f"fd {fd} -> {target}"
            for fd, target in sorted(now.items())
            if fds_before.get(fd) != target
        ]

    if fds := _settle(new_fds):
        problems.append("file descriptors left open: " + ", ".join(fds))

    ino_after = inotify_usage(open_fds())
    if ino_after != ino_before:
        problems.append(f"inotify (instances, watches) went from {ino_before} to {ino_after}")
    if problems:
        pytest.fail("the test leaked:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture(autouse=True)
def no_etcd_leaks(no_leaks: None, request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves an etcd running: ours, or one with its data under tmp_path.

    Children are covered by `no_leaks` too; this also catches an etcd that a
    test's agent process started and left behind (it is not our child), and
    names it as etcd. Runs before `no_leaks` at teardown (it depends on it).
    """
    tmp = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    before = set(etcd_processes())

    yield

    me = os.getpid()

    def leaked() -> list[int]:
        return [
            pid
            for pid, cmd in etcd_processes().items()
            if pid not in before and (parent_of(pid) == me or (tmp and f" {tmp}/" in f" {cmd}"))
        ]

    if pids := _settle(lambda: [describe_pid(p) for p in leaked()]):
        _kill_and_reap(set(leaked()))
        pytest.fail("etcd left running: " + "; ".join(pids), pytrace=False)


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    """The agent's state directory (--prefix)."""
    return tmp_path / "state"


@pytest.fixture
def managed(tmp_path: Path) -> Path:
    """A directory for the files the graph manages."""
    d = tmp_path / "m"
    d.mkdir()
    return d


@pytest.fixture
def private_etc(tmp_path: Path) -> Path:
    """A private copy of the machine's /etc, for `helpers.etc_wrapper`."""
    copy = tmp_path / "etc"
    subprocess.run(["cp", "-a", "/etc", str(copy)], check=True)
    return copy


@pytest.fixture
def agent(no_leaks: None, prefix: Path) -> Iterator[Callable[..., Agent]]:
    """Start `pymgmt run --json ... FILE`; every agent is killed and reaped after the test.

    Depends on `no_leaks` so that the agents are gone before the leak check.
    """
    started: list[Agent] = []

    def start(
        graph: Path, *args: str, json_mode: bool = True, wrapper: Sequence[str] = ()
    ) -> Agent:
        a = Agent(graph, prefix, *args, json_mode=json_mode, wrapper=wrapper)
        started.append(a)
        return a

    yield start

    bad: list[str] = []
    for a in started:
        a.close()
        bad.extend(a.bad_lines)
    if bad:
        pytest.fail(f"--json output had non-JSON lines: {bad[:5]}", pytrace=False)


__all__ = ["DEADLINE"]


# -- property tests -------------------------------------------------------------------
# Derandomized: a property test explores the same examples on every run, so a
# red CI always reproduces locally, and a loaded 2-core machine cannot make it
# fail a health check ("flaky is broken").
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "pymgmt",
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("pymgmt")
