"""JSON encoding of control messages: strict field readers that raise ProtocolViolation.

Control messages are small JSON objects (bytes as 0x-hex); bulk data travels as raw frames.
Every reader checks type and range, so a malformed message never reaches domain code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import astuple
from typing import TypeVar

from eth_utils.address import to_canonical_address, to_checksum_address

from node.chain.typed_data import TypedMessage
from node.p2p.errors import ProtocolViolation

JsonObject = Mapping[str, object]
M = TypeVar("M", bound=TypedMessage)


def encode_object(obj: JsonObject) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def decode_object(data: bytes) -> JsonObject:
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolViolation(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ProtocolViolation("a message must be a JSON object")
    return obj


def read_str(obj: JsonObject, name: str, max_len: int = 256) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or len(value) > max_len:
        raise ProtocolViolation(f"field {name!r} must be a string of at most {max_len} chars")
    return value


def read_int(obj: JsonObject, name: str, low: int = 0, high: int = 2**256 - 1) -> int:
    value = obj.get(name)
    # bool is an int subclass; a JSON true is never a valid number here.
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ProtocolViolation(f"field {name!r} must be an integer in [{low}, {high}]")
    return value


def read_address(obj: JsonObject, name: str) -> str:
    """An Ethereum address, checksummed; anything else is a violation."""
    text = read_str(obj, name, 42)
    try:
        return to_checksum_address(to_canonical_address(text))
    except ValueError as exc:
        raise ProtocolViolation(f"field {name!r} is not an address") from exc


def read_bool(obj: JsonObject, name: str) -> bool:
    value = obj.get(name)
    if not isinstance(value, bool):
        raise ProtocolViolation(f"field {name!r} must be a boolean")
    return value


def read_hex(obj: JsonObject, name: str, size: int | None = None, max_size: int = 1 << 20) -> bytes:
    text = read_str(obj, name, max_len=2 + 2 * (size if size is not None else max_size))
    if not text.startswith("0x"):
        raise ProtocolViolation(f"field {name!r} must be 0x-prefixed hex")
    try:
        raw = bytes.fromhex(text[2:])
    except ValueError as exc:
        raise ProtocolViolation(f"field {name!r} is not hex") from exc
    if size is not None and len(raw) != size:
        raise ProtocolViolation(f"field {name!r} must be {size} bytes, got {len(raw)}")
    return raw


def read_object(obj: JsonObject, name: str) -> JsonObject:
    value = obj.get(name)
    if not isinstance(value, dict):
        raise ProtocolViolation(f"field {name!r} must be an object")
    return value


def read_str_list(obj: JsonObject, name: str, max_items: int = 16) -> list[str]:
    value = obj.get(name)
    if not isinstance(value, list) or len(value) > max_items:
        raise ProtocolViolation(f"field {name!r} must be a list of at most {max_items}")
    if not all(isinstance(item, str) and len(item) <= 64 for item in value):
        raise ProtocolViolation(f"field {name!r} must hold short strings")
    return list(value)


def hex_of(raw: bytes) -> str:
    return "0x" + raw.hex()


def typed_message_to_json(message: TypedMessage) -> dict[str, object]:
    """An EIP-712 message as JSON under its typed-data (camelCase) names; bytes as hex.

    Driven by the message's own TYPE string, so a field added to Offer or JobRequest
    travels without touching this layer.
    """
    out: dict[str, object] = {}
    values = astuple(message)  # type: ignore[call-overload]
    for (name, _), value in zip(message.field_types(), values, strict=True):
        out[name] = hex_of(value) if isinstance(value, bytes) else value
    return out


def typed_message_from_json(cls: type[M], obj: JsonObject) -> M:
    values: list[object] = []
    for name, typ in cls.field_types():
        if typ == "address":
            text = read_str(obj, name, 42)
            try:
                to_canonical_address(text)
            except ValueError as exc:
                raise ProtocolViolation(f"field {name!r} is not an address") from exc
            values.append(text)
        elif typ.startswith("bytes") and typ[5:].isdigit():
            values.append(read_hex(obj, name, int(typ[5:])))
        elif typ.startswith("uint") and typ[4:].isdigit():
            values.append(read_int(obj, name, 0, 2 ** int(typ[4:]) - 1))
        else:
            raise ProtocolViolation(f"unsupported EIP-712 field type {typ} for {name!r}")
    return cls(*values)
