"""mount: a filesystem mounted at a point and listed in /etc/fstab, or neither.

mgmt's ``mount`` kind and params (``state``, ``device``, ``type``,
``options`` as a map with ``{defaults: ""}`` by default, ``freq``,
``passno``; the name is the mount point). Two places make it true:

* **/etc/fstab** holds exactly one entry for the point (so it is mounted
  again at boot). mgmt rewrites the whole file from its parsed entries;
  here only the point's own line is replaced, added or removed, and every
  other line, comments included, is kept byte for byte. The file is
  replaced durably (temporary file, fsync, rename, directory fsync),
  keeping its mode and owner, read and written through a safe walk of
  /etc (never through a symlink).
* **the mount table**: the visible mount at the point is ``device``
  with filesystem ``type``. mgmt mounts by restarting systemd's
  local-fs.target after a daemon-reload (so it needs systemd); this kind
  runs ``mount -t TYPE -o OPTIONS -- DEVICE POINT`` and ``umount -- POINT``
  (argv lists, no shell, with a deadline, off the event loop), which works
  with or without systemd and leaves the rest of local-fs.target alone.

``state: absent`` unmounts whatever is mounted at the point and removes
its fstab entries. With ``state: exists``, a *different* filesystem
already mounted at the point is an error, never unmounted: the agent only
takes down a mount it was asked to. Options are compared in fstab; in the
mount table only ``ro``/``rw`` is (the kernel rewrites the others: ``size=4m``
shows as ``size=4096k``). A mismatch of either is a remount with the wanted
options (Puppet's ``remounts``): a graph edit of ``options`` reaches the
mounted filesystem, not only the next boot. The remount comes before the
fstab write, so an agent killed between the two remounts again next time. A bind mount
(``bind``/``rbind`` in the options) shows the filesystem's device, not the
bound directory, so only its presence is checked.

Some options carry a secret as their value: cifs' ``password=`` and
``pass=``, ceph's ``secret=``, and any option whose name holds ``pass``,
``pwd``, ``secret``, ``token`` or ``key`` (`mounttab.SECRET_WORDS`; not one
naming the file that holds it, ``credentials=``, ``secretfile=``). Such a
value is registered with the redaction registry as soon as the resource is
declared, and every text this kind makes of fstab (the change's lines, its
diff, the params shown by the status socket) shows it as ``<redacted>`` by
the option's name, so a password written by hand into fstab, or the one a
graph edit just replaced, is hidden too. It still goes into /etc/fstab,
which every user may read, and into mount(8)'s argv: validation warns, and
says that ``credentials=FILE`` (a root-only file) is the safe way.

The watch is the mount table's own change signal (`pymgmt.events.mountinfo`)
and inotify on /etc/fstab: an ``umount`` or an edit of fstab behind the
agent's back is repaired at once.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import threading
from collections.abc import Callable, Generator
from typing import Literal

from ..children import ask
from ..errors import ResourceError
from ..events.mountinfo import MOUNTINFO, watch_mount_table
from ..fsutil import atomic_write_at, opened_dir
from ..redaction import MARK, register
from ..safepath import read_fd
from ..traits import UID, Want
from ..types import path_problem
from . import mounttab
from .base import CONVERGED, Change, Context, Plan, Resource, off_loop, param, watch_subscribed
from .mounttab import Entry, Mounted

#: the file of boot-time mounts (its directory and name: it is walked safely)
FSTAB_DIR, FSTAB_NAME = "/etc", "fstab"
FSTAB = f"{FSTAB_DIR}/{FSTAB_NAME}"
#: where mount(8) and umount(8) are looked up (the system's, whatever the agent's PATH)
TOOL_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
#: seconds a mount or umount may take (a dead NFS server must not hang the agent)
TOOL_DEADLINE = 120
_FSTYPE = re.compile(r"[a-z0-9][a-z0-9._+-]*\Z")
_TAGS = ("UUID", "LABEL", "PARTUUID", "PARTLABEL")
_BIND = frozenset({"bind", "rbind"})
#: one fstab edit at a time in this process: mounts of one graph apply in
#: parallel, and each edit is a read-modify-write of the one file (through
#: one temporary name): two at once would lose a line or the temporary file
_FSTAB_EDIT = threading.Lock()


class Mount(Resource, kind="mount"):
    """A filesystem mounted at the point named, with its /etc/fstab entry; or neither.

    ``state: exists`` writes the point's fstab entry (other lines kept byte
    for byte) and mounts ``device`` there with mount(8); ``absent`` unmounts
    it and removes the entry. The mount point directory must exist (manage
    it with a `file`, which AutoEdges put first). Watched through the mount
    table's change signal and /etc/fstab: an ``umount`` behind the agent's
    back is repaired at once.
    """

    example = """\
