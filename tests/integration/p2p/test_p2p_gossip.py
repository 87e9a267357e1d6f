"""Offers over GossipSub between real nodes: delivery, republish, and hostile publishers.

The attacker is a real node whose own topic validator is removed, so it can push anything
into the topic; the victim must drop each message with a reason, penalise the attacker,
and keep delivering an honest provider's offers.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import trio

from node.p2p.config import PenaltyPolicy
from node.p2p.offers import OfferListing


async def next_listing(node: Any, timeout_s: float = 10.0) -> OfferListing:
    with trio.fail_after(timeout_s):
        received = await node.gossip.updates.receive()
    return received.listing


def test_offers_reach_the_book_and_republish_on_change(kit: Any) -> None:
    async def scenario() -> None:
        provider, client = kit.FakeProvider(), kit.node()
        seller = kit.node(provider)
        async with kit.running(seller, client):
            await client.host.connect(kit.address_of(seller))
            await seller.gossip.wait_for_topic_peer(client.peer_id, 5.0)
            seller.gossip.advertise(kit.make_offer(provider.address), kit.DETAILS, provider.key)
            first = await next_listing(client)
            assert first.offer.nonce == 1 and first.peer_id == seller.peer_id
            [offer] = client.book.resource_offers(int(time.time()))
            assert offer.provider == provider.address.lower() and offer.cpu_cores == 8
            seller.gossip.advertise(
                kit.make_offer(provider.address, nonce=2), kit.DETAILS, provider.key
            )
            assert (await next_listing(client)).offer.nonce == 2
            assert [x.offer.nonce for x in client.book.listings(int(time.time()))] == [2]

    trio.run(scenario)


def bad_listings(kit: Any, attacker: Any, provider: Any) -> dict[str, bytes]:
    now = int(time.time())

    def make(
        offer: Any, chain: int = kit.CHAIN_ID, at: int = now, key: bytes = provider.key
    ) -> bytes:
        return OfferListing.create(
            offer=offer,
            details=kit.DETAILS,
            chain_id=chain,
            market=kit.MARKET,
            peer_id=attacker.peer_id,
            published_at=at,
            provider_key=key,
        ).encode()

    good = OfferListing.decode(make(kit.make_offer(provider.address, nonce=5)), 4096)
    forged = dataclasses.replace(good, listing_signature=os.urandom(65))
    return {
        "bad_signature": forged.encode(),
        "expired": make(dataclasses.replace(kit.make_offer(provider.address), valid_until=now - 5)),
        "wrong_chain": make(kit.make_offer(provider.address), chain=1),
        "oversized": b"{" + b" " * 10_000 + b"}",
        "malformed": b"\xff\xfe",
    }


def test_hostile_offers_are_dropped_penalised_and_honest_ones_still_flow(kit: Any) -> None:
    async def scenario() -> None:
        honest_provider, evil_provider = kit.FakeProvider(), kit.FakeProvider()
        # The threshold is the sum of all six penalties, so every reason gets validated
        # before the ban (after it, pubsub drops the attacker's messages unseen).
        victim = kit.node(penalties=PenaltyPolicy(ban_threshold=275, decay_per_s=0.0))
        honest, attacker = kit.node(honest_provider), kit.node()
        async with kit.running(victim, honest, attacker):
            await honest.host.connect(kit.address_of(victim))
            await attacker.host.connect(kit.address_of(victim))
            await attacker.gossip.wait_for_topic_peer(victim.peer_id, 5.0)
            attacker.gossip._pubsub.remove_topic_validator(attacker.gossip.topic)
            publish = attacker.gossip._pubsub.publish
            topic = attacker.gossip.topic

            # A valid listing first, then a replay of it.
            now = int(time.time())
            newer = OfferListing.create(
                offer=kit.make_offer(evil_provider.address, nonce=9),
                details=kit.DETAILS,
                chain_id=kit.CHAIN_ID,
                market=kit.MARKET,
                peer_id=attacker.peer_id,
                published_at=now,
                provider_key=evil_provider.key,
            )
            await publish(topic, newer.encode())
            assert (await next_listing(victim)).offer.nonce == 9
            await publish(topic, newer.encode())  # a new pubsub message, same listing
            for payload in bad_listings(kit, attacker, evil_provider).values():
                await publish(topic, payload)

            expected = {
                "replayed",
                "bad_signature",
                "expired",
                "wrong_chain",
                "oversized",
                "malformed",
            }
            seen: set[str] = set()
            with trio.fail_after(10):
                while seen != expected:
                    rejection = await victim.gossip.rejections.receive()
                    assert rejection.sender == attacker.peer_id
                    seen.add(rejection.reason)
            assert victim.penalties.is_banned(attacker.peer_id)
            # Honest traffic after the garbage proves the victim keeps serving.
            honest.gossip.advertise(
                kit.make_offer(honest_provider.address), kit.DETAILS, honest_provider.key
            )
            assert (await next_listing(victim)).provider == honest_provider.address.lower()
            assert attacker.peer_id not in victim.host.connected_peers()
            assert victim.penalties.points(honest.peer_id) == 0

    trio.run(scenario)


def test_an_offer_flood_is_rate_limited_and_the_flooder_banned(kit: Any) -> None:
    async def scenario() -> None:
        provider = kit.FakeProvider()
        victim, flooder = kit.node(), kit.node()
        async with kit.running(victim, flooder):
            await flooder.host.connect(kit.address_of(victim))
            await flooder.gossip.wait_for_topic_peer(victim.peer_id, 5.0)
            flooder.gossip._pubsub.remove_topic_validator(flooder.gossip.topic)
            now = int(time.time())
            for i in range(40):
                listing = OfferListing.create(
                    offer=kit.make_offer(provider.address, nonce=i + 1),
                    details=kit.DETAILS,
                    chain_id=kit.CHAIN_ID,
                    market=kit.MARKET,
                    peer_id=flooder.peer_id,
                    published_at=now,
                    provider_key=provider.key,
                )
                await flooder.gossip._pubsub.publish(flooder.gossip.topic, listing.encode())
            with trio.fail_after(10):
                while not victim.penalties.is_banned(flooder.peer_id):
                    await victim.gossip.rejections.receive()
            assert victim.gossip.rejected.get("rate_limited", 0) > 0
            assert len(victim.book) == 1

    trio.run(scenario)
