"""The pieces of world/autocluster.py and world/etcd/members.py that need no agent.

Untrusted values (other hosts' keys, an operator's etcdctl), the change
counter every clustering task waits on, the state-dir files, and how etcd's
answers to membership calls reach the clustering loop (a real etcd).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from collections.abc import Awaitable
from pathlib import Path

import pytest
from etcdutil import EtcdProcess, world_on
from helpers import run_async

from pymgmt.world.autocluster import (
    ENDPOINTS_FILE,
    Changes,
    parse_ideal,
    parse_urls,
    read_endpoints,
    wipe_data,
    write_endpoints,
)
from pymgmt.world.base import WorldError
from pymgmt.world.etcd import members as ops
from pymgmt.world.etcd.members import valid_url


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.1:2380", "https://127.0.1.5:1", "http://[::1]:2380", "http://10.0.0.1:2380/"],
)
def test_an_ip_and_port_url_is_valid(url: str) -> None:
    assert valid_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://evil.example:2380",  # a name etcd would resolve
        "file:///etc/passwd",
        "unix:///run/etcd.sock",
        "http://10.0.0.1",  # no port
        "http://10.0.0.1:0",
        "http://10.0.0.1:99999",
        "http://user@10.0.0.1:2380",
        "http://10.0.0.1:2380/x",
        "http://10.0.0.1:2380?a=b",
        "http://10.0.0.1:2380,http://10.0.0.2:2380",  # one flag's worth smuggled in
        "http://010.0.0.1:2380",
        "HTTP://10.0.0.1:2380",
        " http://10.0.0.1:2380",
        "http://10.0.0.1:2380\n",
        "http://[::1%eth0]:2380",
        "",
        42,
    ],
)
def test_anything_else_is_not_a_url_taken_from_another_host(url: object) -> None:
    assert not valid_url(url)


def test_a_volunteer_value_with_any_junk_url_gives_no_urls() -> None:
    ok = json.dumps({"peer_urls": ["http://10.0.0.1:2380"]}).encode()
    assert parse_urls(ok, "peer_urls") == ("http://10.0.0.1:2380",)
    for raw in [
        json.dumps({"peer_urls": ["http://10.0.0.1:2380", "http://evil.example:1"]}).encode(),
        json.dumps({"peer_urls": []}).encode(),
        json.dumps({"peer_urls": "http://10.0.0.1:2380"}).encode(),
        json.dumps(["http://10.0.0.1:2380"]).encode(),
        b"\xff\xfe",
        b"[" * 100000,
    ]:
        assert parse_urls(raw, "peer_urls") == (), raw[:50]


@pytest.mark.parametrize(
    ("raw", "size"),
    [
        (b"3", 3),
        (b" 5\n", 5),
        (b"1", 1),
        (b"0", None),
        (b"-1", None),
        (b"+3", None),
        (b"3_0", None),
        (b"1e3", None),
        (b"three", None),
        ("\u0663".encode(), None),  # an Arabic-Indic three: int() takes it, we do not
        (b"", None),
        (b"\xff", None),
        (b"9999999", None),
    ],
)
def test_an_ideal_size_is_a_whole_number_from_one(raw: bytes, size: int | None) -> None:
    assert parse_ideal(raw) == size


def test_a_change_wakes_every_waiter_not_only_the_first() -> None:
    async def main() -> None:
        changes = Changes()
        seen = changes.version
        waiters = [asyncio.create_task(changes.wait(seen)) for _ in range(3)]
        await asyncio.sleep(0)
        assert not any(w.done() for w in waiters)
        changes.bump()
        assert await asyncio.gather(*waiters) == [seen + 1] * 3
        # a waiter that saw an older version returns at once; a timeout returns as is
        assert await changes.wait(seen) == seen + 1
        assert await changes.wait(seen + 1, timeout=0.01) == seen + 1
        assert not changes._waiters

    run_async(main())


def test_wipe_data_removes_the_data_dir_and_refuses_a_symlink(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "etcd" / "member").mkdir(parents=True)
    wipe_data(state)
    assert not (state / "etcd").exists()
    wipe_data(state)  # nothing there: nothing to do
    precious = tmp_path / "precious"
    (precious / "member").mkdir(parents=True)
    os.symlink(precious, state / "etcd")
    with pytest.raises(WorldError, match="not a directory"):
        wipe_data(state)
    assert (precious / "member").is_dir()


def test_the_endpoints_file_holds_only_valid_urls_and_is_never_followed(tmp_path: Path) -> None:
    write_endpoints(tmp_path, ["http://10.0.0.1:2379"])
    assert read_endpoints(tmp_path) == ["http://10.0.0.1:2379"]
    (tmp_path / ENDPOINTS_FILE).write_text(json.dumps(["http://evil.example:2379"]))
    assert read_endpoints(tmp_path) == []
    (tmp_path / ENDPOINTS_FILE).unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text(json.dumps(["http://10.0.0.9:2379"]))
    os.symlink(elsewhere, tmp_path / ENDPOINTS_FILE)
    assert read_endpoints(tmp_path) == []
    write_endpoints(tmp_path, ["http://10.0.0.2:2379"])  # replaces the link, not its target
    assert json.loads(elsewhere.read_text()) == ["http://10.0.0.9:2379"]
    assert read_endpoints(tmp_path) == ["http://10.0.0.2:2379"]


async def answer(call: Awaitable[object]) -> type[BaseException] | None:
    """The type of error `call` raises (None: it succeeds); the error itself is not kept
    (its traceback holds the channel, which the leak check would see open)."""
    try:
        await call
    except Exception as e:
        return type(e)
    return None


def test_etcds_answers_to_membership_calls_are_world_errors(etcd_node: EtcdProcess) -> None:
    """A member already gone is done; every other answer is a WorldError, never a gRPC one."""

    async def main() -> None:
        async with world_on([etcd_node.client_url], "h1") as w:
            before = await ops.member_list(w)
            assert await answer(ops.remove(w, 0x1234)) is None  # not a member: nothing to do
            assert await answer(ops.promote(w, 0x1234)) is ops.MemberGone
            bad = await answer(ops.add_learner(w, ["file:///etc/passwd"]))
            assert bad is not None and issubclass(bad, WorldError), bad
            assert not issubclass(bad, ops.MemberRefused)
            learner = await ops.add_learner(w, ["http://127.0.0.9:1"])
            try:
                again = ops.add_learner(w, ["http://127.0.0.9:1"])
                assert await answer(again) is ops.MemberConflict
                # one learner at a time; an unstarted one is not in sync
                assert await answer(ops.add_learner(w, ["http://127.0.0.9:2"])) is ops.MemberRefused
                assert await answer(ops.promote(w, learner.id)) is ops.MemberRefused
            finally:
                await ops.remove(w, learner.id)
            assert await ops.member_list(w) == before

    run_async(main())


def test_a_member_removed_while_its_etcd_restarts_joins_again_as_a_client(
    etcd_cluster: list[EtcdProcess], tmp_path: Path
) -> None:
    """The plan said "restart on your data" (the member list still had it), then the
    leader removed the member before its etcd was up: its etcd exits "removed" at
    once. A CI run's agent gave up there; it wipes the data and joins again."""
    from pymgmt.world.autocluster import Plan, ServerSlot, has_data
    from pymgmt.world.cluster import _serve

    m1, _, m3 = etcd_cluster
    m3.stop()

    async def main() -> None:
        async with world_on([m1.client_url], "h1") as w:
            gone = [m for m in await ops.member_list(w) if m.name == m3.name]
            await ops.remove(w, gone[0].id)
        state = tmp_path / "state"
        state.mkdir()
        m3.config.data_dir.rename(state / "etcd")
        config = dataclasses.replace(m3.config, data_dir=state / "etcd", log_file=None)
        assert has_data(state)
        slot = ServerSlot()
        try:
            plan = Plan(serve=True, endpoints=(m1.client_url,))
            plan, endpoints = await _serve(slot, config, plan, state)
        finally:
            await slot.close()
        assert plan == Plan(serve=False, endpoints=(m1.client_url,))
        assert endpoints == [m1.client_url]
        assert not has_data(state)
        assert not slot.serving

    run_async(main())
