"""Discovery through a bootstrap node's rendezvous point, the peer store, and the daemon
pair of the issue's "done when": discover, exchange verified offers, fetch evidence, move
a sealed input and a result."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
import trio
from libp2p import new_host
from libp2p.custom_types import TProtocol
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport

from node.p2p.errors import DialError
from node.p2p.evidence_protocol import fetch_evidence
from node.p2p.host import translate_libp2p_errors
from node.p2p.identity import NodeIdentity
from node.p2p.node import P2PNode
from node.p2p.transfer import download_result, upload_input


def test_peers_find_each_other_through_rendezvous_on_the_bootstrap_node(kit: Any) -> None:
    async def scenario() -> None:
        bootstrap = kit.node(rendezvous_server=True)
        async with kit.running(bootstrap) as nursery:
            seeds = (kit.address_of(bootstrap),)
            first = kit.node(bootstrap_peers=seeds)
            second = kit.node(bootstrap_peers=seeds)
            await nursery.start(first.run)
            await nursery.start(second.run)
            # `second` started after one discovery round: it met `first` at the rendezvous.
            assert first.peer_id in second.host.connected_peers()
            assert bootstrap.peer_id in first.host.connected_peers()
            nursery.cancel_scope.cancel()

    trio.run(scenario)


def test_a_restarted_node_rejoins_from_its_peer_store(kit: Any, tmp_path: Any) -> None:
    async def scenario() -> None:
        anchor = kit.node()
        async with kit.running(anchor) as nursery:
            store = tmp_path / "peers.json"
            identity = NodeIdentity.generate()
            config = kit.make_config(peer_store_path=store)
            once = P2PNode(identity, config)
            with trio.CancelScope() as scope:
                async with kit.running(once):
                    await once.host.connect(kit.address_of(anchor))
                    scope.cancel()
            assert anchor.peer_id in store.read_text()
            again = P2PNode(identity, config)
            await nursery.start(again.run)
            assert anchor.peer_id in again.host.connected_peers()
            nursery.cancel_scope.cancel()

    trio.run(scenario)


def test_a_plaintext_only_dialer_cannot_connect(kit: Any) -> None:
    async def scenario() -> None:
        node = kit.node()
        key_pair = NodeIdentity.generate().key_pair
        plain = new_host(
            key_pair=key_pair,
            sec_opt={TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(key_pair)},
        )
        async with kit.running(node), plain.run([]):
            with pytest.raises(DialError), translate_libp2p_errors("plaintext dial", 5.0):
                await plain.connect(kit.address_of(node).to_peer_info())
            assert node.host.connected_peers() == []

    trio.run(scenario)


def test_two_daemons_discover_trade_and_move_input_and_result(kit: Any) -> None:
    async def scenario() -> None:
        provider = kit.FakeProvider()
        seller = kit.node(provider, rendezvous_server=True)
        async with kit.running(seller) as nursery:
            buyer = kit.node(bootstrap_peers=(kit.address_of(seller),))
            await nursery.start(buyer.run)
            await seller.gossip.wait_for_topic_peer(buyer.peer_id, 5.0)
            seller.gossip.advertise(kit.make_offer(provider.address), kit.DETAILS, provider.key)
            with trio.fail_after(10):
                listing = (await buyer.gossip.updates.receive()).listing
            [offer] = buyer.book.resource_offers(int(time.time()))
            assert offer.peer_id == seller.peer_id == listing.peer_id
            bundle = await fetch_evidence(buyer.host, offer.peer_id)
            assert bundle.evidence.startswith(b"{")
            job_id = os.urandom(32)
            sealed = os.urandom(1536 * 1024)
            await upload_input(buyer.host, offer.peer_id, job_id, sealed)
            assert provider.inputs.stored(job_id) == sealed
            result = provider.put_result(job_id, b"sealed output")
            assert await download_result(buyer.host, offer.peer_id, job_id) == result
            nursery.cancel_scope.cancel()

    trio.run(scenario)
