"""Optional resource capabilities, as small Protocols the engine checks for.

A simple kind implements none of these and stays simple; a kind opts in by
defining the methods (no registration, no base class). The engine and the
graph algorithms test for them with ``has(res, Refreshable)``: the same
answer as ``isinstance``, but computed once per class, because a runtime
Protocol check walks every member on every call (it showed up as 10% of a
1000-file run).

Which issue brings which user: refresh notifications and Send/Recv (graph
features), AutoEdges and AutoGroup (graph features; pkg and svc plug in).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeGuard, TypeVar, runtime_checkable

T = TypeVar("T")
_HAS: dict[tuple[type, type], bool] = {}


def has(obj: object, trait: type[T]) -> TypeGuard[T]:
    """``isinstance(obj, trait)`` for a trait Protocol, cached per class."""
    key = (type(obj), trait)
    found = _HAS.get(key)
    if found is None:
        found = _HAS[key] = isinstance(obj, trait)
    return found


@runtime_checkable
class Subscribing(Protocol):
    """A kind whose whole watch is one subscription to a shared watcher (the inotify hub).

    ``subscribe(ctx)`` hangs ``ctx.event`` on the watcher and returns what
    takes it off again. The engine then keeps no watch task per vertex: at
    100k files a task, a coroutine frame and an Event each for a watch that
    only waits cost memory and a scheduling step per vertex. ``watch`` stays
    the general form, and the fallback if subscribing fails (it is retried
    under the watch budget and reported like any failed watch).
    """

    def subscribe(self, ctx: Any) -> Callable[[], None]: ...


@runtime_checkable
class BatchChecked(Protocol):
    """A kind whose first checks the engine may make many at once (issue 13: 100k files).

    ``converged_many(resources)`` says, for each initialised resource of the
    kind, whether it is exactly as wanted right now: True only for a clear
    "converged", False for anything else (a difference, an error). The engine
    then runs the usual ``check`` of each False one, which says what differs
    or fails; a True one is reported checked, unchanged, without a task of
    its own until its watch fires.
    """

    @classmethod
    def converged_many(cls, resources: Sequence[Any]) -> list[bool]: ...


@runtime_checkable
class Refreshable(Protocol):
    """Reacts to a refresh notification arriving along a ``notify`` edge.

    The engine calls ``refresh()`` before ``check()`` when a notification is
    pending; the kind decides what it means (exec: run again; svc: reload or
    restart; timer: reset) and reflects it in the plan it returns.
    """

    def refresh(self) -> None: ...


@runtime_checkable
class Sendable(Protocol):
    """Publishes typed output values after a successful check/apply."""

    def sends(self) -> Mapping[str, Any]:
        """The current output values by name (e.g. ``{"password": ...}``)."""
        ...


@runtime_checkable
class Recvable(Protocol):
    """Accepts values into its params from upstream `Sendable` resources.

    ``received`` names the params whose value changed, so the kind can drop
    caches that depend on them (the file content checksum, for instance).
    """

    def receive(self, values: Mapping[str, Any], changed: frozenset[str]) -> None: ...


@dataclass(frozen=True, slots=True)
class UID:
    """A unique thing a resource provides or wants, e.g. ("file", "/etc")."""

    kind: str
    value: str


@dataclass(frozen=True, slots=True)
class Want:
    """One step of an AutoEdges search: candidate UIDs, all equally specific.

    ``reversed=False``: the matches must run before me (a file's parent
    directory). ``reversed=True``: I must run before the matches (a package
    before the files it ships).
    """

    uids: tuple[UID, ...]
    reversed: bool = False


@runtime_checkable
class Edgeable(Protocol):
    """Takes part in AutoEdges (mgmt's "Automatic edges" article).

    ``uids()`` names what this resource provides. ``wants()`` is a generator
    yielding `Want` steps, most specific first; the caller sends back whether
    the step matched anything (the article's Next()/Test()), so a file stops
    at its nearest managed ancestor directory instead of depending on every
    ancestor. Optional, for a costly search: ``wants_kinds`` and
    ``prepare_wants`` (see `pymgmt.graph.autoedge._searching`); for a kind
    with many vertices, ``answer_wants(members, index)``, a classmethod
    answering all their searches in one batch (`pymgmt.graph.autoedge`).
    """

    def uids(self) -> Sequence[UID]: ...

    def wants(self) -> Generator[Want, bool, None]: ...


@runtime_checkable
class Groupable(Protocol):
    """Can absorb similar resources into one vertex (AutoGroup).

    ``can_group(other)`` says whether `other` may join; the base class's
    ``absorb`` keeps every member (so a later graph can split them again) and
    the kind checks and applies all of them at once (one package
    transaction). Only kinds that define ``can_group`` are ever grouped.
    """

    def can_group(self, other: Any) -> bool: ...
