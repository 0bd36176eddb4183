"""Compile a manifest with Puppet and read the catalog it prints.

Puppet is run as a child process with an argv list (no shell), masterless:
``puppet catalog find --terminus compiler --render-as json``. It prints a
"Notice: Compiled catalog ..." line, then the JSON; its errors are lines
on standard error that end in ``(file: F, line: N, column: C)``, which
become `InputError`s at that location. Facter's complaints about what it
may not read (``/proc/1/environ`` in a container) are noise, not errors.

Exported resources and collectors: Puppet is run with storeconfigs on,
and its backend is pymgmt's own terminus (``ruby/``, found through
RUBYLIB), which answers every exported collector with nothing and writes
what Puppet asked (each collector's type, query and location) and what
the catalog exports (every ``@@`` resource, also those Puppet filters out
of the catalog because this node does not collect them) to a private
file; `read_store` reads it into the `Catalog`. pymgmt exchanges the
resources itself, live, through its etcd World.

A missing manifest is refused here: Puppet itself compiles an empty
catalog for one, which would make a typo in a path remove nothing and
manage nothing without a word.

The JSON is read as untrusted input: every field is checked for its type,
and a catalog that does not have the expected shape is an error, never a
traceback.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ...errors import InputError, InputErrors, Location

#: how long one compilation may take before it counts as failed (seconds)
COMPILE_TIMEOUT = 300.0
_WHERE_RE = re.compile(r"\(file: ([^,)]*)(?:, line: (\d+))?(?:, column: (\d+))?\)")
_ERROR_PREFIX = "Error: "
_COLOUR_RE = re.compile(r"\x1b\[[0-9;]*m")


class PuppetError(InputError):
    """Puppet could not compile the manifest (its own message and location)."""


@dataclass(frozen=True)
class PuppetSource:
    """What to compile: a manifest file, or inline code (mgmt's ``--puppet 'code'``)."""

    #: the manifest's path, or the inline code itself
    text: str
    #: True: `text` is Puppet code, not a path
    inline: bool = False
    #: a puppet.conf to use instead of Puppet's default (``--puppet-conf``)
    conf: str | None = None
    #: the node the catalog is for (what ``node 'web1' { }`` matches): this host
    node: str = ""
    #: where files collected by ``File <<| |>>`` land (``--puppet-collect-dir``)
    collect_dir: str | None = None

    @classmethod
    def from_arg(
        cls, arg: str, conf: str | None = None, node: str = "", collect_dir: str | None = None
    ) -> PuppetSource:
        """mgmt's rule: an argument ending in ``.pp`` is a manifest file, anything else code."""
        return cls(
            arg, inline=not arg.endswith(".pp"), conf=conf, node=node, collect_dir=collect_dir
        )

    @property
    def certname(self) -> str:
        """The node's name: as given, else Puppet's default (this host's FQDN, lower case)."""
        if self.node:
            return self.node
        import socket

        return socket.getfqdn().lower()

    @property
    def name(self) -> str:
        """What messages call the source."""
        return "<puppet code>" if self.inline else self.text


@dataclass(frozen=True)
class CatalogResource:
    """One resource of the catalog, as Puppet wrote it."""

    type: str
    title: str
    #: Puppet's class of the entry: compilable_type, defined_type, class, unknown
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    #: where the manifest declares it (file "" for inline code)
    location: Location | None = None
    exported: bool = False

    @property
    def ref(self) -> str:
        """The reference Puppet's own messages and relationships use: ``Type[title]``."""
        return f"{self.type}[{self.title}]"


@dataclass(frozen=True)
class Collector:
    """An exported collector, ``Type <<| query |>> { overrides }``, as Puppet asked for it."""

    #: the type collected, as Puppet spells it (``File``)
    type: str
    #: Puppet's query as a nested list (``["tag", "==", "web"]``), None for none
    query: Any
    #: True: the collector sets parameters on what it collects (``{ mode => ... }``)
    overrides: bool
    location: Location | None = None


@dataclass(frozen=True)
class Exported:
    """A resource the manifest exports (``@@``), collected here or not."""

    type: str
    title: str
    location: Location | None = None
    #: its parameters, as the catalog's JSON would give them
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.type}[{self.title}]"


@dataclass(frozen=True)
class Catalog:
    """Every resource, and the containment edges (container -> contained)."""

    name: str
    resources: list[CatalogResource]
    contains: list[tuple[str, str]]
    #: the exported collectors Puppet evaluated (pymgmt's storeconfigs terminus)
    collectors: list[Collector] = field(default_factory=list)
    #: every exported resource, also those Puppet left out as not collected here
    exported: list[Exported] = field(default_factory=list)


