"""Typed state changes: every input the node reacts to, with the origin that makes it unique.

A change's `origin` names the fact it records (a log in a transaction, a CLI request id, a
transaction's outcome, an effect's answer); the store refuses a second change with the same
origin, so a replayed block range, a retried request or a handler that answers twice after a
restart cannot act twice.

Producers (see docs/wiring.md): the chain watcher (confirmed events), the local API (actions),
effect handlers (their answers), the p2p servers (requests from peers), the enclave host (its
instances at boot) and the clock (chain time passing deadlines and expiries).
"""

from __future__ import annotations

from dataclasses import dataclass

from node.state.values import Address, BlockNumber, EffectId, Hash32, JobId, Origin, TxHash


@dataclass(frozen=True)
class StateChange:
    @property
    def origin(self) -> Origin:
        raise NotImplementedError


# ---------------------------------------------------------------- confirmed chain events


@dataclass(frozen=True)
class ChainEvent(StateChange):
    block_number: BlockNumber
    block_hash: Hash32
    tx_hash: TxHash
    log_key: str  # a digest of the log's topics and data: stable when a reorg re-mines the tx

    @property
    def origin(self) -> Origin:
        return Origin(f"log:{self.tx_hash}:{self.log_key}")


@dataclass(frozen=True)
class JobMatched(ChainEvent):
    job_id: JobId
    client: Address
    provider: Address
    price: int
    deadline: int
    spec_hash: Hash32
    input_hash: Hash32


@dataclass(frozen=True)
class JobPosted(ChainEvent):
    job_id: JobId
    client: Address
    max_price: int
    deadline: int
    tee_kinds: int
    spec_hash: Hash32
    input_hash: Hash32


@dataclass(frozen=True)
class JobAccepted(ChainEvent):
    job_id: JobId
    provider: Address


@dataclass(frozen=True)
class JobSettled(ChainEvent):
    job_id: JobId
    provider: Address
    output_hash: Hash32
    payout: int


@dataclass(frozen=True)
class JobRefunded(ChainEvent):
    job_id: JobId
    client: Address
    refund: int
    slashed: int


@dataclass(frozen=True)
class JobReleased(ChainEvent):
    """The provider gave the job back before its deadline: full refund, no slash."""

    job_id: JobId
    client: Address
    provider: Address
    refund: int


@dataclass(frozen=True)
class JobCancelled(ChainEvent):
    job_id: JobId
    client: Address
    refund: int


# ---------------------------------------------------------------- our transactions' outcomes


@dataclass(frozen=True)
class TxConfirmed(StateChange):
    effect_id: EffectId
    tx_hash: TxHash
    block_number: BlockNumber

    @property
    def origin(self) -> Origin:
        return Origin(f"tx:{self.effect_id}:confirmed")


@dataclass(frozen=True)
class TxReverted(StateChange):
    """The transaction reverted on-chain, or would have (estimation), with the decoded reason."""

    effect_id: EffectId
    tx_hash: TxHash | None  # None when estimation refused it and nothing was sent
    reason: str

    @property
    def origin(self) -> Origin:
        return Origin(f"tx:{self.effect_id}:reverted")


# ---------------------------------------------------------------- local API actions


@dataclass(frozen=True)
class CliAction(StateChange):
    request_id: str

    @property
    def origin(self) -> Origin:
        return Origin(f"cli:{self.request_id}")


@dataclass(frozen=True)
class AcceptJobRequested(CliAction):
    job_id: JobId
    enclave_key: Address
    min_duration: int  # seconds the provider needs at least: acceptJob refuses a closer deadline


@dataclass(frozen=True)
class ClaimTimeoutRequested(CliAction):
    job_id: JobId


@dataclass(frozen=True)
class CancelJobRequested(CliAction):
    job_id: JobId


@dataclass(frozen=True)
class WithdrawRequested(CliAction):
    amount: int
    to: Address


@dataclass(frozen=True)
class JobSubmitRequested(CliAction):
    """A client's job: what it needs; the plaintext input is already in the daemon's data dir.

    `nonce` fixes the job id (keccak(client, nonce)) before anything is sealed, since the id is
    the HPKE info the input is sealed under.
    """

    job_id: JobId
    nonce: int
    workload: str  # wasm | onnx | exec
    measurement: Hash32
    tee_kinds: int  # bit mask over TEE kinds, as JobRequest.teeKinds
    min_tcb_status: int
    max_price: int  # wei for the whole job
    timeout_s: int  # deadline = chain time when the request is built + timeout_s
    cpu_cores: int
    memory_mib: int
    input_size: int
    submitted_at: int  # unix seconds, the API's clock: orders jobs, never decides a deadline


