"""Offer listings: signatures, every rejection rule, replay state, the book, penalties."""

from __future__ import annotations

import dataclasses
import os

import pytest
from eth_account import Account

from node.chain.typed_data import Offer
from node.p2p.config import OfferPolicy, P2PConfig, PenaltyPolicy
from node.p2p.errors import ConfigError, OfferRejected
from node.p2p.identity import NodeIdentity, PeerAddress, PeerId
from node.p2p.offer_book import OfferBook
from node.p2p.offer_gossip import OfferValidator
from node.p2p.offers import RANKING_SKEW_S, ListingDetails, OfferListing
from node.p2p.penalties import PeerPenalties, TokenBuckets
from scheduler.models import TcbStatus, TeeKind

CHAIN = 31337
MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
NOW = 1_800_000_000
KEY = bytes.fromhex("11" * 32)
PROVIDER = Account.from_key(KEY).address
ENCLAVE = Account.from_key(bytes.fromhex("22" * 32)).address
PEER = NodeIdentity.from_private_key(b"\x01" * 32).peer_id
OTHER_PEER = NodeIdentity.from_private_key(b"\x02" * 32).peer_id
DETAILS = ListingDetails(cpu_cores=4, memory_mib=8192, tcb_status=TcbStatus.UP_TO_DATE)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def offer(nonce: int = 1, valid_until: int = NOW + 3600, **changes: object) -> Offer:
    base = Offer(PROVIDER, ENCLAVE, 5, b"\x07" * 32, 10**9, 60, 3600, valid_until, bytes(32), nonce)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def listing(
    nonce: int = 1, at: int = NOW, key: bytes = KEY, chain: int = CHAIN, **changes: object
) -> OfferListing:
    return OfferListing.create(
        offer=offer(nonce, **changes),
        details=DETAILS,
        chain_id=chain,
        market=MARKET,
        peer_id=PEER,
        published_at=at,
        provider_key=key,
    )


def validator(clock: FakeClock | None = None, **policy: object) -> OfferValidator:
    config = P2PConfig(
        chain_id=CHAIN,
        market_address=MARKET,
        offers=dataclasses.replace(OfferPolicy(), **policy),  # type: ignore[arg-type]
    )
    return OfferValidator(config, OTHER_PEER, lambda: NOW, clock or FakeClock())


def rejection(v: OfferValidator, data: bytes, origin: PeerId = PEER) -> str:
    with pytest.raises(OfferRejected) as caught:
        v.check(PeerId("forwarder"), origin, data)
    return caught.value.reason


def test_a_signed_listing_round_trips_and_becomes_a_resource_offer() -> None:
    signed = listing()
    decoded = OfferListing.decode(signed.encode(), 4096)
    assert decoded == signed
    checked = validator().check(PeerId("forwarder"), PEER, signed.encode())
    resource = checked.to_resource_offer()
    assert resource.provider == PROVIDER.lower()
    assert resource.tee_kind is TeeKind.SIM
    assert resource.cpu_cores == 4 and resource.peer_id == PEER
    assert signed.signed_offer.signed_by_provider(CHAIN, MARKET)


def test_an_offer_ranks_as_valid_from_its_stamp_less_the_clock_skew_a_lagging_chain_view_has() -> (
    None
):
    # A client ranks by the chain time its watcher last saw, seconds behind the provider's
    # wall clock: an offer just published must not read "not valid yet" to it.
    assert listing(at=NOW).to_resource_offer().valid_from == NOW - RANKING_SKEW_S
    # Never past the offer's end, never before time zero.
    assert listing(at=NOW, valid_until=NOW - 40).to_resource_offer().valid_from == NOW - 41
    assert listing(at=5).to_resource_offer().valid_from == 0


