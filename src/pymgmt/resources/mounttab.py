"""The two mount tables the `mount` kind reads: /etc/fstab and /proc/self/mountinfo.

Pure functions (text in, values out) so the parsing and the fstab edit are
table-tested without a mount. Both files escape the characters that would
break their whitespace-separated fields as three octal digits (a space in a
mount point is ``\\040``); `decode` and `encode` do that, for any byte.

An fstab is edited as lines: only the lines of the mount point being
managed are replaced or dropped; every other line (comments, blank lines,
odd spacing) is kept byte for byte.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_OCTAL = re.compile(rb"\\([0-7]{3})")
#: bytes that cannot appear raw in a field of either file: the kernel escapes
#: space, tab, newline, backslash and '#'; fstab readers (and `parse_entry`)
#: also split at a carriage return, vertical tab or form feed, so every
#: control byte is escaped (libmount undoes any ``\ooo``)
_UNSAFE = frozenset(b" \\#\x7f" + bytes(range(0x20)))


#: words that make an option's value a secret: cifs' ``password=``,
#: ``password2=`` and ``pass=``, ceph's ``secret=``, ecryptfs' ``key=`` (its
#: ``passphrase_passwd=``), and any ``*token*`` or ``*pwd*`` option
SECRET_WORDS = ("pass", "pwd", "secret", "token", "key")
#: an option that names the *file* holding a secret (cifs' ``credentials=``,
#: ceph's ``secretfile=``, s3fs' ``passwd_file=``) is the safe way: not secret
_NAMES_A_FILE = ("file", "credentials", "_stdin")
#: an option ``name=value`` where a list of options, or an fstab field, may start
_OPTION = re.compile(r"(?<![^\s,])([^\s,=]+)=([^\s,]*)")


def secret_option(name: str) -> bool:
    """Whether option `name` carries a secret as its value (`SECRET_WORDS`)."""
    low = name.lower()
    return any(w in low for w in SECRET_WORDS) and not low.endswith(_NAMES_A_FILE)


def masked(text: str, mark: str) -> str:
    """`text` (options, fstab lines, a diff of them) with every secret option's value as `mark`.

    By name, not by value: an fstab line written by hand, or the line of a
    password since changed in the graph, holds a secret this process never
    saw (the redaction registry only knows the values it was given).
    """
    if "=" not in text:
        return text

    def one(m: re.Match[str]) -> str:
        return f"{m[1]}={mark}" if m[2] and secret_option(m[1]) else m[0]

    return _OPTION.sub(one, text)


def decode(field: bytes) -> str:
    """A field of fstab or mountinfo with its ``\\ooo`` escapes undone (bytes kept exact)."""
    raw = _OCTAL.sub(lambda m: bytes([int(m.group(1), 8) & 0xFF]), field)
    return raw.decode("utf-8", "surrogateescape")


def encode(value: str) -> bytes:
    """`value` as an fstab field: space, backslash, '#' and control bytes as ``\\ooo``."""
    raw = value.encode("utf-8", "surrogateescape")
    return b"".join(b"\\%03o" % b if b in _UNSAFE else bytes([b]) for b in raw)


@dataclass(frozen=True, slots=True)
class Mounted:
    """One line of /proc/self/mountinfo: a filesystem mounted at a point."""

    point: str
    fstype: str
    source: str
    #: the per-mount options (ro/rw, nosuid, ...)
    options: tuple[str, ...]
    #: the path inside its filesystem that is mounted here ("/" unless a bind mount)
    root: str


def parse_mountinfo(text: bytes) -> list[Mounted]:
    """The mounts of a mountinfo file, in its order (a later one covers an earlier one).

    Format (proc(5)): ``id parent major:minor root point options
    [optional fields...] - fstype source superoptions``.
    """
    out: list[Mounted] = []
    for line in text.splitlines():
        fields = line.split(b" ")
        try:
            sep = fields.index(b"-", 6)
            fstype, source = fields[sep + 1], fields[sep + 2]
        except (ValueError, IndexError):
            continue  # not a mount line: the kernel never writes one
        out.append(
            Mounted(
                point=decode(fields[4]),
                fstype=decode(fstype),
                source=decode(source),
                options=tuple(decode(fields[5]).split(",")),
                root=decode(fields[3]),
            )
        )
    return out


def mounted_at(mounts: list[Mounted], point: str) -> list[Mounted]:
    """The mounts at `point`, the visible (topmost) one last."""
    return [m for m in mounts if m.point == point]


@dataclass(frozen=True, slots=True)
class Entry:
    """One fstab entry (fstab(5)): what to mount where, how, dump and fsck order."""

    device: str
    point: str
    fstype: str
    options: str
    freq: int = 0
    passno: int = 0

    def line(self) -> bytes:
        """The entry as an fstab line, fields separated by a tab, with its newline."""
        fields = [encode(self.device), encode(self.point), encode(self.fstype)]
        fields += [encode(self.options), b"%d" % self.freq, b"%d" % self.passno]
        return b"\t".join(fields) + b"\n"


def parse_entry(line: bytes) -> Entry | None:
    """The entry on one fstab line; None for a comment, a blank or a malformed line."""
    fields = line.split()
    if len(fields) < 4 or fields[0].startswith(b"#"):
        return None
    try:
        freq = int(fields[4]) if len(fields) > 4 else 0
        passno = int(fields[5]) if len(fields) > 5 else 0
    except ValueError:
        return None
    device, point, fstype, options = (decode(f) for f in fields[:4])
    return Entry(device, point, fstype, options, freq, passno)


def entries_for(fstab: bytes, point: str) -> list[Entry]:
    """The fstab entries of mount point `point`, in file order."""
    found = (parse_entry(line) for line in fstab.splitlines())
    return [e for e in found if e is not None and e.point == point]


def with_entry(fstab: bytes, point: str, entry: Entry | None) -> bytes:
    """`fstab` with `point`'s entries replaced by `entry` (None: removed).

    The first line of `point` is replaced in place and any further one is
    dropped (two entries for one point would mount twice at boot); with no
    line yet, `entry` is appended (after a newline, if the file lacked its
    last one). Every other line stays byte for byte.
    """
    out: list[bytes] = []
    placed = entry is None
    for line in fstab.splitlines(keepends=True):
        found = parse_entry(line)
        if found is None or found.point != point:
            out.append(line)
        elif not placed:
            assert entry is not None
            out.append(entry.line())
            placed = True
    if not placed:
        assert entry is not None
        if out and not out[-1].endswith(b"\n"):
            out[-1] += b"\n"
        out.append(entry.line())
    return b"".join(out)
