"""EIP-712 receipts, identical to JobMarket / AttestationVerifier on-chain hashing.

Task:           Task(bytes32 specHash,bytes32 inputHash): what the client asked to run on what
Result:         Result(bytes32 jobId,address provider,Task task,bytes32 outputHash), signed by
                the enclave key: the output of exactly this spec on exactly this input
InputReceipt:   InputReceipt(bytes32 jobId,Task task), signed by the provider's account key
                when the sealed input has arrived: the proof `claimTimeout` needs to slash
ResultBatch:    ResultBatch(address provider,bytes32 root,uint256 count)
KeyAttestation: KeyAttestation(address provider,address enclaveKey,uint8 teeKind,
                bytes32 measurement,uint8 tcbStatus,bytes32 evidenceHash,uint64 expiresAt)

Result and InputReceipt nest Task (EIP-712 appends the referenced type to the primary one), so
the market keeps one word per job, hashStruct(Task), and still checks both hashes.

Batch root: leaves are hashStruct(Result) in batch order; each parent is
keccak256(left || right) (ordered, not sorted); an odd node at the end of a level is carried up
unchanged; a single leaf is its own root.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_keys.datatypes import Signature
from eth_keys.exceptions import BadSignature
from eth_utils.address import to_canonical_address, to_checksum_address
from eth_utils.crypto import keccak
from eth_utils.exceptions import ValidationError as KeyValidationError

from proofs.errors import SignatureInvalid

JOB_MARKET_DOMAIN_NAME = "CapaCloud JobMarket"
ATTESTATION_VERIFIER_DOMAIN_NAME = "CapaCloud AttestationVerifier"
DOMAIN_VERSION = "1"

_DOMAIN_TYPE = b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
TASK_TYPE = b"Task(bytes32 specHash,bytes32 inputHash)"
RESULT_TYPE = b"Result(bytes32 jobId,address provider,Task task,bytes32 outputHash)" + TASK_TYPE
INPUT_RECEIPT_TYPE = b"InputReceipt(bytes32 jobId,Task task)" + TASK_TYPE
SPEC_TAG = b"CapaCloud.WorkloadSpec.v1"
RESULT_BATCH_TYPE = b"ResultBatch(address provider,bytes32 root,uint256 count)"
KEY_ATTESTATION_TYPE = (
    b"KeyAttestation(address provider,address enclaveKey,uint8 teeKind,bytes32 measurement,"
    b"uint8 tcbStatus,bytes32 evidenceHash,uint64 expiresAt)"
)


@dataclass(frozen=True)
class Eip712Domain:
    name: str
    chain_id: int
    verifying_contract: str
    version: str = DOMAIN_VERSION

    def separator(self) -> bytes:
        return keccak(
            abi_encode(
                ["bytes32", "bytes32", "bytes32", "uint256", "address"],
                [
                    keccak(_DOMAIN_TYPE),
                    keccak(text=self.name),
                    keccak(text=self.version),
                    self.chain_id,
                    to_checksum_address(self.verifying_contract),
                ],
            )
        )


def job_market_domain(chain_id: int, job_market: str) -> Eip712Domain:
    return Eip712Domain(JOB_MARKET_DOMAIN_NAME, chain_id, job_market)


def attestation_verifier_domain(chain_id: int, verifier: str) -> Eip712Domain:
    return Eip712Domain(ATTESTATION_VERIFIER_DOMAIN_NAME, chain_id, verifier)


def _bytes32(value: bytes, what: str) -> bytes:
    if len(value) != 32:
        raise ValueError(f"{what} must be 32 bytes, got {len(value)}")
    return value


def task_hash(spec_hash: bytes, input_hash: bytes) -> bytes:
    """hashStruct(Task{specHash, inputHash}): what JobMarket keeps of a job's request."""
    return keccak(
        abi_encode(
            ["bytes32", "bytes32", "bytes32"],
            [keccak(TASK_TYPE), _bytes32(spec_hash, "specHash"), _bytes32(input_hash, "inputHash")],
        )
    )


def workload_spec_hash(measurement: bytes, args: tuple[str, ...]) -> bytes:
    """A JobRequest's specHash for a workload run with `args`: the enclave computes it from
    what it runs (its own measurement and the job's arguments), the client from what it asks
    for, so a result of another image or other arguments does not settle the job.

    keccak256(abi.encode(keccak256(SPEC_TAG), measurementWord, string[] args))."""
    return keccak(
        abi_encode(
            ["bytes32", "bytes32", "string[]"],
            [keccak(SPEC_TAG), measurement_word(measurement), list(args)],
        )
    )


@dataclass(frozen=True)
class Result:
    job_id: bytes
    provider: str
    spec_hash: bytes
    input_hash: bytes
    output_hash: bytes

    @property
    def task_hash(self) -> bytes:
        return task_hash(self.spec_hash, self.input_hash)

    def hash_struct(self) -> bytes:
        return keccak(
            abi_encode(
                ["bytes32", "bytes32", "address", "bytes32", "bytes32"],
                [
                    keccak(RESULT_TYPE),
                    _bytes32(self.job_id, "jobId"),
                    to_checksum_address(self.provider),
                    self.task_hash,
                    _bytes32(self.output_hash, "outputHash"),
                ],
            )
        )


