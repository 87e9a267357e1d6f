"""P2P settings, passed in by the daemon (which reads its own config file)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from node.p2p.errors import ConfigError
from node.p2p.identity import Multiaddr, PeerAddress, parse_multiaddr

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class GossipParams:
    """GossipSub mesh and offer publishing; library defaults that hurt a daemon are overridden.

    py-libp2p 0.8.1's spam protection drops everything above 10 msg/s per topic (our own
    publishes included) and its adaptive gossip stretches heartbeats to 30-60 s; both are off
    here and replaced by our own per-peer limits in `offer_gossip`.
    """

    degree: int = 6
    degree_low: int = 4
    degree_high: int = 12
    heartbeat_interval_s: int = 1
    # Republish the current offer this often even when unchanged (the "T" of the design).
    republish_interval_s: float = 60.0
    # Publishing is paced: never more than one publish per this many seconds.
    min_publish_interval_s: float = 1.0
    seen_ttl_s: int = 120

    def __post_init__(self) -> None:
        if not 0 < self.degree_low <= self.degree <= self.degree_high:
            raise ConfigError("gossip degrees need 0 < low <= degree <= high")
        if self.heartbeat_interval_s < 1 or self.min_publish_interval_s < 1:
            # Listings carry whole-second publication times; two publishes within one
            # second would look like a replay of each other.
            raise ConfigError("heartbeat and publish pacing intervals must be >= 1 s")
        if self.republish_interval_s < self.min_publish_interval_s:
            raise ConfigError("the republish interval is shorter than the publish pacing")


@dataclass(frozen=True)
class OfferPolicy:
    """What a receiver accepts on the offer topic, and how fast."""

    max_listing_bytes: int = 4 * KIB
    max_clock_skew_s: int = 30
    # A listing older than this is stale even if the offer itself is still valid; it must
    # stay above the republish interval or honest listings expire between refreshes.
    max_listing_age_s: int = 300
    # An offer book entry vanishes when its listing has not been refreshed for this long.
    book_entry_ttl_s: int = 200
    # Per-origin (provider) token bucket: honest providers publish on change and every T s.
    provider_burst: int = 5
    provider_rate_per_s: float = 0.5
    # Per-forwarder token bucket: a relay forwards everyone's offers, so this is wider.
    forwarder_burst: int = 200
    forwarder_rate_per_s: float = 50.0
    max_book_entries: int = 10_000


@dataclass(frozen=True)
class PenaltyPolicy:
    """Points a misbehaving peer collects; at the threshold it is disconnected and banned."""

    ban_threshold: float = 100.0
    ban_duration_s: float = 600.0
    # Points decay so an honest peer's occasional race (a just-expired offer) is forgiven.
    decay_per_s: float = 1.0


@dataclass(frozen=True)
class StreamLimits:
    """Caps and deadlines shared by the /capa/* stream protocols."""

    read_timeout_s: float = 10.0
    exchange_timeout_s: float = 30.0
    max_control_frame: int = 64 * KIB
    chunk_size: int = 1 * MIB
    min_chunk_size: int = 256 * KIB
    max_chunk_size: int = 1 * MIB
    # Unacknowledged chunks the sender may have in flight; keeps the receiver draining.
    window_chunks: int = 8
    max_input_bytes: int = 4 * 1024 * MIB
    max_result_bytes: int = 4 * 1024 * MIB

    def __post_init__(self) -> None:
        if not self.min_chunk_size <= self.chunk_size <= self.max_chunk_size:
            raise ConfigError("chunk size must lie between the min and max chunk sizes")
        if self.window_chunks < 1 or self.read_timeout_s <= 0:
            raise ConfigError("window and timeouts must be positive")


@dataclass(frozen=True)
class P2PConfig:
    """Everything the p2p layer needs; chain id and market address scope topics and offers."""

    chain_id: int
    market_address: str
    listen_addrs: tuple[Multiaddr, ...] = (Multiaddr("/ip4/0.0.0.0/tcp/4001"),)
    bootstrap_peers: tuple[PeerAddress, ...] = ()
    # Bootstrap nodes run a rendezvous point; everyone else registers and discovers there.
    rendezvous_server: bool = False
    rendezvous_interval_s: float = 60.0
    rendezvous_ttl_s: int = 2 * 3600
    # Connections we aim for (dialled by discovery and libp2p's auto-connector); beyond
    # twice this, libp2p prunes; max_connections is the hard cap, inbound included.
    target_connections: int = 6
    max_connections: int = 256
    dial_timeout_s: float = 10.0
    peer_store_path: Path | None = None
    gossip: GossipParams = field(default_factory=GossipParams)
    offers: OfferPolicy = field(default_factory=OfferPolicy)
    penalties: PenaltyPolicy = field(default_factory=PenaltyPolicy)
    streams: StreamLimits = field(default_factory=StreamLimits)

    def __post_init__(self) -> None:
        if not self.listen_addrs:
            raise ConfigError("at least one listen address is needed")
        for addr in self.listen_addrs:
            parse_multiaddr(addr)
        if self.chain_id <= 0:
            raise ConfigError(f"chain id must be positive, got {self.chain_id}")
        if not (
            self.target_connections >= 2 and 2 * self.target_connections <= self.max_connections
        ):
            raise ConfigError("need 2 <= target_connections and 2 * target <= max_connections")

    @property
    def offer_topic(self) -> str:
        return f"/capa/offers/1/{self.chain_id}/{self.market_address.lower()}"

    @property
    def rendezvous_namespace(self) -> str:
        return f"capa/{self.chain_id}/{self.market_address.lower()}"
