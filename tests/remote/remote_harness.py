"""An initiator and its remote hosts for the `--remote` tests: real sshd, real agents, real etcd.

Every remote "host" is an `SshServer` (tests/remote/sshd.py) on its own
loopback address, with its own TMPDIR, cache and HOME; the files its graph
manages live under its directory (``root/``), so two hosts on this one
machine never share a file. The initiator is a real ``pymgmt run --json``
serving etcd on 127.0.0.1 with free ports, the remote agents run from the
bundle the initiator copies over SFTP, with Debian's /usr/bin/python3.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers import Agent, wait_for
from sshd import ClientKey, SshServer, free_port

#: deadline for a remote host to be set up and apply its graph (bundle copy, agent start)
REMOTE_DEADLINE = 90.0

#: mgmt's remote execution examples (the article's remote2a/remote2b)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def root_of(server: SshServer) -> Path:
    """The directory the graph of `server`'s host manages its files in."""
    root = server.dir / "root"
    root.mkdir(exist_ok=True)
    return root


def remote_graph(server: SshServer, text: str, dest: Path, *, url: str | None = None) -> Path:
    """`text` as a remote graph file for `server`: its ``remote:`` and ``/tmp/`` paths moved.

    The ``remote:`` line (any) becomes `url` (default the server's root URL);
    ``/tmp/`` becomes the host's root directory.
    """
    lines = [
        f"remote: {url or server.url()}" if line.startswith("remote:") else line
        for line in text.splitlines()
    ]
    if not any(line.startswith("remote:") for line in lines):
        lines.append(f"remote: {url or server.url()}")
    dest.write_text("\n".join(lines).replace("/tmp/", f"{root_of(server)}/") + "\n")
    return dest


def example(server: SshServer, name: str, dest_dir: Path) -> Path:
    """mgmt's example `name` (remote2a.yaml, ...) made to run on `server`."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    return remote_graph(server, (EXAMPLES / name).read_text(), dest_dir / name)


def files_graph(server: SshServer, dest: Path, files: dict[str, str], **header: Any) -> Path:
    """A remote graph managing `files` (name -> content) under the host's root.

    `header` adds top-level keys (``hostname``, ``remotes``); ``remote`` replaces
    the server's URL.
    """
    url = header.pop("remote", None)
    lines = [f"graph: {dest.stem}"]
    lines += [f"{k}: {v}" for k, v in header.items()]
    lines += ["resources:", "  file:"]
    for name, content in files.items():
        lines += [
            f"  - name: {name}",
            f"    path: /tmp/{name}",
            f"    content: {json.dumps(content)}",
        ]
    return remote_graph(server, "\n".join(lines), dest, url=url)


class Initiator:
    """Builds and starts ``pymgmt run --remote ...`` processes of one test."""

    def __init__(self, base: Path, key: ClientKey | None, known_hosts: Path, bundles: Path) -> None:
        self.base = base
        self.key = key
        self.known_hosts = known_hosts
        self.bundles = bundles
        self.agents: list[Agent] = []
        self.local = base / "local.yaml"
        self.local.write_text("graph: initiator\nresources: {}\n")

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {
            "PYMGMT_ETCD_FAST": "1",
            "PYMGMT_LEASE_TTL": "2",
            "PYMGMT_BUNDLE_CACHE": str(self.bundles),
            **(extra or {}),
        }

    def argv(self, remotes: list[Path], *args: str) -> list[str]:
        port, peer = free_port("127.0.0.1"), free_port("127.0.0.1")
        while peer == port:
            peer = free_port("127.0.0.1")
        out = ["--hostname", "initiator"]
        out += ["--client-urls", f"http://127.0.0.1:{port}"]
        out += ["--server-urls", f"http://127.0.0.1:{peer}"]
        out += ["--tmp-prefix", "--ssh-known-hosts", str(self.known_hosts)]
        if self.key is not None:
            out += ["--ssh-id", str(self.key.private)]
        for r in remotes:
            out += ["--remote", str(r)]
        return out + list(args)

    def start(
        self,
        remotes: list[Path],
        *args: str,
        env: dict[str, str] | None = None,
        json_mode: bool = True,
    ) -> Agent:
        """Start an initiator: its state directory, and its remote agents', are new
        (``--tmp-prefix``; made in the test's directory)."""
        argv = self.argv(remotes, *args)
        agent = Agent(
            self.local,
            None,
            *argv,
            json_mode=json_mode,
            env=self.env({"TMPDIR": str(self.base), **(env or {})}),
        )
        self.agents.append(agent)
        return agent

    def close(self) -> None:
        """Kill every initiator and what it left (an etcd outlives a kill -9 of its agent)."""
        for a in self.agents:
            a.close()
        for pid in _pids_naming(str(self.base)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not _pids_naming(str(self.base)), what="the initiators' etcd to exit")


def remote_event(host: str, name: str) -> Callable[[dict[str, Any]], bool]:
    """An event a remote agent sent (``--json``), by its host and name."""
    return lambda e: e.get("remote") == host and e.get("event") == name


def remote_stage(host: str, stage: str) -> Callable[[dict[str, Any]], bool]:
    """The initiator's own `remote_changed` event for `host` reaching `stage`."""
    return lambda e: (
        e.get("event") == "remote_changed" and e.get("host") == host and e.get("stage") == stage
    )


def wait_settled(run: Agent, *servers: SshServer) -> None:
    """Wait until the remote agent of every one of `servers` has settled its graph."""
    for s in servers:
        run.wait_event(remote_event(s.host, "settled"), timeout=REMOTE_DEADLINE,
                       what=f"{s.host} settled")  # fmt: skip


def agent_pids(server: SshServer) -> list[int]:
    """The remote agents of `server`'s host still running: python running a bundle
    from its run directory. Searched among all processes: an agent whose SSH
    session ended is no longer below sshd (it is re-parented)."""
    return [
        pid
        for pid, cmd in _cmdlines()
        if any(p.endswith(b".pyz") for p in cmd) and str(server.dir).encode() in b" ".join(cmd)
    ]


def run_dirs(server: SshServer) -> list[str]:
    """The remote agents' run directories left in `server`'s TMPDIR."""
    return sorted(p.name for p in (server.dir / "tmp").glob("pymgmt-run-*"))


def cached_bundles(server: SshServer) -> list[str]:
    d = server.dir / "cache" / "pymgmt" / "bundles"
    return sorted(p.name for p in d.glob("pymgmt-*.pyz")) if d.is_dir() else []


def _cmdlines() -> list[tuple[int, list[bytes]]]:
    out = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        with contextlib.suppress(OSError):
            out.append((int(entry), Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")))
    return out


def _pids_naming(text: str) -> list[int]:
    return [pid for pid, cmd in _cmdlines() if text.encode() in b"\0".join(cmd)]
