"""Two hosts on loopback: Noise + Yamux only, identify and ping, clean shutdown."""

from __future__ import annotations

from typing import Any

import trio


def test_two_nodes_connect_ping_and_identify(kit: Any) -> None:
    async def scenario() -> None:
        a, b = kit.node(), kit.node()
        async with kit.running(a, b):
            await b.host.connect(kit.address_of(a))
            assert a.peer_id in b.host.connected_peers()
            rtt = await b.host.ping(a.peer_id)
            assert 0 <= rtt < 1.0
            await b.gossip.wait_for_topic_peer(a.peer_id, 5.0)
            assert "/ipfs/ping/1.0.0" in b.host.protocols_of(a.peer_id)

    trio.run(scenario)
