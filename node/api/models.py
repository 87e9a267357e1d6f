"""Every body the local API takes or gives, as pydantic models.

The daemon's app validates requests and answers with these models and the CLI builds its
requests and parses the answers with the same ones, so neither side can drift from the other
or from the OpenAPI document, which is generated from them.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from node.api.uint import UintText
from node.config.model import Role
from node.state.model import ApprovalStatus, JobStatus
from node.store.records import TxStatus

MAX_LIMIT = 1000  # rows a list answers at most

Bytes32 = Annotated[
    str, Field(pattern=r"^0x[0-9a-fA-F]{64}$", description="32 bytes as 0x-prefixed hex")
]
JobIdText = Annotated[
    str,
    Field(
        pattern=r"^0x[0-9a-fA-F]{64}$",
        description="A job id: keccak256(abi.encode(client, nonce)) as 0x-prefixed hex",
        examples=["0x" + "ab" * 32],
    ),
]
AddressText = Annotated[
    str,
    Field(
        pattern=r"^0x[0-9a-fA-F]{40}$",
        description="An account address, 0x-prefixed hex",
        examples=["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"],
    ),
]
Uint8 = Annotated[int, Field(ge=0, le=255)]
Uint64 = Annotated[str, UintText(64)]
Uint256 = Annotated[str, UintText(256)]
PositiveUint256 = Annotated[str, UintText(256, positive=True)]
WeiText = Annotated[
    str, Field(pattern=r"^[0-9]+$", description="An amount in wei, as decimal text (uint256)")
]


class _Body(BaseModel):
    """A request body: unknown fields are refused, not ignored (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------- answers


class ErrorBody(BaseModel):
    """Every error answer, whatever its status."""

    error: str = Field(description="What went wrong, in words meant for a person")


class Health(BaseModel):
    ok: bool


class ChainPosition(BaseModel):
    rpc_url: str | None = Field(description="The RPC endpoint in use (none when no chain)")
    confirmed_block: int | None = Field(description="The last block the watcher confirmed")
    head_time: int | None = Field(
        default=None,
        description="The newest block's timestamp: the chain's clock, which deadlines are "
        "judged by (none before the first poll)",
    )


class EnclaveKeyView(BaseModel):
    enclave_key: AddressText
    workload: str
    tee_kind: int
    measurement: Bytes32
    status: str = Field(description="attesting, registering, registered, refused, retired, expired")
    expires_at: int = Field(description="Unix time the key's registration ends (0: not yet)")
    reason: str = Field(description="Why the key was refused, when it was")


class ProviderStatus(BaseModel):
    backend: str = Field(description="The enclave backend (tdx, sev-snp, sgx-gramine, sim)")
    insecure: bool = Field(description="True for sim: no hardware protects the jobs (INSECURE)")
    sim_host: str | None = Field(
        default=None,
        description="sim: the host key's address, what a client's policy `sim_hosts` pins",
    )
    registered: bool = Field(description="The provider is registered in the registry")
    keys: list[EnclaveKeyView]
    unspent_earnings: WeiText = Field(description="Payouts since the last withdrawal sent")
    waiting_for: list[str] = Field(
        description="Why no job can come yet (not registered, no approved key, ...); empty "
        "when offers are out"
    )


class NodeStatus(BaseModel):
    version: str
    role: Role
    address: AddressText
    peer_id: str
    state_seq: int = Field(description="Number of the last recorded state change")
    jobs: int = Field(description="Jobs in the node's state")
    effects_pending: int = Field(description="Effects recorded and not yet settled")
    chain: ChainPosition
    provider: ProviderStatus | None = Field(default=None, description="A provider's enclaves")


class JobView(BaseModel):
    job_id: JobIdText
    status: JobStatus
    client: AddressText | None
    provider: AddressText | None
    price: WeiText
    deadline: int = Field(description="Unix time after which the client may claim a refund")
    input_hash: Bytes32 | None
    output_hash: Bytes32 | None
    error: str = Field(description="Why the job failed, when it did")
    updated_seq: int = Field(description="The state change that last changed this job")
    detail: str = Field(
        default="{}",
        description="The job's other fields as JSON text (workload, candidate, TEE kind, "
        "insecure, output hash and size, transactions, why earlier candidates were dropped)",
    )


class EffectStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class EffectView(BaseModel):
    effect_id: str
    kind: str
    body: str = Field(description="The effect's fields, as JSON text")
    status: EffectStatus
    created_seq: int
    settled_seq: int | None
    reason: str


class TransactionView(BaseModel):
    effect_id: str = Field(description="The effect this transaction carries out")
    sender: AddressText
    nonce: int
    status: TxStatus
    mined_hash: Bytes32 | None
    block_number: int | None
    reason: str
    updated_at: float = Field(description="Unix time of the last change")


class EvidenceCheck(StrEnum):
    VERIFIED = "verified"
    REFUSED = "refused"
    UNCHECKED = "unchecked"


class OfferView(BaseModel):
    offer_key: str = Field(description="provider:nonce")
    provider: AddressText
    nonce: str
    price: WeiText
    valid_until: int
    tee_kind: int
    peer_id: str
    body: str = Field(description="The signed offer as received, JSON text")
    seen_seq: int
    evidence: EvidenceCheck = Field(
        default=EvidenceCheck.UNCHECKED,
        description="Client: this daemon's own check of the offer's enclave key, under its "
        "policy, when it last picked the provider for a job since it started (unchecked: not "
        "yet). A sim key is INSECURE whatever the check said.",
    )
    evidence_checked_at: int = Field(
        default=0, description="Chain time of that check (0: unchecked)"
    )


def enclave_key_of(body: str) -> str | None:
    """The enclave key the listing in an offer row's `body` names (the listing as the p2p
    node accepted and stored it); None when it names none."""
    try:
        listing = json.loads(body)
        key = listing["signed"]["offer"]["enclaveKey"]
    except (ValueError, KeyError, TypeError):
        return None
    return key if isinstance(key, str) else None


class PeerView(BaseModel):
    peer_id: str
    addrs: str = Field(description="The peer's multiaddresses, JSON text")
    last_seen: int


class ApprovalView(BaseModel):
    request_id: str
    status: ApprovalStatus
    provider: AddressText
    enclave_key: AddressText
    reason: str
    updated_seq: int
    peer_id: str  # who asked
    signature: str  # the KeyAttestation signature when approved, "" otherwise


class JobList(BaseModel):
    jobs: list[JobView]


class EffectList(BaseModel):
    effects: list[EffectView]


class TransactionList(BaseModel):
    transactions: list[TransactionView]


class OfferList(BaseModel):
    offers: list[OfferView]


class PeerList(BaseModel):
    peers: list[PeerView]


class ApprovalList(BaseModel):
    approvals: list[ApprovalView]


class ActionOutcome(BaseModel):
    """What became of an action: recorded as a state change, or refused by the node's rules."""

    origin: str = Field(description="The recorded change's origin, cli:<request_id>")
    seq: int | None = Field(description="Number of the recorded change; none for a duplicate")
    duplicate: bool = Field(description="A change with this request_id was recorded before")
    rejected: str = Field(description="Why the node's rules refused the action; empty if not")


# ---------------------------------------------------------------------------- actions


class Action(_Body):
    request_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Idempotency key: a retried request with the same id acts once "
        "(a fresh one is drawn when absent)",
    )


