"""file `recurse` and `purge`: a directory kept a copy of a source, or purged (mgmt's, Puppet's).

Kept apart from `file.py`, which calls in here for a file resource whose
path ends in ``/`` and that has ``recurse: true``: with a ``source``
directory the tree is kept a copy of it; without one, ``purge: true`` keeps
the directory holding only what the graph manages in it (mgmt's
``examples/lang/purge1.mcl``, Puppet's ``purge => true``).

What another file resource of the graph manages inside the tree (its
`Resource.spares`, filled from the graph when compiling) is that resource's
alone: never copied, changed or removed by the tree. The directories above
such a path are kept, and walked into so that what is unmanaged in them is
purged too. One rule for both shapes, so the two resources never undo each
other: a source entry that another resource wants ``absent`` is simply not
copied.

What converged means, entry by entry below the directory (the directory
itself is the file resource's as ever: its ``mode``, ``owner``, ``group``):

* every directory and regular file of the source is there, of the same
  type; a file has the source file's bytes exactly;
* every entry has the source entry's permission bits (``0o777``: the
  setuid, setgid and sticky bits are never copied, so a copy made by root of
  a file someone else could write never becomes a setuid program), like
  mgmt's copy and ``cp -p``; the resource's ``mode`` is the top directory's
  only, for a tree has files and directories that want different modes;
* with ``owner``/``group`` set, every entry has them (Puppet's recursive
  ownership); unset, a new entry is the agent's and an existing one keeps
  its own;
* with ``purge``, nothing else is there: an entry of the target that the
  source lacks (without a source: every entry) and that no other resource
  manages is removed, a directory with everything in it. A symlink is
  removed as an entry, never followed (its target survives). A purge never
  crosses into another filesystem (a mount point, or a file bind-mounted,
  inside the tree): that is an error naming it, and nothing in it is
  removed (``rm --one-file-system``); a bind mount of the same filesystem
  has the same device and is not told apart;
* an entry of the wrong type (a file where the source has a directory, a
  symlink where it has a file...) is an error, unless ``force`` (mgmt's
  param) lets it be removed and made again.

Both trees are walked with directory fds from the two top directories, every
component opened with ``O_NOFOLLOW``: a symlink in either tree is never
followed. One in the source is refused with an error (a copy made as root
must not read through a link whoever may write the source planted); one in
the target is the wrong type (above). Depth and entry count are capped
(`MAX_DEPTH`, `MAX_ENTRIES`), with an error naming the cap.

Writes are the file resource's: each file is written to a temporary file
with its final mode and owner from the first byte and renamed over the
target once durable, in the engine's batches (`ctx.durable`), `CHUNK`
files per batch job so a large tree does not hold thousands of fds open.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, NamedTuple

from ..errors import ResourceError
from ..fsutil import lstat_at, open_dir, read_xattrs
from ..safepath import read_regular
from ..types import canonical_path, dots_problem, path_problem
from .base import Change

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..durable import Staging
    from ..events.inotify import DirSubscription, InotifyHub

#: deepest directory below the top that a copy walks into
MAX_DEPTH = 64
#: most entries (source and target together) a copy looks at
MAX_ENTRIES = 100_000
#: files written per batch job: each staged file holds an fd until the sync
CHUNK = 64
#: at most this many entries are listed in a plan's diff, then a count
_SHOWN = 200

_RDIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_RFILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
#: what `safepath.temp_name` names a write in progress: never copied, never purged
#: (a purge must not pull the temporary file from under a write of this very copy)
_TEMP_PREFIX = ".pymgmt-tmp-"

Action = Literal["mkdir", "create", "replace", "chmod", "chown", "remove"]


@dataclass(frozen=True, slots=True)
class Op:
    """One step of making the target tree a copy: `action` on `rel` (relative to the top)."""

    action: Action
    rel: str
    mode: int = 0
    #: for "remove": what is there, in words
    what: str = ""


@dataclass
class TreeDiff:
    """What a check found: the steps, and the directories of both trees (to watch)."""

    ops: list[Op] = field(default_factory=list)
    #: directories of the source, relative to its top ("" is the top): watched
    #: in both trees
    dirs: list[str] = field(default_factory=list)
    #: directories walked in the target alone (no source; one kept for a managed
    #: path below it that the source lacks): watched in the target
    target_dirs: list[str] = field(default_factory=list)
    #: the source as seen (names, types, modes, sizes, mtimes): another value
    #: at the next check means what is wanted moved
    seen: int = 0

    def change(self, target: str) -> Change | None:
        """The plan's one change for the tree, listing what would be done, or None."""
        if not self.ops:
            return None
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.action] = counts.get(op.action, 0) + 1
        summary = ", ".join(f"{n} to {action}" for action, n in counts.items())
        top = target.rstrip("/")
        lines = [f"{op.action} {top}/{op.rel}{_suffix(op)}\n" for op in self.ops[:_SHOWN]]
        if len(self.ops) > _SHOWN:
            lines.append(f"... and {len(self.ops) - _SHOWN} more\n")
        want = "a copy of the source" if self.dirs else "only what the graph manages"
        return Change("tree", summary, want, diff="".join(lines))


