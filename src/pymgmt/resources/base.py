"""The resource API: typed declarative kinds with observe / plan / apply verbs.

A kind is one class::

    class File(Resource, kind="file"):
        path: str = param("", doc="...")

Each param is declared once, with its type, default and a one-line doc; the
YAML frontend, the Python API, validation and the docs all read that one
declaration. Classes are turned into keyword-only dataclasses automatically.

Lifecycle, driven by the engine (resources never import the engine; they get
a `Context`):

``problems()``
    static cross-field validation, before anything runs.
``init(ctx)`` / ``cleanup()``
    open and close what the resource needs.
``watch(ctx)``
    runs for as long as the resource is in the graph; calls ``ctx.ready()``
    once it is really watching and ``ctx.event()`` for every possible change.
    Spurious events are harmless; a missed event is a bug.
``check()``
    observes the system and returns a `Plan`: the typed changes it would
    make (empty when converged). Unlike mgmt's boolean CheckApply, a plan can
    be rendered as a diff, which is what noop shows.
``apply(plan)``
    makes those changes. It must converge in one call or raise.
``same_as(other)``
    the comparison graph changeover uses: equal params and metaparams mean
    the running vertex is kept untouched.

Optional capabilities (refresh, send/recv, autoedges, autogroup) are small
Protocols in `pymgmt.traits`; a kind that does not need one stays simple.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, dataclass_transform

from ..durable import DurableWrites
from ..errors import InternalError
from ..fsutil import lstat_at, opened_dir, state_name
from ..metaparams import MetaParams
from ..redaction import register_value

if TYPE_CHECKING:
    from ..events.dbus import DBusHub
    from ..events.inotify import InotifyHub
    from ..world.base import World

_REGISTRY: dict[str, type[Resource]] = {}
T = TypeVar("T")


def param(
    default: Any = dataclasses.MISSING,
    *,
    doc: str,
    secret: bool = False,
    default_factory: Any = dataclasses.MISSING,
    aliases: tuple[str, ...] = (),
    spellings: Mapping[str, str] | None = None,
) -> Any:
    """Declare a resource param: its default and the one line that documents it.

    ``secret=True`` params are redacted in every log line, diff and report.
    ``aliases`` are other spellings the graph file accepts for it (Puppet's
    ``refreshonly`` for ``refresh_only``): a user's habit is understood, not
    refused, while the graph still holds one field under one name.
    ``spellings`` does the same for values (mgmt's msg priority ``Err`` for
    ``error``): other spelling -> the value it stands for.
    """
    meta = {"doc": doc, "secret": secret, "aliases": aliases, "spellings": dict(spellings or {})}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def param_default(f: dataclasses.Field[Any]) -> Any:
    """A param's default value (made afresh from a factory), or MISSING when it is required."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between the observed and the wanted state.

    ``diff`` holds a unified diff when the change is to text content.
    """

    field: str
    old: object
    new: object
    diff: str = ""

    def describe(self) -> str:
        return f"{self.field}: {self.old!r} -> {self.new!r}"


@dataclass(frozen=True, slots=True)
class Plan:
    """What `check` found: the changes that `apply` would make."""

    changes: tuple[Change, ...] = ()
    #: what is wanted moved since the last check (a source file edited): the
    #: changes follow from it, so applying them is no repair of drift, whatever
    #: woke the check (the echo of the last write may have come first)
    wanted_moved: bool = False
    #: the changes follow from the resource's own schedule having come round
    #: (a timer that elapsed and unloaded itself), not from the system moving:
    #: a run its watch woke is reported as a "tick", never as repaired drift
    scheduled: bool = False

    def __bool__(self) -> bool:
        return bool(self.changes)

    def summary(self) -> str:
        return ", ".join(c.describe() for c in self.changes) or "no changes"


CONVERGED = Plan()


@dataclass(eq=False)
class Context:
    """What the engine hands a resource: identity, logging, shared watchers.

    ``event`` and ``ready`` are only meaningful inside ``watch``.
    """

    hostname: str
    log: logging.Logger
    #: the agent's state directory; see `state_dir` for this resource's own
    state_root: Path
    world: World
    inotify: InotifyHub
    dbus: DBusHub
    _event: Callable[[], None] = field(repr=False)
    _ready: Callable[[], None] = field(repr=False)

    #: set by the engine: (kind, name) of the resource this context serves
    key: tuple[str, str] = ("", "")
    #: set by the engine: the resource's own schedule came round (see `tick`)
    _tick: Callable[[], None] | None = field(default=None, repr=False)
    #: durable file writes, batched with every other apply in flight (one
    #: shared by the engine; a context made alone gets its own)
    durable: DurableWrites = field(default_factory=DurableWrites, repr=False)

    @functools.cached_property
    def state_dir(self) -> Path:
        """This resource's private, persistent directory (not created here).

        Named by `state_name`, so two resources never share one (issue 8,
        item 9). Computed on first use: most kinds never need one, and
        building 10k paths up front was measurable.
        """
        kind, name = self.key
        path = self.state_root / "state" / state_name(kind, name)
        _adopt_legacy_state_dir(path, kind, name)
        return path

    def event(self) -> None:
        """Tell the engine the resource's state may have changed."""
        self._event()

    def tick(self) -> None:
        """Ask for a run because the resource's own schedule says so, not the system.

        A poll interval or a trigger the user configured is not drift: a run
        it causes is reported with reason "tick", never as a repair.
        """
        (self._tick or self._event)()

    def ready(self) -> None:
        """Tell the engine the watch is established (triggers the first check)."""
        self._ready()


