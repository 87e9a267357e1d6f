"""One object the daemon starts: host, offer gossip and book, discovery, stream protocols."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from node.p2p.approve_protocol import ApprovalResponder, serve_approvals
from node.p2p.config import P2PConfig
from node.p2p.discovery import Discovery
from node.p2p.evidence_protocol import EvidenceSource, serve_evidence
from node.p2p.host import P2PHost
from node.p2p.identity import NodeIdentity, PeerId
from node.p2p.input_store import InputStore
from node.p2p.offer_book import OfferBook
from node.p2p.offer_gossip import OfferGossip, WallClock, unix_now
from node.p2p.penalties import Clock, PeerPenalties
from node.p2p.quote_protocol import QuoteResponder, serve_quotes
from node.p2p.transfer import InputGate, ResultSource, serve_inputs, serve_results

if TYPE_CHECKING:
    from trio_typing import TaskStatus

_BOOK_PRUNE_INTERVAL_S = 5.0


@dataclass(frozen=True)
class ProviderServices:
    """What a provider serves; a client-only node passes none."""

    evidence: EvidenceSource
    quotes: QuoteResponder
    inputs: InputStore
    results: ResultSource
    # Which uploads to take and the input receipt for each (None: take any, sign none).
    input_gate: InputGate | None = None


# A verifier answers approvals within this; the evidence check itself is bounded inside.
APPROVAL_DEADLINE_S = 60.0


class P2PNode:
    def __init__(
        self,
        identity: NodeIdentity,
        config: P2PConfig,
        provider: ProviderServices | None = None,
        wall_clock: WallClock = unix_now,
        clock: Clock = time.monotonic,
        penalties: PeerPenalties | None = None,
        approvals: ApprovalResponder | None = None,
    ) -> None:
        """`penalties` outlives the node when given: a supervisor that restarts the node
        keeps who is banned. `approvals` makes it a verifier's node."""
        self.config = config
        self._wall_clock = wall_clock
        self.penalties = penalties or PeerPenalties(config.penalties, clock)
        self.host = P2PHost(identity, config, self.penalties, clock)
        self.book = OfferBook(
            config.offers.book_entry_ttl_s,
            config.offers.max_book_entries,
            config.offers.max_offers_per_provider,
        )
        self.gossip = OfferGossip(self.host, config, self.book, wall_clock, clock)
        self.discovery = Discovery(self.host, config)
        if provider is not None:
            serve_evidence(self.host, provider.evidence)
            serve_quotes(self.host, provider.quotes)
            serve_inputs(self.host, provider.inputs, provider.input_gate)
            serve_results(self.host, provider.results)
        if approvals is not None:
            serve_approvals(self.host, approvals, deadline_s=APPROVAL_DEADLINE_S)

    @property
    def peer_id(self) -> PeerId:
        return self.host.peer_id

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.host.run)
            await nursery.start(self.gossip.run)
            await nursery.start(self.discovery.run)
            nursery.start_soon(self._prune_book)
            task_status.started()

    async def _prune_book(self) -> None:
        while True:
            await trio.sleep(_BOOK_PRUNE_INTERVAL_S)
            self.book.prune(self._wall_clock())
