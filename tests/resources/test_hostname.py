"""hostname: what graph validation refuses or warns about (no D-Bus needed).

The kind against a real systemd-hostnamed is tests/system/test_hostnamed.py.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from helpers import PYMGMT, write_graph

from pymgmt.resources.hostname import Hostname


def validate(tmp_path, res: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    g = tmp_path / "graph.yaml"
    write_graph(g, {"graph": "hn", "resources": {"hostname": [res]}})
    return subprocess.run(
        [*PYMGMT, "validate", str(g)], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    ("res", "message"),
    [
        ({"name": "web 1"}, "name: must be letters, digits and hyphens"),
        ({"name": "x", "hostname": "a..b"}, "hostname: must be letters"),
        ({"name": "x", "static_hostname": "-web"}, "static_hostname: must be letters"),
        ({"name": "x", "transient_hostname": "a_b"}, "transient_hostname: must be letters"),
        ({"name": "x", "hostname": "a" * 65}, "hostname: has at most 64 characters"),
        ({"name": "x", "pretty_hostname": "a\tb"}, "pretty_hostname: must not contain control"),
        (
            {"name": "x", "static_hostname": "", "transient_hostname": "", "pretty_hostname": ""},
            "all three names are unmanaged",
        ),
    ],
)
def test_bad_names_are_input_errors(tmp_path, res, message):
    proc = validate(tmp_path, res)
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr


def test_a_pretty_name_may_be_any_text_and_the_others_then_unmanaged(tmp_path):
    res = {"name": "x", "hostname": "", "static_hostname": "", "transient_hostname": ""}
    proc = validate(tmp_path, {**res, "pretty_hostname": "Caf\u00e9 d'\u00e9t\u00e9 #2 \U0001f600"})
    assert proc.returncode == 0, proc.stderr


def test_the_name_is_the_default_of_all_three_and_empty_is_unmanaged():
    assert Hostname(name="web1").wanted() == {
        "static_hostname": "web1",
        "transient_hostname": "web1",
        "pretty_hostname": "web1",
    }
    h = Hostname(name="r", hostname="db2", pretty_hostname="", static_hostname="db-static")
    assert h.wanted() == {"static_hostname": "db-static", "transient_hostname": "db2"}
    assert h.manages() == ["static hostname", "transient hostname"]


def test_a_transient_name_other_than_the_static_one_is_warned_about(tmp_path):
    proc = validate(tmp_path, {"name": "a", "transient_hostname": "b"})
    assert proc.returncode == 0, proc.stderr
    assert "transient_hostname: differs from the static hostname" in proc.stderr
