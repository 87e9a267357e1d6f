"""Normalized, kind-independent facts about verified evidence.

The numbering of `TeeKind` and `TcbStatus` is shared with the contracts (uint8 on-chain);
never renumber.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import NewType

Measurement = NewType("Measurement", bytes)
"""The launch measurement: MRENCLAVE (32 B), MRTD (48 B), SNP MEASUREMENT (48 B), sim (32 B),
nvidia-cc: SHA-384 of the whole SPDM measurement record (48 B), cca: the realm initial
measurement (RIM, 32 or 64 B)."""

ReportData = NewType("ReportData", bytes)
"""The 64 bytes the enclave chose to bind into its evidence; for nvidia-cc, the 32-byte SPDM
requester nonce (see `proofs.binding.gpu_nonce_for`)."""

EvidenceHash = NewType("EvidenceHash", bytes)
"""keccak256 of the raw evidence bytes, as carried in KeyAttestation.evidenceHash."""


class TeeKind(IntEnum):
    SGX = 1
    TDX = 2
    SEV_SNP = 3
    NVIDIA_CC = 4
    SIM = 5
    CCA = 6

    @property
    def label(self) -> str:
        return _KIND_LABELS[self]


_KIND_LABELS = {
    TeeKind.SGX: "sgx",
    TeeKind.TDX: "tdx",
    TeeKind.SEV_SNP: "sev-snp",
    TeeKind.NVIDIA_CC: "nvidia-cc",
    TeeKind.SIM: "sim",
    TeeKind.CCA: "cca",
}


def tee_kind_from_label(label: str) -> TeeKind:
    for kind, known in _KIND_LABELS.items():
        if known == label.strip().lower():
            return kind
    raise ValueError(f"unknown TEE kind {label!r}; known: {', '.join(_KIND_LABELS.values())}")


class TcbStatus(IntEnum):
    """Higher is better, so a policy can say `status >= minimum`."""

    REVOKED = 0
    OUT_OF_DATE = 1
    OUT_OF_DATE_CONFIGURATION_NEEDED = 2
    CONFIGURATION_AND_SW_HARDENING_NEEDED = 3
    CONFIGURATION_NEEDED = 4
    SW_HARDENING_NEEDED = 5
    UP_TO_DATE = 6


INTEL_TCB_STATUS_NAMES: dict[str, TcbStatus] = {
    "Revoked": TcbStatus.REVOKED,
    "OutOfDate": TcbStatus.OUT_OF_DATE,
    "OutOfDateConfigurationNeeded": TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED,
    "ConfigurationAndSWHardeningNeeded": TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED,
    "ConfigurationNeeded": TcbStatus.CONFIGURATION_NEEDED,
    "SWHardeningNeeded": TcbStatus.SW_HARDENING_NEEDED,
    "UpToDate": TcbStatus.UP_TO_DATE,
}


def tcb_status_from_intel_name(name: str) -> TcbStatus | None:
    """None for Intel names with no on-chain value (e.g. "TCBNotSupported")."""
    return INTEL_TCB_STATUS_NAMES.get(name)


@dataclass(frozen=True)
class CcaSoftwareComponent:
    """One measured platform software component of a CCA platform token."""

    component_type: str
    measurement: bytes
    signer_id: bytes
    version: str | None


@dataclass(frozen=True)
class CcaFacts:
    """What a CCA attestation token says beyond the common claims, decoded by name."""

    profile: str
    implementation_id: bytes
    instance_id: bytes
    lifecycle: int
    lifecycle_name: str
    platform_config: bytes
    software_components: tuple[CcaSoftwareComponent, ...]
    verification_service: str | None
    personalization_value: bytes
    extensible_measurements: tuple[bytes, ...]
    realm_hash_algorithm: str
    binding_hash_algorithm: str


@dataclass(frozen=True)
class Claims:
    """What verified evidence says, in one shape for every kind.

    `tcb_status_name` keeps the verifier's own word ("TCBNotSupported" has no enum value);
    `tcb_status` is None where no status exists (SEV-SNP, sim, unmatched levels).
    `advisory_ids` is None when unknown, () when the matched level lists none.
    `version` is the quote/report version; for nvidia-cc the SPDM version as major*10+minor.
    """

    kind: TeeKind
    version: int
    measurement: Measurement
    report_data: ReportData
    debug: bool
    signer_ids: tuple[str, ...]
    tcb_status: TcbStatus | None
    tcb_status_name: str | None
    advisory_ids: tuple[str, ...] | None
    evidence_hash: EvidenceHash
    insecure: bool = False
    issued_at: datetime | None = None
    revocation_checked: bool = True
    valid_until: datetime | None = None
    """When the collateral behind this verdict stops being valid (None: long-lived certs only)."""
    reference_mismatches: tuple[int, ...] | None = None
    """nvidia-cc: SPDM blocks differing from NVIDIA's reference manifests; None: not compared."""
    attributes: tuple[str, ...] = ()
    """The set bits of the evidence's own attribute word, by name: TDX TDATTRIBUTES, SGX
    ATTRIBUTES.FLAGS, SEV-SNP guest POLICY. Unnamed set bits read "RESERVED_<bit>"."""
    platform: str | None = None
    """sev-snp: the AMD product ("Milan", "Genoa", "Turin")."""
    tcb_svns: tuple[tuple[str, int], ...] | None = None
    """sev-snp: REPORTED_TCB by component (bootloader, tee, snp, microcode, and fmc on Turin)."""
    cca: CcaFacts | None = None
    not_hardware: str | None = None
    """Why this evidence, though correctly signed, does not come from hardware (e.g. a CCA
    token signed by Arm's published simulator key); always shown with `insecure`."""
