"""The kinds of issue 15 under generated input: refused, or safe to write.

Through the YAML frontend (`parse`), any text in any string param of user,
group, mount, cron, hostname and kv either is an `InputError` or yields a
resource whose system-facing form cannot carry more than it says: one
/etc/passwd field, one fstab line of six fields that reads back as the
same entry, a timer unit file with no setting the params did not ask for,
a kv key inside its prefix.
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pymgmt.errors import InputError
from pymgmt.frontends.yamlgraph import parse
from pymgmt.resources import mounttab
from pymgmt.resources.base import Resource
from pymgmt.resources.cron import Cron
from pymgmt.resources.mount import Mount
from pymgmt.world.base import keys

#: any text YAML can carry, biased towards the separators of the files written
_NASTY = st.sampled_from([*":,=#\\/ \t\n\r\x0b\x0c\0%@.;\"'-", "\u2028", "\xa0", "é"])
_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufeff") | _NASTY,
    min_size=0,
    max_size=16,
)


def _parsed(kind: str, res: dict[str, Any]) -> Resource | None:
    """The resource the frontend makes of `res`, or None when it is refused as input."""
    text = yaml.safe_dump({"graph": "fuzz", "resources": {kind: [res]}}, allow_unicode=True)
    try:
        g = parse(text, "fuzz.yaml")
    except InputError:
        return None
    (vertex,) = g.vertices.values()
    return vertex


@settings(max_examples=300, deadline=None, database=None)
@given(name=_TEXT, home=_TEXT, shell=_TEXT, comment=_TEXT, group=_TEXT)
def test_an_accepted_user_is_one_passwd_line(name, home, shell, comment, group):
    res = {"name": name, "home": "/" + home, "shell": "/" + shell, "comment": comment}
    user = _parsed("user", {**res, "group": group})
    if user is None:
        return
    for value in (user.name, user.home, user.shell, user.comment, user.group):
        assert not set(value) & set(":\n\0"), user


@settings(max_examples=300, deadline=None, database=None)
@given(point=_TEXT, device=_TEXT, key=_TEXT, value=_TEXT)
def test_an_accepted_mount_is_one_fstab_line_that_reads_back(point, device, key, value):
    res = {"name": "/mnt/" + point, "device": device, "type": "tmpfs", "options": {key: value}}
    mount = _parsed("mount", res)
    if mount is None:
        return
    assert isinstance(mount, Mount)
    line = mount.entry().line()
    assert line.count(b"\n") == 1 and len(line.split()) == 6, line
    assert mounttab.parse_entry(line) == mount.entry(), line
    assert mount.option_string().count(",") == 0  # one option: nothing smuggled


_TIMER_KEYS = {"OnCalendar", "OnActiveSec", "AccuracySec", "RandomizedDelaySec", "Unit"}


@settings(max_examples=300, deadline=None, database=None)
@given(time=_TEXT, accuracy=_TEXT, description=_TEXT, unit=_TEXT)
def test_an_accepted_cron_writes_only_the_settings_asked_for(time, accuracy, description, unit):
    res = {"name": "job", "trigger": "OnCalendar", "time": time, "accuracy_sec": accuracy}
    cron = _parsed("cron", {**res, "description": description, "unit": unit})
    if cron is None:
        return
    assert isinstance(cron, Cron)
    lines = cron.content().decode().split("\n")
    settings_ = [line.split("=", 1)[0] for line in lines if "=" in line]
    assert settings_.count("OnCalendar") == 1, lines
    assert settings_.count("Description") == (1 if description else 0), lines
    assert set(settings_) <= _TIMER_KEYS | {"Description", "WantedBy"}, lines
    assert len([s for s in lines if s.startswith("[")]) == 3, lines


@settings(max_examples=200, deadline=None, database=None)
@given(name=_TEXT, pretty=_TEXT)
def test_an_accepted_hostname_is_ascii_labels(name, pretty):
    host = _parsed("hostname", {"name": name or "x", "pretty_hostname": pretty})
    if host is None:
        return
    for field, value in host.wanted().items():
        if field != "pretty_hostname":
            assert value.isascii() and all(label for label in value.split(".")), value
        assert "\n" not in value and "\0" not in value


@settings(max_examples=200, deadline=None, database=None)
@given(key=_TEXT)
def test_an_accepted_kv_key_stays_in_its_prefix(key):
    kv = _parsed("kv", {"name": key, "value": "v"})
    if kv is None:
        return
    full = keys.kv(kv.name)
    assert full.startswith(keys.KV) and ".." not in full.split("/"), full
    assert not any(ord(c) < 0x20 for c in full), full
