"""Typed, composable match constraints, each able to say why an offer fails it.

A constraint answers two questions: ``accepts(offer, now)`` (cheap, used in the matcher's hot
loop) and ``explain(offer, now)`` (only for offers it rejects: which constraint, what the job
needs, what the offer has). ``constraints_for`` turns job requirements into the standard set;
callers may append their own constraints, which the matchers treat the same way.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol, TypeVar

from scheduler.models import (
    GpuModel,
    JobRequirements,
    Measurement,
    Region,
    ResourceOffer,
    TcbStatus,
    TeeKind,
    Timestamp,
    Wei,
    WorkloadKind,
)
from scheduler.units import format_mib, format_price_per_hour

_T = TypeVar("_T")


class ConstraintKind(enum.Enum):
    """What a constraint checks; declaration order is the order offers are explained in.

    Hard incompatibilities come first and price last, because price is what a user can most
    easily change: an offer that is both too expensive and lacks an H100 is reported as
    "no H100", since raising the price would not help.
    """

    OFFER_VALIDITY = "offer validity"
    DEADLINE = "deadline"
    INSECURE_SIM = "insecure simulated enclave"
    TEE_KIND = "TEE kind"
    TCB_STATUS = "TCB status"
    MEASUREMENT = "measurement"
    EVIDENCE = "evidence"
    WORKLOAD = "workload"
    GPU_MODEL = "GPU model"
    GPU_COUNT = "GPU count"
    GPU_VRAM = "GPU VRAM"
    GPU_CC_MODE = "GPU CC mode"
    CPU_CORES = "CPU cores"
    MEMORY = "memory"
    INPUT_SIZE = "input size"
    REGION = "region"
    LATENCY = "latency"
    PRICE = "price"

    @property
    def rank(self) -> int:
        """Position in explanation order; lower is reported first."""
        return _KIND_RANK[self]


_KIND_RANK = {kind: position for position, kind in enumerate(ConstraintKind)}


@dataclass(frozen=True, slots=True)
class ConstraintFailure:
    """Why one offer fails one constraint, with the needed and the offered value."""

    kind: ConstraintKind
    required: str
    offered: str
    message: str
    # Higher is nearer to satisfying the constraint; a summary shows its nearest miss.
    closeness: int = 0


class Constraint(Protocol):
    """A single condition an offer must meet for a job."""

    @property
    def kind(self) -> ConstraintKind:
        """What this constraint checks."""
        ...

    def accepts(self, offer: ResourceOffer, now: Timestamp) -> bool:
        """Whether the offer meets the condition at time ``now``."""
        ...

    def explain(self, offer: ResourceOffer, now: Timestamp) -> ConstraintFailure:
        """Describe the failure; only meaningful when ``accepts`` returned False."""
        ...


def check(constraint: Constraint, offer: ResourceOffer, now: Timestamp) -> ConstraintFailure | None:
    """Return the failure if the offer fails the constraint, else None."""
    if constraint.accepts(offer, now):
        return None
    return constraint.explain(offer, now)


def failures_of(
    constraints: Iterable[Constraint], offer: ResourceOffer, now: Timestamp
) -> tuple[ConstraintFailure, ...]:
    """Every failing constraint for an offer, in explanation order."""
    found = [c.explain(offer, now) for c in constraints if not c.accepts(offer, now)]
    if len(found) > 1:
        # Caller-supplied constraints may come in any order; explanations follow kind order.
        found.sort(key=lambda failure: _KIND_RANK[failure.kind])
    return tuple(found)


@dataclass(frozen=True, slots=True)
class OfferValidityConstraint:
    """The offer is inside its signed validity window."""

    kind: ClassVar[ConstraintKind] = ConstraintKind.OFFER_VALIDITY

    def accepts(self, offer: ResourceOffer, now: Timestamp) -> bool:
        return offer.valid_from <= now < offer.valid_until

    def explain(self, offer: ResourceOffer, now: Timestamp) -> ConstraintFailure:
        if now < offer.valid_from:
            offered = f"valid from t={offer.valid_from}"
            message = f"offer not valid yet: starts in {offer.valid_from - now} s"
        else:
            offered = f"valid until t={offer.valid_until}"
            message = f"offer expired {now - offer.valid_until} s ago"
        return ConstraintFailure(self.kind, f"valid at t={now}", offered, message)


@dataclass(frozen=True, slots=True)
class DeadlineConstraint:
    """The job can still finish before its deadline if it starts now."""

    kind: ClassVar[ConstraintKind] = ConstraintKind.DEADLINE
    deadline: Timestamp
    duration_s: int

    def accepts(self, offer: ResourceOffer, now: Timestamp) -> bool:
        return now + self.duration_s <= self.deadline

    def explain(self, offer: ResourceOffer, now: Timestamp) -> ConstraintFailure:
        left = self.deadline - now
        return ConstraintFailure(
            self.kind,
            f"{self.duration_s} s to run",
            f"{left} s left",
            f"deadline unreachable: job needs {self.duration_s} s, {left} s left",
            closeness=left,
        )


@dataclass(frozen=True, slots=True)
class InsecureSimConstraint:
    """SIM offers (no hardware isolation) only for jobs that explicitly accept SIM."""

    kind: ClassVar[ConstraintKind] = ConstraintKind.INSECURE_SIM

    def accepts(self, offer: ResourceOffer, now: Timestamp) -> bool:
        return offer.tee_kind is not TeeKind.SIM

    def explain(self, offer: ResourceOffer, now: Timestamp) -> ConstraintFailure:
        return ConstraintFailure(
            self.kind,
            "hardware TEE",
            "SIM",
            "INSECURE: simulated enclave (SIM) has no hardware isolation; "
            "the job does not accept SIM",
        )


@dataclass(frozen=True, slots=True)
class TeeKindConstraint:
    """The offer's TEE kind is one the job accepts."""

    kind: ClassVar[ConstraintKind] = ConstraintKind.TEE_KIND
    accepted: frozenset[TeeKind]

    def accepts(self, offer: ResourceOffer, now: Timestamp) -> bool:
        # SIM is judged by InsecureSimConstraint so that its reason always says INSECURE.
        return offer.tee_kind in self.accepted or (
            offer.tee_kind is TeeKind.SIM and TeeKind.SIM not in self.accepted
        )

    def explain(self, offer: ResourceOffer, now: Timestamp) -> ConstraintFailure:
        needed = _join(sorted(self.accepted), lambda kind: kind.label)
        return ConstraintFailure(
            self.kind,
            needed,
            offer.tee_kind.label,
            f"needs TEE {needed}, offers {offer.tee_kind.label}",
        )


