"""A Puppet catalog, translated into pymgmt resources and edges.

Each Puppet resource maps onto one pymgmt kind (`_MAPPERS`): File to
``file``, Package to ``pkg``, Service to ``svc``, Exec to ``exec``, Notify
to ``noop``, User to ``user``, Group to ``group``. Whatever a mapper cannot
carry over exactly -- a type pymgmt has no kind for, a parameter whose
meaning would be lost or changed -- is an `Unsupported` item with the
manifest's file and line. A translation with any is refused unless the user
allows them, and then each resource concerned becomes a ``noop`` in its
place (kept for ordering, managing nothing): a site never loses part of
itself without being told.

Containers (classes, defined types, stages, nodes) are not resources on
the system; Puppet orders through them with a start and an end marker per
container. The same is done here, then the markers are contracted away:
there is an edge from resource A to resource B when a path leads from A to
B through markers only, and it carries refreshes when a ``notify`` or
``subscribe`` relationship lies on such a path. So ``Class[a] ->
Class[b]`` orders every resource of a before every resource of b, stages
order their classes, and an empty class still passes its ordering on.

Exported resources and collectors (`_exchange`). In Puppet an ``@@file``
is not applied on the node that declares it unless that node collects it
too, and ``File <<| query |>>`` brings in every node's matching exports at
their own paths. pymgmt's ``@@`` both applies and exports, and its
``collect:`` takes in every other host's exported files into one directory
it names (world/confine.py: another host's export is untrusted). So:

* an ``@@file`` this node also collects (Puppet applies it here) is a
  pymgmt ``@@`` file: applied here, and exported;
* an ``@@file`` this node does not collect is refused: pymgmt cannot export
  a resource without applying it here, which Puppet would not do;
* ``File <<| |>>`` -- no query, no overrides -- is a ``collect:`` entry for
  files into the directory ``--puppet-collect-dir`` names (exporters put
  their files in that directory, so each lands where Puppet would put it);
  a query (``tag == 'web'``), overrides, another type, or no directory
  given are refused: pymgmt's exports carry no tags to filter on, and a
  collector that took in more, or elsewhere, than it says is worse than
  none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ...errors import InputError, Location
from ...graph.model import Collect
from .catalog import Catalog, CatalogResource, Collector

Key = tuple[str, str]

#: Puppet metaparameters every type has: relationship ones become edges
RELATIONSHIPS = {
    # param: (the reference comes first?, carries refreshes?)
    "require": (True, False),
    "subscribe": (True, True),
    "before": (False, False),
    "notify": (False, True),
}
#: metaparameters that change nothing about the end state: dropped quietly
_QUIET_META = frozenset({"tag", "alias", "loglevel"})
#: resource types that only contain others
_CONTAINER_TYPES = frozenset({"class", "stage", "node"})


class UnsupportedError(InputError):
    """A type or parameter of the manifest that pymgmt cannot carry over."""


@dataclass(frozen=True)
class Unsupported:
    """Something of the manifest the translation cannot carry over, and where it is."""

    ref: str
    location: Location | None
    what: str
    #: what happens to it when allowed (--puppet-allow-unsupported)
    instead: str = "stands in as a noop"
    #: allowed, and simply left out: nothing stands in for it (a collector)
    ignored: bool = False

    def error(self) -> UnsupportedError:
        return UnsupportedError(f"{self.ref}: {self.what}", location=self.location)


@dataclass(frozen=True)
class Translated:
    """One pymgmt resource, from one Puppet resource."""

    kind: str
    name: str
    params: dict[str, Any]
    meta: dict[str, Any]
    #: the Puppet resource it comes from (its reference and location)
    origin: CatalogResource
    #: True when it stands in for an unsupported resource (manages nothing)
    stand_in: bool = False
    #: True: also published for other hosts to collect (pymgmt's ``@@``)
    exported: bool = False
    #: True: only published for other hosts, never applied here (an ``@@``
    #: resource its own node does not collect, which Puppet does not apply)
    export_only: bool = False

    @property
    def key(self) -> Key:
        return (self.kind, self.name)


@dataclass(frozen=True)
class Relation:
    """An edge between two translated resources, and the Puppet relationship it comes from."""

    src: Key
    dst: Key
    notify: bool
    why: str


@dataclass
class Translation:
    """Everything a catalog turned into, and everything it could not."""

    name: str
    source: str
    resources: list[Translated] = field(default_factory=list)
    edges: list[Relation] = field(default_factory=list)
    unsupported: list[Unsupported] = field(default_factory=list)
    #: other problems: a relationship to nothing, two resources on one pymgmt key
    errors: list[InputError] = field(default_factory=list)
    #: accepted, but worth telling (what a stand-in or a noop does not do)
    notes: list[InputError] = field(default_factory=list)
    #: what this host collects of other hosts' exports (from ``File <<| |>>``)
    collect: list[Collect] = field(default_factory=list)


class _Mapping:
    """What one mapper call gathers for one Puppet resource."""

    def __init__(self, res: CatalogResource) -> None:
        self.res = res
        self.problems: list[str] = []
        self.notes: list[str] = []
        #: pymgmt metaparameters the Puppet parameters ask for
        self.meta: dict[str, Any] = {}

    def param(self, name: str, default: Any = None) -> Any:
        return self.res.params.get(name, default)

    def unsupported(self, what: str) -> None:
        self.problems.append(what)

    def reject_others(self, handled: frozenset[str], ignored: frozenset[str] = frozenset()) -> None:
        """Every parameter neither handled nor harmless is unsupported, by name."""
        for name in sorted(self.res.params):
            if name in handled or name in ignored or name in RELATIONSHIPS:
                continue
            if name in _QUIET_META:
                continue
            self.unsupported(f"parameter '{name}' is not supported")

    def string(self, name: str) -> str | None:
        value = self.res.params.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.unsupported(f"parameter '{name}' must be a string here, not {value!r}")
            return None
        return str(value)


Mapper = Callable[[_Mapping, dict[str, Any]], tuple[str, str] | None]


def translate(
    catalog: Catalog, source: str, *, allow: bool = False, collect_dir: str | None = None
) -> Translation:
    """The pymgmt resources and edges of `catalog` (Puppet's compiled manifest `source`).

    `collect_dir` is where files collected by ``File <<| |>>`` land.
    """
    out = Translation(name=_graph_name(source), source=source)
    nodes = _Nodes(catalog)
    keys: dict[str, Key] = {}
    for res in [*catalog.resources, *_exported_elsewhere(catalog, nodes)]:
        if nodes.is_container(res):
            continue
        translated = _translate_one(res, out, allow)
        if translated is None:
            continue
        clash = next((t for t in out.resources if t.key == translated.key), None)
        if clash is not None:
            out.errors.append(
                InputError(
                    f"{res.ref} and {clash.origin.ref} are both {translated.kind} "
                    f"'{translated.name}' in pymgmt (declared at {clash.origin.location})",
                    location=res.location,
                )
            )
            continue
        out.resources.append(translated)
        if not translated.export_only:  # not in Puppet's catalog: nothing may relate to it
            keys[nodes.norm(res.ref)] = translated.key
    out.edges = list(_relations(catalog, nodes, keys, out))
    for collector in catalog.collectors:
        _collect(collector, collect_dir, out, allow)
    return out


#: what the catalog's kind of an exported resource Puppet left out is marked as
_NOT_HERE = "exported_not_collected"


def _exported_elsewhere(catalog: Catalog, nodes: _Nodes) -> list[CatalogResource]:
    """The exported resources Puppet left out of the catalog: this node does not collect them.

    They are not applied here in Puppet: pymgmt publishes them for the
    other hosts and applies nothing of them here (`Graph.export_only`).
    """
    return [
        CatalogResource(
            ex.type, ex.title, _NOT_HERE, ex.params, location=ex.location, exported=True
        )
        for ex in catalog.exported
        if nodes.resolve(ex.ref) is None
    ]


def _collect(collector: Collector, collect_dir: str | None, out: Translation, allow: bool) -> None:
    """``File <<| |>>`` as a ``collect:`` entry; anything it cannot say exactly is unsupported."""
    ref = f"{collector.type} <<| {_query_text(collector.query)} |>>".replace("|  |", "| |")
    problems: list[str] = []
    if collector.type.lower() != "file":
        problems.append(
            f"collecting {collector.type} resources is not supported: pymgmt collects files only"
        )
    if collector.query is not None:
        problems.append(
            "a collector's query is not supported: pymgmt's exports carry no tags or "
            "parameters to match, so it would collect every file other hosts export; "
            "collect them all with File <<| |>>"
        )
    if collector.overrides:
        problems.append("a collector's overrides ({ ... }) are not supported")
    if not problems and not collect_dir:
        problems.append(
            "say where collected files land with --puppet-collect-dir DIR: pymgmt puts "
            "every collected file in that one directory, under its base name"
        )
    elif not problems and collect_dir and not collect_dir.startswith("/"):
        problems.append(f"--puppet-collect-dir {collect_dir!r} is not an absolute directory")
    if problems:
        instead = "ignored: nothing is collected"
        out.unsupported += [
            Unsupported(ref, collector.location, p, instead, ignored=allow) for p in problems
        ]
        return
    assert collect_dir is not None
    pattern = collect_dir if collect_dir.endswith("/") else collect_dir + "/"
    if not any(c.kind == "file" for c in out.collect):  # one entry per kind, as in YAML
        out.collect.append(Collect("file", pattern, location=collector.location))


def _query_text(query: Any) -> str:
    """Puppet's exported query (nested lists) written back as Puppet code, for messages."""
    if query is None:
        return ""
    if isinstance(query, list) and len(query) == 3:
        left, op, right = query
        if op in ("and", "or") and isinstance(left, list) and isinstance(right, list):
            return f"{_operand(left)} {op} {_operand(right)}"
        if isinstance(left, str) and isinstance(op, str):
            value = query[2]
            shown = f"'{value}'" if isinstance(value, str) else str(value)
            return f"{query[0]} {query[1]} {shown}"
    return str(query)


def _operand(query: list[Any]) -> str:
    """A sub-query, in parentheses when it is an ``and`` or ``or`` itself."""
    text = _query_text(query)
    return f"({text})" if len(query) == 3 and query[1] in ("and", "or") else text


def _graph_name(source: str) -> str:
    base = source.rsplit("/", 1)[-1].removesuffix(".pp")
    return f"puppet-{base}" if base and not base.startswith("<") else "puppet"


def _translate_one(res: CatalogResource, out: Translation, allow: bool) -> Translated | None:
    mapper = _MAPPERS.get(res.type.lower())
    mapping = _Mapping(res)
    params: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    key: tuple[str, str] | None = None
    if res.exported and res.type.lower() != "file":
        mapping.unsupported(
            f"exporting {res.type} resources (@@) is not supported: pymgmt exchanges files only"
        )
    elif mapper is None:
        mapping.unsupported(f"resource type '{res.type}' has no pymgmt kind")
    else:
        key = mapper(mapping, params)
        meta.update(mapping.meta)
        _metaparams(mapping, meta)
    for note in mapping.notes:
        out.notes.append(InputError(f"{res.ref}: {note}", location=res.location))
    if mapping.problems or key is None:
        out.unsupported += [Unsupported(res.ref, res.location, p) for p in mapping.problems]
        if not allow:
            return None
        return Translated("noop", res.ref, {}, {}, res, stand_in=True)
    if res.kind == _NOT_HERE:
        return Translated(key[0], key[1], params, meta, res, export_only=True)
    return Translated(key[0], key[1], params, meta, res, exported=res.exported)


def _metaparams(m: _Mapping, meta: dict[str, Any]) -> None:
    """Puppet's own metaparameters that pymgmt has a meaning for."""
    noop = m.param("noop")
    if noop is not None:
        if isinstance(noop, bool):
            if noop:
                meta["noop"] = True
        else:
            m.unsupported(f"parameter 'noop' must be true or false, not {noop!r}")
    for name in ("schedule", "audit"):
        if name in m.res.params:
            m.unsupported(f"metaparameter '{name}' is not supported")


# -- the mappers: one per Puppet type -----------------------------------------


def _file(m: _Mapping, params: dict[str, Any]) -> tuple[str, str] | None:
    path = m.string("path") or m.res.title
    if not path.startswith("/"):
        m.unsupported(f"path {path!r} is not absolute")
        return None
    path = path.rstrip("/") or "/"
    ensure = m.string("ensure")
    content = m.param("content")
    source = m.param("source")
    purge_said = False
    if ensure in ("absent",):
        params["state"] = "absent"
    elif ensure == "directory":
        path = path if path.endswith("/") else path + "/"
        if content is not None:
            m.unsupported("a directory with content is not supported")
        elif source is not None:
            _directory_source(m, source, params)
            source = None  # mapped
        elif _flag(m.param("purge")):
            _directory_purge(m, params)
            purge_said = True  # mapped, or said why not: not said again below
    elif ensure in ("file", "present"):
        pass
    elif ensure is None:
        if content is None and source is None:
            m.unsupported(
                "without 'ensure', Puppet manages the attributes of a file only if it "
                "exists; pymgmt's file would create it: say ensure => file"
            )
    else:
        m.unsupported(f"ensure => {ensure!r} is not supported (file, directory or absent)")
    if content is not None:
        if isinstance(content, str):
            params["content"] = content
        else:
            m.unsupported("parameter 'content' is not plain text (Sensitive or binary)")
    elif source is not None:
        _file_source(m, source, params)
    mode = m.string("mode")
    if mode is not None:
        if mode.isdigit() and len(mode) in (3, 4):
            params["mode"] = mode if len(mode) == 4 else "0" + mode
        else:
            m.unsupported(f"mode {mode!r} is not supported (octal digits only, such as '0644')")
    for name in ("owner", "group"):
        value = m.string(name)
        if value is not None:
            params[name] = value
    if m.param("show_diff") in (False, "false"):
        params["show_diff"] = False
    if "recurse" not in params and not purge_said:
        for name in ("recurse", "purge", "force"):
            if _flag(m.param(name)):
                m.unsupported(f"{name} => true is supported with ensure => directory and a source")
    m.reject_others(
        frozenset(
            {"path", "ensure", "content", "source", "mode", "owner", "group"}
            | {"recurse", "purge", "force", "show_diff"}
        ),
        frozenset({"backup", "checksum", "provider"}),
    )
    return ("file", path)


def _file_source(m: _Mapping, source: Any, params: dict[str, Any]) -> None:
    """A local ``source`` is the file's ``source``: copied byte for byte, and followed live."""
    first = source[0] if isinstance(source, list) and len(source) == 1 else source
    if not isinstance(first, str):
        m.unsupported("parameter 'source' with several alternatives is not supported")
        return
    path = first.removeprefix("file://")
    if not path.startswith("/"):
        m.unsupported(f"source {first!r} is not supported (a local absolute path only)")
        return
    params["source"] = path


def _directory_source(m: _Mapping, source: Any, params: dict[str, Any]) -> None:
    """``recurse => true`` with a local directory ``source``: pymgmt's recursive copy.

    Puppet's ``mode`` then applies to every file copied; pymgmt's to the
    top directory only (a copy keeps each source entry's permission bits),
    so the two differ and ``mode`` is refused rather than half-honoured.
    Puppet's ``purge`` spares files other resources manage; so does
    pymgmt's (`compile.spare_managed`).
    """
    if not _flag(m.param("recurse")):
        m.unsupported("a directory with a source needs recurse => true")
        return
    if m.param("mode") is not None:
        m.unsupported(
            "mode with recurse is not supported (Puppet sets it on every file copied; "
            "pymgmt copies each file's own permission bits)"
        )
    _file_source(m, source, params)
    if "source" in params:
        params["source"] = params["source"].rstrip("/") + "/"
        params["recurse"] = True
        for name in ("purge", "force"):
            if _flag(m.param(name)):
                params[name] = True


def _directory_purge(m: _Mapping, params: dict[str, Any]) -> None:
    """``recurse => true, purge => true, force => true`` without a source: pymgmt's purge.

    Puppet then removes every file no resource manages, and directories
    only with ``force``; pymgmt's purge removes unmanaged directories too, so
    the translation asks for ``force`` rather than remove more than Puppet would.
    """
    if not _flag(m.param("recurse")):
        m.unsupported("purge => true without recurse => true purges nothing")
    elif not _flag(m.param("force")):
        m.unsupported(
            "purge without force is not supported (Puppet keeps unmanaged directories, "
            "pymgmt's purge removes them): add force => true"
        )
    else:
        params["recurse"] = params["purge"] = True
        return


def _flag(value: Any) -> bool:
    """A Puppet boolean that is true (the catalog has true or "true")."""
    return value is True or value == "true"


def _package(m: _Mapping, params: dict[str, Any]) -> tuple[str, str] | None:
    name = m.string("name") or m.res.title
    ensure = m.string("ensure") or "installed"
    states = {"present": "installed", "installed": "installed", "absent": "uninstalled"}
    if ensure in states:
        params["state"] = states[ensure]
    elif ensure == "latest":
        params["state"] = "newest"
    elif ensure == "purged":
        m.unsupported("ensure => purged is not supported (absent removes the package)")
    elif ensure and ensure[0].isdigit():
        params["state"] = ensure
    else:
        m.unsupported(f"ensure => {ensure!r} is not supported")
    provider = m.string("provider")
    if provider is not None and provider not in ("apt", "dpkg"):
        m.unsupported(f"provider {provider!r} is not supported (apt)")
    m.reject_others(frozenset({"name", "ensure", "provider"}))
    return ("pkg", name)


def _service(m: _Mapping, params: dict[str, Any]) -> tuple[str, str] | None:
    name = m.string("name") or m.res.title
    ensure = m.param("ensure")
    if ensure in ("running", True, "true"):
        params["state"] = "running"
    elif ensure in ("stopped", False, "false"):
        params["state"] = "stopped"
    elif ensure is not None:
        m.unsupported(f"ensure => {ensure!r} is not supported (running or stopped)")
    enable = m.param("enable")
    if enable in (True, "true"):
        params["startup"] = "enabled"
    elif enable in (False, "false"):
        params["startup"] = "disabled"
    elif enable is not None:
        m.unsupported(f"enable => {enable!r} is not supported (true or false)")
    provider = m.string("provider")
    if provider is not None and provider != "systemd":
        m.unsupported(f"provider {provider!r} is not supported (systemd)")
    m.reject_others(
        frozenset({"name", "ensure", "enable", "provider"}),
        frozenset({"hasstatus", "hasrestart"}),
    )
    return ("svc", name)


def _exec(m: _Mapping, params: dict[str, Any]) -> tuple[str, str] | None:
    command = m.string("command") or m.res.title
    # Puppet's posix provider hands a command with shell syntax to /bin/sh
    # and splits a plain one: running every command with sh -c does both.
    params["cmd"] = command
    params["shell"] = "/bin/sh"
    env: dict[str, str] = {}
    path = m.param("path")
    if path is not None:
        parts = path if isinstance(path, list) else str(path).split(":")
        env["PATH"] = ":".join(str(p) for p in parts)
    environment = m.param("environment")
    if environment is not None:
        for item in environment if isinstance(environment, list) else [environment]:
            name, eq, value = str(item).partition("=")
            if not eq or not name:
                m.unsupported(f"environment entry {item!r} is not NAME=VALUE")
            else:
                env[name] = value
    if env:
        params["env"] = env
    for name in ("cwd", "creates"):
        text = m.string(name)
        if text is not None:
            params[name] = text
    for puppet, ours in (("onlyif", "ifcmd"), ("unless", "nifcmd")):
        guard = m.param(puppet)
        if guard is None:
            continue
        checks = guard if isinstance(guard, list) else [guard]
        if len(checks) != 1 or not isinstance(checks[0], str):
            m.unsupported(f"several '{puppet}' commands are not supported (one only)")
        else:
            params[ours] = checks[0]
            params[ours.replace("cmd", "shell")] = "/bin/sh"
    refreshonly = m.param("refreshonly")
    if refreshonly in (True, "true"):
        params["refresh_only"] = True
    elif refreshonly not in (None, False, "false"):
        m.unsupported(f"refreshonly => {refreshonly!r} is not true or false")
    _exec_timeout(m, params)
    _exec_tries(m, m.meta)
    returns = m.param("returns")
    if returns is not None and returns not in (0, "0", [0], ["0"]):
        m.unsupported("'returns' other than 0 is not supported")
    for account in ("user", "group"):
        if (who := m.string(account)) is not None:
            params[account] = who
    if "umask" in m.res.params:
        m.unsupported("parameter 'umask' is not supported yet")
    m.reject_others(
        frozenset(
            {"command", "path", "environment", "cwd", "creates", "onlyif", "timeout", "returns"}
            | {"unless", "refreshonly", "user", "group", "umask", "tries", "try_sleep"}
        ),
        frozenset({"logoutput", "provider"}),
    )
    return ("exec", m.res.title)


def _exec_timeout(m: _Mapping, params: dict[str, Any]) -> None:
    timeout = m.param("timeout")
    if timeout is None:
        return
    try:
        seconds = float(timeout)
    except (TypeError, ValueError):
        m.unsupported(f"timeout {timeout!r} is not a number")
        return
    if seconds > 0:
        params["timeout"] = max(1, round(seconds))


def _exec_tries(m: _Mapping, meta: dict[str, Any]) -> None:
    """``tries`` and ``try_sleep`` are pymgmt's retry and delay metaparameters."""
    tries, pause = m.param("tries"), m.param("try_sleep")
    try:
        if tries is not None and int(tries) > 1:
            meta["retry"] = int(tries) - 1
        if pause is not None and float(pause) > 0:
            meta["delay"] = round(float(pause) * 1000)
    except (TypeError, ValueError):
        m.unsupported(f"tries {tries!r} / try_sleep {pause!r} are not numbers")


def _notify(m: _Mapping, params: dict[str, Any]) -> tuple[str, str] | None:
    m.notes.append("becomes a noop: its message is not printed")
    m.reject_others(frozenset({"message", "name", "withpath"}))
    return ("noop", m.res.title)


def _account_state(m: _Mapping, params: dict[str, Any]) -> None:
    ensure = m.string("ensure")
    if ensure == "absent":
        params["state"] = "absent"
    elif ensure not in (None, "present"):
        m.unsupported(f"ensure => {ensure!r} is not supported (present or absent)")
    system = m.param("system")
    if system in (True, "true"):
        params["system"] = True
    elif system not in (None, False, "false"):
        m.unsupported(f"system => {system!r} is not true or false")


def _number(m: _Mapping, name: str, params: dict[str, Any], to: str) -> None:
    value = m.string(name)
    if value is not None:
        if value.isdigit():
            params[to] = int(value)
        else:
            m.unsupported(f"{name} => {value!r} is not a number")


def _user(m: _Mapping, params: dict[str, Any]) -> tuple[str, str] | None:
    """Puppet's user: the account itself; its home directory is a file resource's."""
    _account_state(m, params)
    _number(m, "uid", params, "uid")
    for puppet, ours in (("gid", "group"), ("home", "home"), ("shell", "shell")):
        if (value := m.string(puppet)) is not None:
            params[ours] = value
    if (comment := m.string("comment")) is not None:
        params["comment"] = comment
    groups = m.param("groups")
    if groups is not None:
        params["groups"] = [str(g) for g in (groups if isinstance(groups, list) else [groups])]
        membership = m.string("membership") or "minimum"  # Puppet's default
        if membership not in ("minimum", "inclusive"):
            m.unsupported(f"membership => {membership!r} is not supported")
        params["membership"] = "exact" if membership == "inclusive" else "minimum"
    if m.param("managehome") in (True, "true"):
        m.unsupported("managehome => true is not supported: manage the home with a file")
    m.reject_others(
        frozenset(
            {"name", "ensure", "uid", "gid", "groups", "membership", "home", "shell"}
            | {"comment", "system", "managehome"}
        ),
        frozenset({"provider", "forcelocal"}),
    )
    return ("user", m.string("name") or m.res.title)


def _group(m: _Mapping, params: dict[str, Any]) -> tuple[str, str] | None:
    _account_state(m, params)
    _number(m, "gid", params, "gid")
    m.reject_others(
        frozenset({"name", "ensure", "gid", "system"}), frozenset({"provider", "forcelocal"})
    )
    return ("group", m.string("name") or m.res.title)


_MAPPERS: dict[str, Mapper] = {
    "file": _file,
    "package": _package,
    "service": _service,
    "exec": _exec,
    "notify": _notify,
    "user": _user,
    "group": _group,
}


# -- containment and relationships --------------------------------------------


class _Nodes:
    """The catalog's resources by normalised reference, and its containment tree."""

    def __init__(self, catalog: Catalog) -> None:
        self.by_ref: dict[str, CatalogResource] = {}
        for res in catalog.resources:
            self.by_ref[self.norm(res.ref)] = res
        for res in catalog.resources:
            for alias in self._aliases(res):
                self.by_ref.setdefault(self.norm(f"{res.type}[{alias}]"), res)
        self.children: dict[str, list[str]] = {}
        for src, dst in catalog.contains:
            self.children.setdefault(self.norm(src), []).append(self.norm(dst))

    @staticmethod
    def norm(ref: str) -> str:
        """Puppet's reference, normalised: type case-insensitive; class titles too."""
        open_at = ref.find("[")
        if open_at < 0 or not ref.endswith("]"):
            return ref.lower()
        kind = ref[:open_at].lower()
        title = ref[open_at + 1 : -1]
        if kind == "class":
            title = title.lower().removeprefix("::")
        elif kind == "file" and len(title) > 1:
            title = title.rstrip("/")
        return f"{kind}[{title}]"

    @staticmethod
    def _aliases(res: CatalogResource) -> Iterator[str]:
        for name in ("name", "path", "command"):
            value = res.params.get(name)
            if isinstance(value, str) and value != res.title:
                yield value
        alias = res.params.get("alias")
        for value in alias if isinstance(alias, list) else [alias]:
            if isinstance(value, str):
                yield value

    def is_container(self, res: CatalogResource) -> bool:
        return (
            res.type.lower() in _CONTAINER_TYPES
            or res.kind in ("defined_type", "class")
            or self.norm(res.ref) in self.children
        )

    def resolve(self, ref: str) -> CatalogResource | None:
        return self.by_ref.get(self.norm(ref))


def _references(value: Any) -> Iterator[str]:
    if isinstance(value, list):
        for item in value:
            yield from _references(item)
    elif isinstance(value, str):
        yield value


def _relations(
    catalog: Catalog, nodes: _Nodes, keys: dict[str, Key], out: Translation
) -> Iterator[Relation]:
    """Edges between translated resources, through containers' start and end markers."""
    # Markers: ("start", ref) and ("end", ref) of a container; a resource is itself.
    succ: dict[tuple[str, str], list[tuple[tuple[str, str], bool, str]]] = {}

    def node(ref: str, end: bool) -> tuple[str, str]:
        n = nodes.norm(ref)
        if n in keys:
            return ("res", n)
        return ("end" if end else "start", n)

    def link(a: tuple[str, str], b: tuple[str, str], notify: bool, why: str) -> None:
        succ.setdefault(a, []).append((b, notify, why))

    for res in catalog.resources:
        n = nodes.norm(res.ref)
        if n not in keys and nodes.is_container(res):
            link(("start", n), ("end", n), False, "")
    for parent, kids in nodes.children.items():
        for kid in kids:
            link(("start", parent), node(kid, end=False), False, "")
            link(node(kid, end=True), ("end", parent), False, "")
    for res in catalog.resources:
        for param, (first, notify) in RELATIONSHIPS.items():
            for ref in _references(res.params.get(param)):
                other = nodes.resolve(ref)
                if other is None:
                    out.errors.append(
                        InputError(
                            f"{res.ref}: {param} => {ref}: no such resource in the catalog",
                            location=res.location,
                            field=param,
                        )
                    )
                    continue
                why = f"{res.ref} {param} {other.ref}"
                a, b = (other, res) if first else (res, other)
                link(node(a.ref, end=True), node(b.ref, end=False), notify, why)
    yield from _contract(succ, keys)


def _contract(
    succ: dict[tuple[str, str], list[tuple[tuple[str, str], bool, str]]],
    keys: dict[str, Key],
) -> Iterator[Relation]:
    """Resource-to-resource edges: paths between resources whose inner nodes are markers."""
    for ref, key in keys.items():
        found: dict[str, tuple[bool, str]] = {}
        seen: set[tuple[tuple[str, str], bool]] = set()
        stack: list[tuple[tuple[str, str], bool, str]] = [(("res", ref), False, "")]
        while stack:
            at, notify, why = stack.pop()
            for nxt, n2, w2 in succ.get(at, ()):
                carry = notify or n2
                reason = why or w2
                if nxt[0] == "res":
                    old = found.get(nxt[1])
                    if old is None or (carry and not old[0]):
                        found[nxt[1]] = (carry, reason)
                    continue
                if (nxt, carry) in seen:
                    continue
                seen.add((nxt, carry))
                stack.append((nxt, carry, reason))
        for dst, (notify, why) in found.items():
            yield Relation(key, keys[dst], notify, why or "containment")


__all__ = [
    "RELATIONSHIPS",
    "Relation",
    "Translated",
    "Translation",
    "Unsupported",
    "UnsupportedError",
    "translate",
]
