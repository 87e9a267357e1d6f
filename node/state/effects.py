"""Effects: what a transition asks the outside world to do. Each has a unique, stable id.

An effect is recorded in the same SQLite transaction as the change that produced it and stays
pending until a later change settles it (a confirmed event, a transaction outcome, a
handler's answer); the id makes executing it again after a restart a no-op or a resume.
Each effect type has exactly one handler that the daemon registers for the roles that emit
it (`node.daemon.wiring`); a test holds the two lists together.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from node.state.values import Address, EffectId, Hash32, JobId


class Contract(StrEnum):
    MARKET = "market"
    VERIFIER = "verifier"
    REGISTRY = "registry"


@dataclass(frozen=True)
class Effect:
    effect_id: EffectId


@dataclass(frozen=True)
class SendTransaction(Effect):
    function: str  # a function of `contract`
    args: str  # ABI arguments as canonical JSON (bytes as 0x hex)
    value: int
    contract: Contract = Contract.MARKET


# ---------------------------------------------------------------- client


@dataclass(frozen=True)
class FindProviders(Effect):
    """Rank the live offer book for the job with the scheduler."""

    job_id: JobId
    attempt: int


@dataclass(frozen=True)
class CheckProvider(Effect):
    """Fetch the candidate's evidence and judge it under the client's policy and the chain."""

    job_id: JobId
    candidate: int
    provider: Address
    peer_id: str
    tee_kind: int
    measurement: Hash32


@dataclass(frozen=True)
class SealInput(Effect):
    """Seal the job's plaintext input (with the client's output key inside) to an enclave."""

    job_id: JobId
    candidate: int
    hpke_public_key: str


@dataclass(frozen=True)
class RequestQuote(Effect):
    job_id: JobId
    candidate: int
    peer_id: str
    provider: Address
    request: str  # the EIP-712 JobRequest as JSON


@dataclass(frozen=True)
class SendInput(Effect):
    """Upload the sealed input (resumable) and bring back the provider's input receipt."""

    job_id: JobId
    provider: Address
    peer_id: str
    enclave_key: Address
    input_hash: Hash32
    deadline: int


@dataclass(frozen=True)
class FetchOutput(Effect):
    """Download the sealed output, check it against the chain and the enclave, open it."""

    job_id: JobId
    provider: Address
    peer_id: str
    enclave_key: Address
    input_hash: Hash32
    output_hash: Hash32


# ---------------------------------------------------------------- provider


@dataclass(frozen=True)
class RequestApprovals(Effect):
    """Collect k committee signatures for an enclave key over /capa/approve/1."""

    enclave_key: Address


@dataclass(frozen=True)
class RotateEnclave(Effect):
    """Start a fresh instance of a workload (new keys) before the current key expires."""

    workload: str


@dataclass(frozen=True)
class StartJob(Effect):
    job_id: JobId
    input_hash: Hash32
    deadline: int
    enclave_key: Address


@dataclass(frozen=True)
class SignBatch(Effect):
    """Have the enclave sign one ResultBatch over results it produced."""

    batch_id: str
    enclave_key: Address
    job_ids: str  # JSON list
    output_hashes: str  # JSON list, same order


@dataclass(frozen=True)
class Publish(Effect):
    """Publish (or replace) the standing offer for one registered enclave key."""

    enclave_key: Address
    listing: str  # JSON: what the offer says besides its signature and nonce


# ---------------------------------------------------------------- verifier


@dataclass(frozen=True)
class CheckEvidence(Effect):
    request_id: str
    evidence_hash: Hash32


@dataclass(frozen=True)
class Settlement:
    effect_id: EffectId
    ok: bool
    reason: str = ""
