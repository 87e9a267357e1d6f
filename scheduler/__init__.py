"""Pure library: offers, job requirements, matching, scoring, bid strategy, capacity, reasons.

Client side: build an ``OfferIndex`` from verified offers and call ``choose``; when it finds
nothing, ``explain`` says why for every offer plus a one-line summary. Provider side: keep a
``CapacityLedger``, decide on requests with ``decide_bid``, start queued jobs with
``run_admission``, and ``reoffer`` deferred jobs when capacity frees. Everything takes the
current time as a parameter and returns plain frozen values.
"""

from scheduler.admission import (
    AdmissionDecision,
    AdmissionOutcome,
    AdmissionPolicy,
    AdmissionRound,
    JobQueue,
    admit,
    run_admission,
)
from scheduler.bidding import (
    DEFAULT_BID_RULES,
    BidAction,
    BidDecision,
    BidRule,
    ProviderState,
    ReofferRound,
    decide_bid,
    reoffer,
)
from scheduler.capacity import CapacityLedger
from scheduler.constraints import Constraint, ConstraintFailure, ConstraintKind, constraints_for
from scheduler.matching import (
    MatchResult,
    MatchSummary,
    OfferIndex,
    Rejection,
    RejectionGroup,
    ScoredOffer,
    scan_choose,
    scan_match,
)
from scheduler.models import (
    GpuModel,
    GpuOffer,
    GpuRequirement,
    JobId,
    JobRequirements,
    Measurement,
    PeerId,
    ProviderAddress,
    ProviderHistory,
    Region,
    ResourceOffer,
    Resources,
    TcbStatus,
    TeeKind,
    Timestamp,
    Wei,
    WorkloadKind,
)
from scheduler.scoring import MarketContext, ScoreBreakdown, ScoringConfig, ScoringWeights

__all__ = [
    "DEFAULT_BID_RULES",
    "AdmissionDecision",
    "AdmissionOutcome",
    "AdmissionPolicy",
    "AdmissionRound",
    "BidAction",
    "BidDecision",
    "BidRule",
    "CapacityLedger",
    "Constraint",
    "ConstraintFailure",
    "ConstraintKind",
    "GpuModel",
    "GpuOffer",
    "GpuRequirement",
    "JobId",
    "JobQueue",
    "JobRequirements",
    "MarketContext",
    "MatchResult",
    "MatchSummary",
    "Measurement",
    "OfferIndex",
    "PeerId",
    "ProviderAddress",
    "ProviderHistory",
    "ProviderState",
    "Region",
    "Rejection",
    "RejectionGroup",
    "ReofferRound",
    "ResourceOffer",
    "Resources",
    "ScoreBreakdown",
    "ScoredOffer",
    "ScoringConfig",
    "ScoringWeights",
    "TcbStatus",
    "TeeKind",
    "Timestamp",
    "Wei",
    "WorkloadKind",
    "admit",
    "constraints_for",
    "decide_bid",
    "reoffer",
    "run_admission",
    "scan_choose",
    "scan_match",
]
