"""`pymgmt puppet-translate` with the real Puppet compiler (Debian's puppet-agent).

Each test compiles a real manifest; the translated graph is then run by a
real pymgmt agent and the files it made are compared with what `puppet
apply` makes of the same manifest, in its own directory.
"""

from __future__ import annotations

import itertools
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.helpers import PYMGMT, json_lines, run_once

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("puppet") is None, reason="puppet-agent is not installed"),
]

#: a manifest exercising what Puppet users write: a class with parameters, a
#: defined type, an `each` loop, a directory tree, relationships, a package
#: (installed already: nothing to install), a file copied from a local
#: source; ROOT is replaced by a per-run directory.
MANIFEST = """\
class web($port = 80) {
  file { 'ROOT/etc/web.conf': content => "port=${port}\\n", mode => '0640' }
}
define site::vhost($docroot) {
  file { "ROOT/etc/vhost-${title}.conf": content => "root ${docroot}\\n" }
}
file { ['ROOT/etc', 'ROOT/srv']: ensure => directory, mode => '0755' }
['a', 'b', 'c'].each |$n| {
  file { "ROOT/srv/${n}.txt": content => "${n}\\n", require => File['ROOT/srv'] }
}
site::vhost { 'one': docroot => '/var/www/one' }
class { 'web': port => 8080 }
Class['web'] -> Site::Vhost['one']
exec { 'reload-web':
  command     => "/bin/sh -c 'echo reloaded >> ROOT/srv/reloads'",
  refreshonly => true,
  subscribe   => Class['web'],
}
package { 'coreutils': ensure => installed }
file { 'ROOT/etc/motd': source => 'ROOT-motd', mode => '0644' }
exec { 'seed':
  command => '/bin/sh -c "echo seeded > ROOT/srv/seed"',
  unless  => '/usr/bin/test -e ROOT/srv/seed',
}
"""