@dataclass(frozen=True, slots=True)
class TcbStatusConstraint:
    """The platform's TCB status is at least the job's minimum."""

    kind: ClassVar[ConstraintKind] = ConstraintKind.TCB_STATUS
    minimum: TcbStatus

    def accepts(self, offer: ResourceOffer, now: Timestamp) -> bool:
        return offer.tcb_status >= self.minimum

    def explain(self, offer: ResourceOffer, now: Timestamp) -> ConstraintFailure:
        return ConstraintFailure(
            self.kind,
            self.minimum.label,
            offer.tcb_status.label,
            f"needs TCB {self.minimum.label} or better, offers {offer.tcb_status.label}",
            closeness=int(offer.tcb_status),
        )


@dataclass(frozen=True, slots=True)
class MeasurementConstraint:
    """The offer runs a measurement on the job's allowlist."""

    kind: ClassVar[ConstraintKind] = ConstraintKind.MEASUREMENT
    allowed: frozenset[Measurement]

    def accepts(self, offer: ResourceOffer, now: Timestamp) -> bool:
        return offer.measurement in self.allowed

    def explain(self, offer: ResourceOffer, now: Timestamp) -> ConstraintFailure:
        needed = f"one of {len(self.allowed)} allowed measurements"
        return ConstraintFailure(
            self.kind,
            needed,
            offer.measurement.short,
            f"measurement {offer.measurement.short} is not among the {len(self.allowed)} allowed",
        )


@dataclass(frozen=True, slots=True)
class EvidenceConstraint:
    """The provider's evidence was verified, recently enough."""

    kind: ClassVar[ConstraintKind] = ConstraintKind.EVIDENCE
    max_age_s: int

    def accepts(self, offer: ResourceOffer, now: Timestamp) -> bool:
        verified_at = offer.evidence_verified_at
        return (
            offer.evidence_verified
            and verified_at is not None
            and now - verified_at <= self.max_age_s
        )

    def explain(self, offer: ResourceOffer, now: Timestamp) -> ConstraintFailure:
        needed = f"verified within {self.max_age_s} s"
        verified_at = offer.evidence_verified_at
        if not offer.evidence_verified or verified_at is None:
            return ConstraintFailure(
                self.kind, needed, "unverified", "evidence not verified", closeness=-(2**62)
            )
        age = now - verified_at
        return ConstraintFailure(
            self.kind,
            needed,
            f"{age} s old",
            f"evidence is {age} s old, max {self.max_age_s} s",
            closeness=-age,
        )


