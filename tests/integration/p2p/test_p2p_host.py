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


def test_a_peer_the_peerstore_does_not_hold_has_no_addresses_and_no_protocols(kit: Any) -> None:
    """libp2p raises its PeerStoreError (a KeyError) for such a peer; the supervisor asks for
    the addresses of a peer that may have just left, and must not crash on it."""

    async def scenario() -> None:
        a, b = kit.node(), kit.node()
        async with kit.running(a):
            assert a.host.addresses_of(b.peer_id) == []
            assert a.host.protocols_of(b.peer_id) == []

    trio.run(scenario)
