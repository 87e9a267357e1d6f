"""Domain values of the state machine, and what absorbing a step reports: exact results."""

from __future__ import annotations

import pytest

from node.state.effects import Publish, Settlement
from node.state.errors import InvalidValue
from node.state.model import NodeState, Step
from node.state.values import (
    Address,
    EffectId,
    effect_id,
    effect_job,
    effect_subject,
    to_address,
    to_hash32,
    to_job_id,
)

LOWER = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
CHECKSUMMED = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def test_an_address_is_checksummed_whatever_its_case() -> None:
    assert to_address(LOWER) == CHECKSUMMED
    assert to_address(LOWER.upper().replace("0X", "0x")) == CHECKSUMMED


@pytest.mark.parametrize("text", ["", LOWER[2:], LOWER[:-1], LOWER + "0", "0x" + "g" * 40])
def test_anything_else_is_not_an_address(text: str) -> None:
    with pytest.raises(InvalidValue) as refused:
        to_address(text)
    assert str(refused.value) == f"not an address: {text!r}"


def test_a_hash_is_lowercase_hex_from_text_or_bytes() -> None:
    assert to_hash32("0x" + "AB" * 32) == "0x" + "ab" * 32
    assert to_hash32(bytes([0xAB]) * 32) == "0x" + "ab" * 32
    assert to_job_id(bytes(range(32))) == "0x" + bytes(range(32)).hex()
    assert to_job_id("0x" + "Cd" * 32) == "0x" + "cd" * 32


@pytest.mark.parametrize("value", ["0x" + "ab" * 31, "ab" * 32, bytes(31), bytes(33)])
def test_anything_else_is_not_a_hash(value: str | bytes) -> None:
    with pytest.raises(InvalidValue) as refused:
        to_hash32(value)
    assert str(refused.value) == f"not a 32-byte hex value: {value!r}"
    with pytest.raises(InvalidValue):
        to_job_id(value)


def test_an_effect_id_joins_its_action_subject_and_more() -> None:
    assert effect_id("publish", "0xk", 3, "x") == "publish:0xk:3:x"
    assert effect_id("matchJob", "0xj") == "matchJob:0xj"


@pytest.mark.parametrize(
    "effect, subject, job",
    [
        ("publish:0xk:3:x", "0xk:3:x", "0xk"),
        ("matchJob:0xj", "0xj", "0xj"),
        ("withdraw:earnings:0xj", "earnings:0xj", "earnings"),
        ("bare", "", ""),
        (":", "", ""),
    ],
)
def test_an_effect_id_gives_back_its_subject(effect: str, subject: str, job: str) -> None:
    assert effect_subject(EffectId(effect)) == subject
    assert effect_job(EffectId(effect)) == job


def test_absorbing_a_step_reports_only_the_settlements_of_pending_effects() -> None:
    state = NodeState()
    first = Publish(EffectId("publish:0xk:1"), Address("0xk"), "{}")
    second = Publish(EffectId("publish:0xk:2"), Address("0xk"), "{}")
    assert state.absorb(Step(effects=(first, second)), 1) == []
    done = Settlement(EffectId("publish:0xk:1"), True)
    again = Settlement(EffectId("publish:0xk:1"), False, "late")
    unknown = Settlement(EffectId("publish:0xk:9"), True)
    assert state.absorb(Step(settled=(unknown, done, again)), 2) == [done]
    assert state.pending == {second.effect_id: second}
    assert state.last_seq == 2
