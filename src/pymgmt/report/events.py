"""Typed events the engine emits; reporters turn them into text or JSON.

The engine never formats a message for people: it states what happened,
and the console, JSON and recap reporters decide how to show it.
"""

from __future__ import annotations

from typing import Literal, Protocol

from ..errors import InputError
from .record import Record, field


class ChangeInfo(Record):
    field: str
    old: object
    new: object
    diff: str = ""


class GraphStarted(Record):
    name: str
    source: str
    vertices: int
    edges: int


class GraphSwapped(Record):
    name: str
    kept: int
    replaced: list[str]
    added: list[str]
    removed: list[str]


class GraphRejected(Record):
    """A new version of the input was invalid; the running graph is kept."""

    errors: list[InputError]


#: why a vertex was checked: its first run, its watch saw the system move
#: ("event", a restarted watch too), its schedule came round ("tick", a
#: timer), a parent changed or notified it ("upstream"), a failure retried
Reason = Literal["start", "event", "tick", "upstream", "retry"]


class Checked(Record):
    """One check (and maybe apply) of a vertex finished without error."""

    vertex: str
    reason: Reason
    changes: list[ChangeInfo]
    applied: bool
    noop: bool
    #: the watch saw the system move away by itself and the apply put it back
    #: (never a refresh run, a timer tick, a retry or an upstream change)
    drift: bool
    seconds: float
    #: noop only: upstream vertices that would change first (results provisional)
    pending_on: list[str] = field(default_factory=list)
    note: str = ""
    #: a refresh notification was delivered to this vertex in this run
    refreshed: bool = False
    #: vertices sent a refresh notification (or, in noop, that would have been)
    notified: list[str] = field(default_factory=list)


class Applying(Record):
    """A check found work and the apply begins (a `Checked` or `Failed` ends it).

    Progress reporting and the live status follow it: an apply may take
    minutes (a package transaction), and a person watching wants to know
    what is being done while it is done, not only after.
    """

    vertex: str
    reason: Reason
    #: the fields the apply changes (from the check's plan)
    fields: list[str] = field(default_factory=list)


class Failed(Record):
    """A failure; with `retry_in` set it is temporary and a retry is scheduled."""

    vertex: str
    phase: Literal["init", "watch", "check", "apply"]
    error: str
    retry_in: float | None = None
    #: "resource": the resource met a problem on the system (a command failed,
    #: a unit is missing); "os": an operating-system error; "internal": an
    #: unexpected exception, a bug in pymgmt (or in a resource kind)
    kind: Literal["resource", "os", "internal"] = "resource"
    errno: int | None = None
    path: str | None = None
    command: str | None = None
    exit_status: int | None = None
    #: the traceback of an internal error, for the bug report
    traceback: str | None = None


class Converged(Record):
    seconds: float


class Settled(Record):
    """Run-forever mode: the graph went idle, every resource as wanted again.

    Never emitted once the engine is stopping, nor while a vertex still has
    work to do. Failed-for-good vertices are named (and the ones they block
    wait); in noop nothing is changed, so `would_change` names the vertices
    that are *not* as wanted.
    """

    vertices: int
    failed: list[str]
    would_change: list[str] = field(default_factory=list)


class Stopping(Record):
    reason: str
    #: stopped by a signal or stop() before converging, not by --converged-timeout
    interrupted: bool = False


class VertexState(Record):
    """Where a vertex stood when the run ended."""

    vertex: str
    status: Literal["ok", "failed", "skipped", "pending"]
    blocked_by: list[str] = field(default_factory=list)


class Finished(Record):
    """The run ended; where each vertex stood.

    "pending" is honest: a vertex that had work left (never checked, or its
    last check was due again) when the engine stopped.
    """

    states: list[VertexState]


class Exported(Record):
    """The set of resources this host publishes to the cluster changed."""

    count: int
    #: the exported vertices, ``File[name]``
    keys: list[str]


class CollectChanged(Record):
    """The resources collected from other hosts changed (a new graph follows)."""

    #: collected vertices that appeared, ``File[name@host]``
    added: list[str]
    #: collected vertices that are gone
    removed: list[str]
    #: how many stayed exactly as they were
    kept: int
    #: collected vertices that stayed but want something else now
    changed: list[str] = field(default_factory=list)


class CollectRefused(Record):
    """Another host's export is not applied here, and why (said once per change)."""

    host: str
    kind: str
    name: str
    reason: str


class HostJoined(Record):
    """A host registered in the cluster (those present at start are reported too)."""

    host: str


class HostLeft(Record):
    """A host's registration vanished: it stopped, or its lease expired."""

    host: str


class LeaderChanged(Record):
    """The cluster's elected leader (the host that nominates members) changed."""

    #: "" while no leader is elected
    host: str


class Nominated(Record):
    """The leader nominated a volunteer to run an etcd member (the leader says it)."""

    host: str


class MemberJoined(Record):
    """A host's etcd became a voting member of the cluster."""

    host: str


class MemberLeft(Record):
    """A host's etcd member was removed from the cluster, and why."""

    host: str
    #: "its host is gone", "the cluster shrinks to 3", "it stopped", ...
    reason: str


class RoleChanged(Record):
    """This host's part in the cluster changed: it runs an etcd member, or is a client."""

    role: Literal["server", "client"]


#: the life of one remote host of ``pymgmt run --remote`` (issue 11): connect,
#: copy the bundle and the graph, start the agent there, its graph file saved
#: again and copied over, then its end: it exited (with its exit code), or it
#: failed (could not be reached, refused, lost) -- the run goes on without it
RemoteStage = Literal["connecting", "copying", "running", "updated", "exited", "failed"]


class RemoteChanged(Record):
    """A remote host of ``--remote`` moved on in its life (see `RemoteStage`)."""

    host: str
    stage: RemoteStage
    message: str = ""
    #: the remote agent's exit code (stage "exited")
    exit_code: int | None = None
    #: the hosts it was run through (hierarchical execution: ("a",) for a host
    #: that host a ran); empty for this host's own remotes
    via: tuple[str, ...] = ()


class RemoteOutput(Record):
    """A line the remote agent wrote on its stdout; with ``--json``, the event it was.

    The initiator shows it prefixed with the host (``[host] ...``) or, as
    JSON, as the remote's own event carrying ``host`` (and ``via``: the
    intermediate hosts of a hierarchical run).
    """

    host: str
    line: str
    #: the line as the JSON event it is (``--json``; None: a plain line)
    parsed: dict[str, object] | None = None


Event = (
    GraphStarted
    | GraphSwapped
    | GraphRejected
    | Checked
    | Applying
    | Failed
    | Converged
    | Settled
    | Stopping
    | Finished
    | Exported
    | CollectChanged
    | CollectRefused
    | HostJoined
    | HostLeft
    | LeaderChanged
    | Nominated
    | MemberJoined
    | MemberLeft
    | RoleChanged
    | RemoteChanged
    | RemoteOutput
)


class Reporter(Protocol):
    def emit(self, event: Event) -> None: ...
