"""kv without a cluster: the key outlives the agent in its state directory, as in etcd.

Real agents (`pymgmt run`) on a real state directory: a second one-shot run
is converged, a restart keeps the key, a file not to trust is ignored aloud
and never followed, a secret stays redacted in later runs, and kill -9 at
any moment leaves the old file or the new one.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import DEADLINE, PYMGMT, json_lines, recap_of, run_async, run_once

from pymgmt import redaction
from pymgmt.world.base import keys
from pymgmt.world.local import STORE_NAME, LocalWorld

KEY = "app/greeting"
VERTEX = f"Kv[{KEY}]"


def _graph(path: Path, value: str | None, key: str = KEY) -> Path:
    body = "" if value is None else f"    value: {value}\n"
    path.write_text(f"graph: kv\nresources:\n  kv:\n  - name: {key}\n{body}")
    return path


def _stored(prefix: Path) -> dict[str, bytes]:
    """The keys in the state directory's file, as a fresh World reads them."""

    async def read() -> dict[str, bytes]:
        world = LocalWorld("reader", prefix)
        await world.load()
        found, _ = await world.get_prefix("")
        return {kv.key: kv.value for kv in found}

    return run_async(read())


def _outcome(proc: subprocess.CompletedProcess[str], vertex: str = VERTEX) -> str:
    return str(recap_of(proc)["resources"][vertex]["outcome"])


