"""Typed state changes: every input the node reacts to, with the origin that makes it unique.

A change's `origin` names the fact it records (a log in a transaction, a CLI request id, a
transaction's outcome); the store refuses a second change with the same origin, so a replayed
block range or a retried request cannot act twice.
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


# ---------------------------------------------------------------- CLI actions


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
class MatchJobRequested(CliAction):
    job_id: JobId
    args: str  # matchJob's ABI arguments as canonical JSON (bytes as 0x hex)
    value: int


@dataclass(frozen=True)
class PostJobRequested(CliAction):
    job_id: JobId
    args: str
    value: int


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


# ---------------------------------------------------------------- executor results


@dataclass(frozen=True)
class JobExecuted(StateChange):
    job_id: JobId
    output_hash: Hash32
    enclave_signature: str  # 0x hex of the 65-byte signature over Result

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
class EvidenceChecked(StateChange):
    request_id: str
    accepted: bool
    reason: str
    signature: str  # the verifier's approval signature, "" when refused

    @property
    def origin(self) -> Origin:
        return Origin(f"check:{self.request_id}")


@dataclass(frozen=True)
class EffectCompleted(StateChange):
    """An effect without an on-chain trace (a publication, a transfer) finished."""

    effect_id: EffectId
    ok: bool
    detail: str

    @property
    def origin(self) -> Origin:
        return Origin(f"done:{self.effect_id}")


# ---------------------------------------------------------------- peer messages


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


@dataclass(frozen=True)
class ApprovalRequested(StateChange):
    request_id: str
    provider: Address
    enclave_key: Address
    evidence_hash: Hash32

    @property
    def origin(self) -> Origin:
        return Origin(f"approval:{self.request_id}")