def _suffix(op: Op) -> str:
    if op.action in ("mkdir", "create", "replace", "chmod"):
        return f" ({op.mode:04o})"
    if op.action == "remove":
        return f" ({op.what})"
    return ""


def problems(
    target: str, source: str | None, *, is_dir: bool, purge: bool, force: bool
) -> list[tuple[str, str]]:
    """What is wrong with a recursive copy's or purge's params (field, message)."""
    if not is_dir:
        return [("recurse", "copies a directory: end the path with '/'")]
    if purge and (canonical_path(target).rstrip("/") or "/") == "/":
        return [("purge", "refusing to purge '/': it would remove all the graph does not manage")]
    if source is None:
        if not purge:
            return [
                (
                    "recurse",
                    "copies a source directory, or purges: give source (a path ending in '/'),"
                    " or purge: true",
                )
            ]
        if force:
            return [("force", "replaces entries copied from a source: there is no source")]
        return []
    if not source.endswith("/"):
        return [("source", "a directory copied with recurse ends in '/', as the path does")]
    if path_problem(source) or dots_problem(source):
        return []  # said by the file's own check of source
    # `/a//b/` is `/a/b/`: a copy inside its source would copy itself, deeper each round
    src, dst = canonical_path(source), canonical_path(target.rstrip("/") + "/")
    if dst.startswith(src) or src.startswith(dst):
        return [("source", f"{source!r} and the path {target!r} are inside each other")]
    return []


# -- the check: both trees walked with fds, nothing written -----------------------------


class _Entry(NamedTuple):
    """One name of a source directory, with its stat in both trees (`have`: the target's)."""

    src: int
    dst: int | None
    name: str
    sub: str
    st: os.stat_result
    have: os.stat_result | None


class _Trees:
    """A source and a target tree's top directories, and the owner wanted below them."""

    def __init__(
        self, source: str | None, target: str, *, uid: int | None, gid: int | None
    ) -> None:
        self.source = None if source is None else source.rstrip("/") or "/"
        self.target = target.rstrip("/") or "/"
        self.uid = uid
        self.gid = gid


class Spared:
    """The paths, relative to the top, that other resources manage, and their ancestors.

    `whole`: another tree (spelt ``path/**``), left alone with all below it.
    `managed`: an entry another resource manages (everything in `whole`
    too); a directory there is still walked into, its entries being no
    resource's. `ancestors`: directories kept, and walked into, for a
    managed path below them.
    """

    def __init__(self, rels: frozenset[str] = frozenset()) -> None:
        self.whole = {r.removesuffix("/**") for r in rels if r.endswith("/**")}
        self.managed = {r.removesuffix("/**") for r in rels}
        self.ancestors = {r[:i] for r in self.managed for i, c in enumerate(r) if c == "/"}

    @classmethod
    def below(cls, top: str, paths: frozenset[str]) -> Spared:
        """The `paths` (canonical, absolute) below directory `top` (canonical), made relative."""
        head = top.rstrip("/") + "/"
        return cls(frozenset(p[len(head) :] for p in paths if p.startswith(head)))


