"""The agent's configuration file: every `pymgmt run` flag, in YAML.

::

    # /etc/pymgmt/pymgmt.yaml
    graph: /etc/pymgmt/graph.yaml     # the graph file ('file' and 'yaml' too)
    hostname: web1
    sema: 4
    seeds: [http://10.0.0.1:2379]     # a list: repeated, or comma-joined
    converger-timeout: 5              # mgmt's spellings are keys too

A key is a long flag of `pymgmt run` without its dashes (``no-watch``,
``no_watch`` and ``--no-watch`` are the same key); ``true`` gives a flag
that takes no value, ``false`` or ``null`` leaves it out. The file is read
by `pymgmt run` from `DEFAULT_PATH` when it exists, or from ``--config
FILE``; ``--no-config`` reads none. **The command line wins**: a flag given
there replaces the file's value, and a flag of a family the command line
touched (``-v``/``-q``, the converged timeouts, the graph file, the TLS
files) drops the file's whole family, so the two never clash.

The values go through the very parser of the command line, so they are
checked exactly as flags are, and a mistake names the file, line and key.
`ConfigSource.reread` does it again on SIGHUP.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from .errors import InputError, InputErrors, Location

#: where `pymgmt run` looks for its configuration (``--config`` to change it)
DEFAULT_PATH = Path("/etc/pymgmt/pymgmt.yaml")
#: the largest configuration file read: it is a handful of lines
MAX_BYTES = 1 << 20
#: keys that name the graph file, besides the flags' own names
_GRAPH_KEYS = ("graph",)
#: flags that make no sense in a file (they choose the file, or are internal)
_NOT_IN_FILE = frozenset(
    {"--config", "--no-config", "--help", "--version", "--depth", "--remote-child", "--tunnel"}
)
#: dests that go together: the command line setting one of them drops the
#: file's values for all of them (else `-q` against the file's `verbose`,
#: or `--converged-timeout` against its `converger-timeout`, would clash)
FAMILIES = (
    frozenset({"verbose", "quiet", "log_level"}),
    frozenset(
        {"converged_timeout", "converger_timeout", "converged_exit", "converged_timeout_no_exit"}
    ),
    frozenset({"file", "file_opt"}),
    frozenset({"prefix", "tmp_prefix", "allow_tmp_prefix"}),
    frozenset({"tls_ca", "tls_cert", "tls_key", "pki"}),
)


class ConfigError(InputError):
    """The configuration file is wrong: the agent does not start (or keeps its settings)."""


@dataclass(frozen=True)
class Setting:
    """One key of the file, with where it was written."""

    key: str
    value: object
    location: Location


@dataclass
class ConfigSource:
    """How the running settings were made: re-done on SIGHUP (`reread`)."""

    parser: argparse.ArgumentParser
    #: the command line after ``run``, which keeps winning over the file
    cli: list[str]
    #: the file read (None: none, --no-config or no default file)
    path: Path | None
    #: the checks `pymgmt run` applies to its flags once parsed (main._resolve_run)
    resolve: Callable[[argparse.ArgumentParser, argparse.Namespace], None]

    def reread(self) -> argparse.Namespace:
        """The settings the file and the command line give now; ConfigError if wrong.

        Never exits: a reload with a broken file keeps the agent running.
        """
        with _raising(self.parser):
            args = merged(self.parser, self.cli, self.path)
            self.resolve(self.parser, args)
        args.config = self
        return args


def with_config(
    parser: argparse.ArgumentParser,
    cli: list[str],
    args: argparse.Namespace,
    resolve: Callable[[argparse.ArgumentParser, argparse.Namespace], None],
) -> argparse.Namespace:
    """`args` (the command line alone) with the configuration file's settings under it.

    Sets ``args.config`` to the `ConfigSource`, for a reload.
    """
    path: Path | None = None
    # an agent started by --remote runs with its initiator's settings alone,
    # whatever the configuration of the host it runs on
    if not args.no_config and not getattr(args, "remote_child", None):
        path = Path(args.config_file) if args.config_file else DEFAULT_PATH
        if args.config_file is None and not path.exists():
            path = None  # the default file is optional; a named one is not
    source = ConfigSource(parser, cli, path, resolve)
    if path is None:
        args.config = source
        return args
    with _raising(parser):
        new = merged(parser, cli, path)
    new.config = source
    return new


def merged(
    parser: argparse.ArgumentParser, cli: list[str], path: Path | None
) -> argparse.Namespace:
    """Parse the file's settings, then the command line over them."""
    if path is None:
        return parser.parse_args(cli)
    base = parse_file(parser, path)
    args = parser.parse_args(cli, namespace=copy.deepcopy(base))
    _cli_wins(parser, args, _given(parser, cli))
    return args