graph: scratch
resources:
  file:
  - name: /srv/scratch/
  mount:
  - name: /srv/scratch
    device: scratch
    type: tmpfs
    options:
      size: 64m
      mode: "1777"
      nosuid: ""
"""

    state: Literal["exists", "absent"] = param(
        "exists", doc="exists (mounted, in fstab), or absent (unmounted, not in fstab)"
    )
    device: str = param(
        "", doc="what to mount: a device path, UUID=..., LABEL=..., or a name (tmpfs)"
    )
    type: str = param("", doc="the filesystem type, as mount -t takes it (ext4, tmpfs, nfs)")
    options: dict[str, str] = param(
        default_factory=lambda: {"defaults": ""},
        doc="mount options, option -> value ('' for a flag such as ro or nosuid); a"
        " password=/secret= value is never shown, but fstab is world-readable: prefer"
        " credentials=FILE",
    )
    freq: int = param(0, doc="fstab's dump frequency (fifth field)")
    passno: int = param(0, doc="fstab's fsck order (sixth field): 0 none, 1 root, 2 others")

    def __post_init__(self) -> None:
        # Registered when declared, not at init as secret params are: a graph
        # that is refused, or a plan made before any init, is output too.
        for value in self._secret_values():
            register(value)

    def _secret_values(self) -> list[str]:
        return [v for k, v in self.options.items() if v and mounttab.secret_option(k)]

    def redact(self, field_name: str, value: object) -> object:
        """The options with each secret's value as ``<redacted>`` (status socket, web, live)."""
        if field_name == "options" and isinstance(value, dict):
            return {k: MARK if v and mounttab.secret_option(k) else v for k, v in value.items()}
        return super().redact(field_name, value)

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if bad := path_problem(self.name):
            out.append(("name", bad))
        elif os.path.normpath(self.name) != self.name or self.name.startswith("//"):
            why = "must be a normal path (no '//', '.', '..' or trailing '/')"
            out.append(("name", f"{why}, got {self.name!r}"))
        elif self.name == "/":
            # the root filesystem is the system's own: unmounting it, or dropping
            # its fstab line, would take the machine down at its next boot
            out.append(("name", "the root filesystem '/' is not managed by a mount resource"))
        if self.state == "absent":
            return out
        if not self.device:
            out.append(("device", "required with state: exists"))
        elif _has_control(self.device):
            out.append(("device", "must not contain control characters (newline, NUL...)"))
        if not self.type:
            out.append(("type", "required with state: exists (tmpfs, ext4, nfs, ...)"))
        elif not _FSTYPE.match(self.type):
            out.append(("type", f"not a filesystem type: {self.type!r}"))
        for key, value in self.options.items():
            if not key or any(c in key for c in ",=") or _has_control(key) or not key.isprintable():
                out.append(("options", f"not an option name: {key!r}"))
            elif "," in value or _has_control(value):
                why = "must not contain ',' or control characters (newline, tab...)"
                out.append(("options", f"the value of {key!r} {why}"))
        for field in ("freq", "passno"):
            if getattr(self, field) < 0:
                out.append((field, f"must be 0 or more, got {getattr(self, field)}"))
        return out

    def warnings(self) -> list[tuple[str, str]]:
        given = [f for f in ("device", "type") if getattr(self, f)]
        if self.state == "absent" and given:
            return [(given[0], "ignored: the mount is to be absent")]
        return [
            (
                "options",
                f"the value of {key!r} is a secret, and {FSTAB} is readable by every user "
                "(and mount's command line by every process): keep it in a file only root "
                "may read and give credentials=FILE (cifs; ceph: secretfile=FILE)",
            )
            for key, value in self.options.items()
            if value and mounttab.secret_option(key)
        ]

    def manages(self) -> list[str]:
        return [self.name]

    # -- AutoEdges: the mount point's directory and the nearest mount above it first --------

    def uids(self) -> list[UID]:
        return [UID("mount", self.name)]

    def wants(self) -> Generator[Want, bool, None]:
        """The point's directory, then the nearest managed mount above it (Puppet's rule).

        Files under a mount point are not ordered after the mount (as in mgmt
        and Puppet): give the edge when a file must land in the mounted
        filesystem.
        """
        if self.state != "exists":
            return
        yield Want((UID("file", self.name),))
        parts = [p for p in self.name.split("/") if p]
        for depth in range(len(parts) - 1, -1, -1):
            if (yield Want((UID("mount", "/" + "/".join(parts[:depth])),))):
                return

    # -- the wanted state ------------------------------------------------------------------

    def option_string(self) -> str:
        """The options as fstab and mount -o take them: ``a,b=c``."""
        parts = [k if v == "" else f"{k}={v}" for k, v in self.options.items()]
        return ",".join(parts) or "defaults"

    def entry(self) -> Entry:
        opts = self.option_string()
        return Entry(self.device, self.name, self.type, opts, self.freq, self.passno)

    # -- watch / check / apply -------------------------------------------------------------

    def subscribe(self, ctx: Context) -> Callable[[], None]:
        """The mount table's signal and fstab's inotify watch (traits.Subscribing)."""
        stop = watch_mount_table(ctx.event)
        sub = ctx.inotify.subscribe(FSTAB, ctx.event)

        def unsubscribe() -> None:
            ctx.inotify.unsubscribe(sub)
            stop()

        return unsubscribe

    async def watch(self, ctx: Context) -> None:
        await watch_subscribed(self.subscribe, ctx)

    async def check(self) -> Plan:
        fstab, mounted = await off_loop(self._observe)
        entries = mounttab.entries_for(fstab, self.name)
        changes: list[Change] = []
        if self.state == "absent":
            if mounted:
                top = mounted[-1]
                changes.append(Change("mounted", f"{top.source} ({top.fstype})", None))
            if entries:
                diff = _fstab_diff(fstab, mounttab.with_entry(fstab, self.name, None))
                changes.append(Change("fstab", _lines(entries), None, diff))
            return Plan(tuple(changes))
        want = self.entry()
        if entries != [want]:
            diff = _fstab_diff(fstab, mounttab.with_entry(fstab, self.name, want))
            changes.append(Change("fstab", _lines(entries) or None, _lines([want]), diff))
        if not mounted:
            changes.append(Change("mounted", None, f"{self.device} ({self.type})"))
            return Plan(tuple(changes))
        top = mounted[-1]
        if not self._is_ours(top):
            raise ResourceError(
                f"{top.source} ({top.fstype}) is mounted at {self.name}, not {self.device} "
                f"({self.type}): unmount it first (the agent never unmounts what it was not "
                "asked to)"
            )
        want_ro = "ro" in self.options
        if entries and entries[0].options != want.options:
            # the mount was made with the options fstab held: they changed, so remount
            old, new = (_shown(o) for o in (entries[0].options, want.options))
            changes.append(Change("options", old, new))
        elif ("ro" in top.options) != want_ro:
            have = "ro" if "ro" in top.options else "rw"
            changes.append(Change("options", have, "ro" if want_ro else "rw"))
        return Plan(tuple(changes)) if changes else CONVERGED

    def _observe(self) -> tuple[bytes, list[Mounted]]:
        """fstab's bytes and the mounts at our point (blocking: run off the loop)."""
        with open(MOUNTINFO, "rb") as f:
            mounted = mounttab.mounted_at(mounttab.parse_mountinfo(f.read()), self.name)
        with opened_dir(FSTAB_DIR) as dfd:
            data, _st = _read_fstab(dfd)
        return data, mounted

    def _is_ours(self, m: Mounted) -> bool:
        """Whether mount `m` is `device` with `type` (a bind mount: any is)."""
        if _BIND & set(self.options):
            return True
        return m.fstype == self.type and _same_source(self.device, m.source)

    async def apply(self, plan: Plan) -> None:
        fields = {c.field for c in plan.changes}
        if self.state == "absent":
            if "mounted" in fields:
                await self._unmount_all()
            if "fstab" in fields:
                await off_loop(_write_fstab, self.name, None)
            return
        if "options" in fields:
            # before fstab: killed in between, the next check still sees fstab's old
            # options and remounts again; fstab is not merged in (only ours count)
            remount = ["mount", "--options-mode", "ignore", "-o", f"remount,{self.option_string()}"]
            await _run([*remount, "--", self.name])
        if "fstab" in fields:
            await off_loop(_write_fstab, self.name, self.entry())
        if "mounted" in fields:
            argv = ["mount", "-t", self.type, "-o", self.option_string(), "--", self.device]
            await _run([*argv, self.name])

    async def _unmount_all(self) -> None:
        """Unmount the point until nothing is mounted there (mounts can be stacked)."""
        _fstab, mounted = await off_loop(self._observe)
        for _ in mounted:
            await _run(["umount", "--", self.name])
        _fstab, left = await off_loop(self._observe)
        if left:
            raise ResourceError(f"{self.name} is still mounted after umount ({left[-1].source})")


