"""What the node knows: jobs, enclave keys, verifier approvals, pending effects; one step's output."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from node.config.model import Role
from node.state.changes import JobMatched, JobPosted, OfferReceived, PeerSeen
from node.state.effects import Effect, Settlement
from node.state.values import Address, EffectId, Hash32, JobId, effect_job


class JobStatus(StrEnum):
    # client, before any money moves
    SUBMITTED = "submitted"  # ranking offers
    CHECKING = "checking"  # judging a candidate's evidence
    SEALING = "sealing"  # sealing the input to the candidate's enclave
    QUOTING = "quoting"  # asking the candidate for a quote
    REQUESTED = "requested"  # matchJob sent, not yet confirmed
    # on chain
    OPEN = "open"  # posted, no provider yet
    ACCEPTING = "accepting"  # provider: acceptJob sent
    ASSIGNED = "assigned"  # client: sending the input; provider: waiting for it
    DELIVERED = "delivered"  # client: the provider signed an input receipt
    RUNNING = "running"  # provider: executing in the enclave
    READY = "ready"  # provider: result signed, waiting for its batch
    SUBMITTING = "submitting"  # provider: submitResult(s) sent
    SETTLED = "settled"  # paid to the provider (client: fetching the output)
    VERIFIED = "verified"  # client: output checked against the chain and opened
    REFUNDED = "refunded"
    CANCELLED = "cancelled"
    TAKEN = "taken"  # provider: another provider accepted it
    FAILED = "failed"


# States no chain event can move a job out of. A client's job that failed before matchJob
# never reached the chain; one that failed after settlement (output unusable) is paid.
FINAL_STATUSES = frozenset(
    {
        JobStatus.VERIFIED,
        JobStatus.REFUNDED,
        JobStatus.CANCELLED,
        JobStatus.TAKEN,
    }
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
    spec_hash: Hash32 | None = None
    # what the client asked for (client's own jobs)
    workload: str = ""
    measurement: Hash32 | None = None
    tee_kinds: int = 0
    min_tcb_status: int = 0
    max_price: int = 0
    timeout_s: int = 0
    cpu_cores: int = 0
    memory_mib: int = 0
    nonce: int = 0
    input_size: int = 0
    submitted_at: int = 0
    # the provider being tried or holding the job
    candidates: str = "[]"  # JSON, as ProvidersFound gave them
    candidate: int = -1
    peer_id: str = ""
    enclave_key: Address | None = None
    hpke_public_key: str = ""
    tee_kind: int = 0
    insecure: bool = False
    request: str = ""  # the JobRequest sent to matchJob, JSON
    receipt: str = ""  # the provider's input receipt signature
    tried: str = ""  # why earlier candidates were dropped, "; "-joined
    # results
    enclave_signature: str = ""
    ready_at: int = 0
    payout: int = 0
    output_sha256: str = ""
    output_size: int = 0
    # the chain transactions a client shows for its job
    match_tx: str = ""
    settle_tx: str = ""


def matched_job(change: JobMatched, status: JobStatus) -> Job:
    """The job a JobMatched event describes, as a provider tracks it."""
    return Job(
        change.job_id,
        status,
        client=change.client,
        provider=change.provider,
        price=change.price,
        deadline=change.deadline,
        input_hash=change.input_hash,
        spec_hash=change.spec_hash,
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
        spec_hash=change.spec_hash,
        tee_kinds=change.tee_kinds,
    )


class KeyStatus(StrEnum):
    ATTESTING = "attesting"  # asking the verifier committee
    REGISTERING = "registering"  # registerKey sent
    REGISTERED = "registered"  # valid on chain: offers published, jobs run under it
    REFUSED = "refused"  # the committee or the chain said no; `reason` says why
    RETIRED = "retired"  # replaced by a fresh instance, or its instance ended with a boot
    EXPIRED = "expired"


@dataclass(frozen=True)
class EnclaveKey:
    enclave_key: Address
    boot_id: str
    workload: str
    workload_kind: str
    tee_kind: int
    measurement: Hash32
    hpke_public_key: str
    status: KeyStatus
    expires_at: int = 0
    reason: str = ""


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
    peer_id: str = ""
    signature: str = ""


@dataclass(frozen=True)
class NodeFacts:
    """Node-wide facts the transitions keep: this boot, the registry entry, unspent earnings."""

    boot_id: str = ""
    registered: bool = False
    registering: bool = False
    earned: int = 0  # payouts since the last withdrawal we sent
    batches: int = 0  # batches signed so far: numbers the next batch id
    publications: int = 0  # offer publications so far: numbers the next one


@dataclass(frozen=True)
class ProviderTerms:
    """The provider's settings the transitions decide with (from config; pure values)."""

    peer_id: str = ""
    cpu_cores: int = 1
    memory_mib: int = 1024
    floor_price_per_hour: int = 0
    surge_permille: int = 500
    min_duration_s: int = 60
    max_duration_s: int = 3600
    quote_ttl_s: int = 120
    batch_size: int = 1
    batch_max_wait_s: int = 30
    withdraw_threshold: int = 0  # 0: never withdraw by itself
    key_ttl_s: int = 7 * 86400
    rekey_margin_s: int = 3600
    stake: int = 0  # register with this stake when not registered; 0: refuse to start


