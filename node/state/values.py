"""Domain values: distinct names over plain types, checked once where they enter."""

from __future__ import annotations

import re
from typing import NewType

from eth_utils.address import to_checksum_address

from node.state.errors import InvalidValue

Address = NewType("Address", str)  # EIP-55 checksummed
JobId = NewType("JobId", str)  # 0x + 64 lowercase hex
Hash32 = NewType("Hash32", str)  # 0x + 64 lowercase hex
TxHash = NewType("TxHash", str)
BlockNumber = NewType("BlockNumber", int)
EffectId = NewType("EffectId", str)  # "<action>:<subject>", unique per intent
Origin = NewType("Origin", str)  # what produced a state change; unique per fact
Wei = NewType("Wei", int)

_HEX32 = re.compile(r"^0x[0-9a-f]{64}$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


def to_address(text: str) -> Address:
    if not _ADDRESS.match(text):
        raise InvalidValue(f"not an address: {text!r}")
    return Address(to_checksum_address(text))


def to_hash32(value: str | bytes) -> Hash32:
    text = "0x" + value.hex() if isinstance(value, bytes) else value.lower()
    if not _HEX32.match(text):
        raise InvalidValue(f"not a 32-byte hex value: {value!r}")
    return Hash32(text)


def to_job_id(value: str | bytes) -> JobId:
    return JobId(to_hash32(value))


def effect_id(action: str, subject: str, *more: object) -> EffectId:
    """`action:subject[:more...]`; the subject is a job id, an enclave key or a request id."""
    return EffectId(":".join([action, subject, *(str(m) for m in more)]))


def effect_subject(effect: EffectId) -> str:
    """Everything after the action: `subject[:more...]`."""
    return effect.split(":", 1)[1] if ":" in effect else ""


def effect_job(effect: EffectId) -> str:
    """The subject alone (for a job's effects, its id)."""
    parts = effect.split(":", 2)
    return parts[1] if len(parts) > 1 else ""
