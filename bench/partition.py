"""Catch-up after a partition: from the network healing to both sides holding everything.

Two hosts on a private network of network namespaces (tests/netns.py: a
switch with a bridge, one veth per host, nothing in the root namespace):
h1 serves etcd, h2 is its client (``--seeds --no-server``). Both export a
file and collect the other's. Then h2's cable is pulled (its veth down) for
`--cut` seconds, longer than the lease (10 s, the default) so that h2's
keys vanish on h1's side and its lease must be re-granted; during the cut
each host exports one more file. Then the cable goes back, and the clock
runs from ``ip link set up`` returning to:

* h1 sees h2 again  h1's ``host_joined h2`` (h2's lease re-granted, its key re-put);
                    only after a cut longer than the lease, else h2 never left
* h1 has h2's       h1's directory holds the file h2 exported during the cut
* h2 has h1's       h2's directory holds the file h1 exported during the cut
* all               the latest of the three: the catch-up (issue 10: within 5 s)

Default settings throughout (etcd's own timers, lease TTL 10 s, the
agent's gRPC keep-alive): what an operator gets. Every process is killed
and every namespace deleted at the end; every wait is bounded.

    .venv/bin/python bench/partition.py                 # cuts of 5, 15 and 40 s, 2 runs each
    .venv/bin/python bench/partition.py --cut 15 --runs 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from _common import PYMGMT, ROOT, check_venv, median, stop, table, temp_dir

sys.path.insert(0, str(ROOT / "tests"))
from netns import Network, network  # the tests' helper: one copy

#: the longest any one wait may take before the run is declared failed
DEADLINE = 120.0
POLL = 0.002


class Side:
    """One host: its namespace, directories, graph, and its agent (output to files)."""

    def __init__(self, base: Path, net: Network, name: str) -> None:
        self.name = name
        self.where = net.hosts[name]
        self.dir = base / name / "files"
        self.prefix = base / name / "state"
        self.graph = base / name / "graph.yaml"
        self.out = base / name / "events.jsonl"
        self.err = base / name / "log.txt"
        self.dir.mkdir(parents=True)
        self.proc: subprocess.Popen[bytes] | None = None

    def write_graph(self, exports: list[str]) -> None:
        lines = ["graph: partition", "resources:", "  file:"]
        for name in ["own", *exports]:
            text = f"{name} from {self.name}\n"
            lines += [
                f"  - name: {json.dumps(name if name == 'own' else '@@' + name)}",
                f"    path: {self.dir / name}",
                f"    content: {json.dumps(text)}",
            ]
        lines += ["collect:", "- kind: file", f"  pattern: {self.dir}/"]
        tmp = self.graph.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, self.graph)

    def start(self, *flags: str) -> None:
        argv = [*self.where.prefix, PYMGMT, "run", "--json", "--prefix", str(self.prefix)]
        argv += ["--hostname", self.name, *flags, str(self.graph)]
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
            )

    def has(self, name: str) -> bool:
        return (self.dir / name).is_file()

    def events(self) -> list[dict[str, object]]:
        out = []
        for line in self.out.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def saw(self, event: str, host: str, after: int = 0) -> bool:
        """An `event` (host_joined, host_left) of `host` after the first `after` events."""
        return any(e.get("event") == event and e.get("host") == host for e in self.events()[after:])

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, 20)  # its whole process group: the agent and its etcd


def until(predicate: Callable[[], object], what: str, sides: list[Side]) -> float:
    """Poll `predicate` until true; the monotonic time it was first seen true."""
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {s.name}:\n{s.err.read_text()[-2000:]}" for s in sides)
            raise SystemExit(f"timed out waiting for {what}\n{tails}")
        time.sleep(POLL)
    return time.monotonic()


def one_run(cut: float) -> dict[str, float]:
    with temp_dir() as base, network(["h1", "h2"], tag="b") as net:
        h1, h2 = Side(base, net, "h1"), Side(base, net, "h2")
        sides = [h1, h2]
        try:
            url = f"http://{h1.where.address}:2379"
            h1.write_graph(["a1"])
            h2.write_graph(["a2"])
            h1.start("--client-urls", url, "--server-urls", f"http://{h1.where.address}:2380")
            until(lambda: h1.has("a1"), "h1's own export", sides)
            h2.start("--seeds", url, "--no-server")
            until(lambda: h1.has("a2") and h2.has("a1"), "the first exchange", sides)
            joined_at = len(h1.events())

            net.cut("h2")
            cut_at = time.monotonic()
            h1.write_graph(["a1", "b1"])
            h2.write_graph(["a2", "b2"])
            until(lambda: h1.has("b1") and h2.has("b2"), "the exports made during the cut", sides)
            time.sleep(max(0.0, cut_at + cut - time.monotonic()))  # the cut's length
            seen = len(h1.events())
            # a cut shorter than the lease: h2's keys never left h1's view
            left = h1.saw("host_left", "h2", joined_at)
            assert h2.proc is not None and h2.proc.poll() is None, "h2 exited during the cut"
            net.heal("h2")
            healed = time.monotonic()
            h1_has = until(lambda: h1.has("b2"), "h1 to collect b2", sides)
            h2_has = until(lambda: h2.has("b1"), "h2 to collect b1", sides)
            back = float("nan")
            if left:
                back = until(lambda: h1.saw("host_joined", "h2", seen), "h1 to see h2", sides)
            assert h2.proc.poll() is None, "h2 exited"
            return {
                "h1 sees h2 again": back - healed,
                "h1 has h2's": h1_has - healed,
                "h2 has h1's": h2_has - healed,
                "all": max(h1_has, h2_has, back if left else 0.0) - healed,
            }
        finally:
            for s in reversed(sides):
                s.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cut", default="5,15,40", help="cut lengths in seconds (comma-separated)")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    check_venv()
    if os.geteuid() != 0:
        sys.exit("network namespaces need root")
    rows = []
    for cut in (float(c) for c in args.cut.split(",")):
        runs = [one_run(cut) for _ in range(args.runs)]
        for key in runs[0]:
            values = [r[key] for r in runs if r[key] == r[key]]  # NaN: did not happen
            if not values:
                rows.append([f"{cut:g}", key, "n/a (lease kept)", "", len(runs)])
                continue
            rows.append(
                [f"{cut:g}", key, f"{median(values):.2f}", f"{max(values):.2f}", len(values)]
            )
            print(f"cut {cut:g} s: {key}: " + ", ".join(f"{v:.2f}" for v in values), flush=True)
    print()
    print("### Catch-up after a partition heals (s, from `ip link set up`)\n")
    print(table(["cut (s)", "caught up", "median", "max", "runs"], rows))


if __name__ == "__main__":
    main()
