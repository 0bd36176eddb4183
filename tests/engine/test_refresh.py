"""Refresh notifications are kept per edge: never lost, delivered at least once.

Issue 8: a notification that arrived while the receiver was running its
refresh was wiped by that run (one marker per receiver), and a kill -9 the
instant the sender had changed its file lost the refresh (the marker was
written after the apply). These tests provoke both windows for real.
"""

from __future__ import annotations

import asyncio
import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import (
    DEADLINE,
    PYMGMT,
    checked,
    json_lines,
    run_async,
    run_once,
    sentinel_res,
    wait_for,
    write_atomic,
)

from pymgmt.engine.refresh import RefreshStore

RECEIVER = ("exec", "build")


def test_store_keeps_a_notification_that_lands_during_the_run(tmp_path):
    directory = tmp_path / "refresh"

    async def scenario() -> None:
        store = RefreshStore(str(directory))
        await store.add(RECEIVER, ("file", "a"), "File[a]")
        run = store.snapshot(RECEIVER)  # the receiver's run starts
        await store.add(RECEIVER, ("file", "b"), "File[b]")  # b notifies meanwhile
        await store.add(RECEIVER, ("file", "a"), "File[a]")  # and a again
        await store.consume(RECEIVER, run)  # the run succeeded
        assert store.pending(RECEIVER), "notifications from during the run were wiped"
        again = store.snapshot(RECEIVER)
        assert len(again) == 2
        await store.consume(RECEIVER, again)
        assert not store.pending(RECEIVER)

    run_async(scenario())
    assert list(directory.iterdir()) == []


def test_store_pending_edges_survive_a_new_agent(tmp_path):
    directory = tmp_path / "refresh"

    async def first() -> None:
        store = RefreshStore(str(directory))
        await store.add(RECEIVER, ("file", "a"), "File[a]")
        await store.add(RECEIVER, ("file", "b"), "File[b]")
        await store.add(("noop", "other"), ("file", "a"), "File[a]")

    async def second() -> None:
        store = RefreshStore(str(directory))  # as a restarted agent sees it
        assert store.pending(RECEIVER) and store.pending(("noop", "other"))
        await store.consume(RECEIVER, store.snapshot(RECEIVER))
        assert not store.pending(RECEIVER) and store.pending(("noop", "other"))

    run_async(first())
    assert len(list(directory.iterdir())) == 3
    run_async(second())
    assert len(list(directory.iterdir())) == 1


def test_store_a_receiver_cancelled_while_removing_its_marker_keeps_the_next_one(tmp_path):
    # Review of issue 8 (finding 10): a changeover cancelled the receiver
    # while the thread removed its marker; the store still believed the file
    # existed, so the next notification on that edge wrote nothing and lived
    # in memory only (a kill -9 then lost it).
    directory = tmp_path / "refresh"

    async def scenario() -> None:
        store = RefreshStore(str(directory))
        await store.add(RECEIVER, ("file", "a"), "File[a]")
        (marker,) = directory.iterdir()
        consume = asyncio.create_task(store.consume(RECEIVER, store.snapshot(RECEIVER)))
        # One turn of the loop runs the task up to its wait for the removal
        # thread (nothing before it suspends); the cancellation lands there.
        await asyncio.sleep(0)
        consume.cancel()
        await asyncio.wait([consume])
        assert consume.cancelled()
        await _until_async(lambda: not marker.exists())  # the thread finished anyway
        await store.add(RECEIVER, ("file", "a"), "File[a]")  # notified again
        assert store.pending(RECEIVER)
        assert marker.exists(), "the new refresh was kept in memory only"

    run_async(scenario())


