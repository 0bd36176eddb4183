"""kill -9 during a large file write leaves the old content or the new, never a mix.

The graph holds ~20 MB of content for a file that currently has ~3 MB of
other content. The agent is killed with SIGKILL at many moments, most of
them while its temporary file is being written, and after each kill the
target is byte-identical to the old or the new content.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import DEADLINE, PYMGMT, json_lines, write_atomic

from pymgmt.fsutil import temp_name

pytestmark = pytest.mark.slow

ROUNDS = 12


def _content(n_bytes: int, tag: str) -> str:
    line = tag + " 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
    return line * (n_bytes // len(line))


def _graph_yaml(target: Path, content: str) -> str:
    # A literal block scalar: fast to parse, and exactly `content` back
    # (every line is non-empty and the text ends with one newline).
    body = "".join("      " + line + "\n" for line in content.splitlines())
    return (
        "graph: big\nresources:\n  file:\n"
        f"  - name: big\n    path: {target}\n    mode: '0644'\n    content: |\n{body}"
    )


def _spin_until(cond, timeout: float = 60.0) -> None:
    """Poll tightly: the write takes only tens of milliseconds to reach fsync."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "the agent never started writing"
        time.sleep(0.0002)


def _kill_9_after(proc: subprocess.Popen[bytes], delay: float) -> None:
    """kill -9 the agent `delay` seconds from now, and reap it."""
    time.sleep(delay)  # the experiment's input, not a wait for a condition
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=DEADLINE)
    # killed by us, or (a late kill) finished its work: never a crash of its own
    assert proc.returncode in (-signal.SIGKILL, 2), (proc.returncode, err.decode())


def _kill_9_once_writing(
    argv: list[str], writing: Callable[[], bool], n: int, window: float, rng: random.Random
) -> float:
    """Start the agent, and once `writing` says it is, kill -9 it after a random delay.

    The delay is log-uniform over the write (its staging, its sync, its
    renames, and just after); round 0 kills at once. Returns the delay.
    """
    agent = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _spin_until(lambda: writing() or agent.poll() is not None)
        low, high = math.log(0.0005), math.log(1.5 * window)
        delay = 0.0 if n == 0 else math.exp(rng.uniform(low, high))
        _kill_9_after(agent, delay)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.communicate()
    return delay


