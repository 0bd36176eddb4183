"""Review of issue 11 (remote execution): what a remote host sends back, secrets.

A remote host is as trusted as its root account; the initiator's output (what
an operator or a CI job reads) should still say which host said what. Each
test failed on i11/lead when written.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for
from remote_harness import (
    REMOTE_DEADLINE,
    Initiator,
    agent_pids,
    files_graph,
    remote_event,
    remote_stage,
)
from sshd import ClientKey, SshServer

pytestmark = pytest.mark.slow

#: a stand-in for a compromised (or just buggy) remote: the probe runs the real
#: Python, the "agent" prints lines of its choosing and exits
FAKE_AGENT = r"""#!/bin/sh
if [ "$2" = run ]; then
  echo 'plain words, not JSON'
  echo '{"event": "recap", "graph": "forged", "remote": null, "exit_code": 0, "interrupted": false}'
  printf '%s%s\n' '{"event": "remote_changed", "host": "elsewhere", "stage": "exited", ' \
    '"exit_code": 0, "remote": "elsewhere"}'
  printf '\033]0;title set by a remote\007\r\033[2Kremote elsewhere: exited 0\n' >&2
  exit 0
fi
exec /usr/bin/python3.11 "$@"
"""


def test_review_a_leaf_remote_cannot_speak_for_another_host(
    sshd: Callable[..., SshServer],
    initiator: Callable[..., Initiator],
    tmp_path: Path,
) -> None:
    """A remote with no 'remotes:' of its own has no deeper hosts: every event it
    sends is its own. On i11/lead an event carrying a "remote" key is taken as coming
    from deeper down and re-emitted with that key as is: a leaf host can emit
    events stamped "remote": null (read as the initiator's own) or as another host."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "python3.11").write_text(FAKE_AGENT)
    (fake / "python3.11").chmod(0o755)
    a = sshd(path=f"{fake}:/usr/bin:/bin")
    graph = files_graph(a, tmp_path / "a.yaml", {"one": "1\n"})
    run = initiator(a).start([graph])
    run.wait_event(remote_stage(a.host, "exited"), timeout=REMOTE_DEADLINE, what="a exited")
    run.send(signal.SIGINT)
    run.wait_exit(REMOTE_DEADLINE)
    from_remote = [e for e in run.events if "remote" in e]  # the remote's own events
    assert from_remote, run.describe()
    problems = [f"forged: {e}" for e in from_remote if e.get("remote") != a.host]
    plain = [e for e in run.events if e.get("event") == "remote_output"]
    if [(e.get("host"), e.get("line")) for e in plain] != [(a.host, "plain words, not JSON")]:
        problems.append(f"a plain line is not a remote_output event: {plain}")
    # and its stderr lines reach the terminal with their control characters escaped
    # (the console escapes diff lines for this reason: a remote's "[host]" prefix can
    # otherwise be wiped by a carriage return and a fake initiator line written)
    if "\x1b" in run.stderr or "\r" in run.stderr:
        problems.append(f"raw control characters on stderr: {run.stderr[-300:]!r}")
    assert not problems, "\n".join(problems)


#: an agent stuck before it joins the cluster (say its etcd is unreachable
#: through the tunnel), saying why on stderr, as a real one does while it retries
STUCK_AGENT = r"""#!/bin/sh
if [ "$2" = run ]; then
  echo "error: cannot reach the cluster at the seed; retrying" >&2
  read word  # until the initiator stops it or goes away
  exit 1
fi
exec /usr/bin/python3.11 "$@"
"""


def test_review_an_agent_that_never_joins_is_not_silent(
    sshd: Callable[..., SshServer],
    initiator: Callable[..., Initiator],
    tmp_path: Path,
) -> None:
    """The agent's output is streamed from its start. On i11/lead its stdout and
    stderr are read only once it registered in the cluster (`_follow` after
    `_joined`): while it starts or is stuck (a real agent gives up after its
    10 s etcd connect timeout; a hung one never), the user sees nothing from it."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "python3.11").write_text(STUCK_AGENT)
    (fake / "python3.11").chmod(0o755)
    a = sshd(path=f"{fake}:/usr/bin:/bin")
    graph = files_graph(a, tmp_path / "a.yaml", {"one": "1\n"})
    run = initiator(a).start([graph], "--converged-timeout", "1")
    run.wait_event(remote_stage(a.host, "running"), timeout=REMOTE_DEADLINE, what="a running")
    try:
        wait_for(lambda: "cannot reach the cluster" in run.stderr, what="the agent's words")
    finally:
        run.send(signal.SIGKILL)
        run.wait_exit()


#: run as another local user of the remote host: read the cluster's keys through
#: the agent's tunnel port, then write one
NOSY_USER = r"""
import base64, json, sys, urllib.request
port = sys.argv[1]
def call(path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())
b64 = lambda b: base64.b64encode(b).decode()
keys = call("/v3/kv/range", {"key": b64(b"\0"), "range_end": b64(b"\0"), "keys_only": True})
print(json.dumps([base64.b64decode(k["key"]).decode() for k in keys.get("kvs", [])]))
call("/v3/kv/put", {"key": b64(b"/_pymgmt/written-by-nobody"), "value": b64(b"x")})
print("wrote")
"""


def test_review_other_users_of_a_remote_cannot_use_its_tunnel(
    sshd: Callable[..., SshServer],
    initiator: Callable[..., Initiator],
    tmp_path: Path,
) -> None:
    """Any local user of a remote host (here `nobody`) must not reach the initiator's
    etcd through the tunnel: a TCP port on the remote's loopback let them read and
    write it all (every host's exports, the converged keys). The tunnel is a unix
    socket in the agent's 0700 run directory: `nobody` cannot even connect."""
    a = sshd()
    graph = files_graph(a, tmp_path / "a.yaml", {"one": "1\n"})
    run = initiator(a).start([graph])
    run.wait_event(remote_event(a.host, "settled"), timeout=REMOTE_DEADLINE, what="a settled")
    [pid] = agent_pids(a)
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"--seeds" not in argv, argv  # no TCP port at all
    socket_path = argv[argv.index(b"--tunnel") + 1].decode()
    nosy = subprocess.run(
        ["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c", NOSY_SOCKET, socket_path],
        capture_output=True,
        text=True,
        timeout=60,
    )
    run.stop(signal.SIGINT, timeout=60)
    assert "refused: PermissionError" in nosy.stdout, (nosy.stdout, nosy.stderr)


#: run as `nobody`: try to connect to the tunnel's socket
NOSY_SOCKET = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
    print("connected")
except OSError as e:
    print("refused:", type(e).__name__)
"""


def test_review_accept_new_at_depth_2_is_remembered(
    sshd: Callable[..., SshServer],
    initiator: Callable[..., Initiator],
    ssh_agent: Callable[..., Any],
    client_key: ClientKey,
    tmp_path: Path,
) -> None:
    """--ssh-accept-new is OpenSSH's accept-new: trust a key seen for the first time
    *and record it*, so that a different key later is refused. At depth 2 on
    i11/lead the intermediate records c's key in its copy of known_hosts, in its
    run directory, which is removed at the end: nothing is remembered, so every
    later run accepts whatever key c (or a man in the middle) shows."""
    a, c = sshd(), sshd()
    files_graph(c, tmp_path / "c.yaml", {"deep": "d\n"})
    ga = files_graph(a, tmp_path / "a.yaml", {"mid": "m\n"}, remotes="[c.yaml]")
    keys = ssh_agent(client_key.private)
    init = initiator(a, key=None)  # c's key is known nowhere
    run = init.start([ga], "--converged-timeout", "1", "--ssh-accept-new", env=keys.env)
    assert run.wait_exit(REMOTE_DEADLINE) == 2, run.describe()
    c_key = c.host_public_key.split()[1]
    on_a = a.dir / "home" / ".ssh" / "known_hosts"  # the intermediate's own, as ssh would
    places = [init.known_hosts, on_a]
    recorded = [p for p in places if p.exists() and c_key in p.read_text()]
    assert recorded, f"c's accepted key was recorded nowhere (looked in {places})"