def parse_file(parser: argparse.ArgumentParser, path: Path) -> argparse.Namespace:
    """The file's settings parsed as flags; every problem at once (InputErrors) if wrong."""
    settings, problems = read(path)
    words: list[str] = []
    for s in settings:
        try:
            one = _words(parser, s)
            parser.parse_args(one)  # alone first: argparse's message lacks the line
        except ConfigError as e:
            message = re.sub(r"^argument [^:]+: ", "", e.message)  # the key names it
            problems.append(ConfigError(message, field=s.key, location=s.location, hint=e.hint))
            continue
        words += one
    if problems:
        raise InputErrors(problems) if len(problems) > 1 else problems[0]
    try:
        return parser.parse_args(words)
    except ConfigError as e:  # only together (two of a mutually exclusive group)
        raise ConfigError(e.message, location=Location(str(path))) from None


class _Unset:
    """A value no flag can have: left in place, it shows the flag was not given."""


def _given(parser: argparse.ArgumentParser, cli: list[str]) -> dict[str, object]:
    """The dests the command line itself set, with its values."""
    unset = _Unset()
    probe = argparse.Namespace()
    for a in parser._actions:
        if a.option_strings and a.dest != argparse.SUPPRESS:
            setattr(probe, a.dest, [] if isinstance(a, argparse._AppendAction) else unset)
    parser.parse_args(cli, namespace=probe)
    return {d: v for d, v in vars(probe).items() if v is not unset and v != []}


def _cli_wins(
    parser: argparse.ArgumentParser, args: argparse.Namespace, given: dict[str, object]
) -> None:
    """Fix what parsing over the file's values got wrong: lists and families.

    A repeatable flag (``--remote``) given on the command line replaces the
    file's list instead of extending it; a family touched on the command
    line keeps only the command line's values.
    """
    defaults = {a.dest: a.default for a in parser._actions}
    for dest, value in given.items():
        if isinstance(value, list):
            setattr(args, dest, value)
    for family in FAMILIES:
        if family & given.keys():
            for dest in family - given.keys():
                if hasattr(args, dest):
                    setattr(args, dest, defaults.get(dest))


def read(path: Path) -> tuple[list[Setting], list[InputError]]:
    """The file's settings, each with its line, and the problems found reading them.

    A file that cannot be read or parsed at all raises ConfigError.
    """
    from .frontends.yamlsyntax import compose

    where = str(path)
    try:
        text = _read_trusted(path)
    except OSError as e:
        raise ConfigError(
            f"cannot read the configuration file: {e.strerror or e}", location=Location(where)
        ) from None
    if len(text) > MAX_BYTES:
        raise ConfigError("the configuration file is over 1 MiB", location=Location(where))
    try:
        node = compose(text, where)
    except InputError as e:
        raise ConfigError(e.message, location=e.location, hint=e.hint) from None
    return _settings(node, where)


def _read_trusted(path: Path, hops: int = 0) -> bytes:
    """The file's bytes, if only root (or the agent's own user) can have written them.

    The configuration names the graph a root agent enforces: a file (or a
    directory on its way, or a symlink) another user could change would hand
    them root. The path is walked as every path the agent uses (`fsutil`): a
    symlink is followed only when root (or the agent's user) owns it, and
    the file is refused if another user owns it or may write it.
    """
    import errno

    from .fsutil import UnsafePathError, opened_dir, split

    parent, name = split(os.path.abspath(path))
    trusted = {0, os.geteuid()}
    try:
        with opened_dir(parent) as dfd:
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            except OSError as e:
                if e.errno != errno.ELOOP or hops >= 8:
                    raise
                link = os.lstat(name, dir_fd=dfd)
                if link.st_uid not in trusted:
                    raise OSError(
                        f"it is a symlink owned by uid {link.st_uid}: not followed"
                    ) from None
                target = os.path.join(parent, os.readlink(name, dir_fd=dfd))
                return _read_trusted(Path(target), hops + 1)
    except UnsafePathError as e:
        raise OSError(str(e)) from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if st.st_uid not in trusted or st.st_mode & 0o002 or (st.st_mode & 0o020 and st.st_gid):
            raise OSError(
                f"another user may change it (owner uid {st.st_uid}, group gid {st.st_gid}, "
                f"mode {stat.S_IMODE(st.st_mode):04o}): not safe to use"
            )
        return f.read(MAX_BYTES + 1)


