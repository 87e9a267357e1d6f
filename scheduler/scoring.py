"""Scoring of offers that passed every constraint, and the deterministic ranking order.

Every component is an integer in ``0..SCALE`` and the total is an integer weighted sum, so
scores compare exactly: the indexed and the naive matcher always agree, on any machine.
Ties in total score go to the cheaper offer, then to an order derived from a hash of the job id
and the offer, which is deterministic for the same inputs yet spreads jobs evenly across
providers that are otherwise equal (no provider wins every tie by having the smallest address).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from scheduler.errors import InvalidWeightsError
from scheduler.models import (
    JobId,
    ProviderAddress,
    ProviderHistory,
    ResourceOffer,
    Timestamp,
    Wei,
)

SCALE = 1_000_000
"""The value of a perfect score component."""

_UNKNOWN_PROVIDER = ProviderHistory()


@dataclass(frozen=True, slots=True)
class ScoringWeights:
    """Relative weights of the score components; non-negative integers, not all zero."""

    price: int = 40
    reputation: int = 30
    freshness: int = 10
    latency: int = 10
    load: int = 10

    def __post_init__(self) -> None:
        weights = (self.price, self.reputation, self.freshness, self.latency, self.load)
        if any(weight < 0 for weight in weights):
            raise InvalidWeightsError(f"weights must be >= 0, got {weights}")
        if not any(weights):
            raise InvalidWeightsError("at least one weight must be > 0")


@dataclass(frozen=True, slots=True)
class ScoringConfig:
    """Weights plus the reference points that turn raw values into components."""

    weights: ScoringWeights = field(default_factory=ScoringWeights)
    # Evidence this old (or older) scores 0 for freshness; fresh evidence scores SCALE.
    freshness_horizon_s: int = 24 * 3600
    # A latency equal to this scores SCALE / 2.
    latency_reference_ms: int = 50

    def __post_init__(self) -> None:
        if self.freshness_horizon_s <= 0 or self.latency_reference_ms <= 0:
            raise InvalidWeightsError("freshness horizon and latency reference must be > 0")


@dataclass(frozen=True, slots=True)
class MarketContext:
    """What the client knows besides the offers: on-chain history and its scoring config."""

    histories: Mapping[ProviderAddress, ProviderHistory] = field(default_factory=dict)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)

    def history_of(self, provider: ProviderAddress) -> ProviderHistory:
        """The provider's history; a provider never seen on chain has an empty one."""
        return self.histories.get(provider, _UNKNOWN_PROVIDER)


@dataclass(frozen=True, slots=True)
class ScoreBreakdown:
    """A score with its components, so a user can see why one offer beat another."""

    price: int
    reputation: int
    freshness: int
    latency: int
    load: int
    total: int


def price_component(price: Wei, max_price: Wei) -> int:
    """SCALE for a free offer, 0 for one at the job's maximum; never increases with price."""
    if max_price <= 0:
        return SCALE
    return max(0, (max_price - price) * SCALE // max_price)


def reputation_component(history: ProviderHistory) -> int:
    """Laplace-smoothed completion rate: an unknown provider starts at SCALE / 2."""
    return (history.completed + 1) * SCALE // (history.completed + history.timed_out + 2)


def freshness_component(verified_at: Timestamp | None, now: Timestamp, horizon_s: int) -> int:
    """SCALE for evidence verified now, falling linearly to 0 at the horizon."""
    if verified_at is None:
        return 0
    age = max(0, now - verified_at)
    return max(0, (horizon_s - age) * SCALE // horizon_s)


def latency_component(latency_ms: int, reference_ms: int) -> int:
    """SCALE at 0 ms, SCALE / 2 at the reference latency, towards 0 beyond."""
    return reference_ms * SCALE // (reference_ms + latency_ms)


def load_component(load_permille: int) -> int:
    """SCALE for an idle provider, 0 for a full one."""
    return (1000 - load_permille) * (SCALE // 1000)


def static_score(offer: ResourceOffer, context: MarketContext) -> int:
    """The weighted part of the score that depends on neither the job nor the time."""
    weights, scoring = context.scoring.weights, context.scoring
    return (
        weights.reputation * reputation_component(context.history_of(offer.provider))
        + weights.latency * latency_component(offer.latency_hint_ms, scoring.latency_reference_ms)
        + weights.load * load_component(offer.load_permille)
    )


def score_offer(
    offer: ResourceOffer, max_price: Wei, now: Timestamp, context: MarketContext
) -> ScoreBreakdown:
    """Score an offer for a job with the given maximum price, at time ``now``."""
    weights, scoring = context.scoring.weights, context.scoring
    price = price_component(offer.price_per_hour, max_price)
    reputation = reputation_component(context.history_of(offer.provider))
    freshness = freshness_component(offer.evidence_verified_at, now, scoring.freshness_horizon_s)
    latency = latency_component(offer.latency_hint_ms, scoring.latency_reference_ms)
    load = load_component(offer.load_permille)
    total = (
        weights.price * price
        + weights.reputation * reputation
        + weights.freshness * freshness
        + weights.latency * latency
        + weights.load * load
    )
    return ScoreBreakdown(price, reputation, freshness, latency, load, total)


def tie_break(job_id: JobId, offer: ResourceOffer) -> bytes:
    """A per-job pseudo-random but reproducible order among equally scored offers."""
    return hashlib.sha256(f"{job_id}|{offer.provider}|{offer.nonce}".encode()).digest()


RankKey = tuple[int, int, bytes, str, int]


def rank_key(job_id: JobId, offer: ResourceOffer, total: int) -> RankKey:
    """Sort key, smallest first: best score, then cheapest, then the tie-break hash."""
    return (-total, offer.price_per_hour, tie_break(job_id, offer), offer.provider, offer.nonce)
