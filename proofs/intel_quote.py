"""Intel DCAP quotes, decoded by their length fields: SGX v3, TDX v4 and v5 (body types 2, 3).

Layouts follow Intel's "SGX ECDSA Quote Library API" (v3) and "TDX DCAP Quoting Library API"
(v4, v5). Bytes after the signature data are ignored: published quotes carry zero padding or
junk, and nothing there is signed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from proofs.errors import MalformedEvidence, UnsupportedEvidence

HEADER_SIZE = 48
SGX_REPORT_SIZE = 384
TD_REPORT_10_SIZE = 584
TD_REPORT_15_SIZE = 648
QE_REPORT_SIZE = SGX_REPORT_SIZE
ECDSA_P256_SIGNATURE_SIZE = 64
ECDSA_P256_KEY_SIZE = 64

ATTESTATION_KEY_ECDSA_P256 = 2
TEE_TYPE_SGX = 0x00000000
TEE_TYPE_TDX = 0x00000081
CERT_DATA_PCK_CHAIN = 5
CERT_DATA_QE_REPORT = 6
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")

# A quote with its PEM chain is a few KiB; anything far larger is not a quote we will parse.
MAX_QUOTE_SIZE = 64 * 1024


class QuoteBodyType(IntEnum):
    SGX_ENCLAVE = 1
    TD_REPORT_10 = 2
    TD_REPORT_15 = 3


@dataclass(frozen=True)
class QuoteHeader:
    version: int
    attestation_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes


@dataclass(frozen=True)
class SgxEnclaveReport:
    cpu_svn: bytes
    misc_select: int
    attributes: bytes
    mr_enclave: bytes
    mr_signer: bytes
    isv_prod_id: int
    isv_svn: int
    report_data: bytes
    raw: bytes

    @property
    def debug(self) -> bool:
        # ATTRIBUTES.FLAGS bit 1 (DEBUG).
        return bool(self.attributes[0] & 0x02)


@dataclass(frozen=True)
class TdReport:
    """TD report 1.0 (body type 2), or 1.5 (type 3) when `tee_tcb_svn2` is present."""

    tee_tcb_svn: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mr_td: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmr0: bytes
    rtmr1: bytes
    rtmr2: bytes
    rtmr3: bytes
    report_data: bytes
    tee_tcb_svn2: bytes | None
    mr_service_td: bytes | None

    @property
    def debug(self) -> bool:
        # TDATTRIBUTES bit 0 (DEBUG), little-endian u64.
        return bool(self.td_attributes[0] & 0x01)


@dataclass(frozen=True)
class QeCertificationData:
    """The QE report, its PCK signature, QE auth data and the PCK chain (PEM, leaf first)."""

    qe_report: SgxEnclaveReport
    qe_report_signature: bytes
    qe_auth_data: bytes
    pck_chain_pem: bytes


@dataclass(frozen=True)
class IntelQuote:
    header: QuoteHeader
    body_type: QuoteBodyType
    body: SgxEnclaveReport | TdReport
    signed_bytes: bytes
    signature: bytes
    attestation_key: bytes
    certification: QeCertificationData
    size: int
    """Bytes the quote occupies by its length fields (trailing bytes excluded)."""

    @property
    def is_tdx(self) -> bool:
        return self.header.tee_type == TEE_TYPE_TDX

    @property
    def sgx_report(self) -> SgxEnclaveReport:
        if not isinstance(self.body, SgxEnclaveReport):
            raise UnsupportedEvidence("not an SGX quote")
        return self.body

    @property
    def td_report(self) -> TdReport:
        if not isinstance(self.body, TdReport):
            raise UnsupportedEvidence("not a TDX quote")
        return self.body


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self.offset = 0

    def take(self, size: int, what: str) -> bytes:
        end = self.offset + size
        if size < 0 or end > len(self._data):
            raise MalformedEvidence(
                f"quote truncated: {what} needs {size} bytes at offset {self.offset}, "
                f"{len(self._data) - self.offset} left"
            )
        chunk = self._data[self.offset : end]
        self.offset = end
        return chunk

    def u16(self, what: str) -> int:
        value: int = struct.unpack("<H", self.take(2, what))[0]
        return value

    def u32(self, what: str) -> int:
        value: int = struct.unpack("<I", self.take(4, what))[0]
        return value


def looks_like_intel_quote(data: bytes) -> bool:
    if len(data) < HEADER_SIZE:
        return False
    version, key_type = struct.unpack_from("<HH", data, 0)
    tee_type = struct.unpack_from("<I", data, 4)[0]
    return (
        version in (3, 4, 5)
        and key_type in (2, 3)
        and tee_type in (TEE_TYPE_SGX, TEE_TYPE_TDX)
        and data[12:28] == INTEL_QE_VENDOR_ID
    )


def parse_sgx_report(raw: bytes) -> SgxEnclaveReport:
    if len(raw) != SGX_REPORT_SIZE:
        raise MalformedEvidence(f"SGX report must be {SGX_REPORT_SIZE} bytes, got {len(raw)}")
    return SgxEnclaveReport(
        cpu_svn=raw[0:16],
        misc_select=struct.unpack_from("<I", raw, 16)[0],
        attributes=raw[48:64],
        mr_enclave=raw[64:96],
        mr_signer=raw[128:160],
        isv_prod_id=struct.unpack_from("<H", raw, 256)[0],
        isv_svn=struct.unpack_from("<H", raw, 258)[0],
        report_data=raw[320:384],
        raw=raw,
    )


def parse_td_report(raw: bytes) -> TdReport:
    if len(raw) not in (TD_REPORT_10_SIZE, TD_REPORT_15_SIZE):
        raise MalformedEvidence(f"TD report of unexpected size {len(raw)}")
    is_15 = len(raw) == TD_REPORT_15_SIZE
    return TdReport(
        tee_tcb_svn=raw[0:16],
        mr_seam=raw[16:64],
        mr_signer_seam=raw[64:112],
        seam_attributes=raw[112:120],
        td_attributes=raw[120:128],
        xfam=raw[128:136],
        mr_td=raw[136:184],
        mr_config_id=raw[184:232],
        mr_owner=raw[232:280],
        mr_owner_config=raw[280:328],
        rtmr0=raw[328:376],
        rtmr1=raw[376:424],
        rtmr2=raw[424:472],
        rtmr3=raw[472:520],
        report_data=raw[520:584],
        tee_tcb_svn2=raw[584:600] if is_15 else None,
        mr_service_td=raw[600:648] if is_15 else None,
    )


def _parse_header(reader: _Reader) -> QuoteHeader:
    raw = reader.take(HEADER_SIZE, "header")
    version, key_type, tee_type, qe_svn, pce_svn = struct.unpack_from("<HHIHH", raw, 0)
    header = QuoteHeader(
        version=version,
        attestation_key_type=key_type,
        tee_type=tee_type,
        qe_svn=qe_svn,
        pce_svn=pce_svn,
        qe_vendor_id=raw[12:28],
        user_data=raw[28:48],
    )
    if version not in (3, 4, 5):
        raise UnsupportedEvidence(f"Intel quote version {version} is not supported (3, 4, 5)")
    if key_type != ATTESTATION_KEY_ECDSA_P256:
        raise UnsupportedEvidence(f"attestation key type {key_type} is not ECDSA P-256")
    if tee_type not in (TEE_TYPE_SGX, TEE_TYPE_TDX):
        raise MalformedEvidence(f"unknown TEE type 0x{tee_type:x}")
    if version == 3 and tee_type != TEE_TYPE_SGX:
        raise MalformedEvidence("quote v3 must carry an SGX enclave report")
    if version == 4 and tee_type != TEE_TYPE_TDX:
        # v4 SGX quotes exist in Intel's spec but not in any shipping QE; refuse, don't guess.
        raise UnsupportedEvidence("SGX quote v4 is not supported")
    if qe_vendor_id_is_unknown(header.qe_vendor_id):
        raise UnsupportedEvidence(f"QE vendor {header.qe_vendor_id.hex()} is not Intel's")
    return header


def qe_vendor_id_is_unknown(vendor_id: bytes) -> bool:
    return vendor_id != INTEL_QE_VENDOR_ID


def _parse_body(
    reader: _Reader, header: QuoteHeader
) -> tuple[QuoteBodyType, SgxEnclaveReport | TdReport]:
    if header.version == 5:
        body_type = reader.u16("body type")
        body_size = reader.u32("body size")
        expected_sizes = {
            QuoteBodyType.SGX_ENCLAVE: SGX_REPORT_SIZE,
            QuoteBodyType.TD_REPORT_10: TD_REPORT_10_SIZE,
            QuoteBodyType.TD_REPORT_15: TD_REPORT_15_SIZE,
        }
        try:
            kind = QuoteBodyType(body_type)
        except ValueError as exc:
            raise UnsupportedEvidence(f"quote v5 body type {body_type} is not supported") from exc
        if body_size != expected_sizes[kind]:
            raise MalformedEvidence(f"quote v5 body type {body_type} with size {body_size}")
        if (kind == QuoteBodyType.SGX_ENCLAVE) != (header.tee_type == TEE_TYPE_SGX):
            raise MalformedEvidence("quote v5 body type does not match its TEE type")
        raw = reader.take(body_size, "body")
    elif header.tee_type == TEE_TYPE_SGX:
        kind = QuoteBodyType.SGX_ENCLAVE
        raw = reader.take(SGX_REPORT_SIZE, "SGX report")
    else:
        kind = QuoteBodyType.TD_REPORT_10
        raw = reader.take(TD_REPORT_10_SIZE, "TD report")
    body = parse_sgx_report(raw) if kind == QuoteBodyType.SGX_ENCLAVE else parse_td_report(raw)
    return kind, body


def _parse_qe_certification(reader: _Reader) -> QeCertificationData:
    qe_report = parse_sgx_report(reader.take(QE_REPORT_SIZE, "QE report"))
    qe_report_signature = reader.take(ECDSA_P256_SIGNATURE_SIZE, "QE report signature")
    qe_auth_data = reader.take(reader.u16("QE auth data size"), "QE auth data")
    cert_type = reader.u16("certification data type")
    cert_size = reader.u32("certification data size")
    cert_data = reader.take(cert_size, "PCK certificate chain")
    if cert_type != CERT_DATA_PCK_CHAIN:
        raise UnsupportedEvidence(
            f"certification data type {cert_type}: only an embedded PCK chain (5) is supported"
        )
    return QeCertificationData(qe_report, qe_report_signature, qe_auth_data, cert_data)


def parse_intel_quote(data: bytes) -> IntelQuote:
    """Decode a quote; raises MalformedEvidence / UnsupportedEvidence, never anything else."""
    if len(data) > MAX_QUOTE_SIZE:
        raise MalformedEvidence(f"quote of {len(data)} bytes exceeds {MAX_QUOTE_SIZE}")
    reader = _Reader(bytes(data))
    header = _parse_header(reader)
    body_type, body = _parse_body(reader, header)
    signed_bytes = bytes(data[: reader.offset])
    signature_data_size = reader.u32("signature data size")
    signature_data = _Reader(reader.take(signature_data_size, "signature data"))
    signature = signature_data.take(ECDSA_P256_SIGNATURE_SIZE, "quote signature")
    attestation_key = signature_data.take(ECDSA_P256_KEY_SIZE, "attestation key")
    if header.version == 3:
        certification = _parse_qe_certification(signature_data)
    else:
        outer_type = signature_data.u16("certification data type")
        outer_size = signature_data.u32("certification data size")
        if outer_type != CERT_DATA_QE_REPORT:
            raise UnsupportedEvidence(
                f"certification data type {outer_type}: expected QE report data (6)"
            )
        certification = _parse_qe_certification(
            _Reader(signature_data.take(outer_size, "QE report certification data"))
        )
    return IntelQuote(
        header=header,
        body_type=body_type,
        body=body,
        signed_bytes=signed_bytes,
        signature=signature,
        attestation_key=attestation_key,
        certification=certification,
        size=reader.offset,
    )
