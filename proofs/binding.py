"""The one construction of the 64-byte report data that binds an enclave's keys to a job market.

    report_data[0:32]  = keccak256(abi.encode(
                             bytes32 KEY_BINDING_TAG,      // keccak256("CapaCloud.KeyBinding.v1")
                             uint256 chainId,
                             address verifier,             // AttestationVerifier contract
                             address provider,
                             address enclaveKey,           // secp256k1 signing key (Ethereum address)
                             bytes32 hpkeKeyHash,          // keccak256(HPKE public key bytes)
                             bytes32 nonce,
                             uint64  expiresAt))           // unix seconds
    report_data[32:64] = 32 zero bytes

keccak256 over the ABI encoding so the AttestationVerifier contract can recompute it with
`keccak256(abi.encode(...))`; the zero half is reserved and must be zero, so one report data
value cannot be read two ways. The enclave runtime builds it, the verifier role and the
contract check it, and KeyAttestation.expiresAt is the same `expires_at`.

GPU evidence is bound to the CPU evidence it accompanies through the SPDM requester nonce:

    gpu_nonce = keccak256(GPU_NONCE_TAG || cpu_report_data)      // 32 bytes, all 64 B hashed
    GPU_NONCE_TAG = keccak256("CapaCloud.GpuNonce.v1")

The nonce sits in the GET_MEASUREMENTS request, which the GPU's attestation key signs with the
response, so a GPU report answers exactly this CPU binding (keys, provider, verifier, expiry).
The tag keeps the value from ever equalling report data or any other CapaCloud hash. What it
cannot show, as in NVIDIA's own model, is that the GPU sits in this CVM rather than another
machine the provider controls: the driver's SPDM session to the GPU is what ties them there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from proofs.claims import ReportData
from proofs.errors import BindingMismatch

KEY_BINDING_TAG = keccak(text="CapaCloud.KeyBinding.v1")
GPU_NONCE_TAG = keccak(text="CapaCloud.GpuNonce.v1")


@dataclass(frozen=True)
class KeyBinding:
    chain_id: int
    verifier: str
    provider: str
    enclave_key: str
    hpke_public_key: bytes
    nonce: bytes
    expires_at: int

    def report_data(self) -> ReportData:
        if len(self.nonce) != 32:
            raise ValueError("nonce must be 32 bytes")
        digest = keccak(
            abi_encode(
                [
                    "bytes32",
                    "uint256",
                    "address",
                    "address",
                    "address",
                    "bytes32",
                    "bytes32",
                    "uint64",
                ],
                [
                    KEY_BINDING_TAG,
                    self.chain_id,
                    to_checksum_address(self.verifier),
                    to_checksum_address(self.provider),
                    to_checksum_address(self.enclave_key),
                    keccak(self.hpke_public_key),
                    self.nonce,
                    self.expires_at,
                ],
            )
        )
        return ReportData(digest + bytes(32))

    def expires(self) -> datetime:
        return datetime.fromtimestamp(self.expires_at, UTC)


def check_binding(report_data: bytes, binding: KeyBinding, at: datetime) -> None:
    """Raises BindingMismatch if the evidence is not bound to exactly this binding, or expired."""
    if report_data != binding.report_data():
        raise BindingMismatch("report data does not bind these keys, provider and nonce")
    if at >= binding.expires():
        raise BindingMismatch(f"key binding expired at {binding.expires().isoformat()}")


def gpu_nonce_for(cpu_report_data: bytes) -> bytes:
    """The SPDM nonce a GPU must be asked with to be bound to this CPU evidence."""
    if len(cpu_report_data) != 64:
        raise ValueError("CPU report data must be 64 bytes")
    return keccak(GPU_NONCE_TAG + cpu_report_data)


def check_gpu_bound_to_cpu(gpu_nonce: bytes, cpu_report_data: bytes) -> None:
    """Raises BindingMismatch unless the GPU report answered this CPU evidence's binding."""
    if gpu_nonce != gpu_nonce_for(cpu_report_data):
        raise BindingMismatch("GPU evidence nonce is not derived from the CPU report data")
