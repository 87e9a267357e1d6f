"""JSON forms of state changes, effects and snapshots, tagged by class name.

Every field is a plain scalar (str, int, bool, None) or a StrEnum, so a flat dict suffices and
decoding is `cls(**fields)`; enums are rebuilt from their annotated type.
"""

from __future__ import annotations

import dataclasses
import json
from enum import StrEnum
from typing import Any, TypeVar, get_type_hints

from node.state import changes, effects
from node.state.errors import CodecError
from node.state.model import Approval, EnclaveKey, Job, NodeFacts, NodeState
from node.state.values import EffectId, JobId

T = TypeVar("T")


def _concrete(module: Any, base: type) -> dict[str, type]:
    found = {}
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, base) and dataclasses.is_dataclass(value):
            found[value.__name__] = value
    return found


CHANGE_TYPES: dict[str, type] = {
    name: cls
    for name, cls in _concrete(changes, changes.StateChange).items()
    if name not in ("StateChange", "ChainEvent", "CliAction")
}
EFFECT_TYPES: dict[str, type] = {
    name: cls for name, cls in _concrete(effects, effects.Effect).items() if name != "Effect"
}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_ENUM_FIELDS: dict[type, dict[str, type[StrEnum]]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _enum_fields(cls: type) -> dict[str, type[StrEnum]]:
    found = _ENUM_FIELDS.get(cls)
    if found is None:
        hints = get_type_hints(cls)
        found = _ENUM_FIELDS[cls] = {
            name: hint
            for name, hint in hints.items()
            if isinstance(hint, type) and issubclass(hint, StrEnum)
        }
    return found


def to_fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in _field_names(type(obj))}


def from_fields(cls: type[T], fields: dict[str, Any]) -> T:
    try:
        for name, enum in _enum_fields(cls).items():
            fields[name] = enum(fields[name])
        return cls(**fields)
    except (TypeError, ValueError, KeyError) as exc:
        raise CodecError(f"cannot rebuild {cls.__name__} from {fields!r}: {exc}") from exc


def encode_change(change: changes.StateChange) -> str:
    return json.dumps(to_fields(change), separators=(",", ":"))


def decode_change(kind: str, body: str) -> changes.StateChange:
    cls = CHANGE_TYPES.get(kind)
    if cls is None:
        raise CodecError(f"unknown state change kind {kind!r}")
    return from_fields(cls, _load(body))


def encode_effect(effect: effects.Effect) -> str:
    return json.dumps(to_fields(effect), separators=(",", ":"))


def decode_effect(kind: str, body: str) -> effects.Effect:
    cls = EFFECT_TYPES.get(kind)
    if cls is None:
        raise CodecError(f"unknown effect kind {kind!r}")
    return from_fields(cls, _load(body))


def encode_snapshot(state: NodeState) -> str:
    return json.dumps(
        {
            "last_seq": state.last_seq,
            "jobs": [to_fields(j) for j in state.jobs.values()],
            "approvals": [to_fields(a) for a in state.approvals.values()],
            "keys": [to_fields(k) for k in state.keys.values()],
            "facts": to_fields(state.facts),
            "pending": [[type(e).__name__, to_fields(e)] for e in state.pending.values()],
        },
        separators=(",", ":"),
    )


def decode_snapshot(body: str) -> NodeState:
    raw = _load(body)
    try:
        jobs = [from_fields(Job, j) for j in raw["jobs"]]
        approvals = [from_fields(Approval, a) for a in raw["approvals"]]
        keys = [from_fields(EnclaveKey, k) for k in raw["keys"]]
        pending = [decode_effect(kind, json.dumps(fields)) for kind, fields in raw["pending"]]
        return NodeState(
            jobs={JobId(j.job_id): j for j in jobs},
            approvals={a.request_id: a for a in approvals},
            keys={k.enclave_key: k for k in keys},
            facts=from_fields(NodeFacts, raw["facts"]),
            pending={EffectId(e.effect_id): e for e in pending},
            last_seq=int(raw["last_seq"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"malformed snapshot: {exc}") from exc


def _load(body: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        raise CodecError(f"not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise CodecError("expected a JSON object")
    return value


__all__ = [
    "CHANGE_TYPES",
    "EFFECT_TYPES",
    "decode_change",
    "decode_effect",
    "decode_snapshot",
    "encode_change",
    "encode_effect",
    "encode_snapshot",
]
