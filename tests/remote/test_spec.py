"""The remote graph files of a run are read and checked as a whole before anything connects."""

from __future__ import annotations

from pathlib import Path

import pytest

from pymgmt.errors import InputErrors
from pymgmt.remote.spec import load_specs


def graph(path: Path, *header: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("graph: g\n" + "".join(h + "\n" for h in header) + "resources: {}\n")
    return path


def errors_of(files: list[Path], **kw: object) -> list[tuple[str, int, str | None, str]]:
    with pytest.raises(InputErrors) as info:
        load_specs([str(f) for f in files], **kw)  # type: ignore[arg-type]
    return [(e.location.file, e.location.line, e.field, e.message) for e in info.value.errors
            if e.location is not None]  # fmt: skip


def test_targets_hostnames_and_children(tmp_path: Path) -> None:
    graph(tmp_path / "sub" / "c.yaml", "remote: ssh://admin@10.0.0.3:2200")
    a = graph(tmp_path / "a.yaml", "remote: ssh://10.0.0.1", "remotes: [sub/c.yaml]")
    b = graph(tmp_path / "b.yaml", "remote: ssh://root@10.0.0.2", "hostname: web-b")
    specs = load_specs([str(a), str(b)], taken=["me"])
    assert [s.hostname for s in specs] == ["10.0.0.1", "web-b"]
    assert specs[1].target.user == "root" and specs[1].target.port == 22
    (c,) = specs[0].children
    assert (c.hostname, c.target.user, c.target.port) == ("10.0.0.3", "admin", 2200)
    # the copies keep their relative places, so 'remotes:' paths still lead to them
    assert specs[0].layout() == {a: "a.yaml", c.file: "sub/c.yaml"}


def test_every_problem_of_every_file_is_reported_with_its_place(tmp_path: Path) -> None:
    no_target = graph(tmp_path / "none.yaml")
    bad_url = graph(tmp_path / "bad.yaml", "remote: http://10.0.0.1")
    taken = graph(tmp_path / "taken.yaml", "remote: ssh://10.0.0.9", "hostname: me")
    missing = graph(tmp_path / "m.yaml", "remote: ssh://10.0.0.5", "remotes: [nowhere.yaml]")
    found = errors_of([no_target, bad_url, taken, missing], taken=["me"])
    fields = {(Path(f).name, field) for f, _, field, _ in found}
    assert ("none.yaml", "remote") in fields
    assert ("bad.yaml", "remote") in fields
    assert ("taken.yaml", "hostname") in fields
    assert any(Path(f).name == "m.yaml" and line == 3 for f, line, _, _ in found)


def test_a_hostname_twice_is_refused(tmp_path: Path) -> None:
    a = graph(tmp_path / "a.yaml", "remote: ssh://10.0.0.1")
    b = graph(tmp_path / "b.yaml", "remote: ssh://other@10.0.0.1:23")
    ((file, line, field, message),) = errors_of([a, b])
    assert (Path(file).name, line, field) == ("b.yaml", 2, "hostname")
    assert "taken" in message


def test_depth_is_limited(tmp_path: Path) -> None:
    """A file that names itself is a loop; a chain deeper than --max-depth is refused."""
    loop = graph(tmp_path / "loop.yaml", "remote: ssh://10.0.0.1", "remotes: [loop.yaml]")
    ((_, line, field, message),) = errors_of([loop], max_depth=3)
    assert (line, field) == (3, "remotes") and "loop" in message
    graph(tmp_path / "d2.yaml", "remote: ssh://10.0.0.2")
    top = graph(tmp_path / "d1.yaml", "remote: ssh://10.0.0.1", "remotes: [d2.yaml]")
    assert load_specs([str(top)], max_depth=2)[0].children[0].hostname == "10.0.0.2"
    ((_, line, field, _),) = errors_of([top], max_depth=1)
    assert (line, field) == (3, "remotes")


def test_a_junk_remotes_entry_is_an_error_at_its_place(tmp_path: Path) -> None:
    bad = graph(tmp_path / "a.yaml", "remote: ssh://10.0.0.1", "remotes: [{x: 1}]")
    ((_, line, field, _),) = errors_of([bad])
    assert (line, field) == (3, "remotes")


def test_validate_checks_a_remote_files_target_and_tree(tmp_path: Path) -> None:
    """`pymgmt validate` of a remote graph file checks its remote: and remotes: too."""
    import subprocess

    from helpers import PYMGMT

    bad = graph(tmp_path / "bad.yaml", "remote: ftp://10.0.0.1")
    proc = subprocess.run([*PYMGMT, "validate", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"{bad}:2:9: remote:" in proc.stderr
    graph(tmp_path / "c.yaml", "remote: ssh://admin@10.0.0.3")
    good = graph(tmp_path / "a.yaml", "remote: ssh://10.0.0.1:2222", "remotes: [c.yaml]")
    proc = subprocess.run([*PYMGMT, "validate", str(good)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "runs on: " in proc.stdout and "@10.0.0.1:2222 as 10.0.0.1" in proc.stdout
    assert "admin@10.0.0.3:22 as 10.0.0.3" in proc.stdout
