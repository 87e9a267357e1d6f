"""NVIDIA GPU attestation reports: the SPDM GET_MEASUREMENTS request followed by the MEASUREMENTS
response, as the driver hands them out (NVML's GPU attestation report) and NVIDIA's nvtrust
verifier reads them. Layouts per DMTF DSP0274 1.1 / 1.2 (1.3 adds a RequesterContext and is
refused rather than guessed at):

    GET_MEASUREMENTS request, 37 bytes:
      0 SPDMVersion | 1 code 0xE0 | 2 Param1 (bit 0: signature requested)
      3 Param2 (measurement operation, 0xFF = all) | 4 Nonce (32) | 36 SlotIDParam
    MEASUREMENTS response:
      0 SPDMVersion | 1 code 0x60 | 2 Param1 | 3 Param2 (bits 3:0 slot id) | 4 NumberOfBlocks
      5 MeasurementRecordLength (3, LE) | 8 MeasurementRecord | Nonce (32, the responder's)
      OpaqueLength (2, LE) | OpaqueData | Signature (96: ECDSA P-384 r || s, big-endian)
    measurement block: Index (1) | MeasurementSpecification (1, bit 0 = DMTF) | Size (2, LE)
      | DMTF ValueType (1) | ValueSize (2, LE) | Value
    opaque data (NVIDIA's own TLV layout): repeated DataType (2, LE) | DataSize (2, LE) | Data

The requester's nonce (in the request) is what binds the report to a verifier's challenge; the
response's nonce is the GPU's own randomness. Hopper GPUs negotiate ECDSA P-384 with SHA-384,
which is the only algorithm the evidence can carry (the ALGORITHMS exchange is not in it).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from proofs.errors import MalformedEvidence, UnsupportedEvidence

SPDM_VERSION_1_1 = 0x11
SPDM_VERSION_1_2 = 0x12
SUPPORTED_SPDM_VERSIONS = (SPDM_VERSION_1_1, SPDM_VERSION_1_2)
GET_MEASUREMENTS = 0xE0
MEASUREMENTS = 0x60
REQUEST_SIZE = 37
NONCE_SIZE = 32
ECDSA_P384_SIGNATURE_SIZE = 96
ALL_MEASUREMENTS = 0xFF
DMTF_MEASUREMENT_SPECIFICATION = 0x01
# A Hopper report is about 4 KiB; a much larger one is not a report we will parse.
MAX_REPORT_SIZE = 32 * 1024
# Set by the driver when NVDEC0 is disabled; measurement index 35 is then not meaningful.
NVDEC0_DISABLED = 0x55


class OpaqueFieldId(IntEnum):
    """NVIDIA's opaque data field ids (nvtrust's OPAQUE_FIELD_ID_*)."""

    CERT_ISSUER_NAME = 1
    CERT_AUTHORITY_KEY_IDENTIFIER = 2
    DRIVER_VERSION = 3
    GPU_INFO = 4
    SKU = 5
    VBIOS_VERSION = 6
    MANUFACTURER_ID = 7
    TAMPER_DETECTION = 8
    SMC = 9
    VPR = 10
    NVDEC0_STATUS = 11
    MSRSCNT = 12
    CPRINFO = 13
    BOARD_ID = 14
    CHIP_SKU = 15
    CHIP_SKU_MOD = 16
    PROJECT = 17
    PROJECT_SKU = 18
    PROJECT_SKU_MOD = 19
    FWID = 20


@dataclass(frozen=True)
class SpdmMeasurementRequest:
    version: int
    param1: int
    param2: int
    nonce: bytes
    slot_id: int
    raw: bytes

    @property
    def signature_requested(self) -> bool:
        return bool(self.param1 & 0x01)


@dataclass(frozen=True)
class MeasurementBlock:
    index: int
    value_type: int
    value: bytes


@dataclass(frozen=True)
class OpaqueField:
    field_id: int
    data: bytes


@dataclass(frozen=True)
class SpdmMeasurementResponse:
    version: int
    param1: int
    param2: int
    blocks: tuple[MeasurementBlock, ...]
    measurement_record: bytes
    responder_nonce: bytes
    opaque_data: bytes
    opaque_fields: tuple[OpaqueField, ...]
    signature: bytes
    unsigned_bytes: bytes
    """The response up to (excluding) its signature."""

    @property
    def slot_id(self) -> int:
        return self.param2 & 0x0F


@dataclass(frozen=True)
class NvidiaAttestationReport:
    request: SpdmMeasurementRequest
    response: SpdmMeasurementResponse

    @property
    def spdm_version(self) -> int:
        return self.response.version

    @property
    def transcript(self) -> bytes:
        """What the signature covers (SPDM L1): the request and the unsigned response."""
        return self.request.raw + self.response.unsigned_bytes

    @property
    def nonce(self) -> bytes:
        return self.request.nonce

    def opaque(self, field_id: OpaqueFieldId) -> bytes | None:
        return next((f.data for f in self.response.opaque_fields if f.field_id == field_id), None)

    def opaque_text(self, field_id: OpaqueFieldId) -> str:
        raw = self.opaque(field_id)
        if raw is None:
            raise MalformedEvidence(f"GPU report lacks opaque field {field_id.name}")
        return raw.split(b"\x00", 1)[0].decode("ascii", "replace")

    @property
    def driver_version(self) -> str:
        return self.opaque_text(OpaqueFieldId.DRIVER_VERSION)

    @property
    def vbios_version(self) -> str:
        """As NVIDIA writes it ("96.00.5e.00.01"): bytes reversed, halves swapped, dot-joined."""
        raw = self.opaque(OpaqueFieldId.VBIOS_VERSION)
        if raw is None or len(raw) != 8:
            raise MalformedEvidence("GPU report lacks an 8-byte VBIOS version")
        digits = raw[::-1].hex()
        half = len(digits) // 2
        ordered = digits[half:] + digits[half - 2 : half]
        return ".".join(ordered[i : i + 2] for i in range(0, len(ordered), 2))

    @property
    def driver_rim_id(self) -> str:
        return f"NV_GPU_DRIVER_GH100_{self.driver_version}"

    @property
    def vbios_rim_id(self) -> str:
        parts = (
            self.opaque_text(OpaqueFieldId.PROJECT),
            self.opaque_text(OpaqueFieldId.PROJECT_SKU),
            self.opaque_text(OpaqueFieldId.CHIP_SKU),
            self.vbios_version.replace(".", ""),
        )
        return "NV_GPU_VBIOS_" + "_".join(parts).upper()

    @property
    def fwid(self) -> bytes | None:
        """The firmware id the GPU reports; its certificate certifies the same one."""
        return self.opaque(OpaqueFieldId.FWID)

    @property
    def nvdec0_disabled(self) -> bool:
        status = self.opaque(OpaqueFieldId.NVDEC0_STATUS)
        return status is not None and status[:1] == bytes([NVDEC0_DISABLED])


class _Reader:
    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._what = what
        self.offset = 0

    def take(self, size: int, field: str) -> bytes:
        end = self.offset + size
        if end > len(self._data):
            raise MalformedEvidence(
                f"{self._what} truncated: {field} needs {size} bytes at offset {self.offset}, "
                f"{len(self._data) - self.offset} left"
            )
        chunk = self._data[self.offset : end]
        self.offset = end
        return chunk

    def u8(self, field: str) -> int:
        return self.take(1, field)[0]

    def u16(self, field: str) -> int:
        value: int = struct.unpack("<H", self.take(2, field))[0]
        return value

    def u24(self, field: str) -> int:
        return int.from_bytes(self.take(3, field), "little")

    @property
    def remaining(self) -> int:
        return len(self._data) - self.offset


def _check_version(version: int, what: str) -> None:
    if version not in SUPPORTED_SPDM_VERSIONS:
        raise UnsupportedEvidence(
            f"{what}: SPDM version {version >> 4}.{version & 0xF} (supported: 1.1, 1.2)"
        )


def parse_measurement_request(raw: bytes) -> SpdmMeasurementRequest:
    if len(raw) != REQUEST_SIZE:
        raise MalformedEvidence(f"GET_MEASUREMENTS request of {len(raw)} bytes, expected 37")
    version, code, param1, param2 = raw[0], raw[1], raw[2], raw[3]
    if code != GET_MEASUREMENTS:
        raise MalformedEvidence(f"request code 0x{code:02x} is not GET_MEASUREMENTS (0xe0)")
    _check_version(version, "GET_MEASUREMENTS")
    return SpdmMeasurementRequest(version, param1, param2, raw[4:36], raw[36], raw)


def _parse_blocks(record: bytes, count: int) -> tuple[MeasurementBlock, ...]:
    reader = _Reader(record, "measurement record")
    blocks: list[MeasurementBlock] = []
    seen: set[int] = set()
    for _ in range(count):
        index = reader.u8("block index")
        specification = reader.u8("measurement specification")
        size = reader.u16("measurement size")
        measurement = _Reader(reader.take(size, "measurement"), f"measurement block {index}")
        if specification != DMTF_MEASUREMENT_SPECIFICATION:
            raise MalformedEvidence(f"measurement block {index} is not in the DMTF format")
        if index in seen or index in (0, 0xFF):
            raise MalformedEvidence(f"measurement block index {index} is repeated or reserved")
        seen.add(index)
        value_type = measurement.u8("value type")
        value = measurement.take(measurement.u16("value size"), "value")
        if measurement.remaining:
            raise MalformedEvidence(f"measurement block {index} has bytes after its value")
        blocks.append(MeasurementBlock(index, value_type, value))
    if reader.remaining:
        raise MalformedEvidence(f"measurement record has {reader.remaining} bytes after its blocks")
    return tuple(blocks)


def _parse_opaque(data: bytes) -> tuple[OpaqueField, ...]:
    reader = _Reader(data, "opaque data")
    fields: list[OpaqueField] = []
    while reader.remaining:
        field_id = reader.u16("field type")
        fields.append(OpaqueField(field_id, reader.take(reader.u16("field size"), "field data")))
    return tuple(fields)


def parse_measurement_response(raw: bytes) -> SpdmMeasurementResponse:
    reader = _Reader(raw, "MEASUREMENTS response")
    version = reader.u8("SPDM version")
    code = reader.u8("response code")
    if code != MEASUREMENTS:
        raise MalformedEvidence(f"response code 0x{code:02x} is not MEASUREMENTS (0x60)")
    _check_version(version, "MEASUREMENTS")
    param1 = reader.u8("param1")
    param2 = reader.u8("param2")
    block_count = reader.u8("number of blocks")
    record = reader.take(reader.u24("measurement record length"), "measurement record")
    responder_nonce = reader.take(NONCE_SIZE, "nonce")
    opaque = reader.take(reader.u16("opaque length"), "opaque data")
    unsigned_end = reader.offset
    signature = reader.take(ECDSA_P384_SIGNATURE_SIZE, "signature")
    if reader.remaining:
        raise MalformedEvidence(f"MEASUREMENTS response has {reader.remaining} trailing bytes")
    return SpdmMeasurementResponse(
        version=version,
        param1=param1,
        param2=param2,
        blocks=_parse_blocks(record, block_count),
        measurement_record=record,
        responder_nonce=responder_nonce,
        opaque_data=opaque,
        opaque_fields=_parse_opaque(opaque),
        signature=signature,
        unsigned_bytes=raw[:unsigned_end],
    )


def parse_attestation_report(data: bytes) -> NvidiaAttestationReport:
    """Split and decode request || response; raises MalformedEvidence / UnsupportedEvidence."""
    if len(data) > MAX_REPORT_SIZE:
        raise MalformedEvidence(f"GPU report of {len(data)} bytes exceeds {MAX_REPORT_SIZE}")
    data = bytes(data)
    if len(data) <= REQUEST_SIZE:
        raise MalformedEvidence(f"GPU report truncated: {len(data)} bytes")
    request = parse_measurement_request(data[:REQUEST_SIZE])
    response = parse_measurement_response(data[REQUEST_SIZE:])
    if request.version != response.version:
        raise MalformedEvidence("request and response carry different SPDM versions")
    return NvidiaAttestationReport(request, response)