@dataclass(frozen=True)
class InputReceipt:
    """The provider's acknowledgement that the sealed input of a job has arrived.

    Signed with the provider's account key (the one that signs its offers and holds its
    stake), not the enclave key: the liability starts when the provider's daemon holds the
    bytes, before an enclave opens them, and the receipt must stay checkable however enclave
    keys rotate. JobMarket.claimTimeout slashes only against it."""

    job_id: bytes
    spec_hash: bytes
    input_hash: bytes

    def hash_struct(self) -> bytes:
        return keccak(
            abi_encode(
                ["bytes32", "bytes32", "bytes32"],
                [
                    keccak(INPUT_RECEIPT_TYPE),
                    _bytes32(self.job_id, "jobId"),
                    task_hash(self.spec_hash, self.input_hash),
                ],
            )
        )


@dataclass(frozen=True)
class ResultBatch:
    provider: str
    root: bytes
    count: int

    def hash_struct(self) -> bytes:
        return keccak(
            abi_encode(
                ["bytes32", "address", "bytes32", "uint256"],
                [
                    keccak(RESULT_BATCH_TYPE),
                    to_checksum_address(self.provider),
                    _bytes32(self.root, "root"),
                    self.count,
                ],
            )
        )


@dataclass(frozen=True)
class KeyAttestation:
    provider: str
    enclave_key: str
    tee_kind: int
    measurement: bytes
    tcb_status: int
    evidence_hash: bytes
    expires_at: int

    def hash_struct(self) -> bytes:
        return keccak(
            abi_encode(
                ["bytes32", "address", "address", "uint8", "bytes32", "uint8", "bytes32", "uint64"],
                [
                    keccak(KEY_ATTESTATION_TYPE),
                    to_checksum_address(self.provider),
                    to_checksum_address(self.enclave_key),
                    self.tee_kind,
                    measurement_word(self.measurement),
                    self.tcb_status,
                    _bytes32(self.evidence_hash, "evidenceHash"),
                    self.expires_at,
                ],
            )
        )


def measurement_word(measurement: bytes) -> bytes:
    """Measurements longer than 32 bytes (MRTD, SNP: 48 B) go on-chain as keccak256 of them."""
    if len(measurement) == 32:
        return measurement
    return keccak(measurement)


def typed_data_digest(domain: Eip712Domain, hash_struct: bytes) -> bytes:
    return keccak(b"\x19\x01" + domain.separator() + hash_struct)


def result_digest(domain: Eip712Domain, result: Result) -> bytes:
    return typed_data_digest(domain, result.hash_struct())


def input_receipt_digest(domain: Eip712Domain, receipt: InputReceipt) -> bytes:
    return typed_data_digest(domain, receipt.hash_struct())


def sign_digest(private_key: bytes, digest: bytes) -> bytes:
    """65-byte r || s || v (v = 27/28), as Solidity's ecrecover / OpenZeppelin ECDSA expect."""
    signed = Account.unsafe_sign_hash(digest, private_key)
    return bytes(signed.signature)


def recover_signer(digest: bytes, signature: bytes) -> str:
    if len(signature) != 65:
        raise SignatureInvalid(f"signature must be 65 bytes, got {len(signature)}")
    v = signature[64]
    if v >= 27:
        v -= 27
    try:
        parsed = Signature(
            vrs=(v, int.from_bytes(signature[:32]), int.from_bytes(signature[32:64]))
        )
        return parsed.recover_public_key_from_msg_hash(digest).to_checksum_address()
    except (BadSignature, KeyValidationError, ValueError) as exc:
        raise SignatureInvalid(f"cannot recover a signer: {exc}") from exc


def verify_signed_by(digest: bytes, signature: bytes, expected_signer: str) -> None:
    signer = recover_signer(digest, signature)
    if to_canonical_address(signer) != to_canonical_address(expected_signer):
        raise SignatureInvalid(
            f"signed by {signer}, expected {to_checksum_address(expected_signer)}"
        )


def _parent(left: bytes, right: bytes) -> bytes:
    return keccak(left + right)


def batch_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        raise ValueError("a batch needs at least one result")
    level = [_bytes32(leaf, "leaf") for leaf in leaves]
    while len(level) > 1:
        next_level = [_parent(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            next_level.append(level[-1])
        level = next_level
    return level[0]


def results_batch_root(results: list[Result]) -> bytes:
    return batch_root([r.hash_struct() for r in results])


@dataclass(frozen=True)
class InclusionStep:
    sibling: bytes
    sibling_on_left: bool


def inclusion_proof(leaves: list[bytes], index: int) -> tuple[InclusionStep, ...]:
    """Siblings from leaf to root; levels where the node is carried up add no step."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} out of {len(leaves)}")
    steps: list[InclusionStep] = []
    level = list(leaves)
    position = index
    while len(level) > 1:
        if position % 2 == 1:
            steps.append(InclusionStep(level[position - 1], sibling_on_left=True))
        elif position + 1 < len(level):
            steps.append(InclusionStep(level[position + 1], sibling_on_left=False))
        next_level = [_parent(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            next_level.append(level[-1])
        level = next_level
        position //= 2
    return tuple(steps)


def root_from_inclusion_proof(leaf: bytes, proof: tuple[InclusionStep, ...]) -> bytes:
    node = leaf
    for step in proof:
        node = _parent(step.sibling, node) if step.sibling_on_left else _parent(node, step.sibling)
    return node