class _Walk(_Trees):
    """One walk of a source (if any) and a target tree (blocking: run off the loop)."""

    def __init__(
        self, source: str | None, target: str, *, uid: int | None, gid: int | None
    ) -> None:
        super().__init__(source, target, uid=uid, gid=gid)
        self.purge = False
        self.force = False
        self.spared = Spared()
        self.entries = 0
        self.diff = TreeDiff()
        #: the device of the target's top: a purge never crosses into another
        self.dev = -1
        self._seen: list[tuple[str, int, int, int, int]] = []

    def run(self) -> TreeDiff:
        src = None if self.source is None else _open_top(self.source, "source")
        try:
            try:
                dst: int | None = _open_top(self.target, "path")
            except FileNotFoundError:
                dst = None  # made by the file's own "state" change first
            try:
                if dst is not None:
                    self.dev = os.fstat(dst).st_dev
                if src is None and dst is None:
                    self.diff.target_dirs.append("")  # watched until it is made
                self._dir(src, dst, "", 0)
            finally:
                if dst is not None:
                    os.close(dst)
        finally:
            if src is not None:
                os.close(src)
        self.diff.seen = hash(tuple(self._seen))
        return self.diff

    def _other_fs(self, sub: str) -> ResourceError:
        return ResourceError(
            f"{self.target}/{sub} is on another filesystem than {self.target}/ (a mount point"
            " inside the tree): purge never crosses into another filesystem, and removed"
            " nothing there; unmount it, or manage it with its own file resource (spared)"
        )

    def _count(self, rel: str) -> None:
        self.entries += 1
        if self.entries > MAX_ENTRIES:
            raise ResourceError(
                f"{self.source}/ and {self.target}/ have more than {MAX_ENTRIES:,} entries "
                f"(at {rel}): recurse copies at most that many"
            )

    def _dir(self, src: int | None, dst: int | None, rel: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise ResourceError(
                f"{self.source if src is not None else self.target}/{rel} is more than"
                f" {MAX_DEPTH} directories deep: recurse copies at most that deep"
            )
        (self.diff.dirs if src is not None else self.diff.target_dirs).append(rel)
        copied = set() if src is None else self._copy_entries(src, dst, rel, depth)
        if not self.purge or dst is None:
            return
        if os.fstat(dst).st_dev != self.dev:
            raise self._other_fs(rel.rstrip("/"))
        spared = self.spared
        for name in _names(dst):
            sub = f"{rel}{name}"
            if name in copied or sub in spared.whole:
                continue  # the source's, or another tree's
            self._count(sub)
            st = lstat_at(dst, name)
            kept = sub in spared.managed or sub in spared.ancestors
            if st is not None and kept and stat.S_ISDIR(st.st_mode):
                if st.st_dev != self.dev:
                    raise self._other_fs(sub)
                try:  # kept for what is managed below it, and purged around that
                    fd = os.open(name, _RDIR, dir_fd=dst)
                except OSError as e:  # a symlink swapped in since the lstat: never followed
                    raise ResourceError(f"{self.target}/{sub} changed while read ({e})") from None
                try:
                    self._dir(None, fd, sub + "/", depth + 1)
                finally:
                    os.close(fd)
                continue
            if sub not in spared.managed:  # a managed file is its resource's
                self._remove(dst, name, sub)

    def _copy_entries(self, src: int, dst: int | None, rel: str, depth: int) -> set[str]:
        """The steps that copy directory `rel` of the source; the names it copies."""
        copied: set[str] = set()
        for name in _names(src):
            sub = f"{rel}{name}"
            self._count(sub)
            st = lstat_at(src, name)
            if st is None:
                continue  # removed meanwhile: its event follows
            self._seen.append((sub, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino))
            spared = self.spared
            if sub in spared.whole:
                continue  # another tree's: never copied over, never purged
            alone = sub in spared.managed
            if (alone or sub in spared.ancestors) and not stat.S_ISDIR(st.st_mode):
                continue  # another resource's file; or a directory needed here for one
            copied.add(name)
            have = None if dst is None else lstat_at(dst, name)
            entry = _Entry(src, dst, name, sub, st, have)
            if stat.S_ISDIR(st.st_mode):
                self._subdir(entry, depth, own=not alone)
            elif stat.S_ISREG(st.st_mode):
                self._file(entry)
            else:
                raise ResourceError(
                    f"source entry {self.source}/{sub} is {_what(st)}: recurse copies "
                    "directories and regular files only, and never follows a symlink"
                )
        return copied

    def _subdir(self, e: _Entry, depth: int, *, own: bool = True) -> None:
        """A directory of the source; not `own`: another resource makes it and sets its mode.

        Such a directory's entries are still the copy's, once it is there (its
        appearing is an event of the directory above, which is watched).
        """
        src, dst, name, sub, st, have = e
        mode = stat.S_IMODE(st.st_mode) & 0o777
        if not own:
            if have is None or not stat.S_ISDIR(have.st_mode):
                return
        elif have is not None and not stat.S_ISDIR(have.st_mode):
            self._wrong_type(dst, name, sub, have, "a directory")
            have = None
        if have is None:
            self.diff.ops.append(Op("mkdir", sub, mode))
        elif own:
            self._meta(sub, mode, have)
        sfd = os.open(name, _RDIR, dir_fd=src)
        try:
            dfd = None if have is None or dst is None else os.open(name, _RDIR, dir_fd=dst)
            try:
                self._dir(sfd, dfd, sub + "/", depth + 1)
            finally:
                if dfd is not None:
                    os.close(dfd)
        finally:
            os.close(sfd)

    def _file(self, e: _Entry) -> None:
        src, dst, name, sub, st, have = e
        mode = stat.S_IMODE(st.st_mode) & 0o777
        if have is not None and not stat.S_ISREG(have.st_mode):
            self._wrong_type(dst, name, sub, have, "a regular file")
            have = None
        if have is None or dst is None:
            self.diff.ops.append(Op("create", sub, mode))
            return
        if have.st_size != st.st_size or not _same_files(src, dst, name):
            self.diff.ops.append(Op("replace", sub, mode))  # mode and owner from its first byte
            return
        self._meta(sub, mode, have)

    def _meta(self, sub: str, mode: int, have: os.stat_result) -> None:
        if stat.S_IMODE(have.st_mode) != mode:
            self.diff.ops.append(Op("chmod", sub, mode))
        if (self.uid is not None and have.st_uid != self.uid) or (
            self.gid is not None and have.st_gid != self.gid
        ):
            self.diff.ops.append(Op("chown", sub))

    def _wrong_type(
        self, dst: int | None, name: str, sub: str, have: os.stat_result, want: str
    ) -> None:
        if not self.force:
            raise ResourceError(
                f"{self.target}/{sub} is {_what(have)} where the source has {want}: "
                "set force: true to have it replaced"
            )
        assert dst is not None
        self._remove(dst, name, sub)

    def _remove(self, dst: int, name: str, sub: str) -> None:
        """A removal of `name`; for a directory, everything in it is counted (and capped)."""
        st = lstat_at(dst, name)
        if st is None:
            return
        if st.st_dev != self.dev:
            raise self._other_fs(sub)
        if stat.S_ISDIR(st.st_mode):
            for below in _tree_entries(dst, name, self.dev, 0):
                self._count(sub)
                if below is not None:
                    raise self._other_fs(f"{sub}/{below}")
        self.diff.ops.append(Op("remove", sub, what=_what(st)))


def _tree_entries(dfd: int, name: str, dev: int, depth: int) -> Iterator[str | None]:
    """One item per entry below directory `name` (never following a symlink).

    The item is None, or the path (relative to `name`) of an entry on
    another device than `dev` (a mount point), which is not walked into.
    """
    if depth > MAX_DEPTH:
        raise ResourceError(f"a directory to remove is more than {MAX_DEPTH} directories deep")
    fd = os.open(name, _RDIR, dir_fd=dfd)
    try:
        for sub in os.listdir(fd):
            st = lstat_at(fd, sub)
            if st is not None and st.st_dev != dev:
                yield sub
                continue
            yield None
            if st is not None and stat.S_ISDIR(st.st_mode):
                for below in _tree_entries(fd, sub, dev, depth + 1):
                    yield None if below is None else f"{sub}/{below}"
    finally:
        os.close(fd)


def diff(
    source: str | None,
    target: str,
    *,
    uid: int | None,
    gid: int | None,
    purge: bool,
    force: bool,
    spared: Spared,
) -> TreeDiff:
    """What making `target` a copy of `source` (None: empty) takes, `spared` left alone.

    Blocking: run it off the loop.
    """
    walk = _Walk(source, target, uid=uid, gid=gid)
    walk.purge, walk.force, walk.spared = purge, force, spared
    return walk.run()


def _open_top(path: str, what: str) -> int:
    """A readable fd of a top directory, walked safely; FileNotFoundError for a missing target."""
    try:
        pfd = open_dir(path)
    except (FileNotFoundError, NotADirectoryError) as e:
        if what == "path":
            raise FileNotFoundError(path) from None
        raise ResourceError(
            f"source directory {path}/ does not exist ({e.filename} is missing or not a directory)"
        ) from None
    try:
        return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
    finally:
        os.close(pfd)


def _names(dfd: int) -> list[str]:
    """The entries of a directory, in byte order, without the temporary files of writes."""
    return sorted((n for n in os.listdir(dfd) if not n.startswith(_TEMP_PREFIX)), key=os.fsencode)


def _same_files(src: int, dst: int, name: str) -> bool:
    """Whether `name` holds the same bytes in both directories (opened without following)."""
    a = os.open(name, _RFILE, dir_fd=src)
    try:
        b = os.open(name, _RFILE, dir_fd=dst)
        try:
            offset = 0
            while True:
                x, y = os.pread(a, 1 << 20, offset), os.pread(b, 1 << 20, offset)
                if x != y:
                    return False
                if not x:
                    return True
                offset += len(x)
        finally:
            os.close(b)
    finally:
        os.close(a)


def _what(st: os.stat_result) -> str:
    if stat.S_ISLNK(st.st_mode):
        return "a symlink"
    if stat.S_ISDIR(st.st_mode):
        return "a directory"
    if stat.S_ISREG(st.st_mode):
        return "a regular file"
    return "not a regular file"


# -- the apply: the steps, walked again with fds, in batches of durable writes -----------


def chunks(ops: list[Op]) -> Iterator[list[Op]]:
    """The steps cut into batch jobs of at most `CHUNK` file writes, in order."""
    out: list[Op] = []
    writes = 0
    for op in ops:
        out.append(op)
        if op.action in ("create", "replace"):
            writes += 1
            if writes >= CHUNK:
                yield out
                out, writes = [], 0
    if out:
        yield out


class Applier(_Trees):
    """Makes one chunk of steps in one batch job (in the batch's thread)."""

    def __call__(self, ops: list[Op], staging: Staging) -> None:
        dst = _Dirs(self.target, "path")
        try:
            src = None if self.source is None else _Dirs(self.source, "source")
            try:
                for op in ops:
                    self._one(op, src, dst, staging)
            finally:
                if src is not None:
                    src.close()
        finally:
            dst.close()

    def _one(self, op: Op, src: _Dirs | None, dst: _Dirs, staging: Staging) -> None:
        parent, name = _split_rel(op.rel)
        dfd = dst.of(parent)
        if op.action == "remove":
            _remove_tree(dfd, name, f"{self.target}/{op.rel}", dst.dev, 0)
            staging.sync_dir(dfd)
            return
        assert src is not None, "only a removal is planned without a source"
        if op.action == "mkdir":
            os.mkdir(name, 0o700, dir_fd=dfd)  # the exact mode once the owner is set
            self._meta(dfd, name, op.rel, op.mode, staging)
            staging.sync_dir(dfd)
        elif op.action in ("create", "replace"):
            data = self._read_source(src.of(parent), name, op.rel)
            uid, gid, xattrs = self.uid, self.gid, {}
            old = _open_node(dfd, name) if op.action == "replace" else None
            if old is not None:
                try:
                    st = os.fstat(old)
                    if stat.S_ISREG(st.st_mode):  # what is not managed is kept
                        uid = st.st_uid if uid is None else uid
                        gid = st.st_gid if gid is None else gid
                        xattrs = read_xattrs(old)
                finally:
                    os.close(old)
            staging.write_at(dfd, name, data, op.mode, uid, gid, xattrs)
        elif op.action == "chmod":
            self._meta(dfd, name, op.rel, op.mode, staging, owner=False)
        else:  # chown
            self._meta(dfd, name, op.rel, None, staging)

    def _meta(
        self,
        dfd: int,
        name: str,
        rel: str,
        mode: int | None,
        staging: Staging,
        *,
        owner: bool = True,
    ) -> None:
        """Owner, then mode, on the opened node (never following it), fsynced before reported."""
        fd = _open_node(dfd, name)
        if fd is None:
            raise ResourceError(f"{self.target}/{rel} disappeared while being changed")
        try:
            if owner and (self.uid is not None or self.gid is not None):
                uid, gid = self.uid, self.gid
                os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
            if mode is not None:
                os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _read_source(self, sfd: int, name: str, rel: str) -> bytes:
        data = read_regular(name, limit=1 << 62, dir_fd=sfd, follow=False)
        if data is None:
            raise ResourceError(
                f"source entry {self.source}/{rel} changed while copied (gone, or no longer "
                "a regular file)"
            )
        return data


class _Dirs:
    """The directory fds of one tree opened by a job, walked from its top with O_NOFOLLOW."""

    def __init__(self, top: str, what: str) -> None:
        self._fds: dict[str, int] = {"": _open_top(top, what)}
        self._top = top
        #: the top's device: a removal never crosses into another filesystem
        self.dev = os.fstat(self._fds[""]).st_dev

    def of(self, rel: str) -> int:
        fd = self._fds.get(rel)
        if fd is None:
            parent, name = _split_rel(rel)
            try:
                fd = os.open(name, _RDIR, dir_fd=self.of(parent))
            except OSError as e:  # ELOOP, ENOTDIR: it changed since the check
                raise ResourceError(f"{self._top}/{rel} is no longer a directory ({e})") from None
            self._fds[rel] = fd
        return fd

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def _split_rel(rel: str) -> tuple[str, str]:
    """("a/b", "c") of "a/b/c"; ("", "c") of "c"."""
    parent, _, name = rel.rpartition("/")
    return parent, name


def _open_node(dfd: int, name: str) -> int | None:
    try:
        return os.open(name, _RFILE, dir_fd=dfd)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ResourceError(f"{name} cannot be opened without following it ({e})") from None


def _remove_tree(dfd: int, name: str, shown: str, dev: int, depth: int) -> None:
    """Remove `name` in `dfd`: a directory with everything in it, a symlink as itself.

    Nothing on another device than `dev` is removed or walked into: a mount
    made since the check is an error, as it is at the check.
    """
    st = lstat_at(dfd, name)
    if st is None:
        return
    if st.st_dev != dev:
        raise ResourceError(
            f"{shown} is on another filesystem (a mount point): purge never crosses into"
            " another filesystem"
        )
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dfd)  # a symlink goes, its target stays
        return
    if depth > MAX_DEPTH:
        raise ResourceError(f"{shown} is more than {MAX_DEPTH} directories deep: not removed")
    fd = os.open(name, _RDIR, dir_fd=dfd)
    try:
        for sub in os.listdir(fd):
            _remove_tree(fd, sub, f"{shown}/{sub}", dev, depth + 1)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dfd)