def test_the_input_store_size_travels_signed_and_is_absent_when_unsaid() -> None:
    sized = dataclasses.replace(DETAILS, max_input_bytes=1 << 20)
    signed = OfferListing.create(
        offer=offer(),
        details=sized,
        chain_id=CHAIN,
        market=MARKET,
        peer_id=PEER,
        published_at=NOW,
        provider_key=KEY,
    )
    checked = validator().check(PeerId("forwarder"), PEER, signed.encode())
    assert checked.details.max_input_bytes == 1 << 20
    # A relay that enlarges the store to draw large inputs breaks the listing's signature.
    enlarged = dataclasses.replace(
        signed, details=dataclasses.replace(sized, max_input_bytes=1 << 30)
    )
    assert rejection(validator(), enlarged.encode()) == "bad_signature"
    # Unsaid (a provider from before the field): no key on the wire, None when read back.
    assert "input" not in DETAILS.to_json()
    assert OfferListing.decode(listing().encode(), 4096).details.max_input_bytes is None


def test_each_bad_listing_is_dropped_with_its_reason() -> None:
    v = validator()
    good = listing()
    forged = dataclasses.replace(
        good, listing_signature=listing(key=os.urandom(32)).listing_signature
    )
    tampered = dataclasses.replace(good, details=dataclasses.replace(DETAILS, cpu_cores=999))
    assert rejection(v, b"x" * 5000) == "oversized"
    assert rejection(v, b"{not json") == "malformed"
    assert rejection(v, b'{"v": 1}') == "malformed"
    assert rejection(v, listing(chain=1).encode()) == "wrong_chain"
    assert rejection(v, forged.encode()) == "bad_signature"
    assert rejection(v, tampered.encode()) == "bad_signature"
    assert rejection(v, listing(valid_until=NOW - 1).encode()) == "expired"
    assert rejection(v, listing(at=NOW - 10_000).encode()) == "stale"
    assert rejection(v, listing(at=NOW + 10_000).encode()) == "future"
    assert rejection(v, listing(request_hash=b"\x01" * 32).encode()) == "not_standing"
    assert rejection(v, listing(min_duration=3601).encode()) == "malformed"  # above its maximum
    assert rejection(v, good.encode(), origin=OTHER_PEER) == "wrong_peer"


def test_replays_of_older_or_equal_listings_are_dropped() -> None:
    v = validator()
    v.check(PeerId("f"), PEER, listing(nonce=2, at=NOW).encode())
    assert rejection(v, listing(nonce=2, at=NOW).encode()) == "replayed"
    assert rejection(v, listing(nonce=1, at=NOW + 5).encode()) == "replayed"
    v.check(PeerId("f"), PEER, listing(nonce=2, at=NOW + 1).encode())
    v.check(PeerId("f"), PEER, listing(nonce=3, at=NOW).encode())


def test_a_flood_from_one_forwarder_is_rate_limited() -> None:
    clock = FakeClock()
    v = validator(clock, forwarder_burst=10, forwarder_rate_per_s=1.0)
    reasons = [rejection(v, b"junk") for _ in range(10)]
    assert set(reasons) == {"malformed"}
    assert rejection(v, listing().encode()) == "rate_limited"
    clock.now += 1.0
    v.check(PeerId("forwarder"), PEER, listing().encode())


def test_the_book_keeps_the_freshest_listing_and_expires_it() -> None:
    book = OfferBook(entry_ttl_s=100, max_entries=10)
    assert book.put(listing(nonce=1), NOW)
    assert not book.put(listing(nonce=1), NOW)
    assert book.put(listing(nonce=2), NOW)
    assert not book.put(listing(nonce=1, at=NOW + 50), NOW)
    assert [x.offer.nonce for x in book.listings(NOW + 10)] == [2]
    assert book.listings(NOW + 100) == []
    book.put(listing(nonce=3, valid_until=NOW + 20), NOW)
    assert len(book.resource_offers(NOW + 10)) == 1
    assert book.resource_offers(NOW + 20) == []


