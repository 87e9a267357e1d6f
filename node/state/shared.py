"""Handlers every role shares, and small pieces the role transitions use."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from node.config.model import Role
from node.state import changes as sc
from node.state.effects import SendTransaction, Settlement
from node.state.model import NO_STEP, Identity, StateView, Step
from node.state.values import EffectId, effect_id, effect_job

Handler = Callable[[Identity, StateView, Any], Step]


def ignore(me: Identity, view: StateView, change: sc.StateChange) -> Step:
    """For changes a role receives by design and has no business with (others' jobs)."""
    return NO_STEP


def tx_action(effect: EffectId) -> str:
    """The contract function a SendTransaction effect id names."""
    return effect.split(":", 1)[0]


def tx_job(effect: EffectId) -> str:
    return effect_job(effect)


def drop_pending(
    view: StateView, job_id: str, reason: str, *, keep: EffectId | None = None
) -> tuple[Settlement, ...]:
    """Settle (as failed) every effect still pending for a job the chain has ended."""
    return tuple(Settlement(e, False, reason) for e in view.pending_for(job_id) if e != keep)


def handle_effect_completed(me: Identity, view: StateView, change: sc.EffectCompleted) -> Step:
    return Step(settled=(Settlement(change.effect_id, change.ok, change.detail),))


def handle_offer_received(me: Identity, view: StateView, change: sc.OfferReceived) -> Step:
    return Step(offer=change)


def handle_peer_seen(me: Identity, view: StateView, change: sc.PeerSeen) -> Step:
    return Step(peer=change)


def handle_withdraw(me: Identity, view: StateView, change: sc.WithdrawRequested) -> Step:
    if me.role is Role.VERIFIER:
        return Step(rejected="a verifier holds no market balance")
    send = SendTransaction(
        effect_id("withdraw", change.request_id),
        "withdraw",
        json.dumps([change.amount, change.to]),
        0,
    )
    return Step(effects=(send,))


SHARED_HANDLERS: dict[type[sc.StateChange], Handler] = {
    sc.EffectCompleted: handle_effect_completed,
    sc.OfferReceived: handle_offer_received,
    sc.PeerSeen: handle_peer_seen,
    sc.WithdrawRequested: handle_withdraw,
}
