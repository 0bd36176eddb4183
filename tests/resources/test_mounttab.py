"""The fstab and mountinfo parsing and the fstab edit: pure functions, table tests."""

from __future__ import annotations

import pytest

from pymgmt.resources.mounttab import (
    Entry,
    decode,
    encode,
    entries_for,
    mounted_at,
    parse_mountinfo,
    with_entry,
)

MOUNTINFO = (
    b"22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    b"40 22 0:35 / /mnt/a\\040b rw,nosuid,nodev shared:20 master:3"
    b" - tmpfs my\\040tmp rw,size=4096k\n"
    b"41 40 0:36 / /mnt/a\\040b ro,relatime - tmpfs top ro\n"
    b"42 22 8:1 /srv/data /bound rw - ext4 /dev/sda1 rw\n"
)


def test_mountinfo_fields_are_decoded_and_the_top_mount_comes_last():
    mounts = parse_mountinfo(MOUNTINFO)
    assert len(mounts) == 4
    under, top = mounted_at(mounts, "/mnt/a b")
    assert (under.source, under.fstype, under.options) == (
        "my tmp",
        "tmpfs",
        ("rw", "nosuid", "nodev"),
    )
    assert (top.source, "ro" in top.options) == ("top", True)
    assert mounts[3].root == "/srv/data"


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("/mnt/plain", b"/mnt/plain"),
        ("/mnt/a b", b"/mnt/a\\040b"),
        ("tab\there", b"tab\\011here"),
        ("back\\slash#hash", b"back\\134slash\\043hash"),
        ("caf\u00e9", "caf\u00e9".encode()),
    ],
)
def test_fields_round_trip_through_the_octal_escapes(value, field):
    assert encode(value) == field
    assert decode(field) == value


ENTRY = Entry("tmp", "/mnt/x", "tmpfs", "size=4m", 0, 0)
LINE = b"tmp\t/mnt/x\ttmpfs\tsize=4m\t0\t0\n"


@pytest.mark.parametrize(
    ("before", "entry", "after"),
    [
        # appended, other lines kept
        (b"# c\n/dev/a / ext4 defaults 0 1\n", ENTRY, b"# c\n/dev/a / ext4 defaults 0 1\n" + LINE),
        # a file without its last newline gets one before the new line
        (b"# c", ENTRY, b"# c\n" + LINE),
        (b"", ENTRY, LINE),
        # replaced in place, a second line of the same point dropped
        (
            b"# a\nold /mnt/x tmpfs ro 0 0\n# b\nagain /mnt/x tmpfs rw\n# c\n",
            ENTRY,
            b"# a\n" + LINE + b"# b\n# c\n",
        ),
        # removed; a commented-out line for the point is a comment, kept
        (
            b"#tmp /mnt/x tmpfs x 0 0\ntmp  /mnt/x  tmpfs  x\n  \n",
            None,
            b"#tmp /mnt/x tmpfs x 0 0\n  \n",
        ),
        # no line, nothing to remove: unchanged
        (b"# only\n", None, b"# only\n"),
    ],
)
def test_the_fstab_edit_touches_only_the_points_lines(before, entry, after):
    assert with_entry(before, "/mnt/x", entry) == after


def test_fstab_entries_default_freq_and_passno_and_skip_malformed_lines():
    text = b"tmp /mnt/x tmpfs size=4m\nbad /mnt/x tmpfs opts zero 0\n"
    assert entries_for(text, "/mnt/x") == [Entry("tmp", "/mnt/x", "tmpfs", "size=4m", 0, 0)]
