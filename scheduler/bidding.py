"""Provider-side bid strategy: a chain of rules, each able to decide with a reason.

``decide_bid`` asks each rule in turn; the first that returns a decision wins. The default
chain declines jobs this machine can never serve, declines jobs that pay below the floor,
defers jobs that fit the machine but not its free capacity right now, and otherwise bids a
price that rises with utilization, capped at the job's maximum.

A deferred job is not forgotten: ``reoffer`` runs the chain again for deferred jobs once
capacity frees, so a provider that was full bids again later.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from scheduler.capacity import CapacityLedger, describe_shortfall, utilization_permille
from scheduler.constraints import ConstraintKind, constraints_for, failures_of
from scheduler.errors import InvalidPriceError
from scheduler.models import JobRequirements, ResourceOffer, Timestamp, Wei
from scheduler.units import format_price_per_hour


class BidAction(enum.Enum):
    """What the provider does with a job request."""

    BID = "bid"
    DECLINE = "decline"
    # Full now, but the job fits the machine: bid again when capacity frees.
    DEFER = "defer"


@dataclass(frozen=True, slots=True)
class BidDecision:
    """A decision, the rule that made it, why, and the price when bidding."""

    action: BidAction
    rule: str
    reason: str
    price_per_hour: Wei | None = None


@dataclass(frozen=True, slots=True)
class ProviderState:
    """What the provider's bid rules look at besides the job."""

    # The provider's own current offer: TEE kind, measurement, TCB, whole-machine resources.
    offer: ResourceOffer
    ledger: CapacityLedger
    floor_price_per_hour: Wei
    # Bid price rises linearly to floor * (1 + surge) at full utilization.
    surge_permille: int = 500

    def __post_init__(self) -> None:
        if self.floor_price_per_hour < 0 or self.surge_permille < 0:
            raise InvalidPriceError("floor price and surge must be >= 0")


BidRule = Callable[[JobRequirements, ProviderState, Timestamp], BidDecision | None]

# The provider cannot judge how a client rates its evidence freshness or its latency, and
# price has its own rules below.
_NOT_JUDGED_BY_PROVIDER = frozenset(
    {ConstraintKind.EVIDENCE, ConstraintKind.LATENCY, ConstraintKind.PRICE}
)


def requirements_rule(
    job: JobRequirements, state: ProviderState, now: Timestamp
) -> BidDecision | None:
    """Decline jobs whose requirements this machine's offer can never meet."""
    constraints = [c for c in constraints_for(job) if c.kind not in _NOT_JUDGED_BY_PROVIDER]
    failures = failures_of(constraints, state.offer, now)
    if not failures:
        return None
    return BidDecision(
        BidAction.DECLINE, "requirements", "; ".join(failure.message for failure in failures)
    )


def price_floor_rule(
    job: JobRequirements, state: ProviderState, now: Timestamp
) -> BidDecision | None:
    """Decline jobs whose maximum price is below the provider's floor."""
    if job.max_price_per_hour >= state.floor_price_per_hour:
        return None
    return BidDecision(
        BidAction.DECLINE,
        "price floor",
        f"max price {format_price_per_hour(job.max_price_per_hour)} is below our floor "
        f"{format_price_per_hour(state.floor_price_per_hour)}",
    )


def capacity_rule(job: JobRequirements, state: ProviderState, now: Timestamp) -> BidDecision | None:
    """Defer jobs that do not fit free capacity now; decline those that never fit."""
    need, ledger = job.resources, state.ledger
    if ledger.can_reserve(need):
        return None
    if not ledger.could_ever_fit(need):
        shortfall = describe_shortfall(need, ledger.total, "in total")
        return BidDecision(BidAction.DECLINE, "capacity", f"never fits this machine: {shortfall}")
    return BidDecision(
        BidAction.DEFER,
        "capacity",
        f"full now: {ledger.shortfall(need)}; will bid again when capacity frees",
    )


def utilization_pricing_rule(
    job: JobRequirements, state: ProviderState, now: Timestamp
) -> BidDecision | None:
    """Bid the floor price plus a surcharge for the utilization the job would cause."""
    utilization = utilization_permille(state.ledger.reserved + job.resources, state.ledger.total)
    floor = state.floor_price_per_hour
    surged = floor + floor * state.surge_permille * utilization // 1_000_000
    price = Wei(min(surged, job.max_price_per_hour))
    return BidDecision(
        BidAction.BID,
        "utilization pricing",
        f"bid {format_price_per_hour(price)}: floor {format_price_per_hour(floor)}, "
        f"utilization after admission {utilization / 10:.1f}%",
        price,
    )


DEFAULT_BID_RULES: tuple[BidRule, ...] = (
    requirements_rule,
    price_floor_rule,
    capacity_rule,
    utilization_pricing_rule,
)


def decide_bid(
    job: JobRequirements,
    state: ProviderState,
    now: Timestamp,
    rules: Sequence[BidRule] = DEFAULT_BID_RULES,
) -> BidDecision:
    """Run the rule chain; the first rule with an opinion decides."""
    for rule in rules:
        decision = rule(job, state, now)
        if decision is not None:
            return decision
    return BidDecision(BidAction.DECLINE, "no rule", "no bid rule made a decision")


@dataclass(frozen=True, slots=True)
class ReofferRound:
    """Decisions for deferred jobs after capacity changed."""

    decisions: tuple[tuple[JobRequirements, BidDecision], ...]

    @property
    def bids(self) -> tuple[tuple[JobRequirements, BidDecision], ...]:
        """Jobs bid on again, with their decisions."""
        return tuple(pair for pair in self.decisions if pair[1].action is BidAction.BID)

    @property
    def still_deferred(self) -> tuple[JobRequirements, ...]:
        """Jobs to keep and try again on the next capacity change."""
        return tuple(job for job, d in self.decisions if d.action is BidAction.DEFER)


def reoffer(
    deferred: Sequence[JobRequirements],
    state: ProviderState,
    now: Timestamp,
    rules: Sequence[BidRule] = DEFAULT_BID_RULES,
) -> ReofferRound:
    """Bid again on deferred jobs, best-paying first, never bidding beyond free capacity.

    Each bid tentatively holds its resources for the rest of the round, so the bids made
    together fit the machine together; the daemon reserves for real when a bid is accepted.
    """
    ordered = sorted(deferred, key=lambda job: (-job.max_price_per_hour, job.deadline, job.job_id))
    ledger = state.ledger
    decisions: list[tuple[JobRequirements, BidDecision]] = []
    for job in ordered:
        decision = decide_bid(job, replace(state, ledger=ledger), now, rules)
        # A custom chain may bid without checking capacity; only hold what fits.
        if (
            decision.action is BidAction.BID
            and job.job_id not in ledger.reservations
            and ledger.can_reserve(job.resources)
        ):
            ledger = ledger.reserve(job.job_id, job.resources)
        decisions.append((job, decision))
    return ReofferRound(tuple(decisions))
