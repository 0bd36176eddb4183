"""`pymgmt cluster status`'s text, from a `Status` (the cluster itself: tests/cluster)."""

from __future__ import annotations

from pymgmt.cli.cluster import MemberRow, Status, render


def test_status_text_never_prints_a_members_urls_raw() -> None:
    # A member's client URLs are what its etcd published about itself, through
    # raft, unchecked by the others: another host's data, to be shown safely.
    hostile = "http://10.0.0.2:2379\x1b]0;owned\x07\x1b[2J"
    status = Status(
        endpoints=["http://10.0.0.1:2379"],
        ideal_size=3,
        leader="h1",
        members=[
            MemberRow("h1", "1", "voting", ["http://10.0.0.1:2379"], [], True),
            MemberRow("h2", "2", "voting", [hostile, "http://10.0.0.3:2379"], [], True),
            MemberRow("h3", "3", "voting", ["http://h\u202e3:2379"], [], False),
        ],
    )
    text = render(status)
    assert text.isascii(), text
    assert all(c.isprintable() or c == "\n" for c in text), repr(text)
    assert "http://10.0.0.1:2379" in text and "http://10.0.0.3:2379" in text
    assert text.count("(not a URL)") == 2, text