def _has_control(text: str) -> bool:
    """Whether `text` holds a control character (fstab readers split fields at some)."""
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def _shown(text: str) -> str:
    """`text` (options, fstab lines) as a report may show it: no secret option's value."""
    return mounttab.masked(text, MARK)


def _lines(entries: list[Entry]) -> str:
    """Entries as shown in a report: fields separated by a space (they hold none raw)."""
    text = b"".join(e.line() for e in entries).decode("utf-8", "surrogateescape")
    return _shown(text.rstrip("\n").replace("\t", " "))


def _fstab_diff(old: bytes, new: bytes) -> str:
    """The unified diff of an fstab edit, for noop and the change report (no secret in it)."""
    a, b = (_shown(t.decode("utf-8", "replace")).splitlines(keepends=True) for t in (old, new))
    lines = difflib.unified_diff(a, b, FSTAB, FSTAB, n=1)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _same_source(device: str, source: str) -> bool:
    """Whether the mount table's `source` is `device` (a tag or a symlink resolved).

    ``UUID=...`` and friends are the /dev/disk/by-* links; a path is compared
    by what it resolves to; a loop device is compared by its backing file
    (an image file mounted with ``-o loop``).
    """
    if device == source:
        return True
    tag, _, value = device.partition("=")
    if tag in _TAGS and value:
        device = f"/dev/disk/by-{tag.lower()}/{value}"
    if not device.startswith("/") or not source.startswith("/"):
        return False
    want = os.path.realpath(device)
    if want == os.path.realpath(source):
        return True
    loop = os.path.basename(source)
    if loop.startswith("loop"):
        try:
            with open(f"/sys/block/{loop}/loop/backing_file") as f:
                return f.read().strip() == want
        except OSError:
            return False
    return False