@dataclass(frozen=True, slots=True)
class WorkloadConstraint:
    """The provider runs the job's workload kind."""

    kind: ClassVar[ConstraintKind] = ConstraintKind.WORKLOAD
    workload: WorkloadKind

    def accepts(self, offer: ResourceOffer, now: Timestamp) -> bool:
        return self.workload in offer.workloads

    def explain(self, offer: ResourceOffer, now: Timestamp) -> ConstraintFailure:
        offered = _join(sorted(offer.workloads, key=lambda w: w.value), lambda w: w.value)
        return ConstraintFailure(
            self.kind,
            self.workload.value,
            offered or "none",
            f"needs {self.workload.value} workloads, offers {offered or 'none'}",
        )


@dataclass(frozen=True, slots=True)
class GpuModelConstraint:
    """The offer's GPU pool is of the required model."""

    kind: ClassVar[ConstraintKind] = ConstraintKind.GPU_MODEL
    model: GpuModel

    def accepts(self, offer: ResourceOffer, now: Timestamp) -> bool:
        return offer.gpu is not None and offer.gpu.model == self.model

    def explain(self, offer: ResourceOffer, now: Timestamp) -> ConstraintFailure:
        offered = offer.gpu.model if offer.gpu else "no GPU"
        return ConstraintFailure(
            self.kind, self.model, offered, f"needs {self.model}, offers {offered}"
        )


@dataclass(frozen=True, slots=True)
class GpuCountConstraint:
    """The offer's GPU pool has enough GPUs."""

    kind: ClassVar[ConstraintKind] = ConstraintKind.GPU_COUNT
    count: int

    def accepts(self, offer: ResourceOffer, now: Timestamp) -> bool:
        return offer.gpu is not None and offer.gpu.count >= self.count

    def explain(self, offer: ResourceOffer, now: Timestamp) -> ConstraintFailure:
        offered = offer.gpu.count if offer.gpu else 0
        return ConstraintFailure(
            self.kind,
            str(self.count),
            str(offered),
            f"needs {self.count} GPUs, offers {offered}",
            closeness=offered,
        )


@dataclass(frozen=True, slots=True)
class GpuVramConstraint:
    """Each GPU in the offer's pool has enough VRAM."""

    kind: ClassVar[ConstraintKind] = ConstraintKind.GPU_VRAM
    min_vram_mib: int

    def accepts(self, offer: ResourceOffer, now: Timestamp) -> bool:
        return offer.gpu is not None and offer.gpu.vram_mib >= self.min_vram_mib

    def explain(self, offer: ResourceOffer, now: Timestamp) -> ConstraintFailure:
        offered_mib = offer.gpu.vram_mib if offer.gpu else 0
        needed, offered = format_mib(self.min_vram_mib), format_mib(offered_mib)
        return ConstraintFailure(
            self.kind,
            needed,
            offered,
            f"needs {needed} VRAM, offers {offered}",
            closeness=offered_mib,
        )


@dataclass(frozen=True, slots=True)
class GpuCcModeConstraint:
    """The offer's GPUs run in confidential-computing mode."""

    kind: ClassVar[ConstraintKind] = ConstraintKind.GPU_CC_MODE

    def accepts(self, offer: ResourceOffer, now: Timestamp) -> bool:
        return offer.gpu is not None and offer.gpu.cc_mode

    def explain(self, offer: ResourceOffer, now: Timestamp) -> ConstraintFailure:
        offered = "CC mode off" if offer.gpu else "no GPU"
        return ConstraintFailure(
            self.kind, "CC mode on", offered, f"needs GPUs in CC mode, offers {offered}"
        )


@dataclass(frozen=True, slots=True)
class CpuCoresConstraint:
    """The offer has enough CPU cores."""

    kind: ClassVar[ConstraintKind] = ConstraintKind.CPU_CORES
    cores: int

    def accepts(self, offer: ResourceOffer, now: Timestamp) -> bool:
        return offer.cpu_cores >= self.cores

    def explain(self, offer: ResourceOffer, now: Timestamp) -> ConstraintFailure:
        return ConstraintFailure(
            self.kind,
            str(self.cores),
            str(offer.cpu_cores),
            f"needs {self.cores} CPU cores, offers {offer.cpu_cores}",
            closeness=offer.cpu_cores,
        )


