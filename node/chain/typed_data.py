"""EIP-712 messages of the market, hashed exactly as the contracts hash them.

Each message is a frozen dataclass with a `TYPE` string (the EIP-712 encodeType) and
`FIELDS` in that order; `struct_hash` and `digest` follow EIP-712 for static fields only,
which is all our messages use. Tests check the digests against the contracts' own views
and against eth-account's independent encoder.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from typing import ClassVar

from eth_abi.abi import encode
from eth_account import Account
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

JOB_MARKET_DOMAIN_NAME = "CapaCloud JobMarket"
VERIFIER_DOMAIN_NAME = "CapaCloud AttestationVerifier"
DOMAIN_VERSION = "1"

_DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"


@dataclass(frozen=True)
class Eip712Domain:
    name: str
    version: str
    chain_id: int
    verifying_contract: str

    def separator(self) -> bytes:
        return keccak(
            encode(
                ["bytes32", "bytes32", "bytes32", "uint256", "address"],
                [
                    keccak(text=_DOMAIN_TYPE),
                    keccak(text=self.name),
                    keccak(text=self.version),
                    self.chain_id,
                    to_checksum_address(self.verifying_contract),
                ],
            )
        )


def job_market_domain(chain_id: int, market: str) -> Eip712Domain:
    return Eip712Domain(JOB_MARKET_DOMAIN_NAME, DOMAIN_VERSION, chain_id, market)


def verifier_domain(chain_id: int, verifier: str) -> Eip712Domain:
    return Eip712Domain(VERIFIER_DOMAIN_NAME, DOMAIN_VERSION, chain_id, verifier)


class TypedMessage:
    """Mixin: EIP-712 struct hash and digest of a flat dataclass of static fields."""

    TYPE: ClassVar[str]

    @classmethod
    def primary_type(cls) -> str:
        return cls.TYPE.split("(", 1)[0]

    @classmethod
    def field_types(cls) -> list[tuple[str, str]]:
        inner = cls.TYPE[cls.TYPE.index("(") + 1 : -1]
        return [(name, typ) for typ, name in (f.split(" ") for f in inner.split(","))]

    @classmethod
    def typehash(cls) -> bytes:
        return keccak(text=cls.TYPE)

    def struct_hash(self) -> bytes:
        types = [t for _, t in self.field_types()]
        values = list(astuple(self))  # type: ignore[call-overload]
        return keccak(encode(["bytes32", *types], [self.typehash(), *values]))

    def digest(self, domain: Eip712Domain) -> bytes:
        return keccak(b"\x19\x01" + domain.separator() + self.struct_hash())

    def eip712_message(self) -> dict[str, object]:
        """The message as eth-account's `encode_typed_data` takes it (camelCase keys)."""
        names = [n for n, _ in self.field_types()]
        return dict(zip(names, astuple(self), strict=True))  # type: ignore[call-overload]

    def sign(self, domain: Eip712Domain, private_key: bytes | str) -> bytes:
        signed = Account.unsafe_sign_hash(self.digest(domain), private_key)
        return bytes(signed.signature)


@dataclass(frozen=True)
class Offer(TypedMessage):
    """A provider's quote; `job_id` zero makes it a standing offer for any one request."""

    TYPE: ClassVar[str] = (
        "Offer(address provider,uint8 teeKind,bytes32 measurement,uint256 price,"
        "uint64 maxDuration,uint64 validUntil,bytes32 jobId,uint256 nonce)"
    )
    provider: str
    tee_kind: int
    measurement: bytes
    price: int
    max_duration: int
    valid_until: int
    job_id: bytes
    nonce: int

    def as_abi_tuple(self) -> tuple[object, ...]:
        return astuple(self)


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

    def as_abi_tuple(self) -> tuple[object, ...]:
        return astuple(self)

    def job_id(self, client: str) -> bytes:
        """The id JobMarket derives: keccak256(abi.encode(client, hashStruct(request)))."""
        return keccak(encode(["address", "bytes32"], [client, self.struct_hash()]))


@dataclass(frozen=True)
class Result(TypedMessage):
    TYPE: ClassVar[str] = (
        "Result(bytes32 jobId,address provider,bytes32 inputHash,bytes32 outputHash)"
    )
    job_id: bytes
    provider: str
    input_hash: bytes
    output_hash: bytes


@dataclass(frozen=True)
class ResultBatch(TypedMessage):
    TYPE: ClassVar[str] = "ResultBatch(address provider,bytes32 root,uint256 count)"
    provider: str
    root: bytes
    count: int


@dataclass(frozen=True)
class KeyAttestation(TypedMessage):
    TYPE: ClassVar[str] = (
        "KeyAttestation(address provider,address enclaveKey,uint8 teeKind,bytes32 measurement,"
        "uint8 tcbStatus,bytes32 evidenceHash,uint64 expiresAt)"
    )
    provider: str
    enclave_key: str
    tee_kind: int
    measurement: bytes
    tcb_status: int
    evidence_hash: bytes
    expires_at: int

    def as_abi_tuple(self) -> tuple[object, ...]:
        return astuple(self)


def merkle_root(leaves: list[bytes]) -> bytes:
    """JobMarket.merkleRoot: pairs hashed in order, an odd last node carried up unchanged."""
    if not leaves:
        raise ValueError("a batch needs at least one result")
    level = list(leaves)
    while len(level) > 1:
        nxt = [keccak(level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]
