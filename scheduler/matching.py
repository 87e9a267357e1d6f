"""Client-side matching: pick the best offer for a job, and say why the others lost.

Two ways to choose, which always agree:

* ``scan_match`` / ``scan_choose`` look at every offer. ``scan_match`` also explains every
  rejection and groups them into a one-line summary; use it when no offer matched or when a
  user asks why.
* ``OfferIndex`` groups offers by (TEE kind, GPU model), sorts each group by price, and for a
  job visits only the groups it accepts, only up to its maximum price, and stops early in a
  group once no remaining offer there can beat the best score found.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from scheduler.constraints import (
    Constraint,
    ConstraintFailure,
    ConstraintKind,
    constraints_for,
    failures_of,
)
from scheduler.errors import DuplicateOfferError
from scheduler.models import (
    GpuModel,
    JobId,
    JobRequirements,
    ResourceOffer,
    TeeKind,
    Timestamp,
    Wei,
)
from scheduler.scoring import (
    SCALE,
    MarketContext,
    RankKey,
    ScoreBreakdown,
    freshness_component,
    price_component,
    rank_key,
    score_offer,
    static_score,
)
from scheduler.units import format_price_per_hour


@dataclass(frozen=True, slots=True)
class ScoredOffer:
    """An offer that meets every constraint, with its score and ranking key."""

    offer: ResourceOffer
    score: ScoreBreakdown
    rank: RankKey


@dataclass(frozen=True, slots=True)
class Rejection:
    """An offer that fails at least one constraint, with every failure in explanation order."""

    offer: ResourceOffer
    failures: tuple[ConstraintFailure, ...]

    @property
    def primary(self) -> ConstraintFailure:
        """The failure the summary counts this offer under."""
        return self.failures[0]

    @property
    def reason(self) -> str:
        """All failures of this offer in one line."""
        return "; ".join(failure.message for failure in self.failures)


@dataclass(frozen=True, slots=True)
class RejectionGroup:
    """Offers rejected for the same primary constraint, with the nearest miss among them."""

    kind: ConstraintKind
    count: int
    nearest: ConstraintFailure
    # Whether every offer in the group offered the same value (e.g. all "OutOfDate").
    uniform: bool

    @property
    def text(self) -> str:
        """E.g. ``21 too expensive (cheapest 0.012 ETH/h > 0.01 ETH/h)``."""
        return f"{self.count} {_GROUP_PHRASES[self.kind](self)}"


@dataclass(frozen=True, slots=True)
class MatchSummary:
    """Counts of matching and rejected offers, grouped by primary failing constraint."""

    total_offers: int
    matching: int
    groups: tuple[RejectionGroup, ...]

    @property
    def text(self) -> str:
        """E.g. ``37 offers: 21 too expensive (...), 12 no H100, 4 TCB OutOfDate``."""
        if self.total_offers == 0:
            return "0 offers: nothing on the market"
        parts = [f"{self.matching} match"] if self.matching else []
        parts += [group.text for group in self.groups]
        noun = "offer" if self.total_offers == 1 else "offers"
        return f"{self.total_offers} {noun}: {', '.join(parts)}"


@dataclass(frozen=True, slots=True)
class MatchResult:
    """The outcome of matching one job: the choice, the ranking, and every rejection."""

    job_id: JobId
    chosen: ScoredOffer | None
    ranked: tuple[ScoredOffer, ...]
    rejections: tuple[Rejection, ...]
    summary: MatchSummary

    @property
    def reason(self) -> str:
        """One line for the user: who was chosen and why, or why no one could be."""
        if self.chosen is None:
            return f"no provider can take job {self.job_id}: {self.summary.text}"
        offer = self.chosen.offer
        return (
            f"job {self.job_id} -> {offer.provider} (offer #{offer.nonce}) at "
            f"{format_price_per_hour(offer.price_per_hour)}, score {self.chosen.score.total}; "
            f"{self.summary.text}"
        )


def scan_match(
    job: JobRequirements,
    offers: Iterable[ResourceOffer],
    now: Timestamp,
    context: MarketContext,
    extra: Sequence[Constraint] = (),
) -> MatchResult:
    """Check every offer against every constraint; rank the good ones, explain the rest."""
    constraints = (*constraints_for(job), *extra)
    ranked: list[ScoredOffer] = []
    rejections: list[Rejection] = []
    total_offers = 0
    for offer in offers:
        total_offers += 1
        failures = failures_of(constraints, offer, now)
        if failures:
            rejections.append(Rejection(offer, failures))
            continue
        score = score_offer(offer, job.max_price_per_hour, now, context)
        ranked.append(ScoredOffer(offer, score, rank_key(job.job_id, offer, score.total)))
    ranked.sort(key=lambda scored: scored.rank)
    summary = MatchSummary(total_offers, len(ranked), summarize(rejections))
    return MatchResult(
        job.job_id, ranked[0] if ranked else None, tuple(ranked), tuple(rejections), summary
    )


def scan_choose(
    job: JobRequirements,
    offers: Iterable[ResourceOffer],
    now: Timestamp,
    context: MarketContext,
    extra: Sequence[Constraint] = (),
) -> ScoredOffer | None:
    """The naive baseline: test every offer, keep the best; no reasons, no index."""
    constraints = (*constraints_for(job), *extra)
    max_price = job.max_price_per_hour
    best: ResourceOffer | None = None
    best_total = -1
    for offer in offers:
        if all(constraint.accepts(offer, now) for constraint in constraints):
            total = score_offer(offer, max_price, now, context).total
            if best is None or _beats(job.job_id, offer, total, best, best_total):
                best, best_total = offer, total
    return _scored(job, best, now, context)


def summarize(rejections: Iterable[Rejection]) -> tuple[RejectionGroup, ...]:
    """Group rejections by primary constraint, largest group first."""
    by_kind: dict[ConstraintKind, list[ConstraintFailure]] = defaultdict(list)
    for rejection in rejections:
        by_kind[rejection.primary.kind].append(rejection.primary)
    groups = [
        RejectionGroup(
            kind,
            len(failures),
            max(failures, key=lambda failure: failure.closeness),
            len({failure.offered for failure in failures}) == 1,
        )
        for kind, failures in by_kind.items()
    ]
    groups.sort(key=lambda group: (-group.count, group.kind.rank))
    return tuple(groups)


# Constraint kinds an OfferIndex guarantees by which buckets and price range it visits.
_GUARANTEED_BY_INDEX = frozenset(
    {
        ConstraintKind.TEE_KIND,
        ConstraintKind.INSECURE_SIM,
        ConstraintKind.GPU_MODEL,
        ConstraintKind.PRICE,
        ConstraintKind.DEADLINE,
    }
)

_BucketKey = tuple[TeeKind, GpuModel | None]


@dataclass(frozen=True, slots=True)
class _Bucket:
    """Offers of one TEE kind and GPU model, cheapest first."""

    prices: tuple[Wei, ...]
    offers: tuple[ResourceOffer, ...]
    static_scores: tuple[int, ...]
    # best_static_from[i] = max(static_scores[i:]): bounds every offer not yet visited.
    best_static_from: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class OfferIndex:
    """Offers indexed for fast matching; build once per offer-book snapshot."""

    context: MarketContext
    offers: tuple[ResourceOffer, ...]
    buckets: Mapping[_BucketKey, _Bucket]
    models_by_tee: Mapping[TeeKind, tuple[GpuModel | None, ...]]

    @classmethod
    def build(cls, offers: Iterable[ResourceOffer], context: MarketContext) -> OfferIndex:
        """Index a snapshot of offers, scored against the given market context."""
        all_offers = tuple(offers)
        if len({offer.key for offer in all_offers}) != len(all_offers):
            raise DuplicateOfferError("offer book holds two offers with the same provider+nonce")
        grouped: dict[_BucketKey, list[ResourceOffer]] = defaultdict(list)
        for offer in all_offers:
            grouped[(offer.tee_kind, offer.gpu.model if offer.gpu else None)].append(offer)
        buckets: dict[_BucketKey, _Bucket] = {}
        models: dict[TeeKind, list[GpuModel | None]] = defaultdict(list)
        for key in sorted(grouped, key=lambda k: (k[0], k[1] or "")):
            members = sorted(grouped[key], key=lambda offer: (offer.price_per_hour, offer.key))
            statics = [static_score(offer, context) for offer in members]
            best_from = statics[:]
            for i in range(len(best_from) - 2, -1, -1):
                best_from[i] = max(best_from[i], best_from[i + 1])
            buckets[key] = _Bucket(
                tuple(offer.price_per_hour for offer in members),
                tuple(members),
                tuple(statics),
                tuple(best_from),
            )
            models[key[0]].append(key[1])
        return cls(
            context,
            all_offers,
            buckets,
            {tee: tuple(model_list) for tee, model_list in models.items()},
        )

    def choose(
        self, job: JobRequirements, now: Timestamp, extra: Sequence[Constraint] = ()
    ) -> ScoredOffer | None:
        """The best offer for the job, identical to ``scan_choose`` over the same offers."""
        if now + job.duration_s > job.deadline:
            return None
        residual = tuple(
            c for c in constraints_for(job) if c.kind not in _GUARANTEED_BY_INDEX
        ) + tuple(extra)
        scoring = self.context.scoring
        price_weight = scoring.weights.price
        freshness_weight = scoring.weights.freshness
        horizon = scoring.freshness_horizon_s
        max_price = job.max_price_per_hour
        best: ResourceOffer | None = None
        best_total = -1
        for bucket in self._buckets_for(job):
            prices = bucket.prices
            for i in range(bisect.bisect_right(prices, max_price)):
                price_part = price_weight * price_component(prices[i], max_price)
                bound = price_part + freshness_weight * SCALE + bucket.best_static_from[i]
                if bound < best_total:
                    # Sorted by price: every later offer here has a lower or equal bound.
                    break
                offer = bucket.offers[i]
                for constraint in residual:
                    if not constraint.accepts(offer, now):
                        break
                else:
                    total = (
                        price_part
                        + freshness_weight
                        * freshness_component(offer.evidence_verified_at, now, horizon)
                        + bucket.static_scores[i]
                    )
                    if best is None or _beats(job.job_id, offer, total, best, best_total):
                        best, best_total = offer, total
        return _scored(job, best, now, self.context)

    def explain(
        self, job: JobRequirements, now: Timestamp, extra: Sequence[Constraint] = ()
    ) -> MatchResult:
        """Full ranking and every rejection reason over the indexed offers."""
        return scan_match(job, self.offers, now, self.context, extra)

    def _buckets_for(self, job: JobRequirements) -> Iterable[_Bucket]:
        for tee in sorted(job.accepted_tee_kinds):
            for model in self.models_by_tee.get(tee, ()):
                if job.gpu is not None and (
                    model is None or (job.gpu.model is not None and model != job.gpu.model)
                ):
                    continue
                yield self.buckets[(tee, model)]


def _beats(
    job_id: JobId, offer: ResourceOffer, total: int, best: ResourceOffer, best_total: int
) -> bool:
    if total != best_total:
        return total > best_total
    if offer.price_per_hour != best.price_per_hour:
        return offer.price_per_hour < best.price_per_hour
    return rank_key(job_id, offer, total) < rank_key(job_id, best, best_total)


def _scored(
    job: JobRequirements, offer: ResourceOffer | None, now: Timestamp, context: MarketContext
) -> ScoredOffer | None:
    if offer is None:
        return None
    score = score_offer(offer, job.max_price_per_hour, now, context)
    return ScoredOffer(offer, score, rank_key(job.job_id, offer, score.total))


def _uniform_or(group: RejectionGroup, uniform: str, mixed: str) -> str:
    return uniform if group.uniform else mixed


_GROUP_PHRASES: Mapping[ConstraintKind, Callable[[RejectionGroup], str]] = {
    ConstraintKind.OFFER_VALIDITY: lambda g: "expired or not yet valid",
    ConstraintKind.DEADLINE: lambda g: f"deadline unreachable ({g.nearest.message})",
    ConstraintKind.INSECURE_SIM: lambda g: "INSECURE SIM enclaves (job does not accept SIM)",
    ConstraintKind.TEE_KIND: lambda g: f"wrong TEE kind (needs {g.nearest.required})",
    ConstraintKind.TCB_STATUS: lambda g: _uniform_or(
        g,
        f"TCB {g.nearest.offered}",
        f"TCB below {g.nearest.required} (best {g.nearest.offered})",
    ),
    ConstraintKind.MEASUREMENT: lambda g: f"measurement not allowed ({g.nearest.required})",
    ConstraintKind.EVIDENCE: lambda g: _uniform_or(
        g,
        f"evidence {g.nearest.offered} (needs {g.nearest.required})",
        f"evidence unverified or stale (needs {g.nearest.required})",
    ),
    ConstraintKind.WORKLOAD: lambda g: f"no {g.nearest.required} workloads",
    ConstraintKind.GPU_MODEL: lambda g: f"no {g.nearest.required}",
    ConstraintKind.GPU_COUNT: lambda g: (
        f"too few GPUs (most {g.nearest.offered} < {g.nearest.required})"
    ),
    ConstraintKind.GPU_VRAM: lambda g: (
        f"too little VRAM (most {g.nearest.offered} < {g.nearest.required})"
    ),
    ConstraintKind.GPU_CC_MODE: lambda g: "GPUs not in CC mode",
    ConstraintKind.CPU_CORES: lambda g: (
        f"too few CPU cores (most {g.nearest.offered} < {g.nearest.required})"
    ),
    ConstraintKind.MEMORY: lambda g: (
        f"too little memory (most {g.nearest.offered} < {g.nearest.required})"
    ),
    ConstraintKind.INPUT_SIZE: lambda g: (
        f"input too large (largest taken {g.nearest.offered} < {g.nearest.required})"
    ),
    ConstraintKind.REGION: lambda g: f"outside {g.nearest.required}",
    ConstraintKind.LATENCY: lambda g: (
        f"too far (nearest {g.nearest.offered}, needs {g.nearest.required})"
    ),
    ConstraintKind.PRICE: lambda g: (
        f"too expensive (cheapest {g.nearest.offered} > {g.nearest.required})"
    ),
}