@dataclass(frozen=True, slots=True)
class MemoryConstraint:
    """The offer has enough memory."""

    kind: ClassVar[ConstraintKind] = ConstraintKind.MEMORY
    memory_mib: int

    def accepts(self, offer: ResourceOffer, now: Timestamp) -> bool:
        return offer.memory_mib >= self.memory_mib

    def explain(self, offer: ResourceOffer, now: Timestamp) -> ConstraintFailure:
        needed, offered = format_mib(self.memory_mib), format_mib(offer.memory_mib)
        return ConstraintFailure(
            self.kind,
            needed,
            offered,
            f"needs {needed} memory, offers {offered}",
            closeness=offer.memory_mib,
        )


@dataclass(frozen=True, slots=True)
class RegionConstraint:
    """The offer is in one of the job's regions."""

    kind: ClassVar[ConstraintKind] = ConstraintKind.REGION
    regions: frozenset[Region]

    def accepts(self, offer: ResourceOffer, now: Timestamp) -> bool:
        return offer.region in self.regions

    def explain(self, offer: ResourceOffer, now: Timestamp) -> ConstraintFailure:
        needed = _join(sorted(self.regions), str)
        return ConstraintFailure(
            self.kind, needed, offer.region, f"needs region {needed}, offers {offer.region}"
        )


@dataclass(frozen=True, slots=True)
class LatencyConstraint:
    """The offer's latency hint is within the job's limit."""

    kind: ClassVar[ConstraintKind] = ConstraintKind.LATENCY
    max_latency_ms: int

    def accepts(self, offer: ResourceOffer, now: Timestamp) -> bool:
        return offer.latency_hint_ms <= self.max_latency_ms

    def explain(self, offer: ResourceOffer, now: Timestamp) -> ConstraintFailure:
        return ConstraintFailure(
            self.kind,
            f"<= {self.max_latency_ms} ms",
            f"{offer.latency_hint_ms} ms",
            f"needs latency <= {self.max_latency_ms} ms, offers {offer.latency_hint_ms} ms",
            closeness=-offer.latency_hint_ms,
        )


@dataclass(frozen=True, slots=True)
class PriceConstraint:
    """The offer's hourly price is at most the job's maximum."""

    kind: ClassVar[ConstraintKind] = ConstraintKind.PRICE
    max_price_per_hour: Wei

    def accepts(self, offer: ResourceOffer, now: Timestamp) -> bool:
        return offer.price_per_hour <= self.max_price_per_hour

    def explain(self, offer: ResourceOffer, now: Timestamp) -> ConstraintFailure:
        needed = format_price_per_hour(self.max_price_per_hour)
        offered = format_price_per_hour(offer.price_per_hour)
        return ConstraintFailure(
            self.kind,
            needed,
            offered,
            f"too expensive: {offered} > max {needed}",
            closeness=-offer.price_per_hour,
        )


def constraints_for(job: JobRequirements) -> tuple[Constraint, ...]:
    """The standard constraints that express a job's requirements, in explanation order."""
    constraints: list[Constraint] = [
        OfferValidityConstraint(),
        DeadlineConstraint(job.deadline, job.duration_s),
    ]
    if not job.accepts_sim:
        constraints.append(InsecureSimConstraint())
    constraints += [
        TeeKindConstraint(job.accepted_tee_kinds),
        TcbStatusConstraint(job.min_tcb_status),
    ]
    if job.allowed_measurements:
        constraints.append(MeasurementConstraint(job.allowed_measurements))
    constraints += [EvidenceConstraint(job.max_evidence_age_s), WorkloadConstraint(job.workload)]
    if job.gpu is not None:
        if job.gpu.model is not None:
            constraints.append(GpuModelConstraint(job.gpu.model))
        constraints.append(GpuCountConstraint(job.gpu.count))
        if job.gpu.min_vram_mib > 0:
            constraints.append(GpuVramConstraint(job.gpu.min_vram_mib))
        if job.gpu.cc_mode_required:
            constraints.append(GpuCcModeConstraint())
    if job.cpu_cores > 0:
        constraints.append(CpuCoresConstraint(job.cpu_cores))
    if job.memory_mib > 0:
        constraints.append(MemoryConstraint(job.memory_mib))
    if job.regions:
        constraints.append(RegionConstraint(job.regions))
    if job.max_latency_ms is not None:
        constraints.append(LatencyConstraint(job.max_latency_ms))
    constraints.append(PriceConstraint(job.max_price_per_hour))
    return tuple(constraints)


def _join(items: Sequence[_T], render: Callable[[_T], str]) -> str:
    return "/".join(render(item) for item in items)
