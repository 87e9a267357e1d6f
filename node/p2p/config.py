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
    # Publishing is paced: never more than one round of our offers per this many seconds.
    # Receivers allow each offer 0.5 listings/s (OfferPolicy): a busy provider whose
    # capacity changes every second must not look like a flood.
    min_publish_interval_s: float = 2.0
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
    # Distinct offers (enclave keys, one per workload) one provider may hold in the book.
    max_offers_per_provider: int = 16


@dataclass(frozen=True)
class PenaltyPolicy:
    """Points a misbehaving peer collects; at the threshold it is disconnected and banned."""

    ban_threshold: float = 100.0
    ban_duration_s: float = 600.0
    # Each penalty counts in full for `hold_s`, then decays at `decay_per_s`: an honest
    # peer's occasional race (a just-expired offer) is forgiven, while violations repeated
    # within the hold add up exactly and reach the threshold.
    hold_s: float = 60.0
    decay_per_s: float = 1.0
    # Accounts kept; beyond this, forgiven (zero-point, unbanned) peers are forgotten first.
    max_accounts: int = 10_000


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
    # Uploads received at once, from everyone and from one peer; more are refused as busy.
    max_concurrent_uploads: int = 16
    max_uploads_per_peer: int = 2

    def __post_init__(self) -> None:
        if not self.min_chunk_size <= self.chunk_size <= self.max_chunk_size:
            raise ConfigError("chunk size must lie between the min and max chunk sizes")
        if self.window_chunks < 1 or self.read_timeout_s <= 0:
            raise ConfigError("window and timeouts must be positive")


@dataclass(frozen=True)
class AdmissionLimits:
    """Inbound connections, checked before any cryptography is done (see `admission`)."""

    # Handshakes in flight (TCP accepted, Noise or muxer negotiation not finished).
    max_pending_handshakes: int = 64
    max_pending_handshakes_per_ip: int = 8
    # How fast one IP may start handshakes: a token bucket.
    handshake_burst_per_ip: int = 64
    handshake_rate_per_ip: float = 8.0
    handshake_timeout_s: float = 10.0
    # Established inbound connections from one IP (NATs put honest peers behind one).
    max_inbound_connections_per_ip: int = 64

    def __post_init__(self) -> None:
        if min(self.max_pending_handshakes, self.max_pending_handshakes_per_ip) < 1:
            raise ConfigError("handshake limits must be at least 1")
        if self.handshake_rate_per_ip <= 0 or self.handshake_timeout_s <= 0:
            raise ConfigError("handshake rate and timeout must be positive")


@dataclass(frozen=True)
class PeerLimits:
    """Per-peer caps py-libp2p 0.8.1 lacks; exceeding most of them is penalised."""

    # Yamux: streams a peer has open towards us, per connection and over all of them.
    max_inbound_streams_per_conn: int = 64
    max_inbound_streams_per_peer: int = 128
    # Bytes beyond the receive window we granted before the connection is closed.
    window_slack_bytes: int = 64 * KIB
    # Receive window a stream may grow to (Yamux auto-tuning doubles it up to 16 MiB;
    # the effective cap is twice this), and what one connection may have buffered unread.
    max_stream_window: int = 1 * MIB
    max_buffered_per_conn: int = 16 * MIB
    # Pubsub: one RPC stream per peer is the protocol; a reconnect race may briefly add one.
    max_pubsub_streams_per_peer: int = 2
    max_rpc_bytes: int = 256 * KIB
    # Messages plus control entries (ihave, iwant, graft, prune, idontwant) in one RPC.
    max_rpc_entries: int = 256
    # Message ids in one IHAVE/IWANT/IDONTWANT entry.
    max_ids_per_entry: int = 512
    max_subscriptions_per_rpc: int = 64
    # A PRUNE's back-off is the sender's wish, capped here (the spec suggests 60 s).
    max_backoff_s: int = 600
    # Token buckets per peer: RPCs and pubsub messages read from one peer.
    rpc_burst: int = 200
    rpc_rate_per_s: float = 50.0
    message_burst: int = 200
    message_rate_per_s: float = 50.0
    # Identify: the message and what of it the peerstore keeps.
    max_identify_bytes: int = 8 * KIB
    max_protocols_per_peer: int = 64
    max_protocol_length: int = 128
    max_addrs_per_peer: int = 16
    max_peerstore_peers: int = 2000


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
    admission: AdmissionLimits = field(default_factory=AdmissionLimits)
    peer_limits: PeerLimits = field(default_factory=PeerLimits)

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
    def max_inbound_connections(self) -> int:
        """Inbound connections at once; the rest of `max_connections` is kept for dialling."""
        return self.max_connections - self.target_connections

    @property
    def offer_topic(self) -> str:
        return f"/capa/offers/1/{self.chain_id}/{self.market_address.lower()}"

    @property
    def rendezvous_namespace(self) -> str:
        return f"capa/{self.chain_id}/{self.market_address.lower()}"