def translate(tmp_path: Path, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    manifest = tmp_path / "site.pp"
    manifest.write_text(code)
    argv = [*PYMGMT, "puppet-translate", *args, str(manifest)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


def tree(root: Path) -> dict[str, tuple[str, int, bytes]]:
    out: dict[str, tuple[str, int, bytes]] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in ["", *files]:
            p = Path(dirpath, name) if name else Path(dirpath)
            st = p.lstat()
            kind = "dir" if stat.S_ISDIR(st.st_mode) else "file"
            data = p.read_bytes() if kind == "file" else b""
            out[str(p.relative_to(root))] = (kind, stat.S_IMODE(st.st_mode), data)
    return out


def test_a_manifest_translates_runs_and_matches_puppet_apply(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for root in (ours, theirs):
        root.mkdir()
        Path(f"{root}-motd").write_bytes(b"\xffnot UTF-8, copied as it is\n")
    done = translate(tmp_path, MANIFEST.replace("ROOT", str(ours)))
    assert done.returncode == 0, done.stderr
    graph = tmp_path / "site.yaml"
    graph.write_text(done.stdout)
    run = run_once(graph, tmp_path / "state")
    assert run.returncode == 2, run.stderr  # changes applied
    applied = subprocess.run(
        [
            "puppet",
            "apply",
            "--color",
            "false",
            "--detailed-exitcodes",
            "-e",
            MANIFEST.replace("ROOT", str(theirs)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert applied.returncode == 2, applied.stderr
    assert tree(ours) == tree(theirs)
    assert tree(ours)["etc/web.conf"] == ("file", 0o640, b"port=8080\n")
    assert tree(ours)["etc/motd"] == ("file", 0o644, b"\xffnot UTF-8, copied as it is\n")
    assert tree(ours)["srv/reloads"][2] == b"reloaded\n"  # refreshonly: one refresh, one run
    again = run_once(graph, tmp_path / "state")
    assert again.returncode == 0, again.stderr  # converged: nothing to change
    assert tree(ours)["srv/reloads"][2] == b"reloaded\n"


def test_relationships_become_edges_and_independent_resources_do_not(tmp_path: Path) -> None:
    done = translate(tmp_path, MANIFEST.replace("ROOT", str(tmp_path / "r")))
    assert done.returncode == 0, done.stderr
    # the class before the defined type: web.conf -> vhost-one.conf
    assert "from: {kind: file, name: %s/etc/web.conf}" % (tmp_path / "r") in done.stdout
    names = [line for line in done.stdout.splitlines() if line.startswith("- name: ")]
    assert any("web.conf] -> File[" in n and "vhost-one.conf]" in n for n in names)
    # the loop's files depend on their directory only: not on one another
    assert not any("a.txt] -> File[" in n for n in names)


def test_unsupported_parts_are_listed_and_nothing_is_printed(tmp_path: Path) -> None:
    code = (
        "tidy { '/tmp/pymgmt-never-tidied': age => '1w' }\n"
        f"file {{ '{tmp_path}/x': ensure => file, content => 'x', backup => false,\n"
        "  recurse => true }\n"
    )
    done = translate(tmp_path, code)
    assert done.returncode == 1
    assert done.stdout == ""
    site = tmp_path / "site.pp"
    tidy = "Tidy[/tmp/pymgmt-never-tidied]: resource type 'Tidy' has no pymgmt kind"
    assert f"{site}:1: {tidy}" in done.stderr
    assert (
        f"{site}:2: File[{tmp_path}/x]: recurse => true is supported with ensure => directory "
        "and a source" in done.stderr
    )
    assert "--puppet-allow-unsupported" in done.stderr
    allowed = translate(tmp_path, code, "--puppet-allow-unsupported")
    assert allowed.returncode == 0, allowed.stderr
    assert "- name: Tidy[/tmp/pymgmt-never-tidied]" in allowed.stdout


def test_a_syntax_error_is_puppets_message_at_its_line(tmp_path: Path) -> None:
    done = translate(tmp_path, "file { '/x':\n  content => 'a',\n  mode => \n}\n")
    assert done.returncode == 1
    assert done.stdout == ""
    site = tmp_path / "site.pp"
    assert f"pymgmt: error: {site}:4:" in done.stderr
    assert "Syntax error" in done.stderr


def test_inline_code_and_a_missing_manifest(tmp_path: Path) -> None:
    code = f"file {{ '{tmp_path}/inline': content => 'x' }}"
    done = subprocess.run(
        [*PYMGMT, "puppet-translate", code],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"- name: {tmp_path}/inline" in done.stdout
    missing = subprocess.run(
        [*PYMGMT, "puppet-translate", str(tmp_path / "nope.pp")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 1
    assert "no such manifest" in missing.stderr


def _stamps(d: Path, names: str) -> dict[str, tuple[float, float]]:
    return {
        n: (float((d / f"{n}.start").read_text()), float((d / f"{n}.end").read_text()))
        for n in names
    }


def test_independent_puppet_resources_run_in_parallel_on_pymgmt(tmp_path: Path) -> None:
    """The article's point: Puppet applies one resource after another; pymgmt, a DAG.

    Each exec stamps its start, then waits (up to 60 s) until all three
    have started, and fails if they never do: run one at a time, they fail.
    """
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    wait_all = (
        "for i in $(seq 600); do [ -e {d}/A.start ] && [ -e {d}/B.start ] && "
        "[ -e {d}/C.start ] && exit 0; sleep 0.1; done; exit 1"
    )

    def code(d: Path, middle: str) -> str:
        return "".join(
            # the stamp is renamed into place: a .start that exists holds its time already
            f"exec {{ '{n}': command => \"/bin/sh -c 'date +%s.%N > {d}/{n}.t && "
            f"mv {d}/{n}.t {d}/{n}.start; "
            f"{middle.format(d=d)} && date +%s.%N > {d}/{n}.end'\" }}\n"
            for n in "ABC"
        )

    manifest = tmp_path / "par.pp"
    manifest.write_text(code(ours, f"({wait_all})"))
    done = run_once(Path("puppet"), tmp_path / "state", "--puppet", str(manifest))
    assert done.returncode == 2, done.stderr
    stamps = _stamps(ours, "ABC")
    assert max(s for s, _ in stamps.values()) <= min(e for _, e in stamps.values())
    # the same resources through `puppet apply`: one after the other
    applied = subprocess.run(
        ["puppet", "apply", "--color", "false", "-e", code(theirs, "true")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert applied.returncode == 0, applied.stderr
    serial = sorted(_stamps(theirs, "ABC").values())
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(serial))


def test_a_notify_relationship_delivers_a_refresh(tmp_path: Path) -> None:
    site = tmp_path / "site.pp"
    site.write_text(
        f"file {{ '{tmp_path}/conf': content => 'x', notify => Notify['reload'] }}\n"
        "notify { 'reload': }\n"
    )
    done = run_once(Path("puppet"), tmp_path / "state", "--puppet", str(site), "--json")
    assert done.returncode == 2, done.stderr
    events = json_lines(done.stdout)
    noop = [e for e in events if e.get("event") == "checked" and e["vertex"] == "Noop[reload]"]
    assert noop and noop[-1]["refreshed"] is True
