"""pkg: a package installed, removed, at its newest version, or at a version.

Two backends behind one interface (`PackageBackend`):

* ``apt`` (default where apt exists): state from one ``dpkg-query`` call,
  changes through one ``apt-get install``/``remove`` for the whole group;
* ``packagekit``: the same through PackageKit's D-Bus API, as in mgmt.

``backend: auto`` picks apt when ``apt-get`` is present: it checks a
package in milliseconds where PackageKit's Resolve takes most of a second
(bench/RESULTS.md has the figures measured here).

Drift is seen through events, never polling: an inotify watch on dpkg's
status file (dpkg replaces it by rename after every change) fires when
anyone runs apt or dpkg behind the agent's back; events are debounced until
dpkg has been quiet briefly, so one ``apt-get remove`` is one re-check.

AutoGroup: like packages with the same backend merge into one vertex,
``Pkg[autogroup:(cowsay,powertop,sl)]``, checked with one query and changed
in one transaction. AutoEdges: an installed package provides the files and
unit files it ships, so ``file`` and ``svc`` resources for them come after it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Generator, Sequence
from typing import IO, ClassVar, Literal, Protocol

from .. import children
from ..errors import ResourceError
from ..traits import UID, Want
from . import pkgstate
from .base import Change, Context, Plan, Resource, param

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9+.\-]+(:[a-z0-9]+)?$")
#: a package version (Debian's or RPM's): version characters, at least one digit
_VERSION_RE = re.compile(r"^(?=[^\d]*\d)[A-Za-z0-9.+~:_-]+$")
_DPKG_STATUS = pkgstate.DPKG_STATUS
#: dpkg rewrites its status file several times per run: wait for this much quiet.
_QUIET = 0.3


class PackageBackend(Protocol):
    name: str

    async def installed(self, names: Sequence[str]) -> dict[str, str | None]:
        """Installed version of each package (None when not installed)."""
        ...

    async def candidates(self, names: Sequence[str]) -> dict[str, str | None]:
        """The version an install would get now (None when unknown)."""
        ...

    async def install(self, specs: Sequence[str]) -> None:
        """Install ``name`` or ``name=version`` specs in one transaction."""
        ...

    async def remove(self, names: Sequence[str]) -> None: ...


class Pkg(Resource, kind="pkg"):
    """A package in a wanted state.

    The name is the package's. It is installed, removed, upgraded to the
    newest version, or held at a version, through apt or PackageKit. Drift
    (someone running apt or dpkg) is seen through dpkg's status file,
    without polling; a transaction is never cut in half. AutoGroup:
    packages with no path between them are changed in one transaction.
    AutoEdges: files and units a package ships come after it.
    """

    example = """\
graph: web
resources:
  pkg:
  - name: nginx
    state: installed
  - name: telnet
    state: uninstalled
