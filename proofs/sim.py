"""`sim` evidence: what the no-hardware backend emits. INSECURE by construction.

A JSON document, never bytes in any hardware quote format, so nothing can mistake it for a
quote or report:

    {"format": "capacloud-sim-evidence", "version": 1, "insecure": true,
     "measurement": "<hex 32 B>", "report_data": "<hex 64 B>", "issued_at": <unix seconds>,
     "host_key": "0x<address>", "signature": "0x<65 B>"}

The host key signs (EIP-191 personal message) keccak256 of a domain tag and the fields; that
shows only which host produced it. It proves no isolation and no confidentiality, and every
policy rejects it unless `allow_sim` is set (devnets).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils.address import is_address, to_canonical_address, to_checksum_address
from eth_utils.crypto import keccak

from proofs.bounded_json import nested_too_deep
from proofs.errors import MalformedEvidence, SignatureInvalid

SIM_FORMAT = "capacloud-sim-evidence"
SIM_VERSION = 1
SIM_SIGNING_TAG = keccak(text="CapaCloud.SimEvidence.v1")
MAX_SIM_EVIDENCE_SIZE = 4096
# The last second a datetime can hold (and far below the 8 bytes the signed digest gives it).
LATEST_ISSUE_TIME = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp())


@dataclass(frozen=True)
class SimEvidence:
    measurement: bytes
    report_data: bytes
    issued_at: datetime
    host_key: str
    signature: bytes
    insecure: bool = True


def _signing_digest(measurement: bytes, report_data: bytes, issued_at: int, host_key: str) -> bytes:
    return keccak(
        SIM_SIGNING_TAG
        + measurement
        + report_data
        + issued_at.to_bytes(8, "big")
        + to_canonical_address(host_key)
    )


def looks_like_sim_evidence(data: bytes) -> bool:
    return data.lstrip()[:1] == b"{" and SIM_FORMAT.encode() in data[:MAX_SIM_EVIDENCE_SIZE]


def create_sim_evidence(
    host_private_key: bytes, measurement: bytes, report_data: bytes, issued_at: datetime
) -> bytes:
    if len(measurement) != 32 or len(report_data) != 64:
        raise ValueError("sim measurement is 32 bytes and report data 64 bytes")
    account = Account.from_key(host_private_key)
    seconds = int(issued_at.timestamp())
    digest = _signing_digest(measurement, report_data, seconds, account.address)
    signature = Account.sign_message(encode_defunct(primitive=digest), host_private_key).signature
    document = {
        "format": SIM_FORMAT,
        "version": SIM_VERSION,
        "insecure": True,
        "measurement": measurement.hex(),
        "report_data": report_data.hex(),
        "issued_at": seconds,
        "host_key": account.address,
        "signature": "0x" + bytes(signature).hex(),
    }
    return json.dumps(document, sort_keys=True).encode()


def _hex_field(document: dict[str, object], key: str, size: int) -> bytes:
    value = document.get(key)
    if not isinstance(value, str):
        raise MalformedEvidence(f"sim evidence: {key} missing")
    try:
        raw = bytes.fromhex(value.removeprefix("0x"))
    except ValueError as exc:
        raise MalformedEvidence(f"sim evidence: {key} is not hex") from exc
    if len(raw) != size:
        raise MalformedEvidence(f"sim evidence: {key} must be {size} bytes")
    return raw


def parse_sim_evidence(data: bytes) -> SimEvidence:
    if len(data) > MAX_SIM_EVIDENCE_SIZE:
        raise MalformedEvidence("sim evidence oversized")
    try:
        text = data.decode("utf-8")
        if nested_too_deep(text):
            raise ValueError("nested too deep")
        document = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedEvidence(f"sim evidence is not JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != SIM_FORMAT:
        raise MalformedEvidence("not sim evidence")
    if document.get("version") != SIM_VERSION:
        raise MalformedEvidence(f"sim evidence version {document.get('version')!r}")
    if document.get("insecure") is not True:
        # Sim evidence that does not say it is insecure is forged or broken: refuse it.
        raise MalformedEvidence("sim evidence must carry insecure: true")
    issued_at = document.get("issued_at")
    host_key = document.get("host_key")
    if (
        not isinstance(issued_at, int)
        or isinstance(issued_at, bool)
        or not 0 <= issued_at <= LATEST_ISSUE_TIME
    ):
        raise MalformedEvidence("sim evidence: issued_at must be unix seconds before year 10000")
    if not isinstance(host_key, str) or not is_address(host_key):
        raise MalformedEvidence("sim evidence: host_key must be an address")
    return SimEvidence(
        measurement=_hex_field(document, "measurement", 32),
        report_data=_hex_field(document, "report_data", 64),
        issued_at=datetime.fromtimestamp(issued_at, UTC),
        host_key=to_checksum_address(host_key),
        signature=_hex_field(document, "signature", 65),
    )


def verify_sim_evidence(data: bytes) -> SimEvidence:
    """Checks the host signature only: a genuine sim document is still INSECURE."""
    evidence = parse_sim_evidence(data)
    digest = _signing_digest(
        evidence.measurement,
        evidence.report_data,
        int(evidence.issued_at.timestamp()),
        evidence.host_key,
    )
    try:
        signer = Account.recover_message(
            encode_defunct(primitive=digest), signature=evidence.signature
        )
    except Exception as exc:  # eth-account raises several unrelated types on bad signatures
        raise SignatureInvalid(f"sim evidence signature: {exc}") from exc
    if signer != evidence.host_key:
        raise SignatureInvalid("sim evidence is not signed by its host key")
    return evidence
