"""Collected resources are confined before they run here.

Another host's export is untrusted input, and this agent runs as root: a
collected resource may only do what the local graph's `Collect` entry
allows. Only kinds with a rule here can be collected; today that is files.

A file exported by host B as ``File[f3b]`` with path ``/x/y/f3b``, collected
with ``Collect(kind="file", pattern="/tmp/mgmtA/")``, becomes the local
vertex ``File[f3b@B]`` with path ``/tmp/mgmtA/f3b``:

* its **name** is the exported name, ``@``, and the exporting host: readable
  in mgmt's ``File[name]`` display, distinct between hosts (a host name
  holds no ``@``, so the last ``@`` splits it back), and marked as foreign
  next to local names (a local vertex of that very name wins; see
  frontends/collect.py);
* its **path** is the pattern directory plus the exported path's base name:
  every collected file lands directly in that directory, never below or
  outside it.

It is refused (`Refused`, with a reason for the report) when its path is
not absolute and normalised or its base name is empty, ``.``, ``..``,
too long or has a NUL or a control character; when it is a directory; when its mode is more
permissive than ``Collect.mode`` or has the setuid, setgid or sticky bit;
when it asks for an owner or group not listed in ``Collect.owners`` /
``groups``; when it copies a ``source`` or renders a ``template`` (a path of
its own host; code of another host); when its content is over 1 MiB. A collected file without a mode
gets ``Collect.mode``, the most the collecting host allows, rather than
whatever the umask would give. A symlink planted at the target is never
followed: the file resource walks its path with ``O_NOFOLLOW``.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from ..graph.model import Collect
from ..resources.base import Resource
from ..resources.file import File
from ..types import NAME_MAX, PATH_MAX
from .codec import quote, safe_message

#: the largest content a collected file may have, in bytes
MAX_CONTENT = 1 << 20
_MODE_RE = re.compile(r"^0?[0-7]{3,4}$")


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a collected resource is not applied here (shown to people as is)."""

    reason: str


def collected_name(name: str, host: str) -> str:
    """The local vertex name of `host`'s export `name`: ``name@host``."""
    return f"{name}@{host}"


def confine(spec: Collect, host: str, res: Resource) -> Resource | Refused:
    """`res`, exported by `host`, as a local resource within `spec`, or why not."""
    if res.kind != spec.kind:
        return Refused(f"its kind {res.kind!r} is not the {spec.kind!r} collected here")
    if isinstance(res, File):
        return _confine_file(spec, host, res)
    return Refused(f"the kind {res.kind!r} cannot be collected (no confinement rule)")


def _confine_file(spec: Collect, host: str, res: File) -> File | Refused:
    directory = _pattern_dir(spec.pattern)
    if directory is None:
        return Refused(f"the collect pattern {quote(spec.pattern)} is not an absolute directory")
    target = res.target
    why = _path_problem(target, directory)
    if why:
        return Refused(why)
    base = target.rsplit("/", 1)[-1]
    path = directory + base
    if posixpath.normpath(path) != path or posixpath.dirname(path) + "/" != directory:
        return Refused(f"its path {quote(target)} leaves {directory}")  # defence in depth
    if len(path.encode("utf-8", "surrogateescape")) >= PATH_MAX:
        return Refused(f"its path would be longer than {PATH_MAX - 1} bytes in {directory}")
    mode = spec.mode if res.mode is None else res.mode
    why = _mode_problem(mode, spec.mode)
    if why:
        return Refused(why)
    for what, value, allowed in (
        ("owner", res.owner, spec.owners),
        ("group", res.group, spec.groups),
    ):
        if value is not None and value not in allowed:
            listed = ", ".join(allowed) if allowed else "none"
            return Refused(f"its {what} {quote(value)} is not allowed here (allowed: {listed})")
    if res.source is not None:  # and reading a path here for another host is a disclosure
        return Refused(f"it copies a source file ({quote(res.source)}): a path on its own host")
    if res.fragments is not None:  # the same: paths on its own host, read here
        return Refused(
            f"it is built from fragments ({quote(res.fragments[0])}...): paths on its own host"
        )
    if res.recurse or res.purge:
        return Refused("it copies a directory tree (recurse): paths on its own host")
    if res.template is not None:
        # Rendering would run the other host's code here: sandboxed, but not
        # bounded in time or memory. A pymgmt exporter renders it and exports
        # content (File.exported_form); a template arrives only from elsewhere.
        return Refused("it has a template (another host's template code is not run here)")
    if res.content is not None:
        size = len(res.content.encode("utf-8", "surrogateescape"))
        if size > MAX_CONTENT:
            return Refused(f"its content is {size:,} bytes, more than {MAX_CONTENT:,}")
    local = File(
        name=collected_name(res.name, host),
        path=path,
        content=res.content,
        source=None,
        fragments=None,
        recurse=False,
        purge=False,
        force=False,
        template=None,
        show_diff=res.show_diff,
        state=res.state,
        mode=mode,
        owner=res.owner,
        group=res.group,
    )
    for fname, msg in local.problems():
        return Refused(f"its {fname} is invalid: {safe_message(local, fname, msg)}")
    return local


def _pattern_dir(pattern: str) -> str | None:
    """The pattern as a normalised directory ending in ``/``, or None if unusable."""
    if not pattern.startswith("/") or "\0" in pattern:
        return None
    norm = posixpath.normpath(pattern)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    return norm if norm == "/" else norm + "/"


def _path_problem(target: str, directory: str) -> str | None:
    """Why the exported path cannot give a base name inside `directory`, or None."""
    shown = quote(target)
    if "\0" in target:
        return f"its path {shown} contains a NUL character"
    if not target.startswith("/"):
        return f"its path {shown} is not absolute"
    parts = target.split("/")
    if ".." in parts:
        return f"its path {shown} leaves {directory}"
    if "." in parts or "" in parts[1:-1]:
        return f"its path {shown} is not normalised"
    base = parts[-1]
    if target.endswith("/"):
        return f"its path {shown} is a directory; only files are collected"
    if base in ("", ".", ".."):
        return f"its path {shown} has no usable base name"
    if len(base.encode("utf-8", "surrogateescape")) > NAME_MAX:
        return f"its base name is longer than {NAME_MAX} bytes"
    if not base.isprintable():
        # a file name that rewrites the terminal of whoever lists the directory
        return f"its base name {quote(base)} has control characters"
    return None


def _mode_problem(mode: str, allowed: str) -> str | None:
    if not _MODE_RE.fullmatch(mode):
        return f"its mode {quote(mode)} is not an octal mode such as '0644'"
    bits = int(mode, 8)
    if bits & 0o7000:
        return f"its mode {mode} has the setuid, setgid or sticky bit"
    cap = int(allowed, 8) if _MODE_RE.fullmatch(allowed) else 0o644
    if bits & ~cap:
        return f"its mode {mode} is more permissive than the {cap:04o} allowed here"
    return None