def _read_fstab(dfd: int) -> tuple[bytes, os.stat_result | None]:
    """fstab's bytes and its stat in /etc's fd (absent: empty, None); never a symlink."""
    try:
        fd = os.open(FSTAB_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    except FileNotFoundError:
        return b"", None
    except OSError as e:
        raise ResourceError(f"cannot read {FSTAB}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ResourceError(f"{FSTAB} is not a regular file")
        return read_fd(fd), st
    finally:
        os.close(fd)


def _write_fstab(point: str, entry: Entry | None) -> None:
    """Replace `point`'s fstab entries by `entry` (None: remove), durably, mode and owner kept."""
    with _FSTAB_EDIT, opened_dir(FSTAB_DIR) as dfd:
        old, st = _read_fstab(dfd)
        new = mounttab.with_entry(old, point, entry)
        if new == old:
            return
        if st is None:
            atomic_write_at(dfd, FSTAB_NAME, new, 0o644, 0, 0)
        else:
            atomic_write_at(dfd, FSTAB_NAME, new, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)


async def _run(argv: list[str]) -> None:
    """Run mount(8) or umount(8) to its end; ResourceError with its own message if it fails."""
    env = {"PATH": TOOL_PATH, "LC_ALL": "C"}
    try:
        done = await ask(argv, env=env, timeout=TOOL_DEADLINE)
    except FileNotFoundError:
        raise ResourceError(f"{argv[0]} is not installed (util-linux's 'mount' package)") from None
    except TimeoutError:
        raise ResourceError(f"{argv[0]} did not finish within {TOOL_DEADLINE} s") from None
    if done.code != 0:
        said = (done.err or done.out).decode(errors="replace").strip().splitlines()
        tail = "; ".join(said[-3:]) or "no message"
        raise ResourceError(f"{argv[0]} exited with status {done.code}: {tail}")
