"""Every body the local API takes or gives, as pydantic models.

The daemon's app validates requests and answers with these models and the CLI builds its
requests and parses the answers with the same ones, so neither side can drift from the other
or from the OpenAPI document, which is generated from them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from eth_utils.address import to_checksum_address
from pydantic import BaseModel, ConfigDict, Field

from node.api.uint import UintText
from node.chain.typed_data import JobRequest, Offer
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


class NodeStatus(BaseModel):
    version: str
    role: Role
    address: AddressText
    peer_id: str
    state_seq: int = Field(description="Number of the last recorded state change")
    jobs: int = Field(description="Jobs in the node's state")
    effects_pending: int = Field(description="Effects recorded and not yet settled")
    chain: ChainPosition


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


class JobRequestBody(_Body):
    """JobMarket's JobRequest struct."""

    spec_hash: Bytes32
    input_hash: Bytes32
    tee_kinds: Uint8 = Field(description="Bit mask of acceptable TEE kinds")
    measurement: Bytes32 = Field(description="Required measurement; zero: any allowed")
    min_tcb_status: Uint8
    max_price: Uint256
    deadline: Uint64
    nonce: Uint256 = Field(description="Makes the job id: keccak256(abi.encode(client, nonce))")

    @classmethod
    def of(cls, request: JobRequest) -> JobRequestBody:
        return cls(
            spec_hash=_hex(request.spec_hash),
            input_hash=_hex(request.input_hash),
            tee_kinds=request.tee_kinds,
            measurement=_hex(request.measurement),
            min_tcb_status=request.min_tcb_status,
            max_price=str(request.max_price),
            deadline=str(request.deadline),
            nonce=str(request.nonce),
        )

    def to_request(self) -> JobRequest:
        return JobRequest(
            bytes.fromhex(self.spec_hash[2:]),
            bytes.fromhex(self.input_hash[2:]),
            self.tee_kinds,
            bytes.fromhex(self.measurement[2:]),
            self.min_tcb_status,
            int(self.max_price),
            int(self.deadline),
            int(self.nonce),
        )


class OfferBody(_Body):
    """JobMarket's Offer struct: a provider's signed quote."""

    provider: AddressText
    enclave_key: AddressText = Field(description="The attested enclave key that runs the job")
    tee_kind: Uint8
    measurement: Bytes32
    price: Uint256
    min_duration: Uint64 = Field(description="Seconds the provider needs at least")
    max_duration: Uint64
    valid_until: Uint64
    request_hash: Bytes32 = Field(description="The quoted request's hash; zero: standing offer")
    nonce: Uint256

    @classmethod
    def of(cls, offer: Offer) -> OfferBody:
        return cls(
            provider=offer.provider,
            enclave_key=offer.enclave_key,
            tee_kind=offer.tee_kind,
            measurement=_hex(offer.measurement),
            price=str(offer.price),
            min_duration=str(offer.min_duration),
            max_duration=str(offer.max_duration),
            valid_until=str(offer.valid_until),
            request_hash=_hex(offer.request_hash),
            nonce=str(offer.nonce),
        )

    def to_offer(self) -> Offer:
        return Offer(
            to_checksum_address(self.provider),
            to_checksum_address(self.enclave_key),
            self.tee_kind,
            bytes.fromhex(self.measurement[2:]),
            int(self.price),
            int(self.min_duration),
            int(self.max_duration),
            int(self.valid_until),
            bytes.fromhex(self.request_hash[2:]),
            int(self.nonce),
        )


class _NewJob(Action):
    request: JobRequestBody
    value: Uint256 = Field(
        default="0",
        description="Wei sent along with the call: in a market paid in the chain's native "
        "currency, what to escrow (the offer's price, or the request's max_price for a post); "
        "what is missing comes from this node's free balance",
    )


class MatchJob(_NewJob):
    """Client: pay a provider's quote into escrow; the job is assigned at once."""

    kind: Literal["match"]
    offer: OfferBody
    signature: Annotated[
        str,
        Field(pattern=r"^0x[0-9a-fA-F]{130}$", description="The provider's 65-byte signature"),
    ]


class PostJob(_NewJob):
    """Client: post the job open, for any qualified provider to accept."""

    kind: Literal["post"]


NewJob = Annotated[MatchJob | PostJob, Field(discriminator="kind")]


def _hex(value: bytes) -> str:
    return "0x" + value.hex()
