"""The client's view of the market: offers heard on gossip, and the ranking of them for a job.

`OfferFeed` turns each new listing the p2p node accepts into an `OfferReceived` state change
(what /v1/offers lists). `ProviderFinder` answers `FindProviders` with the scheduler's ranking
over the live offer book, or the scheduler's one-line summary of why nothing matched.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

import trio

from node.daemon.errors import DaemonError
from node.daemon.wiring import NodeContext
from node.enclave.envelope import HEADER_SIZE as ENVELOPE_HEADER_SIZE
from node.p2p.node import P2PNode
from node.p2p.offer_gossip import unix_now
from node.p2p.offers import OfferListing
from node.state import changes as sc
from node.state.effects import Effect, FindProviders
from node.state.model import Job
from node.state.values import to_address
from scheduler.constraints import ConstraintFailure, ConstraintKind
from scheduler.errors import SchedulerError
from scheduler.matching import MatchResult, OfferIndex
from scheduler.models import (
    JobId as SchedulerJobId,
)
from scheduler.models import (
    JobRequirements,
    Measurement,
    ProviderAddress,
    ResourceOffer,
    TcbStatus,
    TeeKind,
    Timestamp,
    Wei,
    WorkloadKind,
)
from scheduler.scoring import MarketContext

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

# How often the feed looks whether the supervisor replaced the p2p node it reads from.
_NODE_CHECK_S = 2.0
# Listings already turned into a state change (a republication repeats its nonce).
_REMEMBERED = 4096
_ZERO_MEASUREMENT = "0x" + "00" * 32
# How long a job waits for a first offer when the book is empty (providers republish every
# minute); with offers in the book, a job nothing matches fails at once with the reasons.
EMPTY_BOOK_PATIENCE_S = 75


class OfferFeed:
    """Producer of OfferReceived from the p2p node's accepted listings.

    The supervisor may restart the node after a fault: the feed then reads from the new one
    (whose book starts empty and fills as providers republish).
    """

    def __init__(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        self._sent: OrderedDict[tuple[str, str, int], None] = OrderedDict()

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        if not self._ctx.p2p.enabled:
            return
        while True:
            try:
                node = await self._ctx.p2p.node()
            except DaemonError as exc:
                log.info("offer feed waits for the p2p node: %s", exc)
                continue
            await self._follow(node)

    async def _follow(self, node: P2PNode) -> None:
        for listing in node.book.listings(unix_now()):
            await self._record(listing)
        updates = node.gossip.updates
        open_channel = True
        while True:
            received = None
            with trio.move_on_after(_NODE_CHECK_S):
                if open_channel:
                    try:
                        received = await updates.receive()
                    except (trio.EndOfChannel, trio.ClosedResourceError):
                        open_channel = False  # that node is going away
                if not open_channel:
                    await trio.sleep(_NODE_CHECK_S)
            if received is not None:
                # Outside the timeout: a submission waiting on a full queue is not cut short.
                await self._record(received.listing)
                continue
            try:
                current = await self._ctx.p2p.node(timeout=_NODE_CHECK_S)
            except DaemonError:
                return  # the node is down: wait for the next one
            if current is not node:
                return

    async def _record(self, listing: OfferListing) -> None:
        offer = listing.offer
        key = (listing.provider, offer.enclave_key.lower(), offer.nonce)
        if key in self._sent:
            return
        self._sent[key] = None
        if len(self._sent) > _REMEMBERED:
            self._sent.popitem(last=False)
        change = sc.OfferReceived(
            provider=to_address(offer.provider),
            nonce=offer.nonce,
            price=offer.price,
            valid_until=offer.valid_until,
            tee_kind=offer.tee_kind,
            peer_id=str(listing.peer_id),
            body=listing.encode().decode(),
        )
        await self._ctx.service.submit([change])


@dataclass(frozen=True)
class Verdict:
    """What this daemon concluded about an enclave key's evidence, and when."""

    accepted: bool
    at: int