def test_kill_9_at_any_moment_leaves_old_or_new_content(tmp_path):
    target = tmp_path / "big.txt"
    tmp_file = tmp_path / temp_name("big.txt")
    old = _content(3 << 20, "old").encode()
    new_text = _content(20 << 20, "new")
    new = new_text.encode()
    assert len(old) != len(new)
    graph = tmp_path / "graph.yaml"
    graph.write_text(_graph_yaml(target, new_text))
    argv = [*PYMGMT, "run", "--json", "--prefix", str(tmp_path / "state")]
    argv += ["--converged-timeout", "0", str(graph)]

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    # Calibrate: one full run tells how long the write takes.
    write_atomic(target, old)
    proc = start()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err.decode()
    (ev,) = (e for e in json_lines(out.decode()) if e.get("event") == "checked" and e["applied"])
    write_time = max(ev["seconds"], 0.005)
    assert target.read_bytes() == new

    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    outcomes: list[tuple[str, float, str]] = []
    in_write = 0  # kills that landed between creating the temporary file and the rename
    for n in range(ROUNDS):
        write_atomic(target, old)
        # Removed, so that its appearance marks this round's write beginning.
        tmp_file.unlink(missing_ok=True)
        proc = start()
        try:
            if n % 3 != 2:
                # Most rounds: wait for the write to begin, then kill somewhere in it.
                # The first rounds kill at once, so some kills surely land mid-write.
                _spin_until(lambda proc=proc: tmp_file.exists() or proc.poll() is not None)
                # Log-uniform: as many kills in the first milliseconds (write)
                # as in the last ones (fsync, rename) or just after.
                low, high = math.log(0.0005), math.log(1.5 * write_time)
                delay = 0.0 if n < 2 else math.exp(rng.uniform(low, high))
            else:
                # Other rounds: any moment of the agent's life.
                delay = rng.uniform(0, 0.6)
            _kill_9_after(proc, delay)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        got = target.read_bytes()
        which = "old" if got == old else "new" if got == new else "MIXED"
        left = tmp_file.stat().st_size if tmp_file.exists() else None
        outcomes.append((which, round(delay, 4), f"{len(got)} bytes, tmp {left}"))
        assert which != "MIXED", f"seed {seed}: partial content after kill -9: {outcomes}"
        assert os.stat(target).st_mode & 0o777 == 0o644
        if left is not None:
            in_write += 1

    # The test exercised the dangerous window: some kill landed inside the
    # write (a temporary file was left behind) and the target was still intact.
    assert in_write >= 1, f"seed {seed}: no kill landed inside the write: {outcomes}"

    # A leftover temporary file (here: a half-written one) is replaced by the
    # next write, not in the way.
    write_atomic(target, old)
    tmp_file.write_bytes(new[: len(new) // 2])
    proc = start()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err.decode()
    assert target.read_bytes() == new
    assert not tmp_file.exists()


# -- a batch of many files (issue 13: one sync for every apply in flight) ---------------------

BATCH_FILES = 400
BATCH_ROUNDS = 8


def _batch_content(i: int, tag: str, lines: int) -> bytes:
    return "".join(f"{tag} {i} line {k} of the batch test\n" for k in range(lines)).encode()


def _temporaries(d: Path) -> list[str]:
    with os.scandir(d) as it:
        return [e.name for e in it if e.name.startswith(".pymgmt-tmp-")]


def test_kill_9_during_a_batch_leaves_every_file_old_or_new(tmp_path):
    """Many files written as one batch; a kill at any moment of it spares every file.

    Each file is durable before it replaces the old one, so after a kill each
    holds exactly its old content or its new one (some of each: the renames
    were under way), never a partial or an empty file, and a leftover
    temporary file is replaced by the next run.
    """
    d = tmp_path / "files"
    d.mkdir()
    old = [_batch_content(i, "old", 20) for i in range(BATCH_FILES)]
    new = [_batch_content(i, "new", 60) for i in range(BATCH_FILES)]
    body = "".join(
        f"  - name: f{i:03d}\n    path: {d / f'f{i:03d}'}\n    mode: '0644'\n"
        f"    content: {json.dumps(new[i].decode())}\n"
        for i in range(BATCH_FILES)
    )
    graph = tmp_path / "graph.yaml"
    graph.write_text(f"graph: batch\nresources:\n  file:\n{body}")
    argv = [*PYMGMT, "run", "--json", "--prefix", str(tmp_path / "state")]
    argv += ["--converged-timeout", "0", str(graph)]

    def reset() -> None:
        for name in _temporaries(d):
            (d / name).unlink()
        for i in range(BATCH_FILES):
            write_atomic(d / f"f{i:03d}", old[i])
            os.chmod(d / f"f{i:03d}", 0o644)

    def states() -> list[str]:
        out = []
        for i in range(BATCH_FILES):
            path = d / f"f{i:03d}"
            got = path.read_bytes()
            which = "old" if got == old[i] else "new" if got == new[i] else f"BAD {len(got)} bytes"
            assert os.stat(path).st_mode & 0o777 == 0o644, f"{path}: mode changed"
            out.append(which)
        return out

    # Calibrate: how long the applies of one whole run take.
    reset()
    proc = subprocess.run(argv, capture_output=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr.decode()
    seconds = [e["seconds"] for e in json_lines(proc.stdout.decode()) if e.get("applied")]
    assert len(seconds) == BATCH_FILES
    window = max(max(seconds), 0.005)
    assert set(states()) == {"new"}

    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    mixed = 0  # kills that landed with the renames under way: some files old, some new
    history: list[tuple[float, dict[str, int], int]] = []
    for n in range(BATCH_ROUNDS):
        reset()
        delay = _kill_9_once_writing(argv, lambda: bool(_temporaries(d)), n, window, rng)
        seen = states()
        counts = {k: seen.count(k) for k in sorted(set(seen))}
        history.append((round(delay, 4), counts, len(_temporaries(d))))
        assert set(seen) <= {"old", "new"}, f"seed {seed}: partial content after kill -9: {history}"
        if set(seen) == {"old", "new"}:
            mixed += 1
    # Not a flaky wish: the renames of 400 files take a while, and the kills
    # are spread over the batch; the history says where each one landed.
    assert mixed + sum(1 for _, _, temps in history if temps) >= 1, f"seed {seed}: {history}"

    # The next run finishes the job; leftover temporary files (the last kill's,
    # and half-written ones) are in no one's way.
    reset()
    for i in range(0, BATCH_FILES, 7):
        (d / temp_name(f"f{i:03d}")).write_bytes(new[i][: len(new[i]) // 2])
    proc = subprocess.run(argv, capture_output=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr.decode()
    assert set(states()) == {"new"}
    assert _temporaries(d) == []


# -- a drift repair, written on the event loop (issue 13: a lone small write) -----------------

REPAIR_ROUNDS = 30


def test_kill_9_during_a_drift_repair_leaves_the_drifted_or_the_wanted_content(tmp_path, agent):
    """A lone small repair is written on the agent's event loop: still old or new after kill -9.

    Each round starts an agent on a converged file, replaces the file behind
    its back, and kills the agent with SIGKILL a random moment later: before
    the repair, inside it (its temporary file is left behind) or after it.
    """
    target = tmp_path / "conf"
    wanted = b"".join(b"wanted line %05d\n" % k for k in range(2000))  # 38 KiB: small
    drifted = b"drifted\n" * 100
    graph = tmp_path / "graph.yaml"
    graph.write_text(
        "graph: repair\nresources:\n  file:\n"
        f"  - name: conf\n    path: {target}\n    mode: '0644'\n"
        f"    content: {json.dumps(wanted.decode())}\n"
    )
    tmp_file = tmp_path / temp_name("conf")
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    history: list[tuple[float, str, bool]] = []
    for n in range(REPAIR_ROUNDS):
        write_atomic(target, wanted)
        os.chmod(target, 0o644)
        tmp_file.unlink(missing_ok=True)
        a = agent(graph)
        a.wait_checked(["File[conf]"])
        write_atomic(target, drifted)
        if n % 2 == 0:
            # Half the rounds aim at the write: from the moment its temporary
            # file appears (or, missed, the repair is done), at once or up to
            # 2 ms later; the repair's fsync takes a few.
            _spin_until(
                lambda a=a: (
                    tmp_file.exists()
                    or os.stat(target).st_size == len(wanted)
                    or a.proc.poll() is not None
                )
            )
            delay = 0.0 if n == 0 else math.exp(rng.uniform(math.log(0.0001), math.log(0.002)))
        else:
            # The others: any moment from the drift to well after the repair.
            delay = math.exp(rng.uniform(math.log(0.0002), math.log(0.03)))
        time.sleep(delay)  # the experiment's input, not a wait for a condition
        a.proc.send_signal(signal.SIGKILL)
        assert a.wait_exit() == -signal.SIGKILL
        got = target.read_bytes()
        which = "drifted" if got == drifted else "wanted" if got == wanted else "MIXED"
        history.append((round(delay, 4), which, tmp_file.exists()))
        assert which != "MIXED", f"seed {seed}: partial content after kill -9: {history}"
        assert os.stat(target).st_mode & 0o777 == 0o644
        if n >= 9 and sum(1 for _, _, left in history if left) >= 3:
            break
    # The kills reached the write itself: its temporary file was left behind.
    assert any(left for _, _, left in history), f"seed {seed}: {history}"


@pytest.mark.parametrize("drift", ["mode", "owner"])
@pytest.mark.parametrize("fast_path", [True, False])
def test_a_metadata_only_repair_is_fsynced_before_it_is_reported(tmp_path, drift, fast_path):
    """A chmod or chown alone sits in the page cache; "repaired" means it is on disk.

    A crash cannot be made here, so the syscalls say it (strace, real): the
    node's fchmod/fchown is followed by an fsync of the same descriptor.
    """
    target = tmp_path / "f"
    target.write_text("same\n")
    os.chmod(target, 0o600)
    graph = tmp_path / "graph.yaml"
    want = {"mode": "0640"} if drift == "mode" else {"owner": "65534"}
    res = {"name": str(target), "content": "same\n", **want}
    graph.write_text(json.dumps({"graph": "meta", "resources": {"file": [res]}}))
    prefix = tmp_path / "state"
    if fast_path:  # a first full run stores the plan, the next is answered from it
        _set(target, drift, wanted=True)
        warm = subprocess.run(
            [*PYMGMT, "run", "--prefix", str(prefix), "--converged-timeout", "0", str(graph)],
            capture_output=True,
            check=False,
        )
        assert warm.returncode in (0, 2), warm.stderr
        _set(target, drift, wanted=False)
    log = tmp_path / "strace.log"
    argv = [
        "strace",
        "-f",
        "-qq",
        "-o",
        str(log),
        "-e",
        "trace=fchmod,fchown,fsync,fdatasync,syncfs",
    ]
    argv += [*PYMGMT, "run", "--prefix", str(prefix), "--converged-timeout", "0", str(graph)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    # "PID  call(...) = 0": the pid's column is padded to a width, so split on any space
    calls = [line.split(None, 1)[1] for line in log.read_text().splitlines() if " " in line]
    changed = [i for i, c in enumerate(calls) if c.startswith(("fchmod(", "fchown("))]
    assert changed, calls
    fd = calls[changed[-1]].split("(", 1)[1].split(",", 1)[0]
    assert any(c.startswith(f"fsync({fd})") for c in calls[changed[-1] + 1 :]), calls


def _set(target: Path, drift: str, *, wanted: bool) -> None:
    """Make `target`'s mode or owner the wanted one, or the drifted one."""
    if drift == "mode":
        os.chmod(target, 0o640 if wanted else 0o600)
    else:
        os.chown(target, 65534 if wanted else 0, -1)


# -- a recursive copy (file recurse: many files in chunks of batch jobs) -----------------------

TREE_FILES = 200
TREE_ROUNDS = 8


def test_kill_9_during_a_recursive_copy_leaves_each_entry_old_new_or_absent(tmp_path):
    """A tree copy killed at any moment: each file old or new, and the next run finishes.

    The copy writes `filetree.CHUNK` files per batch job: a kill lands
    between jobs or inside one. A file that existed holds its old bytes or
    the source's; one that did not is absent or whole; a directory made
    just before the kill gets its mode and its files from the next run,
    which also leaves no temporary file anywhere in the tree.
    """
    src, dst = tmp_path / "src", tmp_path / "dst"
    names = [f"{sub}/f{i:03d}" for sub in ("kept", "made") for i in range(TREE_FILES)]
    new = {n: _batch_content(i, "new", 60) for i, n in enumerate(names)}
    old = {n: _batch_content(i, "old", 20) for i, n in enumerate(names) if n.startswith("kept/")}
    for n, data in new.items():
        (src / n).parent.mkdir(parents=True, exist_ok=True)
        (src / n).write_bytes(data)
        os.chmod(src / n, 0o640)
    os.chmod(src / "made", 0o750)
    graph = tmp_path / "graph.yaml"
    graph.write_text(
        "graph: tree\nresources:\n  file:\n"
        f"  - name: tree\n    path: {dst}/\n    source: {src}/\n    recurse: true\n"
    )
    argv = [*PYMGMT, "run", "--json", "--prefix", str(tmp_path / "state")]
    argv += ["--converged-timeout", "0", str(graph)]

    def reset() -> None:
        subprocess.run(["rm", "-rf", "--", str(dst)], check=True)
        (dst / "kept").mkdir(parents=True)
        for n, data in old.items():
            (dst / n).write_bytes(data)
            os.chmod(dst / n, 0o640)

    def temporaries() -> list[str]:
        return [
            f"{top}/{name}"
            for top, _, files in os.walk(dst)
            for name in files
            if name.startswith(".pymgmt-tmp-")
        ]

    def states() -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in names:
            path = dst / n
            if not path.exists():
                assert n not in old, f"{n}: an existing file vanished"
                which = "absent"
            else:
                got = path.read_bytes()
                which = "new" if got == new[n] else "old" if got == old.get(n) else "BAD"
                assert which != "BAD", f"{n}: partial content after kill -9 ({len(got)} bytes)"
                assert os.stat(path).st_mode & 0o777 == 0o640, f"{n}: mode"
            counts[which] = counts.get(which, 0) + 1
        return counts

    reset()
    proc = subprocess.run(argv, capture_output=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr.decode()
    (applied,) = [e["seconds"] for e in json_lines(proc.stdout.decode()) if e.get("applied")]
    assert states() == {"new": len(names)}
    window = max(applied, 0.005)

    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    history: list[tuple[float, dict[str, int]]] = []
    for n in range(TREE_ROUNDS):
        reset()
        delay = _kill_9_once_writing(argv, lambda: bool(temporaries()), n, window, rng)
        history.append((round(delay, 4), states()))  # asserts each file old, new or absent

        proc = subprocess.run(argv, capture_output=True, timeout=120, check=False)
        assert proc.returncode in (0, 2), f"seed {seed}: {history}: {proc.stderr.decode()}"
        assert states() == {"new": len(names)}, f"seed {seed}: {history}"
        assert os.stat(dst / "made").st_mode & 0o777 == 0o750
        assert temporaries() == [], f"seed {seed}: {history}"
    # the kills landed inside the copy, not all after it
    assert any(len(counts) > 1 for _, counts in history), f"seed {seed}: {history}"
