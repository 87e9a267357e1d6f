"""The stored forms of changes, effects and snapshots: exact text, and exact refusals."""

from __future__ import annotations

from dataclasses import make_dataclass
from enum import StrEnum
from typing import Any

import pytest

from node.state import changes as sc
from node.state import codec, effects
from node.state.codec import (
    decode_change,
    decode_effect,
    decode_snapshot,
    encode_change,
    encode_effect,
    encode_snapshot,
    from_fields,
    to_fields,
)
from node.state.effects import SendTransaction
from node.state.errors import CodecError
from node.state.model import Approval, ApprovalStatus, NodeFacts, NodeState
from node.state.values import Address, EffectId, JobId

PROVIDER = Address("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
ENCLAVE = Address("0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65")


def test_changes_and_effects_are_stored_as_compact_json() -> None:
    change = sc.CancelJobRequested("r1", JobId("0x11"))
    assert encode_change(change) == '{"request_id":"r1","job_id":"0x11"}'
    send = SendTransaction(EffectId("cancelJob:0x11"), "cancelJob", '["0x11"]', 0)
    assert encode_effect(send) == (
        '{"effect_id":"cancelJob:0x11","function":"cancelJob","args":"[\\"0x11\\"]",'
        '"value":0,"contract":"market"}'
    )
    assert decode_effect("SendTransaction", encode_effect(send)) == send


def test_a_snapshot_keeps_the_approvals_and_is_compact() -> None:
    state = NodeState(last_seq=4, facts=NodeFacts(boot_id="b"))
    state.approvals["a1"] = Approval(
        "a1", ApprovalStatus.APPROVED, PROVIDER, ENCLAVE, "ok", "peer", "0xsig"
    )
    body = encode_snapshot(state)
    assert body.startswith('{"last_seq":4,"jobs":[],"approvals":[{"request_id":"a1",')
    assert decode_snapshot(body) == state


def test_unknown_kinds_are_refused_by_name() -> None:
    with pytest.raises(CodecError) as change:
        decode_change("JobTeleported", "{}")
    assert str(change.value) == "unknown state change kind 'JobTeleported'"
    with pytest.raises(CodecError) as effect:
        decode_effect("Teleport", "{}")
    assert str(effect.value) == "unknown effect kind 'Teleport'"


@pytest.mark.parametrize(
    "body, message",
    [
        ("nope", "not JSON: Expecting value: line 1 column 1 (char 0)"),
        ("[1]", "expected a JSON object"),
        ('{"jobs": []}', "malformed snapshot: 'approvals'"),
    ],
)
def test_a_damaged_snapshot_is_refused_with_what_is_wrong(body: str, message: str) -> None:
    with pytest.raises(CodecError) as refused:
        decode_snapshot(body)
    assert str(refused.value) == message


def test_a_change_missing_fields_is_refused_naming_the_type_and_fields() -> None:
    with pytest.raises(CodecError) as refused:
        decode_change("CancelJobRequested", '{"request_id": "r1"}')
    assert str(refused.value).startswith(
        "cannot rebuild CancelJobRequested from {'request_id': 'r1'}: "
    )


def test_fields_and_enums_of_a_type_seen_for_the_first_time_are_found() -> None:
    # Defined here, so that each run meets a type the codec has not cached yet.
    class Colour(StrEnum):
        RED = "red"

    # Built, not declared: the annotations must be types here, not postponed strings.
    fields = [("colour", Colour), ("count", int), ("note", str | None)]
    probe = make_dataclass("Probe", fields, frozen=True)
    assert to_fields(probe(Colour.RED, 3, None)) == {"colour": Colour.RED, "count": 3, "note": None}
    rebuilt: Any = from_fields(probe, {"colour": "red", "count": 3, "note": None})
    assert rebuilt == probe(Colour.RED, 3, None) and rebuilt.colour is Colour.RED


def test_the_concrete_effect_types_are_exactly_the_effect_dataclasses() -> None:
    found = codec._concrete(effects, effects.Effect)
    expected = {
        name: value
        for name, value in vars(effects).items()
        if isinstance(value, type) and issubclass(value, effects.Effect)
    }
    assert found == expected
    assert "Settlement" not in found and found["SendTransaction"] is SendTransaction
