"""file: a file or directory, its content, mode and ownership.

Converged means: the path exists as the right type (a directory when the
path ends in ``/``, as in mgmt; a regular file otherwise) with the wanted
content, mode, owner and group -- or, with ``state: absent``, nothing is
there. Watched through the parent directory via the shared inotify hub, so
deletion, rewrite, rename-over, chmod and chown are all seen at once.

Paths are walked, not trusted (the agent runs as root and a managed path
may lie under a directory a user controls): every component is opened with
``O_NOFOLLOW`` relative to its parent's fd, a symlinked component is followed
only if root (or the agent's own user) owns it, a symlink at the path itself
is never followed (an error, or removed by ``state: absent``), and content,
mode and owner are read and changed through the opened fd. See
`pymgmt.fsutil`. A rewrite keeps what is not managed: the owner, group, mode,
extended attributes and ACL of the file it replaces.

Writes are atomic and durable: a temporary file in the same directory is
created with the final mode from its first byte, written, made durable and
renamed over the target, and the directory is fsynced. A crash at any moment
leaves the old content or the new, never a partial or empty file. The
temporary name is fixed per target, so a leftover from a crash is replaced
by the next write. Every apply goes through the engine's `DurableWrites`
(``ctx.durable``): the applies in flight at once share one sync and one
fsync per directory (issue 13: a first apply of 1,000 files spent two
thirds of its time in per-file fsyncs).

The content may also be rendered from a Jinja2 ``template`` with ``vars``
(`resources/template.py`, issue 15). mgmt renders templates in its own
language (mcl's ``template()`` function) and hands the file plain content;
pymgmt's YAML has no functions, so the file kind takes the template itself,
and one var may arrive over Send/Recv (``recv: vars.NAME``): a generated
password fills one line of a config instead of the whole file.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import os
import re
import stat
from collections.abc import Callable, Generator, Hashable, Iterable, Iterator, Mapping, Sequence
from typing import ClassVar, Literal

from ..durable import Staging
from ..errors import ResourceError
from ..fsutil import (
    lstat_at,
    open_dir,
    opened_dir,
    read_fd,
    same_content,
    sha256_fd,
    split,
)
from ..safepath import Parents
from ..traits import UID, Want
from ..types import account_problem, canonical_path, dots_problem, path_problem
from . import filefragments, filestate, filetree
from .base import CONVERGED, Change, Context, Plan, Resource, off_loop, param, watch_subscribed
from .filestate import gid_of, matches, uid_of
from .template import TemplateProblem, compile_template, render, syntax_problem

_MODE_RE = re.compile(r"^0?[0-7]{3,4}$")
#: Above this size, reading a file leaves the event loop for a thread. Below
#: it a read costs about what a stat does, and a thread hop per check would
#: cost more than it saves (measured: +110 ms on a 1k-file converged check).
_INLINE_IO = 64 << 10
#: Above this size (or for binary data), diffs show digests instead of lines.
_DIFF_MAX = 256 << 10


class File(Resource, kind="file"):
    """A file or directory (path ending in ``/``) in a wanted state.

    Converged means the path exists as the right type with the wanted
    content, mode, owner and group, or, with ``state: absent``, that nothing
    is there; a param left unset is not managed. Watched through inotify, so
    an edit, a chmod or a removal behind the agent's back is repaired at once.
    Writes are atomic: a crash leaves the old content or the new. The content
    may be a Jinja2 ``template`` rendered (sandboxed, reading no other file)
    with ``vars``; one var may come over Send/Recv (``recv: vars.NAME``), and
    a secret received there keeps the whole rendered content out of every
    diff, log and report. The parent
    directory must exist, or be managed too: AutoEdges put a file after the
    managed directories above it. Symlinks in the path are followed only
    when root (or the agent's user) owns them. The content may come from
    other files: ``source`` (one file), ``fragments`` (several, in order:
    `filefragments`); a directory may be kept a copy of a source tree
    (``recurse``, ``purge``: `filetree`). Their edits are changes of what is
    wanted, never drift. A directory with ``recurse`` and ``purge`` and no
    source holds only what the graph manages in it (mgmt's and Puppet's
    purge): an entry no other file resource manages is removed, at once
    when it appears (drift); the paths other file resources manage inside
    are spared, with the directories above them.
    """

    example = """\
graph: motd
resources:
  file:
  - name: /etc/motd
    content: |
      Managed by pymgmt.
    mode: "0644"
    owner: root
    group: root
  - name: /srv/www/
    state: exists
  - name: /etc/app/db.conf
    mode: "0600"
    template: |
      [database]
      user = {{ user }}
      port = {{ port }}
      password = {{ db_password }}
    vars:
      user: app
      port: 5432
  password:
  - name: db
    length: 32
edges:
- name: db-password
  from: {kind: password, name: db}
  to: {kind: file, name: /etc/app/db.conf}
  send: password
  recv: vars.db_password
"""

    binary_params = frozenset({"content"})
    #: `vars.NAME` may receive one value over Send/Recv (see `Resource.recv_keyed`)
    recv_keyed: ClassVar[frozenset[str]] = frozenset({"vars"})

    path: str = param(
        "", doc="absolute path, a directory when it ends in '/'; empty: the resource's name"
    )
    content: str | None = param(None, doc="the exact content; unset: not managed")
    source: str | None = param(
        None,
        doc="absolute path of a local file whose bytes are the content (copied byte for"
        " byte; an edit of the source is applied at once); unset: not managed",
    )
    fragments: list[str] | None = param(
        None,
        doc="absolute paths whose bytes, concatenated in order, are the content (mgmt's); one"
        " ending in '/' is a directory whose regular files directly in it are taken in name"
        " order; an edit of a fragment is applied at once; unset: not managed",
    )
    recurse: bool = param(
        False,
        doc="with a directory path (ending in '/'): manage the tree below it, either a copy of a"
        " source directory (files byte for byte, the source's permission bits; see filetree), or,"
        " with purge and no source, a directory holding only what the graph manages; paths other"
        " file resources of the graph manage inside are theirs, never copied over or removed",
    )
    purge: bool = param(
        False,
        doc="with recurse: remove every entry that the source lacks (no source: every entry) and"
        " that no other file resource of the graph manages (mgmt's and Puppet's purge); the spared"
        " set is the paths of the graph's other file resources inside the directory, and the"
        " directories above them, walked into and purged around them; it follows graph edits (a"
        " file whose resource is dropped is then purged). A symlink is removed as itself, never"
        " followed; another filesystem mounted inside is never crossed (an error); '/' and a"
        " directory holding the agent's state directory are refused",
    )
    force: bool = param(
        False,
        doc="with recurse: replace an entry of the wrong type (a file where the source has a"
        " directory, a symlink...) instead of failing",
    )
    template: str | None = param(
        None,
        doc="a Jinja2 template (sandboxed, no file includes; an undefined variable is an"
        " error) rendered with 'vars' into the content; unset: not managed",
    )
    vars: dict[str, str] = param(
        default_factory=dict,
        doc="the template's variables, by name; one may also come over Send/Recv"
        " (recv: vars.NAME), and a secret received makes the whole content secret",
    )
    state: Literal["exists", "absent"] = param(
        "exists", doc="exists, or absent (removed; a directory only when empty)"
    )
    mode: str | None = param(None, doc="octal permission bits such as '0644'; unset: not managed")
    owner: str | None = param(None, doc="user name or uid; unset: not managed")
    group: str | None = param(None, doc="group name or gid; unset: not managed")
    show_diff: bool = param(
        True,
        doc="false: a content change is shown by checksums only, never its lines (a copied"
        " key, a config with secrets in it: Puppet's show_diff)",
    )

    # -- static validation ----------------------------------------------------

    @property
    def target(self) -> str:
        return self.path or self.name

    @property
    def is_dir(self) -> bool:
        return self.target.endswith("/")

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        field = "path" if self.path else "name"
        bad_path = path_problem(self.target)
        if bad_path:
            why = (
                ""
                if self.path or self.target.startswith("/")
                else " (without 'path', the name is the path)"
            )
            out.append((field, bad_path + why))
        elif bad_path := dots_problem(self.target):
            out.append((field, bad_path))
        elif self.state == "absent" and not self.target.strip("/"):
            out.append(("state", "refusing to remove '/'"))
        if self.mode is not None and not _MODE_RE.match(self.mode):
            out.append(("mode", f"expected an octal mode such as '0644', got {self.mode!r}"))
        for name in ("content", "source", "fragments"):
            # a tree copy's source is a directory's; content and fragments never are
            exempt = name == "source" and self.recurse
            if self.is_dir and getattr(self, name) is not None and not exempt:
                out.append((name, f"a directory (path ending in '/') cannot have {name}"))
        out.extend(self._parts_problems())
        if self.template is not None:
            given = [f for f in ("content", "source", "fragments") if getattr(self, f) is not None]
            if self.is_dir:
                out.append(("template", "a directory (path ending in '/') cannot have template"))
            elif given:
                out.append(("template", f"give either {given[0]} or template, not both"))
            elif bad := syntax_problem(self.template):
                out.append(("template", bad))
        if self.source is not None:
            if self.content is not None:
                out.append(("source", "give either content or source, not both"))
            elif bad := path_problem(self.source) or dots_problem(self.source):
                out.append(("source", bad))
            elif (canonical_path(self.source).rstrip("/") or "/") == self.manages()[0]:
                out.append(("source", "is the file itself"))
        for name, what in (("owner", "user"), ("group", "group")):
            value = getattr(self, name)
            bad = None if value is None else account_problem(value, what)
            if bad:
                out.append((name, bad))
        return out

    def _parts_problems(self) -> list[tuple[str, str]]:
        """fragments, recurse, purge and force: their own rules (filefragments, filetree)."""
        if self.fragments is not None:
            if self.content is not None or self.source is not None:
                return [("fragments", "give only one of content, source and fragments")]
            if bad := filefragments.problems(self.target, self.fragments):
                return bad
            # and on to recurse, purge and force, which fragments do not take either
        if self.recurse:
            if self.state == "absent":
                return [("recurse", "copies a tree, which cannot be absent")]
            return filetree.problems(
                self.target, self.source, is_dir=self.is_dir, purge=self.purge, force=self.force
            )
        if self.source is not None and self.source.endswith("/"):
            if self.is_dir:
                return [("source", "a source directory is copied with recurse: true")]
            return [("source", "a directory (ending in '/') is copied to a directory path only")]
        for name in ("purge", "force"):
            if getattr(self, name):
                return [(name, "is used only with recurse: true")]
        return []

    def warnings(self) -> list[tuple[str, str]]:
        # mgmt's own examples (file1.yaml) give an absent file content: harmless.
        managed = ("content", "source", "fragments", "template", "mode", "owner", "group")
        ignored = [f for f in managed if getattr(self, f) is not None]
        if self.state == "absent" and ignored:
            return [(ignored[0], f"ignored: the file is to be absent ({', '.join(ignored)})")]
        if self.vars and self.template is None:
            return [("vars", "ignored: there is no template to use them")]
        return []

    def manages(self) -> list[str]:
        # `/a//b/` and `/a/b` are one path: a directory and a file there conflict.
        return [canonical_path(self.target).rstrip("/") or "/"]

    def purges(self) -> list[str]:
        return self.manages() if self.recurse and self.purge else []

    def trees(self) -> list[str]:
        return self.manages() if self.recurse else []

    def reads(self) -> list[str]:
        if self.state == "absent":
            return []
        out = [] if self.fragments is None else [canonical_path(f) for f in self.fragments]
        if self.source is not None:
            out.append(canonical_path(self.source) + ("**" if self.recurse else ""))
        return out

    # -- AutoEdges: a file depends on its nearest managed ancestor directory --------

    def uids(self) -> list[UID]:
        return [UID("file", self.target.rstrip("/") or "/")]

    def wants(self) -> Generator[Want, bool, None]:
        yield from self._other_wants()
        parts = [p for p in self.target.split("/") if p]
        for depth in range(len(parts) - 1, -1, -1):
            matched = yield Want((UID("file", "/" + "/".join(parts[:depth])),))
            if matched:
                return

    def _other_wants(self) -> Iterator[Want]:
        """The steps before the ancestor walk, whose matches do not end it."""
        if self.source is not None:  # a managed source is made right first
            yield Want((UID("file", self.source.rstrip("/") or "/"),))
        if self.fragments is not None:  # and so are managed fragments
            yield from filefragments.wants(self.fragments)
        if self.state != "absent":  # its owner and group, when the graph makes them
            if self.owner is not None:  # a name or an id: a user or group has both
                yield Want((UID("user", self.owner),))
            if self.group is not None:
                yield Want((UID("group", self.group),))

    @classmethod
    def answer_wants(
        cls, members: Sequence[tuple[Hashable, File]], index: Mapping[UID, Hashable]
    ) -> list[Sequence[Want] | None]:
        """Every file's search at once: the same steps as ``wants``, that can match.

        The walk up the ancestors stops at the nearest one the graph
        provides; that depends only on the file's directory, so it is looked
        up once per directory (with every directory on the way), not built
        as a `Want` per ancestor per file (3.6 s of 100,000 files, issue 13).
        A file whose nearest match would be itself (impossible for a file,
        whose one UID is never an ancestor of its own path) is left to walk.
        """
        provided = {u.value: k for u, k in index.items() if u.kind == "file"}
        nearest = _NearestProvided(provided)
        shared: dict[str, tuple[Want]] = {}  # a Want is frozen: one per ancestor found
        out: list[Sequence[Want] | None] = []
        for key, f in members:
            parent = _parent_dir(f.target)
            found = None if parent is None else nearest.of(parent)
            if found is not None and provided[found] == key:
                out.append(None)
                continue
            steps: Sequence[Want]
            others = (f.source, f.fragments, f.owner, f.group)
            if any(x is not None for x in others):
                steps = list(f._other_wants())
                if found is not None:
                    steps.append(Want((UID("file", found),)))
            elif found is None:
                steps = ()
            elif (one := shared.get(found)) is not None:
                steps = one
            else:
                steps = shared[found] = (Want((UID("file", found),)),)
            out.append(steps)
        return out

    # -- wanted state, computed once ---------------------------------------------

    def _wanted(self) -> None:
        self._fs_path = self.target.rstrip("/") or "/"
        self._want = None if self.content is None else self.content.encode()
        self._want_sha: str | None = None
        #: the template, rendered at the next check (its received vars may come later)
        self._render_pending = self.template is not None
        self._want_mode = None if self.mode is None else int(self.mode, 8)
        # Users and groups may appear later (a package creates them), so they
        # are resolved at check time, not at init.
        self._uid: int | None = None
        self._gid: int | None = None

    def want_sha256(self) -> str:
        """The cached checksum of the wanted content (computed once)."""
        if self._want_sha is None:
            self._want_sha = hashlib.sha256(self._want or b"").hexdigest()
        return self._want_sha

    async def init(self, ctx: Context) -> None:
        await super().init(ctx)
        self._wanted()
        #: recurse: the steps the last check found, and the watch of both trees
        self._tree_ops: list[filetree.Op] = []
        self._tree_seen: int | None = None
        self._tree_watch: filetree.TreeWatch | None = None

    def received(self, changed: frozenset[str]) -> None:
        # New content (e.g. a password) invalidates the cached checksum, and
        # a new var (or template) asks for the template to be rendered again.
        self._wanted()

    def is_secret(self, field_name: str) -> bool:
        """Declared and received secrets, and the content rendered from one.

        A secret received into `vars` (or `template`) ends up somewhere in the
        rendered content: its diff and checksums are shown as ``<redacted>``
        too, not only the var (issue 15).
        """
        if field_name == "content" and self.template is not None:
            return not self.tainted.isdisjoint(("vars", "template", "content"))
        return super().is_secret(field_name)

    # -- export: other hosts collect the rendered content -------------------------

    def exported_form(self) -> File:
        """The file as other hosts collect it: a template is rendered here, into content.

        Its author's host renders it, as mgmt renders templates (in mcl)
        before any resource exists; a collecting host runs no other host's
        template code (world/confine.py refuses one). Only the graph's own
        vars are used: Send/Recv values never leave the host (`export_problem`
        refuses a template that needs one).
        """
        if self.template is None:
            return self
        try:
            text = self._render_for_export(self.template)
        except TemplateProblem as e:
            raise ResourceError(f"template: {e}") from None
        return dataclasses.replace(self, content=text, template=None, vars={})

    def _render_for_export(self, template: str) -> str:
        return render(compile_template(template), self.params()["vars"])

    def export_problem(self) -> tuple[str, str] | None:
        if self.template is None:
            return None
        received = sorted(r for r in self.recv_fields if r.startswith("vars.") or r == "template")
        if received:
            return (
                "template",
                f"an exported file cannot render values received over Send/Recv ({received[0]}):"
                " its content goes to other hosts",
            )
        try:
            self._render_for_export(self.template)
        except TemplateProblem as e:
            return ("template", f"cannot be rendered for export: {e}")
        return None

    # -- watch ------------------------------------------------------------------

    def subscribe(self, ctx: Context) -> Callable[[], None]:
        """The whole watch is hub subscriptions (traits.Subscribing): no task needed.

        A change of the source is a change of what is wanted, not drift of
        the file: it asks for a run as a tick (reported "changed", never
        "repaired").
        """
        subs = [ctx.inotify.subscribe(self._fs_path, ctx.event)]
        parts: list[Callable[[], None]] = []
        if self.recurse:  # every directory of both trees (filetree.TreeWatch)
            self._tree_watch = filetree.TreeWatch(
                ctx.inotify, self.source, self.target, ctx.tick, ctx.event
            )
            parts.append(self._tree_watch.close)
        elif self.source is not None:
            subs.append(ctx.inotify.subscribe(self.source, ctx.tick))
        if self.fragments is not None:
            parts.append(filefragments.subscribe(ctx.inotify, self.fragments, ctx.tick))

        def unsubscribe() -> None:
            for sub in subs:
                ctx.inotify.unsubscribe(sub)
            for undo in parts:
                undo()
            self._tree_watch = None

        return unsubscribe

    async def watch(self, ctx: Context) -> None:
        await watch_subscribed(self.subscribe, ctx)

    # -- check ------------------------------------------------------------------

    async def check(self) -> Plan:
        before = self._read_want()
        plan = await self._check_file()
        if self.recurse:
            plan = await self._check_tree(plan)
        if plan and before is not None and before != self._read_want():
            return Plan(plan.changes, wanted_moved=True)  # a source moved: no drift
        return plan

    def _read_want(self) -> object:
        """What other files (source, fragments, a tree) made the wanted state at the last check."""
        if self.recurse:
            return self._tree_seen
        if self.source is not None or self.fragments is not None:
            return self._want
        return None

    async def _check_tree(self, plan: Plan) -> Plan:
        """The top directory's plan, and then what the tree below it needs (filetree)."""
        walk = functools.partial(
            filetree.diff,
            self.source,
            self.target,
            uid=self._uid,
            gid=self._gid,
            purge=self.purge,
            force=self.force,
            spared=filetree.Spared.below(self.manages()[0], self.spares),
        )
        tree = await off_loop(walk)
        # A directory read before its watch was made may have changed in
        # between: walk again once every directory found is watched.
        watch = self._tree_watch
        while watch is not None and watch.update(tree.dirs, tree.target_dirs):
            tree = await off_loop(walk)
        self._tree_ops = tree.ops
        self._tree_seen = tree.seen
        change = tree.change(self.target)
        return plan if change is None else Plan((*plan.changes, change))

    async def _check_file(self) -> Plan:
        if self.fragments is not None and self.state != "absent":
            data = await off_loop(filefragments.read, self.fragments)
            if data != self._want:
                self._want, self._want_sha = data, None
        elif self.source is not None and self.state != "absent" and not self.recurse:
            await self._read_source()
        if self._render_pending and self.state != "absent":
            await off_loop(self._render)
        if self.owner is not None:
            self._uid = _uid(self.owner)
        if self.group is not None:
            self._gid = _gid(self.group)
        if self.state == "absent":
            if _lstat(self._fs_path) is None:
                return CONVERGED
            return Plan((Change("state", "exists", "absent"),))
        fd, st = self._open()
        try:
            if st is not None and self._matches(fd, st):
                return CONVERGED
            changes = await self._changes(fd, st)
        finally:
            if fd is not None:
                os.close(fd)
        return Plan(tuple(changes))

    @classmethod
    def converged_many(cls, files: Sequence[File]) -> list[bool]:
        """Which of `files` are exactly as wanted now (traits.BatchChecked: the first pass).

        The engine's first check of many files: one directory fd per
        directory instead of a safe walk per file (``check`` pays an
        ``openat2`` and a close per file: most of its 137 us at 10k files,
        issue 13), and no task per file. Each file is judged by the rule
        ``check`` applies first (`_matches`, i.e. `filestate.matches`). Anything
        but a clear "converged" (missing, a large file, an unknown user, a
        symlink, an error) is False, and the engine runs that file's own
        ``check``, which says what differs or fails.
        """
        with Parents(open_dir) as parents:
            return [f._converged_in(parents) for f in files]

    def _converged_in(self, parents: Parents) -> bool:
        """`converged_many` for one file; `parents` holds the directory fds opened so far."""
        if self.source is not None or self.fragments is not None or self.template is not None:
            return False  # its content is read from other files, or rendered: its own check
        if self.recurse:
            return False  # a purge walks the tree: its own check
        try:
            if self.owner is not None:
                self._uid = _uid(self.owner)
            if self.group is not None:
                self._gid = _gid(self.group)
            dfd, name = parents.of(self._fs_path)
            if self.state == "absent":
                return dfd is None or lstat_at(dfd, name) is None
            fd = None if dfd is None else filestate.open_at(dfd, name, self._fs_path)
            if fd is None:
                return False
            try:
                return self._matches(fd, os.fstat(fd))
            finally:
                os.close(fd)
        except Exception:  # the file's own check says what is wrong
            return False

    def _matches(self, fd: int | None, st: os.stat_result) -> bool:
        """Converged, by the rule the one-shot fast path applies too (filestate.py).

        A large file's content is compared off the loop, in `_changes`.
        """
        if fd is None or (self._want is not None and st.st_size > _INLINE_IO):
            return False
        want, mode, uid, gid = self._want, self._want_mode, self._uid, self._gid
        return matches(fd, st, is_dir=self.is_dir, want=want, mode=mode, uid=uid, gid=gid)

    async def _read_source(self) -> None:
        """Make the source's bytes the wanted content (read again at every check).

        The source is walked like any managed path, and read through its own
        fd: its final component is never followed (a user's symlink there
        could make the agent copy a file only root may read).
        """
        assert self.source is not None
        path = self.source
        parent, name = split(path)
        try:
            dfd = open_dir(parent)
        except (FileNotFoundError, NotADirectoryError):
            raise ResourceError(f"source {path} does not exist") from None
        try:
            fd = filestate.open_at(dfd, name, path)
        except filestate.FileStateError as e:
            raise ResourceError(f"source: {e}") from None
        finally:
            os.close(dfd)
        if fd is None:
            raise ResourceError(f"source {path} does not exist")
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ResourceError(f"source {path} is {filestate.what(st)}, not a regular file")
            data = read_fd(fd) if st.st_size <= _INLINE_IO else await off_loop(read_fd, fd)
        finally:
            os.close(fd)
        if data != self._want:
            self._want, self._want_sha = data, None

    def _render(self) -> None:
        """Make the rendered template the wanted content (once per new template or vars).

        Rendered at check time, not at init: a var received over Send/Recv
        arrives just before the first check. Rendered off the event loop: a
        template usually takes microseconds, but a runaway one may take its
        whole budget (about a second, `template.MAX_STEPS`) before it is stopped.
        """
        assert self.template is not None
        secret = not self.tainted.isdisjoint(("vars", "template"))
        try:
            compiled = compile_template(self.template)
        except TemplateProblem as e:
            # a template received from a secret is itself one: Jinja's message quotes it
            withheld = "it does not compile (the error is not shown: the template is a secret)"
            why = withheld if "template" in self.tainted else str(e)
            raise ResourceError(f"template: {why}") from None
        try:
            text = render(compiled, self.vars, secret=secret)
        except TemplateProblem as e:
            raise ResourceError(f"template: {e}") from None
        self._want, self._want_sha = text.encode(), None
        self._render_pending = False

    def _open(self) -> tuple[int | None, os.stat_result | None]:
        """Open the path (walked safely, never following a final symlink) and fstat it.

        Content, mode and owner are all read from this one fd, so a file
        swapped in after this point is not what gets reported.
        """
        parent, name = split(self._fs_path)
        try:
            dfd = open_dir(parent)
        except (FileNotFoundError, NotADirectoryError):
            return None, None  # created once its directory is there
        try:
            fd = self._open_at(dfd, name)
        finally:
            os.close(dfd)
        if fd is None:
            return None, None
        st = os.fstat(fd)
        want_dir = self.is_dir
        if want_dir != stat.S_ISDIR(st.st_mode) or not (want_dir or stat.S_ISREG(st.st_mode)):
            os.close(fd)
            if want_dir:
                raise ResourceError(f"{self._fs_path} exists and is not a directory")
            raise ResourceError(f"{self._fs_path} exists and is {filestate.what(st)}")
        return fd, st

    async def _changes(self, fd: int | None, st: os.stat_result | None) -> list[Change]:
        changes: list[Change] = []
        if fd is None or st is None:
            changes.append(Change("state", "absent", "exists"))
            if self._want is not None:
                changes.append(await self._content_change(None, None))
        elif self._want is not None and await self._content_differs(fd, st):
            changes.append(await self._content_change(fd, st))
        if self._want_mode is not None:
            have = None if st is None else stat.S_IMODE(st.st_mode)
            if have != self._want_mode:
                changes.append(
                    Change(
                        "mode", None if have is None else f"{have:04o}", f"{self._want_mode:04o}"
                    )
                )
        if self._uid is not None and (st is None or st.st_uid != self._uid):
            changes.append(Change("owner", None if st is None else st.st_uid, self._uid))
        if self._gid is not None and (st is None or st.st_gid != self._gid):
            changes.append(Change("group", None if st is None else st.st_gid, self._gid))
        return changes

    async def _content_differs(self, fd: int, st: os.stat_result) -> bool:
        want = self._want
        assert want is not None
        if st.st_size != len(want):
            return True
        if st.st_size <= _INLINE_IO:
            return read_fd(fd) != want
        return not await off_loop(same_content, fd, want)

    async def _content_change(self, fd: int | None, st: os.stat_result | None) -> Change:
        want = self._want
        assert want is not None
        new = f"sha256:{self.want_sha256()[:16]}"
        if fd is None or st is None:
            old_text: bytes | None = None
            old = None
        elif st.st_size <= _DIFF_MAX:
            old_text = read_fd(fd) if st.st_size <= _INLINE_IO else await off_loop(read_fd, fd)
            old = f"sha256:{hashlib.sha256(old_text).hexdigest()[:16]}"
        else:
            old_text = None
            old = f"sha256:{(await off_loop(sha256_fd, fd))[:16]}"
        # Rendered from a secret: not even a diff is made (the engine drops it too).
        shown = self.show_diff and not self.is_secret("content")
        diff = _unified(self._fs_path, old_text, want, st) if shown else ""
        return Change("content", old, new, diff=diff)

    # -- apply ------------------------------------------------------------------

    async def apply(self, plan: Plan) -> None:
        # Every apply touches the disk and most sync: never in the event loop
        # (a slow disk must not stall every other resource's watch), and
        # batched with the other applies in flight, which share the syncs.
        fields = frozenset(c.field for c in plan.changes)
        if fields - {"tree"}:
            await self.ctx.durable.run(functools.partial(self._apply, fields))
        if "tree" in fields:  # recurse: in chunks, each one batch job (filetree)
            copy = filetree.Applier(self.source, self.target, uid=self._uid, gid=self._gid)
            for chunk in filetree.chunks(self._tree_ops):
                await self.ctx.durable.run(functools.partial(copy, chunk))

    def _apply(self, fields: frozenset[str], staging: Staging) -> None:
        parent, name = split(self._fs_path)
        try:
            dfd = open_dir(parent)
        except (FileNotFoundError, NotADirectoryError) as e:
            if self.state == "absent":
                return  # gone with its directory
            raise ResourceError(
                f"parent directory {parent} does not exist ({e.filename} is missing or not "
                f"a directory; manage it with a file resource '{parent}/' first)"
            ) from None
        try:
            filestate.apply_at(self._wanted_state(), dfd, name, fields, staging)
        except filestate.FileStateError as e:
            raise ResourceError(str(e)) from None
        finally:
            os.close(dfd)

    def _wanted_state(self) -> filestate.Wanted:
        """What `filestate` applies, owner and group resolved by the last check."""
        return filestate.Wanted(
            self._fs_path,
            is_dir=self.is_dir,
            absent=self.state == "absent",
            content=self._want,
            mode=self._want_mode,
            uid=self._uid,
            gid=self._gid,
        )

    def _open_at(self, dfd: int, name: str) -> int | None:
        """`open_node`, with a clear error for what cannot be opened (a symlink...)."""
        try:
            return filestate.open_at(dfd, name, self._fs_path)
        except filestate.FileStateError as e:
            raise ResourceError(str(e)) from None


def _parent_dir(target: str) -> str | None:
    """The directory ``wants`` starts its walk at, normalised; None for ``/``.

    As the walk builds it: the path's components without empty ones, all
    but the last joined under ``/``. An absolute path without ``//`` (every
    path a graph may hold) is cut at its last ``/`` instead, the same string.
    """
    if target.startswith("/") and "//" not in target:
        path = target.rstrip("/")
        return (path[: path.rfind("/")] or "/") if path else None
    parts = [p for p in target.split("/") if p]
    return "/" + "/".join(parts[:-1]) if parts else None


class _NearestProvided:
    """The nearest of a directory and its ancestors that the graph provides, remembered.

    `provided`: the normalised paths of the graph's file UIDs. Each answer
    is kept for the directory asked and for every one passed on the way up,
    so 100,000 files in 100 directories cost 100 walks.
    """

    def __init__(self, provided: Mapping[str, object]) -> None:
        self.provided = provided
        self.known: dict[str, str | None] = {}

    def of(self, directory: str) -> str | None:
        if (found := self.known.get(directory, "")) != "":
            return found
        passed: list[str] = []
        d = directory
        while True:
            if d in self.known:
                found = self.known[d]
                break
            if d in self.provided:
                found = d
                break
            passed.append(d)
            if d == "/":
                found = None
                break
            d = d[: d.rfind("/")] or "/"
        for p in passed:
            self.known[p] = found
        return found


def _lstat(path: str) -> os.stat_result | None:
    """lstat through a safely walked parent; None when absent (or its parent is)."""
    parent, name = split(path)
    try:
        with opened_dir(parent) as dfd:
            return lstat_at(dfd, name)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _unified(path: str, old: bytes | None, new: bytes, st: os.stat_result | None) -> str:
    if (st is not None and old is None) or len(new) > _DIFF_MAX:
        return f"--- {path}\n+++ {path}\n(content too large to diff; checksums differ)\n"
    try:
        old_lines = [] if old is None else old.decode().splitlines(keepends=True)
        new_lines = new.decode().splitlines(keepends=True)
    except UnicodeDecodeError:
        return f"--- {path}\n+++ {path}\nBinary content differs\n"
    before = "/dev/null" if old is None else path
    if not old_lines:
        lines: Iterable[str] = _all_added(before, path, new_lines)
    else:
        lines = difflib.unified_diff(old_lines, new_lines, before, path, n=3)
    return "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )


def _all_added(before: str, path: str, new_lines: list[str]) -> list[str]:
    """What `difflib.unified_diff` says of lines added to nothing, without difflib.

    A first apply diffs every new file against nothing; difflib's matcher
    made that a quarter of a millisecond per file (issue 13), for one hunk
    that is all additions.
    """
    if not new_lines:
        return []
    added = "1" if len(new_lines) == 1 else f"1,{len(new_lines)}"
    return [f"--- {before}\n", f"+++ {path}\n", f"@@ -0,0 +{added} @@\n"] + [
        "+" + line for line in new_lines
    ]


def _uid(owner: str) -> int:
    try:
        return uid_of(owner)
    except KeyError:
        raise ResourceError(f"no such user {owner!r}") from None


def _gid(group: str) -> int:
    try:
        return gid_of(group)
    except KeyError:
        raise ResourceError(f"no such group {group!r}") from None