def _adopt_legacy_state_dir(path: Path, kind: str, name: str) -> None:
    """Keep the state of a resource whose name the old scheme kept unchanged.

    Before issue 8 the directory was ``<kind>-<sanitised name>``, which two
    names could share (``db/pw`` and ``db_pw``). A name that sanitising left
    untouched owned that directory unambiguously, so it is renamed into
    place: such a password survives the upgrade instead of being
    regenerated. A name that was changed by sanitising starts afresh.
    """
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    if safe != name or len(name) > 100:
        return
    # in the state directory's fd, walked safely: never through a user's symlink
    with contextlib.suppress(FileNotFoundError), opened_dir(str(path.parent)) as dfd:
        if lstat_at(dfd, path.name) is None:
            os.rename(f"{kind}-{name}", path.name, src_dir_fd=dfd, dst_dir_fd=dfd)


@dataclass_transform(kw_only_default=True, field_specifiers=(param, field))
@dataclass(kw_only=True, eq=False)
class Resource:
    """Base of every resource kind. See the module docstring for the contract."""

    kind: ClassVar[str] = ""
    #: Param names that are never compared, logged or shown in diffs in clear.
    secrets: ClassVar[frozenset[str]] = frozenset()
    #: The resolved annotation of every param, by name.
    param_types: ClassVar[dict[str, Any]] = {}
    #: Other spellings of params the graph file accepts: alias -> param name.
    param_aliases: ClassVar[dict[str, str]] = {}
    #: Other spellings of values the graph file accepts: param -> {spelling: value}.
    param_spellings: ClassVar[dict[str, dict[str, str]]] = {}
    #: Send/Recv outputs (name -> type) of kinds that send, and which are secret.
    outputs: ClassVar[dict[str, Any]] = {}
    secret_outputs: ClassVar[frozenset[str]] = frozenset()
    #: params that may hold any text, NUL included (a file's content); every
    #: other string goes to the OS (argv, environ, a path), where NUL cuts it
    binary_params: ClassVar[frozenset[str]] = frozenset()
    #: mapping params one key of which may receive a Send/Recv value on its own
    #: (``recv: vars.NAME``); the rest of the mapping stays the graph's
    recv_keyed: ClassVar[frozenset[str]] = frozenset()
    #: True for kinds whose watch fires on a schedule (timer), not because the
    #: system moved: what such an event leads to is never reported as drift.
    scheduled: ClassVar[bool] = False
    #: a whole graph file using the kind, shown by `pymgmt docs KIND` (the
    #: reference's tests check that it validates)
    example: ClassVar[str] = ""
    #: kinds whose declarations this kind looks at when the graph is compiled
    #: (`learn`); an edit of a resource of one of them recompiles the graph whole
    learns_from: ClassVar[frozenset[str]] = frozenset()
    #: params_fields() of this very class, computed once (set on each subclass)
    _params_fields: ClassVar[list[dataclasses.Field[Any]]]

    name: str
    meta: MetaParams = field(default_factory=MetaParams)
    ctx: Context = field(init=False, repr=False)
    #: params filled by Send/Recv at run time; graph changeover ignores them. A
    #: dotted ``vars.NAME`` is one key of a `recv_keyed` mapping param.
    recv_fields: frozenset[str] = field(default=frozenset(), init=False, repr=False)
    #: params that receive a secret output: redacted like declared secrets (a
    #: received ``vars.NAME`` taints the whole ``vars`` as well)
    tainted: frozenset[str] = field(default=frozenset(), init=False, repr=False)
    #: other resources grouped into this one by AutoGroup (this one leads)
    members: list[Resource] = field(default_factory=list, init=False, repr=False)
    #: what other resources of its kind manage inside its `trees` (spelt as
    #: `manages`), set when compiling (`compile.spare_managed`): the tree leaves
    #: them alone. Derived from the graph, not its params, and part of what it
    #: wants: a graph edit that changes it restarts the vertex (`same_as`).
    spares: frozenset[str] = field(default=frozenset(), init=False, repr=False)

    def __init_subclass__(cls, kind: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(cls, kw_only=True, eq=False)
        hints = typing.get_type_hints(cls)
        cls.param_types = {f.name: hints[f.name] for f in cls.params_fields()}
        cls.param_aliases = {
            a: f.name for f in cls.params_fields() for a in f.metadata.get("aliases", ())
        }
        cls.param_spellings = {
            f.name: f.metadata["spellings"]
            for f in cls.params_fields()
            if f.metadata.get("spellings")
        }
        cls.secrets = frozenset(f.name for f in dataclasses.fields(cls) if f.metadata.get("secret"))
        if kind:
            if kind in _REGISTRY:
                raise InternalError(f"resource kind {kind!r} registered twice")
            cls.kind = kind
            _REGISTRY[kind] = cls

    @classmethod
    def params_fields(cls) -> list[dataclasses.Field[Any]]:
        """The kind's own params (everything but name and meta)."""
        own = cls.__dict__.get("_params_fields")  # not inherited: a subclass has more
        if own is None:
            own = [f for f in dataclasses.fields(cls) if f.init and f.name not in ("name", "meta")]
            cls._params_fields = own
        return list(own)

    # -- identity -------------------------------------------------------------

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)

    def __str__(self) -> str:
        if self.members:
            names = ",".join(sorted([self.name, *(m.name for m in self.members)]))
            return f"{self.kind.capitalize()}[autogroup:({names})]"
        return f"{self.kind.capitalize()}[{self.name}]"

    def params(self) -> dict[str, Any]:
        """The params as the graph gives them: what Send/Recv filled is left out.

        A key received into a mapping param (``vars.NAME``) is left out of
        that mapping only, so an edit of the graph's other keys still counts.
        """
        recv = self.recv_fields
        out = {f.name: getattr(self, f.name) for f in self.params_fields() if f.name not in recv}
        if recv:
            for target in recv:
                name, dot, key = target.partition(".")
                if dot and isinstance(out.get(name), dict):
                    out[name] = {k: v for k, v in out[name].items() if k != key}
        return out

    def same_as(self, other: Resource) -> bool:
        """True when `other` wants exactly the same state with the same meta."""
        return (
            type(self) is type(other)
            and self.name == other.name
            and self.params() == other.params()
            and self.meta == other.meta
            and self.spares == other.spares
            and len(self.members) == len(other.members)
            and all(a.same_as(b) for a, b in zip(self.members, other.members, strict=True))
        )

    def holds(self, target: str) -> Any:
        """What a Send/Recv target holds now: a param, or one key of a mapping (``vars.NAME``)."""
        name, dot, key = target.partition(".")
        value = getattr(self, name)
        return value.get(key) if dot and isinstance(value, dict) else value

    def receive(self, values: dict[str, Any], changed: frozenset[str]) -> None:
        """Send/Recv: take new values for params (only changed ones are passed).

        A dotted target (``vars.NAME``) sets that one key in a new copy of
        the mapping: the graph's own dict is shared with the declarations
        (`compile.instantiate`) and must not change. Kinds that cache
        something derived from a param override `received`, which gets
        the param names (``vars``, not ``vars.NAME``).
        """
        for k, v in values.items():
            if k in self.tainted:
                register_value(v)  # from a secret output: secret here too
            name, dot, key = k.partition(".")
            setattr(self, name, {**getattr(self, name), key: v} if dot else v)
        self.received(frozenset(k.partition(".")[0] for k in changed))

    def received(self, changed: frozenset[str]) -> None:
        """Hook: params in `changed` were just replaced by Send/Recv."""

    def learn(self, others: Mapping[tuple[str, str], Resource]) -> None:
        """Hook: take what it needs of the other resources of the graph, by (kind, name).

        Called by the compiler on its fresh copy (never on the declaration) for
        kinds with `learns_from`, so a fact about another resource reaches this
        one without a global and without changing the graph it was given: a
        user to be removed learns whether the graph keeps the group of its name.
        What is learnt lives in a non-init field that `same_as` compares.
        """

    def exported_form(self) -> Resource:
        """What other hosts collect of this exported resource: by default itself.

        A kind whose declaration holds something only this host should work
        out (a file's template) returns a resource holding the result.
        """
        return self

    def export_problem(self) -> tuple[str, str] | None:
        """(field, why) when `exported_form` cannot be made; checked when compiling."""
        return None

    def absorb(self, others: list[Resource]) -> None:
        """AutoGroup: absorb `others`; only kinds defining ``can_group`` are grouped."""
        self.members.extend(others)

    # -- lifecycle ------------------------------------------------------------

    def problems(self) -> list[tuple[str, str]]:
        """(field, message) for each invalid combination of params."""
        return []

    def warnings(self) -> list[tuple[str, str]]:
        """(field, message) for params that are accepted but have no effect."""
        return []

    def manages(self) -> list[str]:
        """What on the system this resource owns, spelt canonically (a path, a unit).

        Two resources of one kind that manage the same thing would fight for
        ever, so the graph refuses them unless they are identical (then they
        are merged into one). Kinds that own nothing exclusively return [].
        """
        return []

    def purges(self) -> list[str]:
        """Directories (spelt as `manages` spells things) whose unmanaged entries it removes.

        What another resource of its kind manages below one of them is
        spared (`spares`, filled from the graph by `trees`), as mgmt and
        Puppet spare it. Only a file with ``purge`` has any.
        """
        return []

    def reads(self) -> list[str]:
        """What of its kind this resource builds its own state from (spelt as `manages`).

        A path is one thing; a path ending in ``/`` is every entry directly
        in that directory; one ending in ``/**`` is everything below it. Two
        resources that each read what the other makes would rebuild each
        other for ever (a file made of fragments that include the other's
        file grows at every round): the graph refuses such a loop. Only a
        file with ``source`` or ``fragments`` has any.
        """
        return []

    def trees(self) -> list[str]:
        """Directories (spelt as `manages`) this resource makes everything below.

        For `reads`, and for `spares`: what another resource of its kind
        manages below one of them is that resource's, never this one's.
        """
        return []

    async def init(self, ctx: Context) -> None:
        """Prepare; the default keeps the context for later verbs."""
        self.ctx = ctx
        for name in self.secrets:
            register_value(getattr(self, name))

    async def cleanup(self) -> None:
        """Release what init/watch opened."""

    async def watch(self, ctx: Context) -> None:
        """Default watch: nothing to watch, so ready once and wait forever."""
        ctx.ready()
        await asyncio.Event().wait()

    async def check(self) -> Plan:
        raise NotImplementedError

    async def apply(self, plan: Plan) -> None:
        raise NotImplementedError

    def is_secret(self, field_name: str) -> bool:
        return field_name in self.secrets or field_name in self.tainted

    def redact(self, field_name: str, value: object) -> object:
        return "<redacted>" if self.is_secret(field_name) else value


