"""Remote execution over SSH: `pymgmt run --remote` against Ansible and pyinfra, same targets.

1, 5 and 10 "hosts" on loopback, each a real sshd (tests/remote/sshd.py's
`SshServer`: 127.0.1.N, its own host key, HOME, TMPDIR and cache), each
managed with the same graph: a directory and 10 files (``i am fNN\\n``,
mode 0644) under that host's own directory. Every tool logs in as root
with the same client key, checks host keys against the same known_hosts
file, and runs /usr/bin/python3 (Debian's 3.11) where it needs a Python
on the remote.

Phases, each timed from the tool's start to its exit (wall clock,
`perf_counter`; "client CPU" is the user+system time of the process tree
on the initiating side as far as it was reaped, not the sshd side):

* pymgmt cold       ``pymgmt run --remote h1.yaml ... --converged-timeout 0``
                    with every remote's bundle cache emptied first: the bundle
                    is copied over SFTP and extracted there; the files are absent.
* pymgmt warm       the same with the bundle cached on the remotes; files absent.
* pymgmt converged  the same again: bundle cached, files already right.
* ansible first / converged  ``ansible-playbook`` (a ``file`` task for the
                    directory, a ``copy`` task looping over the 10 files;
                    ``gather_facts: false``, forks = hosts; Ansible's default
                    ssh arguments, ControlPersist included, with a control
                    directory of its own per run, so no run reuses another's
                    connections).
* pyinfra first / converged  ``pyinfra -y --parallel N inventory.py deploy.py``
                    (``files.directory`` + ``files.put`` from a StringIO).

``--converged-timeout 0``: the initiator ends the run as soon as every host
(itself and each remote, which counts as busy until its agent registered and
applied its graph) is converged: the one-shot mode, as ``ansible-playbook``
and ``pyinfra`` are. Default etcd timers (no ``PYMGMT_ETCD_FAST``): what a
user gets.

The initiator's bundle is built once beforehand into a cache of its own
(``PYMGMT_BUNDLE_CACHE``), timed separately: a fresh build and an unchanged
re-build (the index hit every run pays). After every run each host's files
are checked (names, content, mode; after a converged run also that none was
rewritten: same inode and mtime); any difference stops the benchmark. The
repetitions interleave the tools, so a change of the machine's load hits them
alike; medians are printed, with ratios pymgmt / peer from the same run.

Needs root (sshd), /usr/sbin/sshd, and the peers' venvs from
../shared/bench-peers/setup.sh (``$BENCHC``, default /tmp/benchC:
venv-ansible, venv-pyinfra).

    .venv/bin/python bench/remote.py                      # 1, 5, 10 hosts; 3 runs
    .venv/bin/python bench/remote.py --hosts 1 --runs 1   # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import (
    PY,
    PYMGMT,
    ROOT,
    bench_env,
    check_venv,
    machine,
    median,
    ratio,
    table,
    temp_dir,
    warm_up,
)

sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "remote")]
from sshd import SshServer, free_port, keygen, sshd_problem, write_known_hosts  # noqa: E402

BENCHC = Path(os.environ.get("BENCHC", "/tmp/benchC"))
ANSIBLE = BENCHC / "venv-ansible" / "bin" / "ansible-playbook"
PYINFRA = BENCHC / "venv-pyinfra" / "bin" / "pyinfra"
#: the remote's interpreter for Ansible (pymgmt's probe finds the same one on PATH)
REMOTE_PYTHON = "/usr/bin/python3"
NFILES = 10
#: the longest one run may take before the benchmark is declared failed
RUN_DEADLINE = 300.0
TOOLS = ("pymgmt", "ansible", "pyinfra")


def names() -> list[str]:
    return [f"f{i:02d}" for i in range(NFILES)]


def want(name: str) -> bytes:
    return f"i am {name}\n".encode()


class BadState(Exception):
    """A tool exited but a host's files are not what the graph says."""


