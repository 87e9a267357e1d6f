"""The handlers every role shares, each step compared whole."""

from __future__ import annotations

import json

import pytest

from node.config.model import Role
from node.state import changes as sc
from node.state.effects import Publish, SendTransaction, Settlement
from node.state.machine import transition
from node.state.model import NO_STEP, Identity, NodeState, StateView, Step
from node.state.shared import drop_pending, tx_action, tx_job
from node.state.values import Address, BlockNumber, EffectId, Hash32, JobId, TxHash

ME = Address("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
TO = Address("0x90F79bf6EB2c4f870365E785982E1f101E93b906")
JOB = JobId("0x" + "11" * 32)
OTHER_JOB = JobId("0x" + "12" * 32)

ROLES = [Role.PROVIDER, Role.CLIENT, Role.VERIFIER]


def _view(*effect_ids: str) -> StateView:
    state = NodeState()
    state.pending = {EffectId(e): Publish(EffectId(e), ME, "{}") for e in effect_ids}
    return StateView(state)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("ok, detail", [(True, "published"), (False, "no peers")])
def test_a_completed_effect_is_settled_as_it_ended(role: Role, ok: bool, detail: str) -> None:
    change = sc.EffectCompleted(EffectId("publish:0xk:3"), ok, detail)
    assert transition(Identity(role, ME), _view(), change) == Step(
        settled=(Settlement(EffectId("publish:0xk:3"), ok, detail),)
    )


@pytest.mark.parametrize("role", ROLES)
def test_offers_and_peers_are_passed_on_as_received(role: Role) -> None:
    offer = sc.OfferReceived(TO, 4, 100, 2_000, 5, "peer-1", '{"signed": true}')
    assert transition(Identity(role, ME), _view(), offer) == Step(offer=offer)
    peer = sc.PeerSeen("peer-1", "/ip4/127.0.0.1/tcp/4001", 1_700_000_000)
    assert transition(Identity(role, ME), _view(), peer) == Step(peer=peer)


@pytest.mark.parametrize("role", [Role.PROVIDER, Role.CLIENT])
def test_a_withdrawal_sends_the_amount_to_the_address_asked(role: Role) -> None:
    change = sc.WithdrawRequested("req-5", 123_456, TO)
    send = SendTransaction(EffectId("withdraw:req-5"), "withdraw", json.dumps([123_456, TO]), 0)
    assert transition(Identity(role, ME), _view(), change) == Step(effects=(send,))


def test_a_verifier_has_nothing_to_withdraw() -> None:
    change = sc.WithdrawRequested("req-5", 1, TO)
    assert transition(Identity(Role.VERIFIER, ME), _view(), change) == Step(
        rejected="a verifier holds no market balance"
    )


def test_changes_about_others_jobs_are_ignored_by_a_verifier() -> None:
    event = sc.JobAccepted(BlockNumber(1), Hash32("0x" + "22" * 32), TxHash("0x01"), "k", JOB, TO)
    assert transition(Identity(Role.VERIFIER, ME), _view(), event) == NO_STEP


def test_drop_pending_fails_every_effect_of_the_job_but_the_one_kept() -> None:
    view = _view(f"input:{JOB}", f"claimTimeout:{JOB}", f"input:{OTHER_JOB}", f"output:{JOB}")
    assert drop_pending(view, JOB, "job settled", keep=EffectId(f"output:{JOB}")) == (
        Settlement(EffectId(f"input:{JOB}"), False, "job settled"),
        Settlement(EffectId(f"claimTimeout:{JOB}"), False, "job settled"),
    )
    assert drop_pending(view, JOB, "job refunded") == (
        Settlement(EffectId(f"input:{JOB}"), False, "job refunded"),
        Settlement(EffectId(f"claimTimeout:{JOB}"), False, "job refunded"),
        Settlement(EffectId(f"output:{JOB}"), False, "job refunded"),
    )


@pytest.mark.parametrize(
    "effect, action, job",
    [
        (f"matchJob:{JOB}", "matchJob", JOB),
        ("withdraw:earnings:0xab", "withdraw", "earnings"),
        ("register:boot-1", "register", "boot-1"),
        ("bare", "bare", ""),
    ],
)
def test_an_effect_id_names_its_function_and_its_subject(
    effect: str, action: str, job: str
) -> None:
    assert tx_action(EffectId(effect)) == action
    assert tx_job(EffectId(effect)) == job
