"""--prometheus-listen: mgmt's HOST:PORT spellings, and which of them stay on this machine."""

from __future__ import annotations

import pytest

from pymgmt.web.address import is_loopback, parse_listen


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("127.0.0.1:9233", ("127.0.0.1", 9233)),
        ("[::1]:9233", ("::1", 9233)),
        (":9233", ("", 9233)),  # Go's spelling of every interface
        ("localhost:0", ("localhost", 0)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
    ],
)
def test_listen_addresses_mgmt_accepts_are_parsed(text, want):
    assert parse_listen(text) == want


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("9233", "expected HOST:PORT"),
        ("::1:9233", "in brackets"),
        ("[127.0.0.1]:9233", "IPv6 addresses only"),
        ("127.0.0.1:", "port number"),
        ("127.0.0.1:65536", "port number"),
        ("127.0.0.1:-1", "port number"),
        ("user@host:9233", "expected HOST:PORT"),
        ("http://127.0.0.1:9233", "in brackets"),
    ],
)
def test_wrong_listen_addresses_say_what_is_wrong(text, why):
    with pytest.raises(ValueError, match=why):
        parse_listen(text)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.1.5", True),
        ("::1", True),
        ("localhost", True),
        ("", False),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("example.org", False),
    ],
)
def test_only_loopback_addresses_count_as_this_machine_only(host, loopback):
    assert is_loopback(host) is loopback
