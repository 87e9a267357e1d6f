"""AMD SEV-SNP attestation reports (versions 2, 3, 5), per AMD's SEV-SNP ABI spec, table
"ATTESTATION_REPORT Structure". The report is exactly 1184 bytes; the signature covers
bytes [0, 0x2A0) and is ECDSA P-384 with r and s stored little-endian, 72 bytes each.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum

from proofs.errors import MalformedEvidence, UnsupportedEvidence
from proofs.pinned_roots import AmdProduct

REPORT_SIZE = 0x4A0
SIGNED_SIZE = 0x2A0
SUPPORTED_VERSIONS = (2, 3, 5)
SIGNATURE_ALGORITHM_ECDSA_P384_SHA384 = 1
POLICY_DEBUG_BIT = 1 << 19


class SnpSigner(Enum):
    VCEK = "vcek"
    VLEK = "vlek"


@dataclass(frozen=True)
class SnpTcb:
    """A TCB_VERSION u64; its byte layout depends on the product (Turin adds FMC, reorders)."""

    raw: int
    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None

    def svns(self) -> tuple[tuple[str, int], ...]:
        """By component name, as a policy floor names them (fmc only on Turin)."""
        named = (
            ("bootloader", self.bootloader),
            ("tee", self.tee),
            ("snp", self.snp),
            ("microcode", self.microcode),
        )
        return named + ((("fmc", self.fmc),) if self.fmc is not None else ())

    @classmethod
    def decode(cls, raw: int, product: AmdProduct) -> SnpTcb:
        b = raw.to_bytes(8, "little")
        if product == AmdProduct.TURIN:
            return cls(raw, bootloader=b[1], tee=b[2], snp=b[3], microcode=b[7], fmc=b[0])
        return cls(raw, bootloader=b[0], tee=b[1], snp=b[6], microcode=b[7], fmc=None)


@dataclass(frozen=True)
class SnpReport:
    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algorithm: int
    current_tcb_raw: int
    platform_info: int
    flags: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    reported_tcb_raw: int
    cpuid_family: int | None
    cpuid_model: int | None
    cpuid_stepping: int | None
    chip_id: bytes
    committed_tcb_raw: int
    launch_tcb_raw: int
    signature_r: int
    signature_s: int
    signed_bytes: bytes

    @property
    def debug(self) -> bool:
        return bool(self.policy & POLICY_DEBUG_BIT)

    @property
    def signer(self) -> SnpSigner:
        # SIGNING_KEY, flags bits 4:2; 0 = VCEK, 1 = VLEK, 7 = none.
        code = (self.flags >> 2) & 0x7
        if code == 0:
            return SnpSigner.VCEK
        if code == 1:
            return SnpSigner.VLEK
        raise UnsupportedEvidence(f"report signing key {code} is neither VCEK nor VLEK")

    @property
    def chip_id_masked(self) -> bool:
        return bool(self.flags & 0x2)

    @property
    def product(self) -> AmdProduct | None:
        """From the CPUID fields of v3+ reports; None on v2, which does not carry them."""
        if self.cpuid_family is None or self.cpuid_model is None:
            return None
        return product_from_cpuid(self.cpuid_family, self.cpuid_model)


def product_from_cpuid(family: int, model: int) -> AmdProduct:
    generation = model >> 4
    if family == 0x19 and generation == 0x0:
        return AmdProduct.MILAN
    if family == 0x19 and generation in (0x1, 0xA):
        return AmdProduct.GENOA
    if family == 0x1A and generation in (0x0, 0x1):
        return AmdProduct.TURIN
    raise UnsupportedEvidence(f"unknown AMD CPUID family 0x{family:x} model 0x{model:x}")


def looks_like_snp_report(data: bytes) -> bool:
    if len(data) != REPORT_SIZE:
        return False
    version, _, _, _ = struct.unpack_from("<IIQQ", data, 0)
    return bool(2 <= version <= 5)


def parse_snp_report(data: bytes) -> SnpReport:
    if len(data) != REPORT_SIZE:
        kind = "truncated" if len(data) < REPORT_SIZE else "oversized"
        raise MalformedEvidence(f"SEV-SNP report {kind}: {len(data)} bytes, expected {REPORT_SIZE}")
    data = bytes(data)
    version = struct.unpack_from("<I", data, 0x00)[0]
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedEvidence(f"SEV-SNP report version {version} (supported: 2, 3, 5)")
    signature_algorithm = struct.unpack_from("<I", data, 0x34)[0]
    if signature_algorithm != SIGNATURE_ALGORITHM_ECDSA_P384_SHA384:
        raise UnsupportedEvidence(f"SEV-SNP signature algorithm {signature_algorithm}")
    has_cpuid = version >= 3
    return SnpReport(
        version=version,
        guest_svn=struct.unpack_from("<I", data, 0x04)[0],
        policy=struct.unpack_from("<Q", data, 0x08)[0],
        family_id=data[0x10:0x20],
        image_id=data[0x20:0x30],
        vmpl=struct.unpack_from("<I", data, 0x30)[0],
        signature_algorithm=signature_algorithm,
        current_tcb_raw=struct.unpack_from("<Q", data, 0x38)[0],
        platform_info=struct.unpack_from("<Q", data, 0x40)[0],
        flags=struct.unpack_from("<I", data, 0x48)[0],
        report_data=data[0x50:0x90],
        measurement=data[0x90:0xC0],
        host_data=data[0xC0:0xE0],
        id_key_digest=data[0xE0:0x110],
        author_key_digest=data[0x110:0x140],
        report_id=data[0x140:0x160],
        reported_tcb_raw=struct.unpack_from("<Q", data, 0x180)[0],
        cpuid_family=data[0x188] if has_cpuid else None,
        cpuid_model=data[0x189] if has_cpuid else None,
        cpuid_stepping=data[0x18A] if has_cpuid else None,
        chip_id=data[0x1A0:0x1E0],
        committed_tcb_raw=struct.unpack_from("<Q", data, 0x1E0)[0],
        launch_tcb_raw=struct.unpack_from("<Q", data, 0x1F0)[0],
        signature_r=int.from_bytes(data[0x2A0:0x2E8], "little"),
        signature_s=int.from_bytes(data[0x2E8:0x330], "little"),
        signed_bytes=data[:SIGNED_SIZE],
    )