def compile_catalog(source: PuppetSource, *, timeout: float = COMPILE_TIMEOUT) -> Catalog:
    """Run Puppet's compiler on `source`; PuppetError with its message and location.

    Blocking: for the command line, before the event loop runs. The live
    frontend uses `compile_catalog_async`, which a stop can cut short.
    """
    _check_source(source)
    with _store() as store:
        try:
            done = subprocess.run(  # noqa: S603 - an argv list; the manifest is an argument
                puppet_argv(source),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
                env=_environment(store),
            )
        except FileNotFoundError:
            raise _not_installed(source) from None
        except subprocess.TimeoutExpired:
            raise _too_slow(source, timeout) from None
        return _result(done.returncode, done.stdout, done.stderr, source, store)


async def compile_catalog_async(
    source: PuppetSource, *, timeout: float = COMPILE_TIMEOUT
) -> Catalog:
    """`compile_catalog` as a child the event loop waits for; killed and reaped if cancelled."""
    from pymgmt import children

    _check_source(source)
    with _store() as store:
        argv, env = puppet_argv(source), _environment(store)
        try:
            answer = await children.ask(argv, env=env, timeout=timeout)
        except FileNotFoundError:
            raise _not_installed(source) from None
        except TimeoutError:
            raise _too_slow(source, timeout) from None
        return _result(answer.code, answer.out, answer.err, source, store)


@contextmanager
def _store() -> Iterator[Path]:
    """The file pymgmt's terminus writes to: in a private directory, removed after."""
    with tempfile.TemporaryDirectory(prefix="pymgmt-puppet-") as d:
        path = Path(d) / "store.jsonl"
        path.touch(mode=0o600)
        yield path


def _check_source(source: PuppetSource) -> None:
    if not source.inline and not os.path.isfile(source.text):
        raise PuppetError(
            "no such manifest (Puppet would compile an empty catalog)",
            location=Location(source.text),
        )


def _not_installed(source: PuppetSource) -> PuppetError:
    return PuppetError(
        "'puppet' is not installed (Debian: apt-get install puppet-agent)",
        location=Location(source.name),
    )


def _too_slow(source: PuppetSource, timeout: float) -> PuppetError:
    return PuppetError(
        f"Puppet did not compile the catalog within {timeout:g} s",
        location=Location(source.name),
    )


def _result(code: int, stdout: bytes, stderr: bytes, source: PuppetSource, store: Path) -> Catalog:
    if code != 0:
        raise puppet_errors(stderr.decode("utf-8", "replace"), source)
    catalog = parse_catalog(stdout, source.name)
    collectors, exported = read_store(store.read_bytes(), source.name)
    return replace(catalog, collectors=collectors, exported=exported)


#: pymgmt's storeconfigs terminus, for Puppet's RUBYLIB
RUBY_DIR = str(Path(__file__).with_name("ruby"))


def puppet_argv(source: PuppetSource) -> list[str]:
    """The compiler's command line: masterless, JSON, no colours, pymgmt's storeconfigs."""
    argv = ["puppet", "catalog", "find", "--terminus", "compiler", "--render-as", "json"]
    argv += ["--color", "false", "--storeconfigs", "--storeconfigs_backend", "pymgmt"]
    if source.conf is not None:
        argv += ["--config", source.conf]
    argv += ["--code", source.text] if source.inline else ["--manifest", source.text]
    return [*argv, source.certname]


def _environment(store: Path) -> dict[str, str]:
    """Puppet's environment: the agent's, a C locale so messages parse the same, and
    pymgmt's terminus on RUBYLIB with the file it writes to."""
    env = dict(os.environ)
    env["LANG"] = env["LC_ALL"] = "C.UTF-8"
    env["RUBYLIB"] = ":".join(p for p in (RUBY_DIR, env.get("RUBYLIB", "")) if p)
    env["PYMGMT_PUPPET_STORE"] = str(store)
    return env


def puppet_errors(stderr: str, source: PuppetSource) -> PuppetError:
    """Puppet's error lines as one error, located where Puppet says the problem is."""
    lines: list[str] = []
    for raw in stderr.splitlines():
        line = _COLOUR_RE.sub("", raw).strip()
        if not line.startswith(_ERROR_PREFIX) or line.startswith("Error: Facter:"):
            continue
        text = line[len(_ERROR_PREFIX) :]
        if text.startswith("Could not call 'find'") or text.startswith("Try 'puppet help"):
            continue  # the same error again, wrapped, and a usage hint
        if text not in lines:
            lines.append(text)
    if not lines:
        lines = ["Puppet failed without an error message"]
    errors = [_located(text, source.name, source.certname) for text in lines]
    if len(errors) == 1:
        return errors[0]
    first = errors[0]
    return PuppetError(str(InputErrors(list(errors))), location=first.location)