def _applied(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [
        e
        for e in json_lines(proc.stdout)
        if e.get("event") == "checked" and e.get("vertex") == VERTEX and e.get("applied")
    ]


def test_a_second_run_once_is_converged_a_change_is_one_change_and_unset_deletes(
    tmp_path: Path,
) -> None:
    prefix, graph = tmp_path / "p", _graph(tmp_path / "g.yaml", "hello")
    first = run_once(graph, prefix, "--json")
    assert first.returncode == 2, first.stdout + first.stderr
    assert _stored(prefix) == {keys.kv(KEY): b"hello"}
    info = os.lstat(prefix / STORE_NAME)
    assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    assert "memory only" not in first.stderr

    again = run_once(graph, prefix, "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert _outcome(again) == "unchanged" and _applied(again) == []

    changed = run_once(_graph(graph, "bonjour"), prefix, "--json")
    assert changed.returncode == 2, changed.stdout + changed.stderr
    (apply,) = _applied(changed)
    changes = [(c["field"], c["old"], c["new"]) for c in apply["changes"]]
    assert changes == [("value", "hello", "bonjour")]
    assert _stored(prefix) == {keys.kv(KEY): b"bonjour"}
    assert run_once(graph, prefix, "--json").returncode == 0

    deleted = run_once(_graph(graph, None), prefix, "--json")
    assert deleted.returncode == 2, deleted.stdout + deleted.stderr
    assert _stored(prefix) == {}
    assert run_once(graph, prefix, "--json").returncode == 0


def test_a_restarted_agent_finds_the_key_and_changes_nothing(tmp_path, prefix, agent):
    graph = _graph(tmp_path / "g.yaml", "hello")
    a = agent(graph)
    a.wait_event(lambda e: e.get("vertex") == VERTEX and e.get("applied"), what="the first put")
    assert a.stop() == 0
    b = agent(graph)
    at = b.wait_event(
        lambda e: e.get("event") == "checked" and e.get("vertex") == VERTEX,
        what="the first check after the restart",
    )
    first = b.events[at]
    assert not first.get("applied") and not first.get("changes"), first
    assert b.stop() == 0
    assert _stored(prefix) == {keys.kv(KEY): b"hello"}


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"format": 99, "revision": 1, "keys": {}}', b'{"format": 1, "keys": []}'],
    ids=["garbage", "other-format", "other-shape"],
)
def test_a_corrupt_file_is_ignored_with_a_warning_and_replaced(tmp_path, content):
    prefix, graph = tmp_path / "p", _graph(tmp_path / "g.yaml", "hello")
    prefix.mkdir(mode=0o700)
    fd = os.open(prefix / STORE_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, content)
    os.close(fd)
    proc = run_once(graph, prefix, "--json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "stored keys" in proc.stderr and "ignored" in proc.stderr, proc.stderr
    assert _stored(prefix) == {keys.kv(KEY): b"hello"}
    assert run_once(graph, prefix, "--json").returncode == 0


def test_a_symlink_at_the_file_is_never_followed(tmp_path):
    prefix, graph = tmp_path / "p", _graph(tmp_path / "g.yaml", "hello")
    prefix.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere.json"
    planted = {"format": 1, "revision": 7, "keys": {keys.kv(KEY): {"value": "aGVsbG8="}}}
    elsewhere.write_text(json.dumps(planted))
    before = elsewhere.read_bytes()
    (prefix / STORE_NAME).symlink_to(elsewhere)
    proc = run_once(graph, prefix, "--json")
    # not read through the link (else "hello" would already be there: converged)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "symlink" in proc.stderr, proc.stderr
    # not written through it either: the link was replaced by the agent's own file
    assert elsewhere.read_bytes() == before
    assert stat.S_ISREG(os.lstat(prefix / STORE_NAME).st_mode)
    assert _stored(prefix) == {keys.kv(KEY): b"hello"}


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_file_of_another_user_or_writable_by_others_is_not_read(tmp_path):
    prefix, graph = tmp_path / "p", _graph(tmp_path / "g.yaml", "hello")
    assert run_once(graph, prefix, "--json").returncode == 2
    path = prefix / STORE_NAME
    os.chown(path, 65534, 65534)
    foreign = run_once(graph, prefix, "--json")
    assert foreign.returncode == 2 and "another user" in foreign.stderr, foreign.stderr
    assert os.lstat(path).st_uid == os.geteuid()  # replaced by the agent's own
    os.chmod(path, 0o666)
    loose = run_once(graph, prefix, "--json")
    assert loose.returncode == 2 and "another user" in loose.stderr, loose.stderr
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600


def test_a_stored_secret_stays_redacted_in_a_later_run_that_no_longer_sends_it(tmp_path):
    prefix, graph = tmp_path / "p", tmp_path / "g.yaml"
    graph.write_text(
        "graph: kv\nresources:\n  password:\n  - name: db\n  kv:\n"
        f"  - name: {KEY}\nedges:\n- name: share\n  from: {{kind: password, name: db}}\n"
        f"  to: {{kind: kv, name: {KEY}}}\n  send: password\n  recv: value\n"
    )
    first = run_once(graph, prefix, "--json", "-v")
    assert first.returncode == 2, first.stdout + first.stderr
    (secret,) = _stored(prefix).values()
    assert len(secret) == 64 and secret.decode() not in first.stdout + first.stderr
    assert stat.S_IMODE(os.lstat(prefix / STORE_NAME).st_mode) == 0o600
    converged = run_once(graph, prefix, "--json", "-v")
    assert converged.returncode == 0, converged.stdout + converged.stderr
    # the graph now puts a plain value: the plan's "old" is the stored secret
    plain = run_once(_graph(graph, "public"), prefix, "--json", "-v")
    assert plain.returncode == 2, plain.stdout + plain.stderr
    assert secret.decode() not in plain.stdout + plain.stderr
    (apply,) = _applied(plain)
    assert [(c["field"], c["old"]) for c in apply["changes"]] == [("value", redaction.MARK)]


# -- kill -9 while the file is being replaced --------------------------------------------

#: keys per graph: that many writes of the file per run, each a window for the kill
_KEYS = 12
_TRIALS = 6


def _many(path: Path, value: str) -> Path:
    items = "".join(f"  - name: k/{i}\n    value: {value}\n" for i in range(_KEYS))
    path.write_text(f"graph: kv\nresources:\n  kv:\n{items}")
    return path


def _version(path: Path) -> tuple[int, int]:
    """Which file is at `path`: each replacement is a new inode with a new mtime."""
    st = os.lstat(path)
    return st.st_ino, st.st_mtime_ns


def test_kill_9_while_keys_are_stored_leaves_the_old_file_or_the_new(tmp_path):
    """Each put replaces the file: kill at the k-th replacement, for k across the run.

    Whatever instant the kill lands on, the file read back is whole (it
    parses, with no warning) and each key holds its old or its new value;
    the next run finishes the job and the one after is converged.
    """
    graph = tmp_path / "g.yaml"
    big_old, big_new = "o" * 20000, "n" * 20000  # a write long enough to be cut into
    cut = 0  # trials whose kill landed before the run ended
    for n in range(_TRIALS):
        prefix = tmp_path / f"p{n}"
        assert run_once(_many(graph, big_old), prefix, "--json").returncode == 2
        path = prefix / STORE_NAME
        seen = {_version(path)}
        wanted = 1 + n * (_KEYS - 1) // max(1, _TRIALS - 1)  # the replacement to kill at
        argv = [*PYMGMT, "run", "--json", "--prefix", str(prefix), "--converged-timeout", "0"]
        proc = subprocess.Popen(
            [*argv, str(_many(graph, big_new))],
            stdout=subprocess.DEVNULL,  # the plans hold the values: a full pipe would block it
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + DEADLINE
            while len(seen) <= wanted and proc.poll() is None:
                assert time.monotonic() < deadline, "the agent never replaced the file"
                seen.add(_version(path))  # never missing: the rename replaces it at once
                time.sleep(0.0001)
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=DEADLINE)
            cut += proc.returncode == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        found = json.loads(path.read_bytes())  # whole: parses
        assert sorted(found["keys"]) == sorted(keys.kv(f"k/{i}") for i in range(_KEYS))
        values = set(_stored(prefix).values())
        assert values <= {big_old.encode(), big_new.encode()}, n
        finish = run_once(graph, prefix, "--json")
        assert finish.returncode in (0, 2), finish.stdout + finish.stderr
        assert "ignored" not in finish.stderr, finish.stderr
        assert set(_stored(prefix).values()) == {big_new.encode()}
        assert run_once(graph, prefix, "--json").returncode == 0
    print(f"{cut} of {_TRIALS} kills landed mid-run")
    assert cut, "no kill landed before the run ended: the trial proved nothing"