def test_a_provider_offers_each_workload_under_its_own_key() -> None:
    """Two enclave keys of one provider are two offers: neither replaces the other."""
    other = Account.from_key(bytes.fromhex("33" * 32)).address
    book = OfferBook(entry_ttl_s=100, max_entries=10, max_per_provider=2)
    assert book.put(listing(nonce=5), NOW)
    assert book.put(listing(nonce=1, enclave_key=other), NOW)
    assert {x.offer.enclave_key for x in book.listings(NOW)} == {ENCLAVE, other}
    assert book.get(PROVIDER.lower(), other).offer.nonce == 1  # type: ignore[union-attr]
    third = Account.from_key(bytes.fromhex("44" * 32)).address
    assert book.put(listing(nonce=1, enclave_key=third), NOW + 1)
    assert len(book.of_provider(PROVIDER.lower())) == 2  # its oldest offer made room
    assert book.get(PROVIDER.lower(), ENCLAVE) is None


def test_two_offers_of_one_provider_in_one_second_are_not_replays() -> None:
    other = Account.from_key(bytes.fromhex("33" * 32)).address
    v = validator()
    v.check(PEER, PEER, listing(nonce=9).encode())
    v.check(PEER, PEER, listing(nonce=1, enclave_key=other).encode())
    assert rejection(v, listing(nonce=9).encode()) == "replayed"


def test_penalties_hold_then_decay_and_ban_at_the_threshold() -> None:
    clock = FakeClock()
    penalties = PeerPenalties(
        PenaltyPolicy(ban_threshold=100, ban_duration_s=60, hold_s=30, decay_per_s=1), clock
    )
    assert not penalties.penalise(PEER, "expired")
    clock.now += 10
    assert penalties.points(PEER) == 10  # still held
    clock.now += 25
    assert penalties.points(PEER) == 5  # 30 s hold, then 5 s of decay
    clock.now += 5
    assert penalties.points(PEER) == 0
    assert not penalties.penalise(PEER, "malformed")
    assert penalties.penalise(PEER, "bad_signature")
    assert penalties.is_banned(PEER)
    clock.now += 61
    assert not penalties.is_banned(PEER)


def test_two_half_threshold_violations_reach_the_ban() -> None:
    """The old linear decay left two 50-point violations at 99.99 points: never banned."""
    clock = FakeClock()
    penalties = PeerPenalties(PenaltyPolicy(ban_threshold=100, decay_per_s=1), clock)
    assert not penalties.penalise(PEER, "protocol_violation")
    clock.now += 10
    assert penalties.penalise(PEER, "protocol_violation")
    assert penalties.is_banned(PEER)
    # Spread far enough apart, the same two violations are forgiven.
    other = PeerId("12D3KooWother")
    assert not penalties.penalise(other, "protocol_violation")
    clock.now += PenaltyPolicy().hold_s + 60
    assert not penalties.penalise(other, "protocol_violation")
    assert penalties.points(other) == 50


def test_penalty_accounts_are_bounded() -> None:
    clock = FakeClock()
    penalties = PeerPenalties(PenaltyPolicy(max_accounts=10, hold_s=0, decay_per_s=100), clock)
    penalties.penalise(PEER, "bad_signature")
    for i in range(100):
        penalties.penalise(PeerId(f"peer-{i}"), "rate_limited")
        clock.now += 1
    assert len(penalties._accounts) <= 10
    assert penalties.is_banned(PEER)


def test_token_buckets_refill() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(burst=2, rate_per_s=1.0, clock=clock)
    assert buckets.take("a") and buckets.take("a") and not buckets.take("a")
    assert buckets.take("b")
    clock.now += 1.0
    assert buckets.take("a")


def test_peer_addresses_parse_strictly() -> None:
    text = f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}"
    assert str(PeerAddress.parse(text)) == text
    for bad in ["/ip4/127.0.0.1/tcp/4001", f"/p2p/{PEER}", "/ip4/1.2.3.4/tcp/1/p2p/0OIl"]:
        with pytest.raises(ConfigError):
            PeerAddress.parse(bad)
    with pytest.raises(ConfigError):
        NodeIdentity.from_private_key(b"short")