"""

    state: str = param("installed", doc="installed, uninstalled, newest, or an exact version")
    backend: Literal["auto", "apt", "packagekit"] = param(
        "auto", doc="package manager interface; auto: apt where present, else PackageKit"
    )

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if not _NAME_RE.match(self.name):
            out.append(("name", f"not a valid package name: {self.name!r}"))
        if self.state not in ("installed", "uninstalled", "newest") and not _VERSION_RE.match(
            self.state
        ):
            # A version has a digit: 'present' or 'latest' is a habit, not a version.
            out.append(
                (
                    "state",
                    "expected installed, uninstalled, newest or a version such as "
                    f"'1.2-3', got {self.state!r}",
                )
            )
        return out

    def manages(self) -> list[str]:
        return [self.name]

    # -- AutoGroup ---------------------------------------------------------------------

    def can_group(self, other: Resource) -> bool:
        return isinstance(other, Pkg) and other.backend == self.backend

    @property
    def packages(self) -> list[Pkg]:
        return [self, *(m for m in self.members if isinstance(m, Pkg))]

    # -- AutoEdges -----------------------------------------------------------------------

    def uids(self) -> list[UID]:
        return [UID("pkg", p.name) for p in self.packages]

    #: what `wants` can match: AutoEdges skips the search (a dpkg query) in a
    #: graph with neither, such as a graph of packages only (issue 13)
    wants_kinds: ClassVar[frozenset[str]] = frozenset({"file", "svc"})

    @classmethod
    def prepare_wants(cls, vertices: Sequence[Resource]) -> None:
        """Before AutoEdges asks each package: look all of them up in one query."""
        names = [
            p.name
            for v in vertices
            if isinstance(v, Pkg) and v.state != "uninstalled"
            for p in v.packages
        ]
        _prefetch_shipped(names)

    def wants(self) -> Generator[Want, bool, None]:
        if self.state == "uninstalled":
            return
        shipped: list[UID] = []
        unit_dirs = ("/lib/systemd/system/", "/usr/lib/systemd/system/")
        for p in self.packages:
            for path in _shipped_files(p.name):
                shipped.append(UID("file", path))
                if path.startswith(unit_dirs) and path.endswith(".service"):
                    shipped.append(UID("svc", os.path.basename(path)))
        if shipped:
            yield Want(tuple(shipped), reversed=True)

    # -- lifecycle -----------------------------------------------------------------------

    async def init(self, ctx: Context) -> None:
        await super().init(ctx)
        self._backend = _make_backend(self.backend, ctx)

    async def watch(self, ctx: Context) -> None:
        changed = asyncio.Event()
        sub = ctx.inotify.subscribe(_DPKG_STATUS, changed.set)
        try:
            ctx.ready()
            while True:
                await changed.wait()
                while True:  # debounce: one apt run is one event
                    changed.clear()
                    try:
                        async with asyncio.timeout(_QUIET):
                            await changed.wait()
                    except TimeoutError:
                        break
                ctx.event()
        finally:
            ctx.inotify.unsubscribe(sub)

    async def check(self) -> Plan:
        names = [p.name for p in self.packages]
        have = await self._backend.installed(names)
        newest = [p.name for p in self.packages if p.state == "newest"]
        cand = await self._backend.candidates(newest) if newest else {}
        wanted = [(p.name, p.state) for p in self.packages]
        try:
            found = pkgstate.changes(wanted, have, cand)
        except LookupError as e:
            raise ResourceError(
                f"package {e.args[0]!r} is not known to {self._backend.name}"
            ) from None
        changes = [Change(name, old, new) for name, old, new in found]
        return Plan(tuple(changes))

    async def apply(self, plan: Plan) -> None:
        by_name = {p.name: p for p in self.packages}
        install: list[str] = []
        remove: list[str] = []
        for c in plan.changes:
            p = by_name[c.field]
            if p.state == "uninstalled":
                remove.append(p.name)
            elif p.state in ("installed", "newest"):
                install.append(p.name)
            else:
                install.append(f"{p.name}={p.state}")
        if install:
            await self._backend.install(install)
        if remove:
            await self._backend.remove(remove)


def _make_backend(choice: str, ctx: Context) -> PackageBackend:
    if not pkgstate.uses_apt(choice):
        from .pkg_packagekit import PackageKitBackend

        return PackageKitBackend(ctx.dbus)
    return AptBackend(ctx.log)


# -- AutoEdges: what an installed package ships --------------------------------------------

#: (package, dpkg database stamp) -> files; see `_shipped_files`
_SHIPPED: dict[tuple[str, tuple[int, ...]], tuple[str, ...]] = {}
_SHIPPED_MAX = 1024


def _shipped_files(name: str) -> tuple[str, ...]:
    """Files an installed package ships (empty when it is not installed).

    Cached per state of the dpkg database, not forever: a package installed
    after the agent started gains its AutoEdges on the next graph reload
    (issue 8 item 16). This runs ``dpkg-query`` unless `_prefetch_shipped`
    already did, so it must not be called on the event loop: frontends
    compile graphs in a worker thread.
    """
    stamp = pkgstate.dpkg_stamp()
    found = _SHIPPED.get((name, stamp))
    if found is None:
        _prefetch_shipped([name])
        found = _SHIPPED.get((name, stamp), ())
    return found


def _prefetch_shipped(names: Sequence[str]) -> None:
    """Cache the files of every package in `names` not cached yet, in one query.

    Each ``dpkg-query`` costs about 25 ms: a graph with many packages asks
    once, not once per package (issue 13).
    """
    stamp = pkgstate.dpkg_stamp()
    if any(k[1] != stamp for k in _SHIPPED) or len(_SHIPPED) + len(names) > _SHIPPED_MAX:
        _SHIPPED.clear()  # entries of an older database state are useless
    todo = sorted({n for n in names if (n, stamp) not in _SHIPPED})
    if todo:
        found = _query_shipped_files(todo)
        for n in todo:
            _SHIPPED[(n, stamp)] = found.get(n, ())


#: one record per package: a header line, then its files, each line indented by a space
_FILES_FORMAT = "${Package} ${Architecture}\n${db-fsys:Files}"


def _query_shipped_files(names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The files each of `names` ships, from one ``dpkg-query -W`` (not installed: none).

    A name may carry an architecture (``libc6:amd64``); a bare name covers
    every installed architecture of the package, like ``dpkg-query -L``.
    Unknown names only make dpkg-query complain on stderr and exit 1.
    """
    try:
        out = subprocess.run(  # noqa: S603 - argv list; the names were validated
            ["dpkg-query", "-W", "-f", _FILES_FORMAT, "--", *names],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    records: dict[tuple[str, str], list[str]] = {}  # (package, architecture) -> files
    current: list[str] = []
    for line in out.stdout.splitlines():
        if not line.startswith(" "):
            pkg, _, arch = line.partition(" ")
            current = records.setdefault((pkg, arch), [])
        elif line.startswith(" /"):
            current.append(line[1:])
    result: dict[str, tuple[str, ...]] = {}
    for name in names:
        pkg, _, arch = name.partition(":")
        result[name] = tuple(
            f for (p, a), fs in records.items() if p == pkg and arch in ("", a) for f in fs
        )
    return result


# -- the apt backend -----------------------------------------------------------------------

#: keep this much of a transaction's output for an error message
_OUTPUT_TAIL = 64 * 1024


class AptBackend:
    """dpkg-query for state, apt-get for changes, each one process per group.

    Queries (dpkg-query, apt-cache) are read-only: a cancelled query is
    killed and reaped. A *transaction* (apt-get install/remove) is never cut
    in half, because dpkg interrupted mid-way leaves packages unpacked but
    not configured, which only ``dpkg --configure -a`` by hand repairs:

    * a stop (SIGTERM, ^C, a ``timeout`` metaparam) waits for it to finish,
      reaps it, says so in the log, and only then lets the cancellation go on;
    * it runs in a session of its own, so a ^C on the agent's terminal (which
      signals the whole foreground process group) does not reach it;
    * its output goes to an unlinked temporary file, not a pipe, so if the
      agent itself dies (kill -9, OOM), apt-get and dpkg are not killed by
      SIGPIPE on their next line of output. Deliberately no PDEATHSIG, unlike
      exec's commands: an orphaned transaction runs to its end (holding the
      dpkg lock meanwhile), and the next agent waits for that lock and sees
      the result.
    """

    name = "apt"

    def __init__(self, log: logging.Logger | logging.LoggerAdapter[logging.Logger]) -> None:
        self.log = log

    async def _query(self, argv: list[str], *, ok: tuple[int, ...] = (0,)) -> str:
        answer = await children.ask(argv, env=pkgstate.apt_env())
        if answer.code not in ok:
            raise ResourceError(f"{argv[0]} exited with status {answer.code}: {_tail(answer.err)}")
        return answer.out.decode(errors="replace")

    async def _transaction(self, verb: str, args: Sequence[str]) -> None:
        argv = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=600", verb, *args]
        what = f"apt-get {verb} {' '.join(args)}"
        self.log.info("%s", what)
        with tempfile.TemporaryFile() as output:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                env=pkgstate.apt_env(),
                start_new_session=True,
            )
            code, stopped = await _wait_uncut(
                proc,
                lambda: self.log.warning(
                    "%s (pid %d) is still running: waiting for it before stopping", what, proc.pid
                ),
            )
            tail = _tail(_read_tail(output))
        if stopped:
            # Reported, then the postponed cancellation goes on (STYLE 10).
            self.log.warning(
                "%s finished (exit status %d) after the stop request; %s",
                what,
                code,
                "it was waited for: a package transaction is never cut in half",
            )
            raise asyncio.CancelledError
        if code != 0:
            raise ResourceError(f"apt-get exited with status {code}: {tail}")

    async def installed(self, names: Sequence[str]) -> dict[str, str | None]:
        # Exit status 1 only means some names are unknown to dpkg: not installed.
        out = await self._query(pkgstate.installed_argv(names), ok=pkgstate.QUERY_OK)
        return pkgstate.parse_installed(out, names)

    async def candidates(self, names: Sequence[str]) -> dict[str, str | None]:
        out = await self._query(["apt-cache", "policy", *names])
        result: dict[str, str | None] = dict.fromkeys(names)
        current: str | None = None
        for line in out.splitlines():
            if line and not line.startswith(" "):
                current = line.rstrip(":")
            elif current in result and line.strip().startswith("Candidate:"):
                cand = line.split(":", 1)[1].strip()
                result[current] = None if cand == "(none)" else cand
        return result

    async def install(self, specs: Sequence[str]) -> None:
        await self._transaction("install", specs)

    async def remove(self, names: Sequence[str]) -> None:
        await self._transaction("remove", names)


async def _wait_uncut(
    proc: asyncio.subprocess.Process, on_stop: Callable[[], None]
) -> tuple[int, bool]:
    """Wait for `proc` to exit, even if cancelled (once or many times).

    Returns its exit status and whether a cancellation arrived meanwhile
    (`on_stop` is called at the first one): the caller must then re-raise
    it. Nothing is swallowed, only postponed until the work that must not be
    cut in half is done and reaped (STYLE 10).
    """
    wait = asyncio.ensure_future(proc.wait())
    stopped = False
    while not wait.done():
        try:
            await asyncio.shield(wait)
        except asyncio.CancelledError:
            if not stopped:
                on_stop()
            stopped = True
    return wait.result(), stopped


def _read_tail(f: IO[bytes]) -> bytes:
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - _OUTPUT_TAIL))
    return f.read()


def _tail(raw: bytes) -> str:
    return " | ".join(raw.decode(errors="replace").strip().splitlines()[-5:])
