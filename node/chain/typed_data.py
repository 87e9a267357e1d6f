"""EIP-712 messages of the market, hashed exactly as the contracts hash them.

The receipts (Result, ResultBatch, InputReceipt) and the committee's KeyAttestation live in proofs/,
which clients and verifiers use without a node; this module adds the market's own
messages, Offer and JobRequest, and one way to digest and sign any of them. Tests check
every digest against the contracts' own views and against eth-account's encoder.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from typing import ClassVar, Protocol

from eth_abi.abi import encode
from eth_utils.crypto import keccak

from proofs.receipts import (
    Eip712Domain,
    InputReceipt,
    KeyAttestation,
    Result,
    ResultBatch,
    batch_root,
    job_market_domain,
    measurement_word,
    sign_digest,
    task_hash,
    typed_data_digest,
)
from proofs.receipts import attestation_verifier_domain as verifier_domain

__all__ = [
    "Eip712Domain",
    "InputReceipt",
    "JobRequest",
    "KeyAttestation",
    "Offer",
    "Result",
    "ResultBatch",
    "TypedMessage",
    "batch_root",
    "digest_of",
    "job_id_for",
    "job_market_domain",
    "key_attestation_abi",
    "sign_message",
    "task_hash",
    "verifier_domain",
]


class HashesStruct(Protocol):
    def hash_struct(self) -> bytes: ...


def digest_of(domain: Eip712Domain, message: HashesStruct) -> bytes:
    return typed_data_digest(domain, message.hash_struct())


def sign_message(domain: Eip712Domain, message: HashesStruct, private_key: bytes) -> bytes:
    """65-byte r || s || v signature over the message's EIP-712 digest in `domain`."""
    return sign_digest(private_key, digest_of(domain, message))


def key_attestation_abi(att: KeyAttestation) -> tuple[object, ...]:
    """The KeyAttestation as AttestationVerifier.registerKey takes it."""
    return (
        att.provider,
        att.enclave_key,
        att.tee_kind,
        measurement_word(att.measurement),
        att.tcb_status,
        att.evidence_hash,
        att.expires_at,
    )


class TypedMessage:
    """Mixin: EIP-712 struct hash of a flat dataclass of static fields, in `TYPE`'s order."""

    TYPE: ClassVar[str]

    @classmethod
    def primary_type(cls) -> str:
        return cls.TYPE.split("(", 1)[0]

    @classmethod
    def field_types(cls) -> list[tuple[str, str]]:
        inner = cls.TYPE[cls.TYPE.index("(") + 1 : -1]
        return [(name, typ) for typ, name in (f.split(" ") for f in inner.split(","))]

    def hash_struct(self) -> bytes:
        types = [t for _, t in self.field_types()]
        return keccak(encode(["bytes32", *types], [keccak(text=self.TYPE), *self.as_abi_tuple()]))

    def as_abi_tuple(self) -> tuple[object, ...]:
        return astuple(self)  # type: ignore[call-overload, no-any-return]

    def eip712_message(self) -> dict[str, object]:
        """The message as eth-account's `encode_typed_data` takes it (camelCase keys)."""
        names = [n for n, _ in self.field_types()]
        return dict(zip(names, self.as_abi_tuple(), strict=True))

    def digest(self, domain: Eip712Domain) -> bytes:
        return digest_of(domain, self)

    def sign(self, domain: Eip712Domain, private_key: bytes) -> bytes:
        return sign_message(domain, self, private_key)


@dataclass(frozen=True)
class Offer(TypedMessage):
    """A provider's quote; `request_hash` zero makes it a standing offer for any one request,
    otherwise it binds the quote to one client's exact request (JobRequest.request_hash).

    `enclave_key` is the attested key (of `tee_kind` and `measurement`) that will run the job;
    the match checks it stays valid through the deadline. `min_duration` is the least time the
    provider needs: a match that leaves less before the deadline is refused, so a provider is
    never set up to miss a deadline it could not meet. `max_duration` caps the deadline."""

    TYPE: ClassVar[str] = (
        "Offer(address provider,address enclaveKey,uint8 teeKind,bytes32 measurement,"
        "uint256 price,uint64 minDuration,uint64 maxDuration,uint64 validUntil,"
        "bytes32 requestHash,uint256 nonce)"
    )
    provider: str
    enclave_key: str
    tee_kind: int
    measurement: bytes
    price: int
    min_duration: int
    max_duration: int
    valid_until: int
    request_hash: bytes
    nonce: int

    @property
    def is_standing(self) -> bool:
        return self.request_hash == bytes(32)


@dataclass(frozen=True)
class JobRequest(TypedMessage):
    """A client's job: `tee_kinds` is a bit mask (bit = kind); zero measurement = any allowed."""

    TYPE: ClassVar[str] = (
        "JobRequest(bytes32 specHash,bytes32 inputHash,uint8 teeKinds,bytes32 measurement,"
        "uint8 minTcbStatus,uint256 maxPrice,uint64 deadline,uint256 nonce)"
    )
    spec_hash: bytes
    input_hash: bytes
    tee_kinds: int
    measurement: bytes
    min_tcb_status: int
    max_price: int
    deadline: int
    nonce: int

    def job_id(self, client: str) -> bytes:
        """The id JobMarket gives this client's job: see `job_id_for`."""
        return job_id_for(client, self.nonce)

    def request_hash(self, client: str) -> bytes:
        """What a quote binds to: keccak256(abi.encode(client, hashStruct(request)))."""
        return keccak(encode(["address", "bytes32"], [client, self.hash_struct()]))

    @property
    def task_hash(self) -> bytes:
        """hashStruct(Task{specHash, inputHash}): what the job keeps, and what the enclave's
        Result and the provider's InputReceipt sign."""
        return task_hash(self.spec_hash, self.input_hash)


def job_id_for(client: str, nonce: int) -> bytes:
    """keccak256(abi.encode(client, nonce)), as JobMarket.jobIdFor.

    It depends on nothing else so that a client can seal its input to the enclave with the
    job id as HPKE info before it builds the request that carries the sealed input's hash."""
    return keccak(encode(["address", "uint256"], [client, nonce]))
