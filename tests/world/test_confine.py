"""Confinement of collected files: where they land, and every hostile case refused."""

from __future__ import annotations

from typing import Any

import pytest

from pymgmt.graph.model import Collect
from pymgmt.resources.exec import Exec
from pymgmt.resources.file import File
from pymgmt.world.confine import Refused, collected_name, confine

SPEC = Collect(kind="file", pattern="/tmp/mgmtA/", mode="0644", owners=("www",), groups=("web",))


def _file(**kw: Any) -> File:
    kw.setdefault("name", "f3b")
    return File(**kw)


def test_a_collected_file_lands_in_the_pattern_under_its_base_name() -> None:
    got = confine(SPEC, "hostB", _file(path="/x/y/f3b", content="hi\n", mode="0600"))
    assert isinstance(got, File)
    assert got.name == "f3b@hostB" == collected_name("f3b", "hostB")
    assert str(got) == "File[f3b@hostB]"
    assert (got.path, got.content, got.mode, got.state) == (
        "/tmp/mgmtA/f3b",
        "hi\n",
        "0600",
        "exists",
    )
    assert got.problems() == []


def test_the_name_is_the_path_when_there_is_no_path() -> None:
    got = confine(SPEC, "b", File(name="/etc/app/conf"))
    assert isinstance(got, File)
    assert (got.name, got.path, got.mode) == ("/etc/app/conf@b", "/tmp/mgmtA/conf", "0644")


def test_a_pattern_without_a_trailing_slash_is_the_same_directory() -> None:
    got = confine(Collect(kind="file", pattern="/tmp//mgmtA"), "b", _file(path="/q/f"))
    assert isinstance(got, File) and got.path == "/tmp/mgmtA/f"


def test_allowed_owner_and_group_and_absent_state() -> None:
    got = confine(SPEC, "b", _file(path="/q/f", owner="www", group="web", state="absent"))
    assert isinstance(got, File) and (got.owner, got.group, got.state) == ("www", "web", "absent")


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"path": "../../etc/passwd"}, "its path '../../etc/passwd' is not absolute"),
        ({"path": "/x/../../etc/passwd"}, "its path '/x/../../etc/passwd' leaves /tmp/mgmtA/"),
        ({"path": "/x/.."}, "leaves /tmp/mgmtA/"),
        ({"path": "/x/./f"}, "is not normalised"),
        ({"path": "/x//f"}, "is not normalised"),
        ({"path": "/x/y/"}, "is a directory; only files are collected"),
        ({"path": "/"}, "is a directory"),
        ({"path": "/x/."}, "is not normalised"),
        ({"path": "/x/a\0b"}, "contains a NUL"),
        ({"path": "/x/" + "a" * 256}, "base name is longer than 255 bytes"),
        ({"path": "/q/f", "mode": "0666"}, "mode 0666 is more permissive than the 0644"),
        ({"path": "/q/f", "mode": "0755"}, "more permissive"),
        ({"path": "/q/f", "mode": "4644"}, "setuid, setgid or sticky"),
        ({"path": "/q/f", "mode": "2600"}, "setuid, setgid or sticky"),
        ({"path": "/q/f", "mode": "1600"}, "setuid, setgid or sticky"),
        ({"path": "/q/f", "mode": "rwx"}, "not an octal mode"),
        ({"path": "/q/f", "owner": "root"}, "its owner 'root' is not allowed here (allowed: www)"),
        ({"path": "/q/f", "owner": "0"}, "its owner '0' is not allowed"),
        ({"path": "/q/f", "group": "root"}, "its group 'root' is not allowed here (allowed: web)"),
        ({"path": "/q/f", "content": "x" * ((1 << 20) + 1)}, "more than 1,048,576"),
        ({"path": "/q/f", "content": "é" * ((1 << 19) + 1)}, "more than 1,048,576"),
        ({"path": "/q/f", "source": "/etc/shadow"}, "copies a source file ('/etc/shadow')"),
        ({"path": "/q/f", "fragments": ["/etc/shadow"]}, "built from fragments ('/etc/shadow'"),
        ({"path": "/q/f", "purge": True}, "copies a directory tree (recurse)"),
        ({"path": "/q/f", "template": "{{ x }}", "vars": {"x": "1"}}, "has a template"),
    ],
)
def test_hostile_files_are_refused(kw: dict[str, Any], reason: str) -> None:
    got = confine(SPEC, "b", _file(**kw))
    assert isinstance(got, Refused), got
    assert reason in got.reason
    assert len(got.reason) < 200


def test_no_owner_or_group_is_allowed_unless_listed() -> None:
    got = confine(Collect(kind="file", pattern="/tmp/a/"), "b", _file(path="/q/f", owner="www"))
    assert isinstance(got, Refused) and "(allowed: none)" in got.reason


def test_a_stricter_spec_mode_is_the_cap_and_the_default() -> None:
    spec = Collect(kind="file", pattern="/tmp/a/", mode="0600")
    got = confine(spec, "b", _file(path="/q/f"))
    assert isinstance(got, File) and got.mode == "0600"
    assert isinstance(confine(spec, "b", _file(path="/q/f", mode="0640")), Refused)
    assert isinstance(confine(spec, "b", _file(path="/q/f", mode="0400")), File)


def test_other_kinds_are_refused() -> None:
    got = confine(SPEC, "b", Exec(name="x", cmd="rm -rf /"))
    assert isinstance(got, Refused) and "'exec'" in got.reason
    got = confine(Collect(kind="exec", pattern="/tmp/"), "b", Exec(name="x", cmd="true"))
    assert isinstance(got, Refused) and "cannot be collected" in got.reason


def test_a_relative_pattern_is_refused() -> None:
    got = confine(Collect(kind="file", pattern="tmp/a/"), "b", _file(path="/q/f"))
    assert isinstance(got, Refused) and "not an absolute directory" in got.reason