# ---------------------------------------------------------------- client: handlers' answers


@dataclass(frozen=True)
class ProvidersFound(StateChange):
    """The scheduler's ranked candidates from the offer book, or why there are none."""

    job_id: JobId
    attempt: int
    candidates: str  # JSON list of candidate objects, best first
    why_none: str  # the scheduler's one-line summary when `candidates` is empty

    @property
    def origin(self) -> Origin:
        return Origin(f"found:{self.job_id}:{self.attempt}")


@dataclass(frozen=True)
class ProviderChecked(StateChange):
    """A candidate's evidence fetched and judged under the client's policy and the chain."""

    job_id: JobId
    candidate: int
    accepted: bool
    reason: str
    enclave_key: str  # "" when refused
    hpke_public_key: str  # 0x hex, "" when refused
    tee_kind: int
    insecure: bool  # sim evidence: accepted only where the client's policy allows sim

    @property
    def origin(self) -> Origin:
        return Origin(f"checked:{self.job_id}:{self.candidate}")


@dataclass(frozen=True)
class InputSealed(StateChange):
    job_id: JobId
    candidate: int
    input_hash: Hash32  # sha256 of the sealed bytes: what JobRequest.inputHash commits to
    sealed_size: int
    chain_time: int  # the latest block's timestamp when sealed: the deadline counts from it

    @property
    def origin(self) -> Origin:
        return Origin(f"sealed:{self.job_id}:{self.candidate}")


@dataclass(frozen=True)
class QuoteReceived(StateChange):
    """A provider-signed offer bound to our exact request, checked as matchJob will check it."""

    job_id: JobId
    candidate: int
    offer: str  # the EIP-712 Offer as JSON (typed_message_to_json)
    signature: str  # 0x hex

    @property
    def origin(self) -> Origin:
        return Origin(f"quote:{self.job_id}:{self.candidate}")


@dataclass(frozen=True)
class CandidateFailed(StateChange):
    """A candidate dropped before any money moved: unreachable, refused to quote, ..."""

    job_id: JobId
    candidate: int
    stage: str
    reason: str

    @property
    def origin(self) -> Origin:
        return Origin(f"candidate-failed:{self.job_id}:{self.candidate}")


@dataclass(frozen=True)
class InputDelivered(StateChange):
    """The provider holds the whole sealed input and signed an input receipt for it."""

    job_id: JobId
    receipt_signature: str  # 0x hex: the provider's EIP-712 InputReceipt signature

    @property
    def origin(self) -> Origin:
        return Origin(f"delivered:{self.job_id}")


@dataclass(frozen=True)
class InputUndeliverable(StateChange):
    job_id: JobId
    reason: str

    @property
    def origin(self) -> Origin:
        return Origin(f"undeliverable:{self.job_id}")


@dataclass(frozen=True)
class OutputVerified(StateChange):
    """Sealed output fetched, its hash equal to the settled one, signed by the enclave, opened."""

    job_id: JobId
    output_sha256: str  # of the decrypted output
    output_size: int

    @property
    def origin(self) -> Origin:
        return Origin(f"output:{self.job_id}")


@dataclass(frozen=True)
class OutputRejected(StateChange):
    job_id: JobId
    reason: str

    @property
    def origin(self) -> Origin:
        return Origin(f"output:{self.job_id}")


# ---------------------------------------------------------------- clock


@dataclass(frozen=True)
class DeadlinePassed(StateChange):
    """Seen again after a claim that came too early for the chain: hence the time in it."""

    job_id: JobId
    chain_time: int

    @property
    def origin(self) -> Origin:
        return Origin(f"deadline:{self.job_id}:{self.chain_time}")


@dataclass(frozen=True)
class KeyExpiring(StateChange):
    enclave_key: Address
    chain_time: int

    @property
    def origin(self) -> Origin:
        return Origin(f"expiring:{self.enclave_key}")


@dataclass(frozen=True)
class BatchDue(StateChange):
    """Results have waited their longest: submit what is ready even below the batch size."""

    enclave_key: Address
    chain_time: int

    @property
    def origin(self) -> Origin:
        return Origin(f"batch-due:{self.enclave_key}:{self.chain_time}")


# ---------------------------------------------------------------- provider


