"""Offers over GossipSub: validation before relay, per-peer limits, paced (re)publishing.

Topic: one per chain id and market address (`P2PConfig.offer_topic`). The validator runs
inside pubsub before a message is delivered or relayed, so nothing it rejects travels on;
the peer that handed it to us is penalised by reason (see `penalties`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio
from libp2p.abc import ISubscriptionAPI
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.tools.anyio_service import background_trio_service

from node.chain.typed_data import Offer
from node.p2p.config import P2PConfig
from node.p2p.errors import OfferRejected, PeerTimeoutError
from node.p2p.host import P2PHost
from node.p2p.identity import PeerId, libp2p_id, peer_id_of
from node.p2p.offer_book import OfferBook
from node.p2p.offers import ListingDetails, OfferListing
from node.p2p.penalties import Clock, TokenBuckets
from node.p2p.pubsub_guard import GuardedGossipSub, GuardedPubsub
from scheduler.models import ProviderAddress

if TYPE_CHECKING:
    # trio-typing's stale trio-stubs (pulled in by libp2p) hide trio.TaskStatus from mypy.
    from trio_typing import TaskStatus

logger = logging.getLogger(__name__)

GOSSIPSUB_PROTOCOLS = [TProtocol("/meshsub/1.1.0"), TProtocol("/meshsub/1.0.0")]
WallClock = Callable[[], int]
_UPDATES_BUFFER = 256
_STREAM_REPAIR_INTERVAL_S = 2.0


def unix_now() -> int:
    return int(time.time())


@dataclass(frozen=True)
class Rejection:
    sender: PeerId
    reason: str


@dataclass(frozen=True)
class ReceivedListing:
    listing: OfferListing
    received_at: float  # wall clock, fractional, for latency measurements


class OfferValidator:
    """Decides whether a gossiped listing may be delivered and relayed.

    Order matters: cheap checks (ban, forwarder rate) run before signature recovery, so a
    flood costs us little; replay state is only updated for listings that pass everything.
    """

    def __init__(
        self, config: P2PConfig, self_id: PeerId, wall_clock: WallClock, clock: Clock
    ) -> None:
        policy = config.offers
        self._config = config
        self._self_id = self_id
        self._wall_clock = wall_clock
        self._forwarders = TokenBuckets(policy.forwarder_burst, policy.forwarder_rate_per_s, clock)
        self._providers = TokenBuckets(policy.provider_burst, policy.provider_rate_per_s, clock)
        # Per offer, i.e. per provider and enclave key: a provider serving two workloads
        # publishes two offers, each with its own nonce.
        self._latest: dict[tuple[ProviderAddress, str], tuple[int, int]] = {}

    def check(self, forwarder: PeerId, origin: PeerId, data: bytes) -> OfferListing:
        policy = self._config.offers
        if forwarder != self._self_id and not self._forwarders.take(forwarder):
            raise OfferRejected("rate_limited", f"forwarder {forwarder} over its message rate")
        listing = OfferListing.decode(data, policy.max_listing_bytes)
        if listing.peer_id != origin:
            raise OfferRejected("wrong_peer", f"listing names {listing.peer_id}, sent by {origin}")
        listing.verify(
            chain_id=self._config.chain_id,
            market=self._config.market_address,
            now=self._wall_clock(),
            max_skew_s=policy.max_clock_skew_s,
            max_age_s=policy.max_listing_age_s,
        )
        key = listing.book_key
        last = self._latest.get(key)
        if last is not None and listing.freshness <= last:
            raise OfferRejected("replayed", f"{listing.freshness} is not newer than {last}")
        if not self._providers.take(f"{key[0]}:{key[1]}"):
            raise OfferRejected("rate_limited", f"provider {listing.provider} over its rate")
        self._latest[key] = listing.freshness
        return listing


@dataclass(frozen=True)
class _Advertisement:
    offer: Offer
    details: ListingDetails
    provider_key: bytes


class OfferGossip:
    """Runs pubsub for the offer topic, fills the offer book, publishes our own offer."""

    def __init__(
        self,
        host: P2PHost,
        config: P2PConfig,
        book: OfferBook,
        wall_clock: WallClock = unix_now,
        clock: Clock = time.monotonic,
    ) -> None:
        self._host = host
        self._config = config
        self._book = book
        self._wall_clock = wall_clock
        self._validator = OfferValidator(config, host.peer_id, wall_clock, clock)
        params = config.gossip
        self._router = GuardedGossipSub(
            report=host.report_violation,
            protocols=GOSSIPSUB_PROTOCOLS,
            degree=params.degree,
            degree_low=params.degree_low,
            degree_high=params.degree_high,
            heartbeat_interval=params.heartbeat_interval_s,
            adaptive_gossip_enabled=False,
            spam_protection_enabled=False,
            # All test and bench peers share 127.0.0.1; IP diversity is no signal there
            # and the offer validator already bounds what any one peer can push.
            eclipse_protection_enabled=False,
        )
        self._pubsub = GuardedPubsub(
            host.libp2p,
            self._router,
            limits=config.peer_limits,
            report=host.report_violation,
            is_banned=host.is_banned_id,
            allowed_topics=[config.offer_topic],
            clock=clock,
            seen_ttl=params.seen_ttl_s,
        )
        self._pubsub.set_topic_validator(config.offer_topic, self._validate, False)
        host.on_ban(self._blacklist)
        # One standing offer per enclave key this node runs (one per workload it serves).
        self._advertisements: dict[str, _Advertisement] = {}
        self._changed = trio.Event()
        self._updates_send, self._updates = trio.open_memory_channel[ReceivedListing](
            _UPDATES_BUFFER
        )
        self._pending_penalties_send, self._pending_penalties = trio.open_memory_channel[
            tuple[PeerId, OfferRejected]
        ](_UPDATES_BUFFER)
        self._rejections_send, self._rejections = trio.open_memory_channel[Rejection](
            _UPDATES_BUFFER
        )
        self.published = 0
        self.rejected: dict[str, int] = {}

    @property
    def updates(self) -> trio.MemoryReceiveChannel[ReceivedListing]:
        """Accepted listings as they arrive; when nobody reads, the oldest are dropped."""
        return self._updates

    @property
    def rejections(self) -> trio.MemoryReceiveChannel[Rejection]:
        """Dropped listings after their sender was penalised (for metrics and tests)."""
        return self._rejections

    @property
    def topic(self) -> str:
        return self._config.offer_topic

    def mesh_peers(self) -> list[PeerId]:
        return [peer_id_of(p) for p in self._router.mesh.get(self.topic, set())]

    def topic_peers(self) -> list[PeerId]:
        return [peer_id_of(p) for p in self._pubsub.peer_topics.get(self.topic, set())]

    def advertise(self, offer: Offer, details: ListingDetails, provider_key: bytes) -> None:
        """Set (or replace) the offer for its enclave key; it is published promptly and then
        every T seconds."""
        self._advertisements[offer.enclave_key] = _Advertisement(offer, details, provider_key)
        self._changed.set()

    def withdraw(self, enclave_key: str | None = None) -> None:
        """Stop publishing one enclave key's offer, or all of them."""
        if enclave_key is None:
            self._advertisements.clear()
        else:
            self._advertisements.pop(enclave_key, None)

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with (
            background_trio_service(self._pubsub),
            background_trio_service(self._router),
        ):
            with trio.fail_after(self._config.dial_timeout_s):
                await self._pubsub.wait_until_ready()
            subscription = await self._pubsub.subscribe(self.topic)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._receive, subscription)
                nursery.start_soon(self._publish_loop)
                nursery.start_soon(self._apply_penalties)
                nursery.start_soon(self._repair_pubsub_streams)
                task_status.started()

    async def wait_for_topic_peer(self, peer: PeerId, timeout_s: float) -> None:
        """Wait until `peer` has joined our topic (for startup ordering and tests)."""
        try:
            await self._pubsub.wait_for_subscription(libp2p_id(peer), self.topic, timeout_s)
        except trio.TooSlowError as exc:
            raise PeerTimeoutError(f"{peer} did not join {self.topic} in {timeout_s} s") from exc

    def _validate(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        sender = peer_id_of(forwarder)
        try:
            self._validator.check(sender, peer_id_of(ID(msg.from_id)), msg.data)
        except OfferRejected as rejection:
            self._reject(sender, rejection)
            return False
        except Exception as exc:
            # The listing code (offers.py) raised something other than OfferRejected on
            # this peer's bytes: a bug it found for us. Nothing leaves the validator but
            # a rejection, or pubsub would stop for everyone.
            logger.error("offer validator failed on a listing from %s: %r", sender, exc)
            self._reject(sender, OfferRejected("internal_error", repr(exc)))
            return False
        return True

    def _reject(self, sender: PeerId, rejection: OfferRejected) -> None:
        self.rejected[rejection.reason] = self.rejected.get(rejection.reason, 0) + 1
        if sender == self._host.peer_id:
            logger.warning("not publishing our own listing: %s", rejection)
            return
        logger.info("dropped listing from %s: %s", sender, rejection)
        # The validator is synchronous; penalties (which may disconnect) run in a task.
        with contextlib.suppress(trio.WouldBlock):
            self._pending_penalties_send.send_nowait((sender, rejection))

    async def _apply_penalties(self) -> None:
        async for peer, rejection in self._pending_penalties:
            await self._host.penalise(peer, rejection.reason, rejection.detail)
            with contextlib.suppress(trio.WouldBlock):
                self._rejections_send.send_nowait(Rejection(peer, rejection.reason))

    async def _repair_pubsub_streams(self) -> None:
        """Register connected peers that pubsub missed.

        py-libp2p 0.8.1 opens its pubsub stream from a connection notification; a
        connection reused or raced (both sides dialling at once) can skip it, leaving a
        connected peer outside every mesh. In 30-node runs that isolated ~1 node in 8.
        """
        while True:
            await trio.sleep(_STREAM_REPAIR_INTERVAL_S)
            for peer in self._host.libp2p.get_connected_peers():
                if peer in self._pubsub.peers or self._pubsub.is_peer_blacklisted(peer):
                    continue
                if self._host.is_banned_id(peer):
                    continue
                with trio.move_on_after(self._config.dial_timeout_s):
                    try:
                        await self._pubsub.ensure_peer_stream(peer, self._config.dial_timeout_s)
                    except Exception as exc:
                        logger.debug("pubsub stream to %s not repaired: %r", peer, exc)

    def _blacklist(self, peer: PeerId) -> None:
        self._pubsub.add_to_blacklist(libp2p_id(peer))

    async def _receive(self, subscription: ISubscriptionAPI) -> None:
        while True:
            msg = await subscription.get()
            received_at = time.time()
            try:
                listing = OfferListing.decode(msg.data, self._config.offers.max_listing_bytes)
            except Exception as exc:
                # Validated already: only a node without its validator lands here.
                logger.warning("delivered listing failed to decode: %r", exc)
                continue
            if self._book.put(listing, self._wall_clock()):
                try:
                    self._updates_send.send_nowait(ReceivedListing(listing, received_at))
                except trio.WouldBlock:
                    logger.debug("offer update buffer full; the book still has the listing")

    async def _publish_loop(self) -> None:
        params = self._config.gossip
        last_publish = -float("inf")
        while True:
            with trio.move_on_after(params.republish_interval_s):
                await self._changed.wait()
            self._changed = trio.Event()
            # Pacing: bursts of changes collapse into one publish per min interval.
            wait = last_publish + params.min_publish_interval_s - trio.current_time()
            if wait > 0:
                await trio.sleep(wait)
            for ad in list(self._advertisements.values()):
                listing = OfferListing.create(
                    offer=ad.offer,
                    details=ad.details,
                    chain_id=self._config.chain_id,
                    market=self._config.market_address,
                    peer_id=self._host.peer_id,
                    published_at=self._wall_clock(),
                    provider_key=ad.provider_key,
                )
                last_publish = trio.current_time()
                await self._pubsub.publish(self.topic, listing.encode())
                self.published += 1