def _located(text: str, source: str, node: str) -> PuppetError:
    """One error line: its message, at the file, line and column Puppet names."""
    m = _WHERE_RE.search(text)
    if m is None:
        return PuppetError(text.removesuffix(f" on node {node}"), location=Location(source))
    message = (text[: m.start()] + text[m.end() :]).strip()
    message = message.removesuffix(f"on node {node}").strip()
    where = Location(m.group(1) or source, int(m.group(2) or 0), int(m.group(3) or 0))
    return PuppetError(message, location=where)


def parse_catalog(data: bytes, source: str) -> Catalog:
    """The catalog in Puppet's JSON output (after its notice line); InputError if malformed."""
    text = data.decode("utf-8", "replace")
    start = text.find("{")
    if start < 0:
        raise PuppetError("Puppet printed no catalog", location=Location(source))
    try:
        doc = json.loads(text[start:])
    except ValueError as e:
        raise PuppetError(f"Puppet's catalog is not JSON: {e}", location=Location(source)) from None
    if not isinstance(doc, dict):
        raise _malformed(source, "not an object")
    return Catalog(
        name=_string(doc.get("name", ""), source, "name"),
        resources=[_resource(item, source) for item in _list(doc.get("resources"), source)],
        contains=[_edge(item, source) for item in _list(doc.get("edges", []), source)],
    )


def _resource(item: Any, source: str) -> CatalogResource:
    if not isinstance(item, dict):
        raise _malformed(source, "a resource is not an object")
    params = item.get("parameters", {})
    if not isinstance(params, dict):
        raise _malformed(source, "a resource's parameters are not an object")
    where = _where(item, source) if isinstance(item.get("file"), str) else None
    return CatalogResource(
        type=_string(item.get("type"), source, "type"),
        title=_string(item.get("title"), source, "title"),
        kind=str(item.get("kind", "")),
        params=params,
        location=where,
        exported=item.get("exported") is True,
    )


def read_store(data: bytes, source: str) -> tuple[list[Collector], list[Exported]]:
    """The collectors and exports pymgmt's terminus wrote (a JSON object a line)."""
    collectors: list[Collector] = []
    exported: list[Exported] = []
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            raise _malformed(source, "pymgmt's terminus wrote a line that is not JSON") from None
        if not isinstance(item, dict) or len(item) != 1:
            raise _malformed(source, "pymgmt's terminus wrote an unknown record")
        what, fields = next(iter(item.items()))
        if not isinstance(fields, dict):
            raise _malformed(source, "pymgmt's terminus wrote an unknown record")
        where = _where(fields, source)
        if what == "collector":
            collectors.append(
                Collector(
                    _string(fields.get("type"), source, "a collector's type"),
                    fields.get("query"),
                    fields.get("overrides") is True,
                    where,
                )
            )
        elif what == "export":
            params = fields.get("params", {})
            if not isinstance(params, dict):
                raise _malformed(source, "an export's parameters are not an object")
            exported.append(
                Exported(
                    _string(fields.get("type"), source, "an export's type"),
                    _string(fields.get("title"), source, "an export's title"),
                    where,
                    params,
                )
            )
        else:
            raise _malformed(source, f"pymgmt's terminus wrote an unknown record {what!r}")
    return collectors, exported


def _where(fields: dict[str, Any], source: str) -> Location | None:
    """The file and line Puppet gives (an empty or missing file: the source itself)."""
    file = fields.get("file")
    line = fields.get("line")
    if isinstance(line, bool) or not isinstance(line, int):
        return None
    return Location(file if isinstance(file, str) and file else source, line)


def _edge(item: Any, source: str) -> tuple[str, str]:
    if not isinstance(item, dict):
        raise _malformed(source, "an edge is not an object")
    return _string(item.get("source"), source, "edge"), _string(item.get("target"), source, "edge")


def _list(value: Any, source: str) -> list[Any]:
    if not isinstance(value, list):
        raise _malformed(source, "a list is missing")
    return value


def _string(value: Any, source: str, what: str) -> str:
    if not isinstance(value, str):
        raise _malformed(source, f"{what} is not a string")
    return value


def _malformed(source: str, why: str) -> PuppetError:
    return PuppetError(f"Puppet's catalog is malformed: {why}", location=Location(source))


__all__ = [
    "COMPILE_TIMEOUT",
    "Catalog",
    "CatalogResource",
    "Collector",
    "Exported",
    "PuppetError",
    "PuppetSource",
    "compile_catalog",
    "compile_catalog_async",
    "parse_catalog",
    "puppet_argv",
    "read_store",
]