async def _until_async(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(DEADLINE):
        while not predicate():  # noqa: ASYNC110 - a thread's work, no event to await
            await asyncio.sleep(0.005)


def _two_senders_graph(tmp_path: Path, managed: Path) -> str:
    a, b, hold, release = (managed / n for n in ("a", "b", "hold", "release"))
    runs, running = tmp_path / "runs", tmp_path / "running"
    q = {k: shlex.quote(str(v)) for k, v in locals().items() if isinstance(v, Path)}
    # While `hold` exists, a run waits (at most 30 s) for `release`: the test
    # changes b exactly while the refresh run caused by a is under way.
    cmd = (
        f"echo run >> {q['runs']}; "
        f"if [ -e {q['hold']} ]; then touch {q['running']}; i=0; "
        f"while [ ! -e {q['release']} ] && [ $i -lt 3000 ]; do sleep 0.01; i=$((i+1)); done; "
        f"rm -f {q['hold']} {q['release']} {q['running']}; fi"
    )
    s = sentinel_res(managed)
    return f"""
graph: two-senders
resources:
  file:
  - {{name: a, path: {a}, content: "A\\n"}}
  - {{name: b, path: {b}, content: "B\\n"}}
  - {{name: sentinel, path: {s["path"]}, content: "sentinel\\n"}}
  exec:
  - name: build
    shell: /bin/sh
    cmd: {shlex.quote(cmd)}
edges:
- {{name: a, from: {{kind: file, name: a}}, to: {{kind: exec, name: build}}, notify: true}}
- {{name: b, from: {{kind: file, name: b}}, to: {{kind: exec, name: build}}, notify: true}}
"""


def _runs(tmp_path: Path) -> int:
    p = tmp_path / "runs"
    return len(p.read_text().split()) if p.exists() else 0


def test_a_notification_during_the_refresh_run_causes_exactly_one_more_run(
    agent, prefix, tmp_path, managed
):
    graph = tmp_path / "g.yaml"
    graph.write_text(_two_senders_graph(tmp_path, managed))
    a = agent(graph)
    a.wait_checked(["File[a]", "File[b]", "Exec[build]", "File[sentinel]"])
    a.barrier(managed / "sentinel")
    assert _runs(tmp_path) == 1  # the run at start

    (managed / "hold").touch()
    since = a.mark()
    write_atomic(managed / "a", "tampered\n")  # a is repaired and notifies build
    wait_for(lambda: (tmp_path / "running").exists(), what="the refresh run of build")
    write_atomic(managed / "b", "tampered\n")  # b notifies while build runs
    a.wait_event(checked("File[b]", applied=True), since=since, what="b's repair")
    (managed / "release").touch()
    wait_for(
        lambda: len(a.find(checked("Exec[build]", applied=True), since=since)) >= 2,
        what="a second run of build, delivering b's notification",
    )
    end = a.barrier(managed / "sentinel")
    runs = a.find(checked("Exec[build]"), since=since, until=end)
    assert [(e["applied"], e["refreshed"]) for e in runs] == [(True, True), (True, True)]
    assert _runs(tmp_path) == 3
    assert _markers(prefix) == []


def _markers(prefix: Path) -> list[Path]:
    d = prefix / "refresh"
    return list(d.iterdir()) if d.exists() else []


# -- kill -9 the instant the sender's change is on disk ---------------------------------


def _notify_graph(target: Path) -> str:
    return f"""
graph: write-ahead
resources:
  file:
  - {{name: f, path: {target}, content: "new\\n"}}
  noop:
  - name: n
edges:
- {{name: e, from: {{kind: file, name: f}}, to: {{kind: noop, name: n}}, notify: true}}
"""


def _delivered(stdout: str, stderr: str) -> int:
    """Refreshes delivered by one run: reported, or (killed before the report) logged."""
    reported = sum(1 for e in json_lines(stdout) if e.get("event") == "checked" and e["refreshed"])
    return max(reported, stderr.count("Received a notification!"))


TRIALS = 10


@pytest.mark.slow
def test_kill_9_the_instant_the_sender_changed_never_loses_the_refresh(tmp_path):
    target = tmp_path / "f"
    graph = tmp_path / "g.yaml"
    graph.write_text(_notify_graph(target))
    lost: list[int] = []
    for n in range(TRIALS):
        prefix = tmp_path / f"state{n}"
        write_atomic(target, "old\n")
        argv = [*PYMGMT, "run", "--json", "--prefix", str(prefix), "--converged-timeout", "0"]
        proc = subprocess.Popen(
            [*argv, str(graph)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + DEADLINE
            # Spin: the window between the write and the old marker was short.
            while target.read_bytes() != b"new\n" and proc.poll() is None:
                assert time.monotonic() < deadline, "the agent never changed the file"
                time.sleep(0.0001)
            proc.send_signal(signal.SIGKILL)
            out, err = proc.communicate(timeout=DEADLINE)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        again = run_once(graph, prefix, "--json")
        assert again.returncode == 0, again.stderr  # nothing to change any more
        if _delivered(out, err) + _delivered(again.stdout, again.stderr) < 1:
            lost.append(n)
        assert _markers(prefix) == []
    assert not lost, f"refresh lost in trials {lost} of {TRIALS}"