class EvidenceVerdicts:
    """The client's own checks of enclave keys, remembered for ranking the next jobs.

    A key whose evidence this client refused ranks as unverified (the scheduler then names
    it so); a key it has not checked yet ranks as verified by the committee that registered
    it (a listing is only worth anything for a key valid on chain, which CheckProvider reads
    before anything is sent), as of the listing's publication.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._verdicts: OrderedDict[str, Verdict] = OrderedDict()
        self._capacity = capacity

    def record(self, enclave_key: str, accepted: bool, at: int) -> None:
        self._verdicts[enclave_key.lower()] = Verdict(accepted, at)
        self._verdicts.move_to_end(enclave_key.lower())
        if len(self._verdicts) > self._capacity:
            self._verdicts.popitem(last=False)

    def get(self, enclave_key: str) -> Verdict | None:
        return self._verdicts.get(enclave_key.lower())

    def checked(self, enclave_key: str) -> tuple[bool, int] | None:
        """(accepted, chain time) of the last check of the key; None if unchecked."""
        verdict = self.get(enclave_key)
        return None if verdict is None else (verdict.accepted, verdict.at)

    def annotate(self, listing: OfferListing) -> ResourceOffer:
        offer = listing.to_resource_offer()
        verdict = self.get(listing.offer.enclave_key)
        if verdict is None:
            at = Timestamp(min(listing.published_at, listing.offer.valid_until))
            return replace(offer, evidence_verified=True, evidence_verified_at=at)
        if not verdict.accepted:
            return replace(offer, evidence_verified=False, evidence_verified_at=None)
        return replace(offer, evidence_verified=True, evidence_verified_at=Timestamp(verdict.at))


def requirements_of(job: Job, now: int, allow_sim: bool) -> JobRequirements:
    """The scheduler's form of a client's job; SchedulerError/ValueError when it has none."""
    kinds = {TeeKind(k) for k in range(8) if job.tee_kinds & (1 << k) and k in _KNOWN_KINDS}
    if not allow_sim:
        # The client's policy refuses sim evidence: no use ranking sim offers first.
        kinds.discard(TeeKind.SIM)
    if not kinds:
        raise ValueError(
            f"the job accepts no TEE kind this client may use (mask {job.tee_kinds:#x}"
            f"{', sim is off in [client] allow_sim' if not allow_sim else ''})"
        )
    if job.timeout_s <= 0:
        raise ValueError(f"the job's timeout must be positive, not {job.timeout_s} s")
    measurements: frozenset[Measurement] = frozenset()
    if job.measurement is not None and job.measurement != _ZERO_MEASUREMENT:
        measurements = frozenset({Measurement(job.measurement)})
    return JobRequirements(
        job_id=SchedulerJobId(job.job_id),
        workload=WorkloadKind(job.workload),
        accepted_tee_kinds=frozenset(kinds),
        # Offers are priced per hour of compute; the job pays its max price for its timeout.
        max_price_per_hour=Wei(job.max_price * 3600 // job.timeout_s),
        deadline=Timestamp(now + job.timeout_s),
        duration_s=job.timeout_s,
        min_tcb_status=TcbStatus(job.min_tcb_status),
        allowed_measurements=measurements,
        cpu_cores=job.cpu_cores,
        memory_mib=job.memory_mib,
        submitted_at=Timestamp(job.submitted_at),
    )


_KNOWN_KINDS = frozenset(int(k) for k in TeeKind)


@dataclass(frozen=True)
class DurationConstraint:
    """The offer takes jobs as long as this one: matchJob refuses a deadline outside the
    offer's minimum and maximum duration. (The scheduler's offers carry no durations; the
    listings they came from do.)"""

    duration_s: int
    windows: Mapping[tuple[ProviderAddress, int], tuple[int, int]]
    kind: ClassVar[ConstraintKind] = ConstraintKind.DEADLINE

    def accepts(self, offer: ResourceOffer, now: Timestamp) -> bool:
        low, high = self.windows.get(offer.key, (0, 2**64))
        return low <= self.duration_s <= high

    def explain(self, offer: ResourceOffer, now: Timestamp) -> ConstraintFailure:
        low, high = self.windows.get(offer.key, (0, 2**64))
        return ConstraintFailure(
            self.kind,
            f"{self.duration_s} s",
            f"{low}-{high} s",
            f"takes jobs of {low}-{high} s, this one runs {self.duration_s} s",
            closeness=-abs(self.duration_s - (low if self.duration_s < low else high)),
        )


@dataclass(frozen=True)
class InputRoomConstraint:
    """The provider's input store takes an input this large: a larger one would be refused
    at the upload, after matchJob has escrowed the price. (The scheduler's offers carry no
    store size; the listings they came from do, when the provider says it.)"""

    input_bytes: int  # the least the sealed input takes: the plaintext and its envelope
    room: Mapping[tuple[ProviderAddress, int], int | None]
    kind: ClassVar[ConstraintKind] = ConstraintKind.INPUT_SIZE

    def accepts(self, offer: ResourceOffer, now: Timestamp) -> bool:
        room = self.room.get(offer.key)
        return room is None or self.input_bytes <= room

    def explain(self, offer: ResourceOffer, now: Timestamp) -> ConstraintFailure:
        room = self.room.get(offer.key) or 0
        return ConstraintFailure(
            self.kind,
            f"{self.input_bytes} bytes",
            f"{room} bytes",
            f"its input store takes at most {room} bytes, this input needs {self.input_bytes}",
            closeness=room - self.input_bytes,
        )


def _freshest(listings: list[OfferListing]) -> list[OfferListing]:
    """One listing per (provider, nonce), as the scheduler keys offers: the freshest wins."""
    kept: dict[tuple[ProviderAddress, int], OfferListing] = {}
    for listing in listings:
        key = (listing.provider, listing.offer.nonce)
        if key not in kept or listing.freshness > kept[key].freshness:
            kept[key] = listing
    return list(kept.values())


def match_listings(
    job: Job,
    listings: list[OfferListing],
    now: int,
    *,
    allow_sim: bool,
    verdicts: EvidenceVerdicts,
    context: MarketContext,
) -> tuple[MatchResult, dict[tuple[ProviderAddress, int], OfferListing]]:
    """The scheduler's ranking of `listings` for a client's job, with every rejection and
    its reasons (what FindProviders acts on and `capa offers --why` shows), and the listings
    by the scheduler's offer key. SchedulerError/ValueError when the job has no requirements
    the scheduler can use."""
    requirements = requirements_of(job, now, allow_sim)
    kept = _freshest(listings)
    by_key = {(listing.provider, listing.offer.nonce): listing for listing in kept}
    offers = []
    for listing in kept:
        try:
            offers.append(verdicts.annotate(listing))
        except SchedulerError as exc:
            log.info("offer of %s left out: %s", listing.provider, exc)
    windows = {
        key: (listing.offer.min_duration, listing.offer.max_duration)
        for key, listing in by_key.items()
    }
    index = OfferIndex.build(offers, context)
    durations = DurationConstraint(requirements.duration_s, windows)
    room = InputRoomConstraint(
        job.input_size + ENVELOPE_HEADER_SIZE,
        {key: listing.details.max_input_bytes for key, listing in by_key.items()},
    )
    return index.explain(requirements, Timestamp(now), (durations, room)), by_key


class ProviderFinder:
    """FindProviders: the scheduler's ranking of the live offer book for one job."""

    def __init__(self, ctx: NodeContext, verdicts: EvidenceVerdicts, allow_sim: bool) -> None:
        self._ctx = ctx
        self._verdicts = verdicts
        self._allow_sim = allow_sim
        self._context = MarketContext()

    async def execute(self, effect: Effect) -> sc.StateChange | None:
        assert isinstance(effect, FindProviders)
        job = self._ctx.service.state.jobs.get(effect.job_id)
        if job is None:
            return None
        if not self._ctx.p2p.enabled:
            return sc.ProvidersFound(
                effect.job_id, effect.attempt, "[]", "p2p is off (p2p.enabled = false): no offers"
            )
        node = await self._ctx.p2p.node()
        listings = node.book.listings(unix_now())
        waited = unix_now() - job.submitted_at
        if not listings and waited < EMPTY_BOOK_PATIENCE_S:
            # A daemon just started (or its p2p node just restarted) has heard no offer yet:
            # providers republish within a minute. Asked again after the runner's pause.
            raise DaemonError(f"no offer heard yet ({waited} s after submission); waiting")
        return self.rank(effect, job, listings)

    def rank(self, effect: FindProviders, job: Job, listings: list[OfferListing]) -> sc.StateChange:
        now = self._ctx.chain_time() or unix_now()
        try:
            result, by_key = match_listings(
                job,
                listings,
                now,
                allow_sim=self._allow_sim,
                verdicts=self._verdicts,
                context=self._context,
            )
        except (SchedulerError, ValueError) as exc:
            return sc.ProvidersFound(effect.job_id, effect.attempt, "[]", str(exc))
        candidates = []
        for scored in result.ranked:
            listing = by_key[scored.offer.key]
            candidates.append(
                {
                    "provider": to_address(listing.offer.provider),
                    "peer_id": str(listing.peer_id),
                    "enclave_key": to_address(listing.offer.enclave_key),
                    "tee_kind": listing.offer.tee_kind,
                    "measurement": "0x" + listing.offer.measurement.hex(),
                    "price_per_hour": listing.offer.price,
                    "score": scored.score.total,
                }
            )
        why_none = "" if candidates else result.summary.text
        log.info("job %s: %s", job.job_id, result.reason)
        return sc.ProvidersFound(effect.job_id, effect.attempt, json.dumps(candidates), why_none)
