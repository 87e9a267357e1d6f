"""What the node knows: jobs, verifier approvals and pending effects, plus one transition's output."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from node.config.model import Role
from node.state.changes import JobMatched, JobPosted, OfferReceived, PeerSeen
from node.state.effects import Effect, Settlement
from node.state.values import Address, EffectId, Hash32, JobId


class JobStatus(StrEnum):
    REQUESTED = "requested"  # client: match/post sent, not yet confirmed
    OPEN = "open"  # posted on-chain, no provider yet
    ACCEPTING = "accepting"  # provider: acceptJob sent
    ASSIGNED = "assigned"  # client: a provider holds it
    RUNNING = "running"  # provider: executing in the enclave
    SUBMITTING = "submitting"  # provider: submitResult sent
    SETTLED = "settled"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"
    TAKEN = "taken"  # provider: another provider accepted it
    FAILED = "failed"


FINAL_STATUSES = frozenset(
    {JobStatus.SETTLED, JobStatus.REFUNDED, JobStatus.CANCELLED, JobStatus.TAKEN}
)


@dataclass(frozen=True)
class Job:
    job_id: JobId
    status: JobStatus
    client: Address | None = None
    provider: Address | None = None
    price: int = 0
    deadline: int = 0
    input_hash: Hash32 | None = None
    output_hash: Hash32 | None = None
    error: str = ""


def matched_job(change: JobMatched, status: JobStatus) -> Job:
    """The job a JobMatched event describes, as either side of it tracks it."""
    return Job(
        change.job_id,
        status,
        client=change.client,
        provider=change.provider,
        price=change.price,
        deadline=change.deadline,
        input_hash=change.input_hash,
    )


def posted_job(change: JobPosted) -> Job:
    """The open job a JobPosted event describes: its escrow is the client's max price."""
    return Job(
        change.job_id,
        JobStatus.OPEN,
        client=change.client,
        price=change.max_price,
        deadline=change.deadline,
        input_hash=change.input_hash,
    )


class ApprovalStatus(StrEnum):
    CHECKING = "checking"
    APPROVED = "approved"
    REFUSED = "refused"


@dataclass(frozen=True)
class Approval:
    request_id: str
    status: ApprovalStatus
    provider: Address
    enclave_key: Address
    reason: str = ""


@dataclass(frozen=True)
class Identity:
    role: Role
    address: Address


@dataclass(frozen=True)
class Step:
    """The output of one transition: at most one job or approval changed, effects, settlements."""

    job: Job | None = None
    approval: Approval | None = None
    effects: tuple[Effect, ...] = ()
    settled: tuple[Settlement, ...] = ()
    rejected: str = ""  # why a requested action was refused ("" when it was not)
    offer: OfferReceived | None = None
    peer: PeerSeen | None = None


NO_STEP = Step()


@dataclass
class NodeState:
    """The in-memory state, rebuilt from a snapshot and the changes after it.

    Mutated only by `absorb`, with the output of a pure transition.
    """

    jobs: dict[JobId, Job] = field(default_factory=dict)
    approvals: dict[str, Approval] = field(default_factory=dict)
    pending: dict[EffectId, Effect] = field(default_factory=dict)
    last_seq: int = 0

    def absorb(self, step: Step, seq: int) -> list[Settlement]:
        """Apply `step`; returns the settlements that concerned pending effects."""
        if step.job is not None:
            self.jobs[step.job.job_id] = step.job
        if step.approval is not None:
            self.approvals[step.approval.request_id] = step.approval
        applied = [s for s in step.settled if s.effect_id in self.pending]
        for settlement in applied:
            del self.pending[settlement.effect_id]
        for effect in step.effects:
            self.pending[effect.effect_id] = effect
        self.last_seq = seq
        return applied


class StateView(Mapping[JobId, Job]):
    """Read-only access for transitions: jobs by id and whether an effect is pending."""

    def __init__(self, state: NodeState) -> None:
        self._state = state

    def __getitem__(self, job_id: JobId) -> Job:
        return self._state.jobs[job_id]

    def __iter__(self) -> Iterator[JobId]:
        return iter(self._state.jobs)

    def __len__(self) -> int:
        return len(self._state.jobs)

    def is_pending(self, effect: EffectId) -> bool:
        return effect in self._state.pending

    def pending_for(self, subject: str) -> list[EffectId]:
        return [e for e in self._state.pending if e.endswith(":" + subject)]

    def approval(self, request_id: str) -> Approval | None:
        return self._state.approvals.get(request_id)