def _settings(node: object, where: str) -> tuple[list[Setting], list[InputError]]:
    import yaml

    if node is None:
        return [], []  # an empty file (or only comments): nothing set
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(
            "expected a mapping of flag names to values (key: value lines)",
            location=_at(where, node),
        )
    constructor = yaml.constructor.SafeConstructor()
    seen: dict[str, Location] = {}
    settings: list[Setting] = []
    problems: list[InputError] = []
    for key_node, value_node in node.value:
        loc = _at(where, key_node)
        key = str(key_node.value)
        if key in seen:
            problems.append(
                ConfigError(
                    f"given twice (first at line {seen[key].line})", field=key, location=loc
                )
            )
            continue
        seen[key] = loc
        try:
            value = constructor.construct_object(value_node, deep=True)
        except yaml.YAMLError as e:
            problems.append(ConfigError(f"unreadable value: {e}", field=key, location=loc))
            continue
        settings.append(Setting(key, value, loc))
    return settings, problems


def _at(where: str, node: object) -> Location:
    mark = getattr(node, "start_mark", None)
    if mark is None:
        return Location(where)
    return Location(where, mark.line + 1, mark.column + 1)


def _words(parser: argparse.ArgumentParser, s: Setting) -> list[str]:
    """One setting as command-line words (none when it is false or null)."""
    flags = {f: a for f, a in parser._option_string_actions.items() if f.startswith("--")}
    name = s.key.lstrip("-").replace("_", "-")
    flag = "--file" if name in _GRAPH_KEYS else f"--{name}"
    action = flags.get(flag)
    if action is None or flag in _NOT_IN_FILE:
        known = [*_GRAPH_KEYS, *(f[2:] for f in flags if f not in _NOT_IN_FILE)]
        import difflib

        near = difflib.get_close_matches(name, known, n=1)
        why = "not a flag of 'pymgmt run'" if flag not in _NOT_IN_FILE else "not for the file"
        raise ConfigError(
            why,
            field=s.key,
            location=s.location,
            hint=f"did you mean {near[0]!r}?" if near else None,
        )
    takes_value = action.nargs != 0
    value = s.value
    if value is None or value is False:
        return []
    if not takes_value:
        if value is not True:
            raise ConfigError(f"expected true or false, got {value!r}", field=s.key,
                              location=s.location)  # fmt: skip
        return [flag]
    if value is True:
        raise ConfigError("expected a value, got true", field=s.key, location=s.location)
    if isinstance(value, list):
        items = [_scalar(v, s) for v in value]
        if isinstance(action, argparse._AppendAction):
            return [f"{flag}={item}" for item in items]
        return [f"{flag}={','.join(items)}"]
    # `=` keeps a value that starts with '-' a value (--converged-timeout=-1)
    return [f"{flag}={_scalar(value, s)}"]


def _scalar(value: object, s: Setting) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"expected a word or a number, got {value!r}", field=s.key,
                          location=s.location)  # fmt: skip
    return str(value)


def report(e: InputError, *, as_json: bool) -> None:
    """Print why the configuration was refused (every problem), as the graph's are."""
    errors = e.errors if isinstance(e, InputErrors) else [e]
    if as_json:
        import json

        listed = [x.as_dict() for x in errors]
        print(json.dumps({"event": "invalid_config", "errors": listed}), flush=True)
        return
    n = len(errors)
    print(
        f"error: the configuration is invalid ({n} problem{'s' if n != 1 else ''}); "
        "nothing was changed",
        file=sys.stderr,
    )
    for x in errors:
        print(f"  {x}", file=sys.stderr)


@contextmanager
def _raising(parser: argparse.ArgumentParser) -> Iterator[None]:
    """argparse's errors as ConfigError instead of an exit (which would end a reload)."""

    def error(message: str) -> NoReturn:
        raise ConfigError(message)

    parser.error = error  # type: ignore[method-assign]
    try:
        yield
    finally:
        del parser.error


__all__ = [
    "DEFAULT_PATH",
    "ConfigError",
    "ConfigSource",
    "Setting",
    "read",
    "report",
    "with_config",
]