# -- the watch: every directory of both trees, through the hub ---------------------------


class TreeWatch:
    """Subscriptions to every directory of the source tree (`tick`) and of the target (`event`).

    The directories are known from the last check's walk: `update` adds the
    new ones and drops the gone ones. A directory subscribed only after the
    walk read it could have changed in between, so `update` says whether it
    added any, and the resource then walks again. Without a source, only
    the target's directories are watched: an entry made in any of them is
    drift that the purge removes.
    """

    def __init__(
        self,
        hub: InotifyHub,
        source: str | None,
        target: str,
        tick: Callable[[], None],
        event: Callable[[], None],
    ) -> None:
        self._hub = hub
        self._source = None if source is None else source.rstrip("/")
        self._target = target.rstrip("/")
        self._tick, self._event = tick, event
        #: (True for the source, relative directory) -> its subscription
        self._subs: dict[tuple[bool, str], DirSubscription] = {}
        self.update([""], [])

    def update(self, dirs: list[str], target_dirs: list[str]) -> bool:
        """Watch `dirs` (relative, "" the top) in both trees and `target_dirs` in the target.

        Returns whether any subscription was added.
        """
        wanted = [(False, rel) for rel in (*dirs, *target_dirs)]
        if self._source is not None:
            wanted += [(True, rel) for rel in dirs]
        keep = set(wanted)
        for gone in [k for k in self._subs if k not in keep]:
            self._hub.unsubscribe_dir(self._subs.pop(gone))
        added = False
        for k in wanted:
            if k not in self._subs:
                is_source, rel = k
                top = self._source if is_source else self._target
                path = f"{top}/{rel}".rstrip("/") or "/"
                self._subs[k] = self._hub.subscribe_dir(
                    path, self._tick if is_source else self._event
                )
                added = True
        return added

    def close(self) -> None:
        for dsub in self._subs.values():
            self._hub.unsubscribe_dir(dsub)
        self._subs.clear()