@dataclass(frozen=True)
class ClientTerms:
    max_candidates: int = 5


@dataclass(frozen=True)
class Identity:
    """Who this node is, and the terms its role decides with."""

    role: Role
    address: Address
    provider: ProviderTerms = field(default_factory=ProviderTerms)
    client: ClientTerms = field(default_factory=ClientTerms)


@dataclass(frozen=True)
class Step:
    """The output of one transition: what changed, the effects to run, the effects settled."""

    jobs: tuple[Job, ...] = ()
    approval: Approval | None = None
    keys: tuple[EnclaveKey, ...] = ()
    facts: NodeFacts | None = None
    effects: tuple[Effect, ...] = ()
    settled: tuple[Settlement, ...] = ()
    rejected: str = ""  # why a requested action was refused ("" when it was not)
    reply: str = ""  # what a request from a peer (quote, upload) is answered with, JSON
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
    keys: dict[Address, EnclaveKey] = field(default_factory=dict)
    facts: NodeFacts = field(default_factory=NodeFacts)
    pending: dict[EffectId, Effect] = field(default_factory=dict)
    last_seq: int = 0

    def absorb(self, step: Step, seq: int) -> list[Settlement]:
        """Apply `step`; returns the settlements that concerned pending effects."""
        for job in step.jobs:
            self.jobs[job.job_id] = job
        if step.approval is not None:
            self.approvals[step.approval.request_id] = step.approval
        for key in step.keys:
            self.keys[key.enclave_key] = key
        if step.facts is not None:
            self.facts = step.facts
        applied = []
        for settlement in step.settled:
            # The first settlement of an effect in a step is the one that counts.
            if self.pending.pop(settlement.effect_id, None) is not None:
                applied.append(settlement)
        for effect in step.effects:
            self.pending[effect.effect_id] = effect
        self.last_seq = seq
        return applied


class StateView(Mapping[JobId, Job]):
    """Read-only access for transitions: jobs by id, keys, approvals, pending effects."""

    def __init__(self, state: NodeState) -> None:
        self._state = state

    def __getitem__(self, job_id: JobId) -> Job:
        return self._state.jobs[job_id]

    def __iter__(self) -> Iterator[JobId]:
        return iter(self._state.jobs)

    def __len__(self) -> int:
        return len(self._state.jobs)

    @property
    def facts(self) -> NodeFacts:
        return self._state.facts

    @property
    def enclave_keys(self) -> Mapping[Address, EnclaveKey]:
        return self._state.keys

    def is_pending(self, effect: EffectId) -> bool:
        return effect in self._state.pending

    def pending_effect(self, effect: EffectId) -> Effect | None:
        return self._state.pending.get(effect)

    def pending_for(self, job_id: str) -> list[EffectId]:
        return [e for e in self._state.pending if effect_job(e) == job_id]

    def approval(self, request_id: str) -> Approval | None:
        return self._state.approvals.get(request_id)