@dataclass(frozen=True)
class ProviderBooted(StateChange):
    """A provider daemon started: its boot id and its registry entry as read at boot."""

    boot_id: str
    registered: bool
    active: bool
    stake: int

    @property
    def origin(self) -> Origin:
        return Origin(f"registration:{self.boot_id}")


@dataclass(frozen=True)
class EnclaveStarted(StateChange):
    """An enclave instance of this boot: its keys live only as long as the instance."""

    boot_id: str
    workload: str  # the configured workload's name
    workload_kind: str
    tee_kind: int
    measurement: Hash32
    enclave_key: Address
    hpke_public_key: str  # 0x hex

    @property
    def origin(self) -> Origin:
        return Origin(f"enclave:{self.enclave_key}")


@dataclass(frozen=True)
class KeyApproved(StateChange):
    """k committee members signed the enclave key's KeyAttestation."""

    enclave_key: Address
    attestation: str  # KeyAttestation as JSON
    signatures: str  # JSON list of 0x hex, in ascending signer order

    @property
    def origin(self) -> Origin:
        return Origin(f"approved:{self.enclave_key}")


@dataclass(frozen=True)
class KeyRefused(StateChange):
    enclave_key: Address
    reason: str

    @property
    def origin(self) -> Origin:
        return Origin(f"approved:{self.enclave_key}")


@dataclass(frozen=True)
class QuoteRequested(StateChange):
    """A client asked for a quote on /capa/quote/1; the transition runs the bid rules."""

    request_id: str
    job_id: JobId
    client: Address
    measurement: Hash32
    tee_kinds: int
    max_price: int
    deadline: int
    cpu_cores: int
    memory_mib: int
    chain_time: int

    @property
    def origin(self) -> Origin:
        return Origin(f"quote-request:{self.request_id}")


@dataclass(frozen=True)
class InputReceived(StateChange):
    """The whole sealed input is on disk and its hash is the one the job committed to."""

    job_id: JobId
    input_hash: Hash32
    size: int
    enclave_key: Address  # the instance the client sealed to

    @property
    def origin(self) -> Origin:
        return Origin(f"input:{self.job_id}")


@dataclass(frozen=True)
class JobExecuted(StateChange):
    job_id: JobId
    output_hash: Hash32
    enclave_signature: str  # 0x hex of the 65-byte signature over Result
    chain_time: int  # when the result was ready: a batch waits at most so long from it

    @property
    def origin(self) -> Origin:
        return Origin(f"exec:{self.job_id}")


@dataclass(frozen=True)
class JobExecutionFailed(StateChange):
    job_id: JobId
    reason: str

    @property
    def origin(self) -> Origin:
        return Origin(f"exec:{self.job_id}")


@dataclass(frozen=True)
class BatchSigned(StateChange):
    batch_id: str
    job_ids: str  # JSON list, the batch's order
    output_hashes: str  # JSON list, same order
    signature: str

    @property
    def origin(self) -> Origin:
        return Origin(f"batch:{self.batch_id}")


# ---------------------------------------------------------------- verifier


@dataclass(frozen=True)
class ApprovalRequested(StateChange):
    request_id: str
    provider: Address
    enclave_key: Address
    evidence_hash: Hash32
    peer_id: str

    @property
    def origin(self) -> Origin:
        return Origin(f"approval:{self.request_id}")


@dataclass(frozen=True)
class EvidenceChecked(StateChange):
    request_id: str
    accepted: bool
    reason: str
    signature: str  # the verifier's KeyAttestation signature, "" when refused

    @property
    def origin(self) -> Origin:
        return Origin(f"check:{self.request_id}")


# ---------------------------------------------------------------- effects without a chain trace


@dataclass(frozen=True)
class EffectCompleted(StateChange):
    """An effect without an on-chain trace (a publication) finished."""

    effect_id: EffectId
    ok: bool
    detail: str

    @property
    def origin(self) -> Origin:
        return Origin(f"done:{self.effect_id}")


# ---------------------------------------------------------------- peers


@dataclass(frozen=True)
class OfferReceived(StateChange):
    provider: Address
    nonce: int
    price: int
    valid_until: int
    tee_kind: int
    peer_id: str
    body: str  # the signed offer as received, JSON

    @property
    def origin(self) -> Origin:
        return Origin(f"offer:{self.provider}:{self.nonce}")


@dataclass(frozen=True)
class PeerSeen(StateChange):
    peer_id: str
    addrs: str  # comma-separated multiaddrs
    seen_at: int

    @property
    def origin(self) -> Origin:
        return Origin(f"peer:{self.peer_id}:{self.seen_at}")
