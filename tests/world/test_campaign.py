"""The leader election of the automatic clustering, against a real etcd member.

A CI run caught a cluster that never promoted its learner: the leader
mirror delivered its first read (taken before this host created the leader
key, so empty) after the create. Leading stopped on that read, and when the
mirror caught up and showed this host as the leader again, nothing led:
the key said this host leads, so no one campaigned either. The race cannot
be produced on demand, so the test hands the mirror's two deliveries to the
callback itself (a fault injection), in the order the CI run saw them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from etcdutil import EtcdProcess, world_on
from helpers import run_async, until

from pymgmt.world.autocluster import AutoCluster, Plan, ServerSlot
from pymgmt.world.cluster import ClusterOptions
from pymgmt.world.etcd import members


def test_the_holder_of_the_leader_key_leads_again_after_a_stale_empty_read(
    etcd_node: EtcdProcess, tmp_path: Path
) -> None:
    async def main() -> None:
        async with world_on([etcd_node.client_url], etcd_node.name) as world:
            options = ClusterOptions(hostname=etcd_node.name)
            ac = AutoCluster(
                options, tmp_path, world, ServerSlot(), etcd_node.config, Plan(serve=True)
            )
            ac.role = "server"  # its member is the test's etcd_node, a voting member
            ac.members = await members.member_list(world)
            steps: list[str] = []

            async def recorded_lead() -> None:
                # a stand-in for the leader's work, which would act on this
                # one-member cluster: it leads, as the real one, while the
                # mirror shows this host as the leader
                steps.append(f"leads as {ac.leader}")
                seen = -1
                while ac.leader == ac.me:
                    seen = await ac._changes.wait(seen)
                steps.append("stopped leading")

            ac._lead = recorded_lead  # type: ignore[method-assign]
            campaign = asyncio.ensure_future(ac._campaign())
            try:
                ac._changes.bump()
                await until(lambda: steps == [f"leads as {etcd_node.name}"], "the first lead")
                ac._on_leader({})  # the stale read from before the create
                await until(lambda: steps[-1] == "stopped leading", "leading stopped")
                ac._on_leader({"": etcd_node.name.encode()})  # the mirror caught up
                await until(lambda: len(steps) == 3, "leading again")
                assert steps[-1] == f"leads as {etcd_node.name}"
            finally:
                campaign.cancel()
                await asyncio.gather(campaign, return_exceptions=True)

    run_async(main(), timeout=60)
