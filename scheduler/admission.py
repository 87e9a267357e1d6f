"""Provider-side admission: a priority queue of accepted jobs and rounds that start them.

Jobs wait in priority order: higher hourly price first, then earlier deadline, then arrival.
A round walks the queue and starts every job that fits, so a large job at the head that does
not fit yet never blocks small jobs behind it (backfilling). To keep the large job from
starving in turn, each time a lower-priority job is started past it counts as a bypass; once
a waiting job has been bypassed ``starvation_limit`` times, rounds stop backfilling behind it
and let capacity drain until it fits.
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass, replace

from scheduler.capacity import CapacityLedger, describe_shortfall
from scheduler.models import JobId, JobRequirements, Timestamp

Priority = tuple[int, int, int]


class AdmissionOutcome(enum.Enum):
    """What a round decided for one queued job."""

    ADMITTED = "admitted"
    WAITING = "waiting"
    HELD_FOR_STARVING_JOB = "held for starving job"
    DEADLINE_UNREACHABLE = "deadline unreachable"
    NEVER_FITS = "never fits"

    @property
    def leaves_queue(self) -> bool:
        """Whether the job leaves the queue: started, or impossible to start."""
        return self in _LEAVES_QUEUE


_LEAVES_QUEUE = frozenset(
    {
        AdmissionOutcome.ADMITTED,
        AdmissionOutcome.DEADLINE_UNREACHABLE,
        AdmissionOutcome.NEVER_FITS,
    }
)


@dataclass(frozen=True, slots=True)
class AdmissionDecision:
    """The outcome for one job, with a reason naming both values where it compares."""

    job_id: JobId
    outcome: AdmissionOutcome
    reason: str

    @property
    def admitted(self) -> bool:
        """Whether the job was started and now holds capacity."""
        return self.outcome is AdmissionOutcome.ADMITTED


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A job waiting for capacity."""

    job: JobRequirements
    # Arrival order; equal-priority jobs start first-come first-served.
    sequence: int
    # How many lower-priority jobs were started while this one waited.
    bypassed: int = 0

    @property
    def priority(self) -> Priority:
        """Sort key, smallest first: highest price, then earliest deadline, then arrival."""
        return (-self.job.max_price_per_hour, self.job.deadline, self.sequence)


@dataclass(frozen=True, slots=True)
class JobQueue:
    """Waiting jobs, always kept in priority order."""

    entries: tuple[QueuedJob, ...] = ()
    next_sequence: int = 0

    def push(self, job: JobRequirements) -> JobQueue:
        """A queue with the job inserted at its priority."""
        entry = QueuedJob(job, self.next_sequence)
        entries = list(self.entries)
        bisect.insort(entries, entry, key=lambda queued: queued.priority)
        return JobQueue(tuple(entries), self.next_sequence + 1)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def job_ids(self) -> tuple[JobId, ...]:
        """Queued job ids in priority order."""
        return tuple(entry.job.job_id for entry in self.entries)


@dataclass(frozen=True, slots=True)
class AdmissionPolicy:
    """Knobs for admission rounds."""

    # Bypasses a waiting job tolerates before rounds stop backfilling behind it.
    starvation_limit: int = 3


@dataclass(frozen=True, slots=True)
class AdmissionRound:
    """The result of one round: decisions in priority order, new ledger, remaining queue."""

    decisions: tuple[AdmissionDecision, ...]
    ledger: CapacityLedger
    queue: JobQueue

    @property
    def admitted(self) -> tuple[JobId, ...]:
        """Jobs started in this round, in the order they were started."""
        return tuple(d.job_id for d in self.decisions if d.admitted)


def admit(
    job: JobRequirements, ledger: CapacityLedger, now: Timestamp
) -> tuple[AdmissionDecision, CapacityLedger]:
    """Admission control for one job: start it if it can finish in time and fits now."""
    need = job.resources
    left = job.deadline - now
    if job.duration_s > left:
        reason = f"deadline unreachable: needs {job.duration_s} s, {left} s left"
        return AdmissionDecision(job.job_id, AdmissionOutcome.DEADLINE_UNREACHABLE, reason), ledger
    if not ledger.could_ever_fit(need):
        reason = f"never fits this machine: {describe_shortfall(need, ledger.total, 'in total')}"
        return AdmissionDecision(job.job_id, AdmissionOutcome.NEVER_FITS, reason), ledger
    if not ledger.can_reserve(need):
        reason = f"waiting for capacity: {ledger.shortfall(need)}"
        return AdmissionDecision(job.job_id, AdmissionOutcome.WAITING, reason), ledger
    return (
        AdmissionDecision(job.job_id, AdmissionOutcome.ADMITTED, "admitted: fits free capacity"),
        ledger.reserve(job.job_id, need),
    )


def run_admission(
    queue: JobQueue,
    ledger: CapacityLedger,
    now: Timestamp,
    policy: AdmissionPolicy = AdmissionPolicy(),
) -> AdmissionRound:
    """Start every queued job that fits, in priority order, without starving large jobs."""
    decisions: list[AdmissionDecision] = []
    waiting: list[QueuedJob] = []
    # Index into ``waiting`` up to which jobs were bypassed by a later admission.
    bypassed_up_to = 0
    starving: QueuedJob | None = None
    for entry in queue.entries:
        decision, next_ledger = admit(entry.job, ledger, now)
        if decision.admitted and starving is not None:
            decision = AdmissionDecision(
                entry.job.job_id,
                AdmissionOutcome.HELD_FOR_STARVING_JOB,
                f"held: capacity drains for job {starving.job.job_id}, "
                f"bypassed {starving.bypassed} times",
            )
        elif decision.admitted:
            ledger = next_ledger
            bypassed_up_to = len(waiting)
        decisions.append(decision)
        if decision.outcome.leaves_queue:
            continue
        waiting.append(entry)
        if (
            starving is None
            and decision.outcome is AdmissionOutcome.WAITING
            and entry.bypassed >= policy.starvation_limit
        ):
            starving = entry
    remaining = tuple(
        replace(entry, bypassed=entry.bypassed + 1) if position < bypassed_up_to else entry
        for position, entry in enumerate(waiting)
    )
    return AdmissionRound(tuple(decisions), ledger, JobQueue(remaining, queue.next_sequence))
