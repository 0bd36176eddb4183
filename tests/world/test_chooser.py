"""The leader's pure decision (world/chooser.py): one membership change at a time."""

from __future__ import annotations

from pymgmt.world.chooser import (
    Nominate,
    Promote,
    Remove,
    Unnominate,
    View,
    absent,
    choose,
    track,
    unstarted,
)
from pymgmt.world.etcd.members import Member


def peer(host: str) -> tuple[str, ...]:
    return (f"http://10.0.0.{ord(host[-1]) - ord('a') + 1}:2380",)


def member(host: str, mid: int, *, learner: bool = False, started: bool = True) -> Member:
    return Member(
        id=mid,
        name=host if started else "",
        peer_urls=peer(host),
        client_urls=(f"http://{host}:2379",) if started else (),
        is_learner=learner,
    )


def view(members, volunteers, *, ideal=5, me="a", nominated=(), **kw) -> View:
    return View(
        me=me,
        ideal=ideal,
        members=tuple(members),
        volunteers={h: peer(h) for h in volunteers},
        nominated={h: peer(h) for h in nominated},
        **kw,
    )


def test_a_cluster_below_its_ideal_size_nominates_the_first_volunteer_in_sorted_order():
    v = view([member("a", 1)], ["a", "d", "c", "b"])
    assert choose(v) == Nominate("b", peer("b"))


def test_a_cluster_at_its_ideal_size_does_nothing_and_the_rest_stay_clients():
    members = [member(h, i) for i, h in enumerate("abc", 1)]
    assert choose(view(members, "abcdef", ideal=3, nominated="bc")) is None


def test_growth_waits_for_the_learner_on_its_way():
    members = [member("a", 1), member("b", 2, learner=True, started=False)]
    assert choose(view(members, "abcd", nominated="b")) is None


def test_a_started_learner_is_promoted_before_anything_else_grows():
    members = [member("a", 1), member("b", 2, learner=True)]
    assert choose(view(members, "abcd", nominated="b")) == Promote(2, "b")


def test_a_learner_added_by_a_leader_that_died_before_nominating_is_nominated():
    members = [member("a", 1), member("b", 2, learner=True, started=False)]
    assert choose(view(members, "abc")) == Nominate("b", peer("b"), add=False)


def test_a_learner_that_never_starts_is_removed_after_the_start_timeout():
    members = [member("a", 1), member("b", 2, learner=True, started=False)]
    early = view(members, "ab", nominated="b", now=10.0, unstarted_since={2: 0.0})
    assert choose(early) is None
    late = view(members, "ab", nominated="b", now=31.0, unstarted_since={2: 0.0})
    assert choose(late) == Remove(2, "b", "it did not start within 30 s")


def test_a_dead_member_is_removed_once_its_volunteer_key_is_gone_for_the_grace():
    members = [member(h, i) for i, h in enumerate("abc", 1)]
    fresh = view(members, "ab", ideal=3, now=5.0, absent_since={3: 4.0})
    assert choose(fresh) is None  # within the grace: a restarting host re-volunteers
    old = view(members, "ab", ideal=3, now=5.0, absent_since={3: 1.0})
    assert choose(old) == Remove(3, "c", "its host is gone")


def test_a_dead_member_is_replaced_by_a_volunteer_once_removed():
    members = [member(h, i) for i, h in enumerate("ab", 1)]
    assert choose(view(members, "abd", ideal=3)) == Nominate("d", peer("d"))


def test_the_leader_never_removes_itself_even_without_a_volunteer_key():
    members = [member("a", 1), member("b", 2)]
    v = view(members, "b", ideal=1, now=100.0, absent_since={1: 0.0})
    assert choose(v) == Remove(2, "b", "the cluster shrinks to 1")
    assert 1 not in absent(v)


def test_a_lower_ideal_size_shrinks_one_member_at_a_time_never_the_leader():
    members = [member(h, i) for i, h in enumerate("abcde", 1)]
    assert choose(view(members, "abcde", ideal=3, me="e")) == Remove(
        4, "d", "the cluster shrinks to 3"
    )
    without_d = [m for m in members if m.name != "d"]
    assert choose(view(without_d, "abcde", ideal=3, me="e")) == Remove(
        3, "c", "the cluster shrinks to 3"
    )


def test_an_ideal_size_below_one_means_one():
    members = [member("a", 1), member("b", 2)]
    assert choose(view(members, "ab", ideal=0)) == Remove(2, "b", "the cluster shrinks to 1")
    assert choose(view([member("a", 1)], "ab", ideal=-3)) is None


def test_a_higher_ideal_size_grows_again():
    members = [member(h, i) for i, h in enumerate("abc", 1)]
    assert choose(view(members, "abcde", ideal=3)) is None
    assert choose(view(members, "abcde", ideal=4)) == Nominate("d", peer("d"))


def test_shrinking_drops_a_learner_on_its_way_first():
    members = [member(h, i) for i, h in enumerate("abc", 1)]
    members.append(member("d", 4, learner=True, started=False))
    assert choose(view(members, "abcd", ideal=3, nominated="d")) == Remove(
        4, "d", "the cluster shrinks to 3"
    )


def test_a_stale_nomination_is_withdrawn():
    members = [member("a", 1)]
    assert choose(view(members, "ab", nominated="b")) == Unnominate("b")


def test_a_volunteer_whose_peer_urls_clash_is_never_nominated():
    members = [member("a", 1)]
    v = View(
        me="a",
        ideal=5,
        members=tuple(members),
        volunteers={"a": peer("a"), "b": peer("a"), "c": ("http://x:1",), "d": ("http://x:1",)},
        nominated={},
    )
    # b clashes with member a; d with the earlier volunteer c
    assert choose(v) == Nominate("c", ("http://x:1",))
    v2 = View("a", 5, tuple(members), {"a": peer("a"), "b": peer("a"), "e": ()}, {})
    assert choose(v2) is None


def test_removal_of_the_gone_comes_before_promotion_and_growth():
    members = [member("a", 1), member("b", 2, learner=True), member("c", 3)]
    v = view(members, "abd", now=10.0, absent_since={3: 0.0})
    assert choose(v) == Remove(3, "c", "its host is gone")


def test_an_unstarted_member_without_a_host_is_removed_after_the_grace():
    stray = Member(9, "", ("http://10.9.9.9:2380",), (), True)
    v = view([member("a", 1), stray], "a", now=10.0, absent_since={9: 0.0})
    assert choose(v) == Remove(9, "9", "its host is gone")


def test_track_keeps_first_seen_times_and_forgets_what_left():
    assert track({}, {1, 2}, 5.0) == {1: 5.0, 2: 5.0}
    assert track({1: 1.0, 3: 2.0}, {1, 2}, 5.0) == {1: 1.0, 2: 5.0}
    members = [member("a", 1), member("b", 2, learner=True, started=False)]
    assert unstarted(view(members, "ab")) == {2}
