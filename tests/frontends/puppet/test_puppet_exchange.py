"""Puppet's exported resources and collectors on pymgmt's etcd World: real Puppet, real etcd.

Two agents, each from its own manifest: host a exports an ``@@file`` and
does not collect it (so, as in Puppet, a does not apply it), host b
collects; the exported file lands on b, at the path Puppet would give it.
What pymgmt cannot map -- a collector's query, overrides, another type --
is refused at its file and line before anything changes. The translation rules themselves are pinned
in test_puppet_translate.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.harness import Cluster
from tests.helpers import event, run_once, write_atomic

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("puppet") is None, reason="puppet-agent is not installed"),
]

#: Puppet compiles in seconds; loaded CI machines take several times longer
COMPILE = 180.0


@pytest.fixture
def cluster(no_leaks: None, tmp_path: Path) -> Iterator[Cluster]:
    """Hosts under tmp_path/cluster; every agent and etcd is gone afterwards."""
    c = Cluster(tmp_path / "cluster")
    try:
        yield c
    finally:
        c.close()


def exporting(share: Path, text: str) -> str:
    """A manifest that exports one file into `share`, and does not collect it itself."""
    return (
        f"file {{ '{share}': ensure => directory }}\n"
        f"@@file {{ '{share}/from-a.txt': content => \"{text}\\n\", mode => '0640' }}\n"
    )


def test_an_exported_file_lands_on_the_host_that_collects_it(cluster: Cluster) -> None:
    a, b = cluster.host("a"), cluster.host("b")
    share_a, share_b = a.root / "share", b.root / "share"
    site_a, site_b = a.root.parent / "a.pp", b.root.parent / "b.pp"
    site_a.write_text(exporting(share_a, "hello from a"))
    site_b.write_text(f"file {{ '{share_b}': ensure => directory }}\nFile <<| |>>\n")
    cluster.start("a", Path("puppet"), "--puppet", str(site_a))
    assert a.agent is not None
    a.agent.wait_event(event("settled"), timeout=COMPILE, what="a's first graph settled")
    a.agent.wait_event(event("exported"), timeout=COMPILE, what="a publishes its export")
    # a does not apply what it exports without collecting, as in Puppet
    assert share_a.is_dir() and not (share_a / "from-a.txt").exists()
    collect = ["--puppet-collect-dir", str(share_b)]
    cluster.start("b", Path("puppet"), "--puppet", str(site_b), *collect, seeds=a)
    cluster.wait_for(
        lambda: (
            (share_b / "from-a.txt").is_file()
            and (share_b / "from-a.txt").read_text() == "hello from a\n"
        ),
        "a's exported file collected on b",
        timeout=COMPILE,
    )
    assert (share_b / "from-a.txt").stat().st_mode & 0o777 == 0o640
    assert b.agent is not None
    b.agent.wait_event(event("collect_changed"), timeout=COMPILE, what="b says what it collected")
    assert sorted(p.name for p in share_b.iterdir()) == ["from-a.txt"]
    # live: a saved edit of a's manifest recompiles there, and b collects the new content
    write_atomic(site_a, exporting(share_a, "hello again"))
    cluster.wait_for(
        lambda: (share_b / "from-a.txt").read_text() == "hello again\n",
        "a's edited export collected on b",
        timeout=COMPILE,
    )
    assert cluster.stop("b") == 0
    assert cluster.stop("a") == 0


def test_what_pymgmt_cannot_map_is_refused_at_its_line_and_nothing_changes(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    site = tmp_path / "site.pp"
    site.write_text(
        f"file {{ '{out}': ensure => directory }}\n"
        f"@@file {{ '{out}/only-exported': content => \"x\\n\" }}\n"
        "File <<| tag == 'web' |>>\n"
        "Exec <<| |>>\n"
        "File <<| |>> { mode => '0600' }\n"
    )
    done = run_once(
        Path("puppet"), tmp_path / "state", "--puppet", str(site), "--puppet-collect-dir", str(out)
    )
    assert done.returncode == 1, done.stderr
    assert f"{site}:3: File <<| tag == 'web' |>>: a collector's query is not supported" in (
        done.stderr
    )
    assert f"{site}:4: Exec <<| |>>: collecting Exec resources is not supported" in done.stderr
    assert f"{site}:5: File <<| |>>: a collector's overrides" in done.stderr
    assert not out.exists()  # nothing was changed