class AcceptJob(Action):
    enclave_key: AddressText = Field(description="Address of the enclave key to bind to the job")
    min_duration: Uint64 = Field(
        default="600",
        description="Seconds the provider needs at least: acceptJob refuses a closer deadline, "
        "so an accept that waited long to be mined cannot leave a job there is no time for",
    )


class ClaimTimeout(Action):
    pass


class CancelJob(Action):
    pass


class Withdraw(Action):
    amount: PositiveUint256 = Field(description="Wei to withdraw")
    to: AddressText | None = Field(default=None, description="Recipient (default: this node)")


class WorkloadKindText(StrEnum):
    WASM = "wasm"
    ONNX = "onnx"
    EXEC = "exec"


class StagedInput(BaseModel):
    """A plaintext input the client daemon holds until a job takes it."""

    input_id: Bytes32 = Field(description="sha256 of the input: the id a job submission names")
    size: int


class SubmitJob(Action):
    """Client: run a workload on an input; the daemon finds, checks and pays a provider."""

    workload: WorkloadKindText
    measurement: Bytes32 = Field(
        description="The workload's measurement (`capa job submit` "
        "computes it from the module, model or image)"
    )
    input_id: Bytes32 = Field(description="A staged input (POST /v1/inputs)")
    tee_kinds: Uint8 = Field(
        default=0,
        description="Bit mask of acceptable TEE kinds (bit i: TeeKind i); 0: any kind",
    )
    min_tcb_status: Uint8 = 0
    max_price: PositiveUint256 = Field(description="Wei at most for the whole job")
    timeout_s: Uint64 = Field(default="600", description="Seconds from matching to the deadline")
    cpu_cores: Uint64 = "1"
    memory_mib: Uint64 = "256"


class SubmittedJob(ActionOutcome):
    job_id: JobIdText


def _hex(value: bytes) -> str:
    return "0x" + value.hex()
