"""Review of issue 11 (remote execution): what a remote host sends back, secrets.

A remote host is as trusted as its root account; the initiator's output (what
an operator or a CI job reads) should still say which host said what. Each
test failed on i11/lead when written.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from remote_harness import Initiator, files_graph
from sshd import SshServer
from test_remote_run import REMOTE_DEADLINE, bundles, initiator, remote_stage  # noqa: F401

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
    initiator: Callable[..., Initiator],  # noqa: F811
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
    from_remote = [e for e in run.events if "via" in e or "remote" in e]
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