class Bench:
    """The hosts, the key, the known_hosts file and every tool's input files."""

    def __init__(self, base: Path, nhosts: int, env: dict[str, str]) -> None:
        self.base = base
        self.env = env
        key_dir = base / "key"
        key_dir.mkdir()
        self.key = key_dir / "id_ed25519"
        public = keygen(self.key, "pymgmt-bench")
        self.servers: list[SshServer] = []
        for i in range(nhosts):
            self.servers.append(SshServer(base / f"h{i + 1:02d}", authorized=[public]))
        self.known_hosts = write_known_hosts(base / "known_hosts", self.servers)
        self.bundles = base / "bundles"
        self.inputs = base / "inputs"
        self.inputs.mkdir()
        self.runs = 0

    def close(self) -> None:
        errors = []
        for s in self.servers:
            try:
                s.close()
            except AssertionError as e:
                errors.append(str(e))
        if errors:
            raise AssertionError("; ".join(errors))

    def managed(self, server: SshServer, tool: str) -> Path:
        return server.dir / "root" / tool

    # -- inputs -------------------------------------------------------------------

    def pymgmt_graphs(self, hosts: Sequence[SshServer]) -> list[Path]:
        out = []
        for s in hosts:
            d = self.managed(s, "pymgmt")
            d.parent.mkdir(exist_ok=True)
            lines = ["graph: bench", f"remote: {s.url()}", "resources:", "  file:"]
            lines += ["  - name: dir", f'    path: "{d}/"', "    state: exists"]
            for x in names():
                lines += [f"  - name: {x}", f'    path: "{d}/{x}"']
                lines += [f"    content: {json.dumps(want(x).decode())}", '    mode: "0644"']
            path = self.inputs / f"pymgmt-{s.host}.yaml"
            path.write_text("\n".join(lines) + "\n")
            out.append(path)
        return out

    def ansible_files(self, hosts: Sequence[SshServer]) -> tuple[Path, Path]:
        inv: dict[str, Any] = {"all": {"hosts": {}}}
        for s in hosts:
            self.managed(s, "ansible").parent.mkdir(exist_ok=True)
            inv["all"]["hosts"][s.host] = {
                "ansible_host": s.host,
                "ansible_port": s.port,
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(self.key),
                "ansible_python_interpreter": REMOTE_PYTHON,
                "d": str(self.managed(s, "ansible")),
            }
        inventory = self.inputs / f"ansible-{len(hosts)}.json"  # JSON is YAML
        inventory.write_text(json.dumps(inv, indent=1))
        play = self.inputs / "play.yml"
        play.write_text(
            "- hosts: all\n  gather_facts: false\n  tasks:\n"
            "  - file: {path: '{{ d }}', state: directory}\n"
            "  - copy:\n"
            '      dest: "{{ d }}/{{ item }}"\n'
            '      content: "i am {{ item }}\\n"\n'
            "      mode: '0644'\n"
            f"    loop: [{', '.join(names())}]\n"
        )
        return inventory, play

    def pyinfra_files(self, hosts: Sequence[SshServer]) -> tuple[Path, Path]:
        entries = []
        for s in hosts:
            self.managed(s, "pyinfra").parent.mkdir(exist_ok=True)
            data = {
                "ssh_hostname": s.host,
                "ssh_port": s.port,
                "ssh_user": "root",
                "ssh_key": str(self.key),
                "ssh_known_hosts_file": str(self.known_hosts),
                "ssh_strict_host_key_checking": "yes",
                "ssh_allow_agent": False,
                "ssh_look_for_keys": False,
                "d": str(self.managed(s, "pyinfra")),
            }
            entries.append((s.host, data))
        inventory = self.inputs / f"inventory_{len(hosts)}.py"
        inventory.write_text(f"hosts = {entries!r}\n")
        deploy = self.inputs / "deploy.py"
        deploy.write_text(
            "from io import StringIO\n"
            "from pyinfra import host\n"
            "from pyinfra.operations import files\n"
            "d = host.data.get('d')\n"
            "files.directory(name='dir', path=d)\n"
            f"for x in {names()!r}:\n"
            "    files.put(name=x, src=StringIO('i am ' + x + '\\n'),\n"
            "              dest=d + '/' + x, mode='644')\n"
        )
        return inventory, deploy

    # -- commands ----------------------------------------------------------------------

    def pymgmt_cmd(self, graphs: Sequence[Path]) -> tuple[list[str], dict[str, str]]:
        port = free_port("127.0.0.1")
        peer = free_port("127.0.0.1")
        while peer == port:
            peer = free_port("127.0.0.1")
        argv = [PYMGMT, "run", "--json", "--hostname", "initiator"]
        argv += ["--client-urls", f"http://127.0.0.1:{port}"]
        argv += ["--server-urls", f"http://127.0.0.1:{peer}"]
        # the state directories (initiator's and remote agents') in TMPDIR: ten
        # "hosts" on one machine must not share /var/lib/pymgmt
        argv += ["--tmp-prefix", "--ssh-known-hosts", str(self.known_hosts)]
        argv += ["--ssh-id", str(self.key), "--converged-timeout", "0"]
        for g in graphs:
            argv += ["--remote", str(g)]
        tmp = self.base / "initiator-tmp"
        tmp.mkdir(exist_ok=True)
        return argv, {**self.env, "PYMGMT_BUNDLE_CACHE": str(self.bundles), "TMPDIR": str(tmp)}

    def ansible_cmd(self, hosts: Sequence[SshServer]) -> tuple[list[str], dict[str, str]]:
        inventory, play = self.ansible_files(hosts)
        self.runs += 1
        cp = self.base / "ansible-cp" / str(self.runs)
        cp.mkdir(parents=True)
        env = {
            **self.env,
            "ANSIBLE_FORKS": str(max(5, len(hosts))),
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_SSH_ARGS": "-C -o ControlMaster=auto -o ControlPersist=60s "
            f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes "
            "-o IdentitiesOnly=yes",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(cp),
            "ANSIBLE_LOCAL_TEMP": str(self.base / "ansible-local"),
            "ANSIBLE_HOME": str(self.base / "ansible-home"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_PYTHON_INTERPRETER": REMOTE_PYTHON,
        }
        env.pop("SSH_AUTH_SOCK", None)
        return [str(ANSIBLE), "-i", str(inventory), str(play)], env

    def pyinfra_cmd(self, hosts: Sequence[SshServer]) -> tuple[list[str], dict[str, str]]:
        inventory, deploy = self.pyinfra_files(hosts)
        argv = [str(PYINFRA), "-y", "--parallel", str(len(hosts)), str(inventory), str(deploy)]
        env = {**self.env}
        env.pop("SSH_AUTH_SOCK", None)
        return argv, env

    def command(self, tool: str, hosts: Sequence[SshServer]) -> tuple[list[str], dict[str, str]]:
        if tool == "pymgmt":
            return self.pymgmt_cmd(self.pymgmt_graphs(hosts))
        if tool == "ansible":
            return self.ansible_cmd(hosts)
        return self.pyinfra_cmd(hosts)

    # -- state --------------------------------------------------------------------

    def clear(self, tool: str, hosts: Sequence[SshServer]) -> None:
        for s in hosts:
            shutil.rmtree(self.managed(s, tool), ignore_errors=True)

    def clear_bundle_caches(self, hosts: Sequence[SshServer]) -> None:
        """A fresh remote cache: no bundle, no extracted directory."""
        for s in hosts:
            shutil.rmtree(s.dir / "cache" / "pymgmt", ignore_errors=True)

    def snapshot(self, tool: str, hosts: Sequence[SshServer]) -> dict[str, tuple[int, int]]:
        out = {}
        for s in hosts:
            for p in self.managed(s, tool).iterdir():
                st = p.stat()
                out[str(p)] = (st.st_ino, st.st_mtime_ns)
        return out

    def verify(self, tool: str, hosts: Sequence[SshServer]) -> None:
        """Every host holds exactly the 10 files, right content and mode; else BadState."""
        problems = []
        for s in hosts:
            d = self.managed(s, tool)
            if not d.is_dir():
                problems.append(f"{d}: no directory")
                continue
            found = sorted(p.name for p in d.iterdir())
            if found != names():
                problems.append(f"{d}: files {found}")
                continue
            for x in names():
                p = d / x
                mode = p.stat().st_mode & 0o7777
                if p.read_bytes() != want(x) or mode != 0o644:
                    problems.append(f"{p}: {p.read_bytes()[:40]!r} mode {mode:o}")
        if problems:
            raise BadState(f"{tool}: " + "; ".join(problems[:5]))


# -- one run ------------------------------------------------------------------------------


class Run:
    """One tool process: wall time, client CPU, its output lines with arrival times."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.argv = argv
        self.lines: list[tuple[float, str]] = []
        self.log = log
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        reader = threading.Thread(target=self._read, daemon=True)
        reader.start()
        try:
            self.rc = self.proc.wait(RUN_DEADLINE)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.rc = -9
        self.wall = time.perf_counter() - self.t0
        reader.join(30)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        log.write_text("".join(f"{t - self.t0:9.3f} {line}\n" for t, line in self.lines))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append((time.perf_counter(), raw.decode(errors="replace").rstrip("\n")))

    def events(self) -> list[tuple[float, dict[str, Any]]]:
        out = []
        for t, line in self.lines:
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append((t - self.t0, json.loads(line)))
        return out


def leftovers(marker: str) -> list[int]:
    """Pids of processes whose command line names `marker` (ours: its temp dir)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
                if marker.encode() in cmd:
                    out.append(int(entry))
    return out


def phases(run: Run) -> dict[str, float]:
    """Where a pymgmt run's time went, from its --json events' arrival (latest host)."""
    ev = run.events()

    def last(pred: Any) -> float:
        ts = [t for t, e in ev if pred(e)]
        return max(ts) if ts else float("nan")

    def first(pred: Any) -> float:
        ts = [t for t, e in ev if pred(e)]
        return min(ts) if ts else float("nan")

    def stage(name: str) -> Any:
        return lambda e: e.get("event") == "remote_changed" and e.get("stage") == name

    return {
        "first connecting": first(stage("connecting")),
        "last copying": last(stage("copying")),
        "last running": last(stage("running")),
        "last remote graph_started": last(
            lambda e: e.get("remote") and e.get("event") == "graph_started"
        ),
        "last remote exited": last(stage("exited")),
        "exit": run.wall,
    }


# -- the benchmark ---------------------------------------------------------------------------


def build_bundle_times(b: Bench) -> dict[str, Any]:
    """A fresh build of the initiator's bundle into an empty cache, then an unchanged one."""
    code = (
        "import json, sys, time\n"
        "from pathlib import Path\n"
        "t = time.perf_counter()\n"
        "from pymgmt.remote.bundle import build_bundle\n"
        "b = build_bundle(Path(sys.argv[1]))\n"
        "print(json.dumps({'build': time.perf_counter() - t, 'size': b.size,"
        " 'digest': b.digest, 'path': str(b.path)}))\n"
    )
    out: dict[str, Any] = {}
    for label in ("fresh", "unchanged"):
        t = time.perf_counter()
        p = subprocess.run(
            [PY, "-c", code, str(b.bundles)], env=b.env, capture_output=True, text=True, check=True
        )
        whole = time.perf_counter() - t
        got = json.loads(p.stdout.strip().splitlines()[-1])
        out[label] = {"process": whole, "in-process": got["build"]}
        out["size"], out["digest"] = got["size"], got["digest"]
    return out


def one(b: Bench, tool: str, hosts: Sequence[SshServer], tag: str, phase: str) -> Run:
    """Run `tool` once on `hosts` in `phase` (cold/warm/first: files absent; converged)."""
    if phase == "converged":
        before = b.snapshot(tool, hosts)
    else:
        b.clear(tool, hosts)
        if phase == "cold":
            b.clear_bundle_caches(hosts)
    argv, env = b.command(tool, hosts)
    run = Run(argv, env, b.base / "logs" / f"{tag}-{tool}-{phase}.log")
    ok_codes = (0, 2) if tool == "pymgmt" else (0,)
    if run.rc not in ok_codes:
        tail = "\n".join(line for _, line in run.lines[-30:])
        raise BadState(f"{tool} {phase} on {len(hosts)} hosts exited {run.rc}:\n{tail}")
    b.verify(tool, hosts)
    if phase == "converged":
        after = b.snapshot(tool, hosts)
        if after != before:
            changed = [p for p in after if after[p] != before.get(p)]
            raise BadState(f"{tool} converged run rewrote {changed[:3]}")
    if tool == "ansible":  # its ControlPersist masters: ours, by pid
        for pid in leftovers(str(b.base / "ansible-cp")):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    return run


PHASES = {
    "pymgmt": ("cold", "warm", "converged"),
    "ansible": ("first", "converged"),
    "pyinfra": ("first", "converged"),
}


def bench_size(b: Bench, n: int, runs: int, tools: Sequence[str]) -> dict[str, Any]:
    hosts = b.servers[:n]
    walls: dict[tuple[str, str], list[float]] = {}
    cpus: dict[tuple[str, str], list[float]] = {}
    breakdown: list[dict[str, float]] = []
    remote_leftovers: list[str] = []
    for r in range(runs):
        for tool in tools:
            for phase in PHASES[tool]:
                run = one(b, tool, hosts, f"n{n}-r{r}", phase)
                walls.setdefault((tool, phase), []).append(run.wall)
                cpus.setdefault((tool, phase), []).append(run.cpu)
                print(f"  n={n} run {r + 1}: {tool:8} {phase:9} {run.wall:7.2f} s"
                      f" (rc {run.rc})", flush=True)  # fmt: skip
                if tool == "pymgmt":
                    breakdown.append({"phase": phase, **phases(run)})  # type: ignore[dict-item]
                    remote_leftovers += check_remotes(hosts, f"n={n} run {r + 1} {phase}")
    return {
        "walls": {f"{t}/{p}": v for (t, p), v in walls.items()},
        "cpus": {f"{t}/{p}": v for (t, p), v in cpus.items()},
        "breakdown": breakdown,
        "leftovers": remote_leftovers,
    }


def check_remotes(hosts: Sequence[SshServer], what: str) -> list[str]:
    """What a pymgmt run left on its hosts once the initiator exited.

    Remote agents (a python running a bundle from that host's directories)
    still alive at once, and after up to 10 s; sshd sessions still open after
    10 s; run directories left in the host's TMPDIR.
    """
    out = []
    for s in hosts:
        agents = [p for p in leftovers(str(s.dir)) if ".pyz" in _cmd(p)]
        if agents:
            out.append(f"{what}: {s.host}: agents {agents} alive at the initiator's exit")
        deadline = time.monotonic() + 10
        while (s.processes() or any(not _gone(p) for p in agents)) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
        still = s.processes() + [p for p in agents if not _gone(p)]
        if still:
            out.append(f"{what}: {s.host}: after 10 s still {[(p, _cmd(p)) for p in still]}")
        runs_left = sorted(p.name for p in (s.dir / "tmp").glob("pymgmt-run-*"))
        if runs_left:
            out.append(f"{what}: {s.host}: run dirs {runs_left}")
    return out


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists() or "Z" in _stat_state(pid)


def _stat_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return "?"


def versions() -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        p = subprocess.run(argv, capture_output=True, text=True, check=False)
        return (p.stdout or p.stderr).strip().splitlines()[0] if (p.stdout or p.stderr) else "?"

    return {
        "pymgmt": first_line([PYMGMT, "--version"]),
        "ansible": first_line([str(ANSIBLE), "--version"]),
        "pyinfra": first_line([str(PYINFRA), "--version"]),
        "sshd": first_line(["ssh", "-V"]),
        "remote python": first_line([REMOTE_PYTHON, "--version"]),
    }


def report(results: dict[int, dict[str, Any]], tools: Sequence[str]) -> str:
    out = []
    rows = []
    for n, res in results.items():
        w, c = res["walls"], res["cpus"]
        for key in w:
            rows.append([n, key.replace("/", " "), len(w[key]), f"{median(w[key]):.2f}",
                         f"{min(w[key]):.2f}", f"{median(c[key]):.2f}"])  # fmt: skip
    out.append("### Wall time, start to exit (s; median of the runs)\n")
    out.append(table(["hosts", "tool phase", "runs", "median", "min", "client CPU"], rows))
    ratio_rows = []
    for n, res in results.items():
        w = res["walls"]

        def m(k: str, w: dict[str, list[float]] = w) -> float:
            return median(w[k]) if k in w else float("nan")

        for peer in (t for t in tools if t != "pymgmt"):
            if "pymgmt" not in tools:
                continue
            ratio_rows.append([
                n, peer,
                ratio(m("pymgmt/cold"), m(f"{peer}/first")),
                ratio(m("pymgmt/warm"), m(f"{peer}/first")),
                ratio(m("pymgmt/converged"), m(f"{peer}/converged")),
            ])  # fmt: skip
    if ratio_rows:
        out.append("\n### Ratios pymgmt / peer (wall medians of this run; < 1: pymgmt faster)\n")
        out.append(table(["hosts", "peer", "cold / first", "warm / first",
                          "converged / converged"], ratio_rows))  # fmt: skip
    brk = []
    for n, res in results.items():
        by_phase: dict[str, list[dict[str, float]]] = {}
        for row in res["breakdown"]:
            by_phase.setdefault(str(row["phase"]), []).append(row)
        for phase, rows_ in by_phase.items():
            keys = [k for k in rows_[0] if k != "phase"]
            brk.append([n, phase, *(f"{median([r[k] for r in rows_]):.2f}" for k in keys)])
    if brk:
        keys = [k for k in results[next(iter(results))]["breakdown"][0] if k != "phase"]
        out.append("\n### pymgmt: when the --json events arrived (s after start; medians)\n")
        out.append(table(["hosts", "phase", *keys], brk))
    left = [x for res in results.values() for x in res["leftovers"]]
    out.append("\nremote leftovers after pymgmt runs (run dirs, processes): "
               + ("; ".join(left) if left else "none"))  # fmt: skip
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", default="1,5,10", help="host counts, comma-separated")
    ap.add_argument("--runs", type=int, default=3, help="repetitions of every phase")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    ap.add_argument("--json", metavar="FILE", help="also write the raw figures here")
    args = ap.parse_args()
    check_venv()
    if problem := sshd_problem():
        sys.exit(problem)
    tools = [t for t in args.tools.split(",") if t]
    for tool, path in (("ansible", ANSIBLE), ("pyinfra", PYINFRA)):
        if tool in tools and not os.access(path, os.X_OK):
            sys.exit(f"missing {path}: run ../shared/bench-peers/setup.sh (BENCHC={BENCHC})")
    sizes = [int(x) for x in args.hosts.split(",")]
    load0 = os.getloadavg()
    print(f"machine: {machine()}\nload average at start: {load0}", flush=True)
    print(f"versions: {versions()}", flush=True)
    results: dict[int, dict[str, Any]] = {}
    with temp_dir(args.keep) as base:
        env = bench_env("warm", base / "pyc")
        env.pop("SSH_AUTH_SOCK", None)
        warm_up(env)
        (base / "logs").mkdir()
        b = Bench(base, max(sizes), env)
        try:
            bundle = build_bundle_times(b)
            print(
                f"bundle: {bundle['size'] / 1e6:.1f} MB ({bundle['size']} bytes), sha256 "
                f"{bundle['digest'][:16]}...; fresh build {bundle['fresh']['in-process']:.2f} s "
                f"in-process ({bundle['fresh']['process']:.2f} s as a process); unchanged "
                f"(index hit) {bundle['unchanged']['in-process'] * 1000:.0f} ms in-process",
                flush=True,
            )
            # warm-up, untimed: every tool once on one host (byte-code, first-use costs)
            for tool in tools:
                one(b, tool, b.servers[:1], "warmup", PHASES[tool][0])
            for n in sizes:
                results[n] = bench_size(b, n, args.runs, tools)
        finally:
            b.close()
            mine = [p for p in leftovers(str(base)) if p != os.getpid()]
            if mine:
                print(f"left running, killing: {[(p, _cmd(p)) for p in mine]}", flush=True)
                for pid in mine:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
    print()
    print(report(results, tools))
    print(f"\nbundle: {json.dumps(bundle)}")
    print(f"load average: {load0} at start, {os.getloadavg()} at the end")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"bundle": bundle, "results": results, "versions": versions()}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