async def watch_subscribed(
    subscribe: Callable[[Context], Callable[[], None]], ctx: Context
) -> None:
    """The `watch` of a kind whose whole watch is `subscribe` (traits.Subscribing).

    Used when the engine runs a watch task for it after all (the fallback
    when subscribing failed once): subscribe, say ready, wait until cancelled.
    """
    unsubscribe = subscribe(ctx)
    try:
        ctx.ready()
        await asyncio.Event().wait()
    finally:
        unsubscribe()


async def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking `fn` in a thread; a cancelled caller still waits for it to finish.

    A thread cannot be stopped half-way anyway: returning early would let the
    next check race with a write still in flight, or close an fd a read is
    still using. The cancellation is re-raised once the work is done.
    """
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        raise


def kinds() -> dict[str, type[Resource]]:
    """Every registered kind, importing the built-in ones on first use."""
    from . import cron as _cron  # noqa: F401
    from . import exec as _exec  # noqa: F401
    from . import file as _file  # noqa: F401
    from . import group as _group  # noqa: F401
    from . import hostname as _hostname  # noqa: F401
    from . import kv as _kv  # noqa: F401
    from . import mount as _mount  # noqa: F401
    from . import msg as _msg  # noqa: F401
    from . import noop as _noop  # noqa: F401
    from . import password as _password  # noqa: F401
    from . import pkg as _pkg  # noqa: F401
    from . import svc as _svc  # noqa: F401
    from . import timer as _timer  # noqa: F401
    from . import user as _user  # noqa: F401

    return dict(_REGISTRY)


def shipped_kinds() -> dict[str, type[Resource]]:
    """The kinds pymgmt itself defines, by name: what its manual and schema document.

    Tests register kinds of their own in the same registry; those are not
    part of the reference, nor of the completion a user's shell offers.
    """
    return {k: c for k, c in sorted(kinds().items()) if c.__module__.startswith("pymgmt.")}
