"""mount: real mount(8) and umount(8) in a mount namespace of the test's own, with a private /etc.

A holder process (``unshare --mount --propagation private``, then ``sleep``)
keeps the namespace alive between runs, with a copy of /etc bound over
/etc inside it; every agent run enters it with ``nsenter --mount``. So the
tmpfs the agent mounts and the fstab it edits exist only there: each test
asserts the host's mount table and /etc/fstab did not move.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import PYMGMT, checked, json_lines, recap_of, wait_for, write_atomic, write_graph

from pymgmt.frontends.compile import compile_graph
from pymgmt.graph.model import Graph
from pymgmt.resources import mounttab
from pymgmt.resources.base import Resource
from pymgmt.resources.file import File
from pymgmt.resources.mount import Mount

#: comments, a blank line and odd spacing the edits must keep byte for byte
FSTAB = (
    b"# /etc/fstab: static file system information.\n"
    b"#\n"
    b"UUID=0a1b-2c3d  /               ext4    errors=remount-ro 0       1\n"
    b"\n"
    b"/dev/sr0        /media/cdrom0   udf,iso9660 user,noauto     0       0\n"
    b"  # an indented comment\tafter a tab\n"
)


@dataclass
class Namespace:
    pid: int
    etc: Path

    def enter(self) -> list[str]:
        """argv prefix that runs a command in the namespace (nsenter execs it)."""
        return ["nsenter", "--target", str(self.pid), "--mount", "--"]

    def mounts_at(self, point: Path) -> list[mounttab.Mounted]:
        text = Path(f"/proc/{self.pid}/mountinfo").read_bytes()
        return mounttab.mounted_at(mounttab.parse_mountinfo(text), str(point))

    def fstab(self) -> bytes:
        return (self.etc / "fstab").read_bytes()


def _host_state(point: Path) -> tuple[bytes, int, int, list[mounttab.Mounted]]:
    st = os.stat("/etc/fstab")
    own = mounttab.parse_mountinfo(Path("/proc/self/mountinfo").read_bytes())
    return (
        Path("/etc/fstab").read_bytes(),
        st.st_ino,
        st.st_mtime_ns,
        mounttab.mounted_at(own, str(point)),
    )


@pytest.fixture
def point(tmp_path: Path) -> Path:
    p = tmp_path / "mnt point"  # a space: escaped as \040 in both tables
    p.mkdir()
    return p


@pytest.fixture
def ns(tmp_path: Path, point: Path) -> Iterator[Namespace]:
    """A mount namespace, a copy of /etc (fstab: FSTAB) over its /etc; the host checked after."""
    host_before = _host_state(point)
    etc = tmp_path / "etc"
    subprocess.run(["cp", "-a", "/etc", str(etc)], check=True)
    (etc / "fstab").write_bytes(FSTAB)
    holder = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
         'mount --bind "$0" /etc && exec sleep infinity', str(etc)],
    )  # fmt: skip
    try:
        ns = Namespace(holder.pid, etc)

        def ready() -> bool:
            if holder.poll() is not None:
                raise AssertionError(f"the namespace holder exited {holder.returncode}")
            return bool(ns.mounts_at(Path("/etc")))

        wait_for(ready, what="the private /etc in the new namespace")
        yield ns
    finally:
        holder.kill()
        holder.wait()
    assert _host_state(point) == host_before, "the host's /etc/fstab or mounts changed"


def _graph(tmp_path: Path, point: Path, **params: object) -> Path:
    res = {"name": str(point), "device": "pymgmt-test", "type": "tmpfs"}
    res["options"] = {"size": "4m", "mode": "0750", "nosuid": ""}
    g = tmp_path / "graph.yaml"
    write_graph(g, {"graph": "mnt", "resources": {"mount": [{**res, **params}]}})
    return g


def run(ns: Namespace, tmp_path: Path, graph: Path) -> subprocess.CompletedProcess[str]:
    argv = [*ns.enter(), *PYMGMT, "run", "--prefix", str(tmp_path / "state")]
    argv += ["--converged-timeout", "0", "--json", str(graph)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def our_line(point: Path) -> bytes:
    return (
        b"pymgmt-test\t"
        + str(point).replace(" ", "\\040").encode()
        + (b"\ttmpfs\tsize=4m,mode=0750,nosuid\t0\t0\n")
    )


def test_first_run_mounts_and_writes_fstab_next_is_converged(tmp_path, ns, point):
    g = _graph(tmp_path, point)
    first = run(ns, tmp_path, g)
    assert first.returncode == 2, first.stdout + first.stderr
    (m,) = ns.mounts_at(point)
    assert (m.fstype, m.source, "nosuid" in m.options) == ("tmpfs", "pymgmt-test", True)
    assert ns.fstab() == FSTAB + our_line(point)
    again = run(ns, tmp_path, g)
    assert again.returncode == 0, again.stdout + again.stderr
    assert recap_of(again)["resources"][f"Mount[{point}]"]["outcome"] == "unchanged"
    assert len(ns.mounts_at(point)) == 1


def test_an_umount_and_an_fstab_edit_from_outside_are_repaired(agent, tmp_path, ns, point):
    vertex = f"Mount[{point}]"
    a = agent(_graph(tmp_path, point), wrapper=ns.enter())
    a.wait_event(checked(vertex, applied=True), what="the first mount")
    wait_for(lambda: ns.mounts_at(point), what="the tmpfs mounted")

    since = a.mark()
    subprocess.run([*ns.enter(), "umount", str(point)], check=True)
    i = a.wait_event(checked(vertex, applied=True), since=since, what="the repair")
    assert a.events[i]["drift"], a.describe()
    assert [c["field"] for c in a.events[i]["changes"]] == ["mounted"]
    wait_for(lambda: ns.mounts_at(point), what="the tmpfs mounted again")

    since = a.mark()
    write_atomic(ns.etc / "fstab", FSTAB)  # someone drops the line (as an editor saves)
    i = a.wait_event(checked(vertex, applied=True), since=since, what="the fstab repair")
    assert a.events[i]["drift"], a.describe()
    assert ns.fstab() == FSTAB + our_line(point)
    assert len(ns.mounts_at(point)) == 1  # not mounted twice
    assert a.stop() == 0


def test_changed_options_are_written_and_the_mount_is_remounted_with_them(tmp_path, ns, point):
    assert run(ns, tmp_path, _graph(tmp_path, point)).returncode == 2
    options = {"size": "8m", "mode": "0750", "nosuid": "", "noexec": ""}
    changed = _graph(tmp_path, point, options=options)
    done = run(ns, tmp_path, changed)
    assert done.returncode == 2, done.stdout + done.stderr
    applied = [e for e in json_lines(done.stdout) if checked(f"Mount[{point}]", applied=True)(e)]
    assert {c["field"] for c in applied[0]["changes"]} == {"fstab", "options"}, applied
    (m,) = ns.mounts_at(point)  # remounted in place, not mounted twice
    assert "noexec" in m.options and "nosuid" in m.options, m
    size = subprocess.run(
        [*ns.enter(), "stat", "-f", "-c", "%b %S", str(point)], capture_output=True, text=True
    )
    blocks, block_size = map(int, size.stdout.split())
    assert blocks * block_size == 8 << 20, size.stdout
    assert ns.fstab().endswith(b"\ttmpfs\tsize=8m,mode=0750,nosuid,noexec\t0\t0\n")
    again = run(ns, tmp_path, changed)
    assert again.returncode == 0, again.stdout + again.stderr


def test_twenty_mounts_in_one_graph_each_keep_their_fstab_line(tmp_path, ns, point):
    """Applied in parallel, every fstab edit keeps the others' lines (no lost update).

    A lost line would be found missing by its resource's next check and put
    back as "repaired": drift the agent made itself.
    """
    points = [tmp_path / f"m{i}" for i in range(20)]
    res = [{"name": str(p), "device": f"t{i}", "type": "tmpfs"} for i, p in enumerate(points)]
    for p in points:
        p.mkdir()
    g = tmp_path / "many.yaml"
    write_graph(g, {"graph": "mnts", "resources": {"mount": res}})
    first = run(ns, tmp_path, g)
    assert first.returncode == 2, first.stdout + first.stderr
    outcomes = {v["outcome"] for v in recap_of(first)["resources"].values()}
    assert outcomes == {"changed"}, recap_of(first)
    lines = [mounttab.parse_entry(line) for line in ns.fstab().splitlines()]
    assert sorted(e.point for e in lines if e and e.device.startswith("t")) == sorted(
        map(str, points)
    )
    assert all(len(ns.mounts_at(p)) == 1 for p in points)
    again = run(ns, tmp_path, g)
    assert again.returncode == 0, again.stdout + again.stderr


def test_absent_unmounts_and_removes_only_its_line(tmp_path, ns, point):
    assert run(ns, tmp_path, _graph(tmp_path, point)).returncode == 2
    absent = _graph(tmp_path, point, state="absent")
    done = run(ns, tmp_path, absent)
    assert done.returncode == 2, done.stdout + done.stderr
    assert ns.mounts_at(point) == []
    assert ns.fstab() == FSTAB  # every other line byte for byte
    again = run(ns, tmp_path, absent)
    assert again.returncode == 0, again.stdout + again.stderr


def test_another_filesystem_at_the_point_is_an_error_and_left_mounted(tmp_path, ns, point):
    subprocess.run([*ns.enter(), "mount", "-t", "tmpfs", "someone-else", str(point)], check=True)
    done = run(ns, tmp_path, _graph(tmp_path, point))
    assert done.returncode == 4, done.stdout + done.stderr
    fails = [e for e in json_lines(done.stdout) if e["event"] == "failed"]
    assert "someone-else (tmpfs) is mounted at" in fails[0]["error"], fails
    assert [m.source for m in ns.mounts_at(point)] == ["someone-else"]


@pytest.mark.parametrize(
    ("res", "message"),
    [
        ({"name": "rel/dir", "device": "d", "type": "tmpfs"}, "name: must be an absolute path"),
        ({"name": "/a//b", "device": "d", "type": "tmpfs"}, "name: must be a normal path"),
        ({"name": "/mnt/x/", "device": "d", "type": "tmpfs"}, "name: must be a normal path"),
        ({"name": "/", "state": "absent"}, "name: the root filesystem '/' is not managed"),
        ({"name": "/", "device": "d", "type": "ext4"}, "name: the root filesystem '/' is not"),
        ({"name": "/mnt/x", "type": "tmpfs"}, "device: required with state: exists"),
        ({"name": "/mnt/x", "device": "d"}, "type: required with state: exists"),
        ({"name": "/mnt/x", "device": "d", "type": "ext 4"}, "type: not a filesystem type"),
        (
            {"name": "/mnt/x", "device": "d", "type": "tmpfs", "options": {"a,b": ""}},
            "options: not an option name",
        ),
        (
            {"name": "/mnt/x", "device": "d", "type": "tmpfs", "passno": -1},
            "passno: must be 0 or more",
        ),
    ],
)
def test_bad_mounts_are_input_errors(tmp_path, res, message):
    g = tmp_path / "graph.yaml"
    write_graph(g, {"graph": "mnt", "resources": {"mount": [res]}})
    proc = subprocess.run(
        [*PYMGMT, "validate", str(g)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr


def test_a_mount_comes_after_its_directory_and_the_nearest_mount_above():
    g: Graph[Resource] = Graph(name="t")
    g.add(File(name="/srv/a/"))
    for name in ("/srv", "/srv/a", "/srv/a/b/c", "/other"):
        g.add(Mount(name=name, device="d", type="tmpfs"))
    edges = {(e.src, e.dst) for e in compile_graph(g).autoedges}
    assert edges == {
        (("file", "/srv/a/"), ("mount", "/srv/a")),
        (("mount", "/srv"), ("mount", "/srv/a")),
        (("mount", "/srv/a"), ("mount", "/srv/a/b/c")),
    }


# -- a secret in the options ------------------------------------------------------------------

#: a bind mount takes any option (the kernel ignores them): a real mount carrying a password
PASSWORDS = ("S3cretBindPw", "0therPassVal")


def _secret_graph(tmp_path: Path, point: Path, password: str) -> Path:
    source = tmp_path / "bound"
    source.mkdir(exist_ok=True)
    options = {"bind": "", "username": "svc", "password": password, "credentials": "/root/c"}
    return _graph(tmp_path, point, device=str(source), type="none", options=options)


def _leaks(proc: subprocess.CompletedProcess[str], *secrets: str) -> list[str]:
    return [s for s in secrets if s in proc.stdout or s in proc.stderr]


def test_a_password_option_reaches_no_output_and_validation_warns(tmp_path, ns, point):
    """The password goes into fstab (mount needs it) and nowhere else: not the JSON events,
    the diff, the recap, the text output, nor the validation's warning."""
    vertex = f"Mount[{point}]"
    # someone else's hand-written cifs line: the diff's context must hide its password too
    other = b"//srv/share\t/media/share\tcifs\tnoauto,pass=HandWrittenPw\t0\t0\n"
    (ns.etc / "fstab").write_bytes(FSTAB + other)
    g = _secret_graph(tmp_path, point, PASSWORDS[0])

    check = subprocess.run([*PYMGMT, "validate", str(g)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    warning = [line for line in check.stderr.splitlines() if "credentials=FILE" in line]
    assert len(warning) == 1 and f"{g}:" in warning[0] and "options: " in warning[0], check.stderr
    assert "readable by every user" in warning[0]

    first = run(ns, tmp_path, g)
    assert first.returncode == 2, first.stdout + first.stderr
    assert f"password={PASSWORDS[0]}".encode() in ns.fstab()  # mount(8) reads it there
    assert [m.fstype for m in ns.mounts_at(point)] != []
    applied = [e for e in json_lines(first.stdout) if checked(vertex, applied=True)(e)]
    (fstab,) = [c for c in applied[0]["changes"] if c["field"] == "fstab"]
    assert "password=<redacted>" in fstab["new"] and "password=<redacted>" in fstab["diff"]
    assert "pass=<redacted>" in fstab["diff"], fstab["diff"]  # the context line
    assert "credentials=/root/c" in fstab["new"]  # a file's name is no secret
    assert "credentials=FILE" in first.stderr  # the warning, in a run too
    assert recap_of(first)["resources"][vertex]["outcome"] == "changed"

    # the graph's password changes: the old one, in the fstab line being replaced, is
    # a secret this process never saw, and the text output shows the diff (-v)
    changed = _secret_graph(tmp_path, point, PASSWORDS[1])
    text = subprocess.run(
        [*ns.enter(), *PYMGMT, "run", "--prefix", str(tmp_path / "state"),
         "--converged-timeout", "0", "-v", str(changed)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert text.returncode == 2, text.stderr
    assert "password=<redacted>" in text.stderr, text.stderr
    assert f"password={PASSWORDS[1]}".encode() in ns.fstab()
    again = run(ns, tmp_path, changed)
    assert again.returncode == 0, again.stdout + again.stderr

    for proc in (check, first, text, again):
        assert _leaks(proc, *PASSWORDS, "HandWrittenPw") == [], proc.stdout + proc.stderr


def test_the_shown_params_hide_a_secret_options_value():
    """What the status socket, the web page and the live report show of a vertex."""
    from pymgmt.report.live import shown_params

    res = Mount(
        name="/mnt/x",
        device="//srv/s",
        type="cifs",
        options={"username": "svc", "password": "pw-in-the-graph", "secretfile": "/root/s"},
    )
    assert shown_params(res)["options"] == {
        "username": "svc",
        "password": "<redacted>",
        "secretfile": "/root/s",
    }
    assert [f for f, _ in res.warnings()] == ["options"]


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("password2", True),
        ("pass", True),
        ("secret", True),
        ("key", True),
        ("auth_token", True),
        ("credentials", False),
        ("secretfile", False),
        ("passwd_file", False),
        ("username", False),
        ("size", False),
    ],
)
def test_which_options_are_secret(name, secret):
    assert mounttab.secret_option(name) is secret
    line = f"//s /m cifs uid=0,{name}=v4lue 0 0"
    assert ("v4lue" in mounttab.masked(line, "<redacted>")) is not secret
