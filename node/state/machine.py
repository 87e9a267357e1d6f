"""The one entry point: route a state change to the rules every role shares, then its role's."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

from node.config.model import Role
from node.state.changes import (
    EffectCompleted,
    OfferReceived,
    PeerSeen,
    StateChange,
    TxConfirmed,
    TxReverted,
    WithdrawRequested,
)
from node.state.client import client_transition
from node.state.effects import SendTransaction, Settlement
from node.state.model import Identity, JobStatus, StateView, Step
from node.state.provider import provider_transition
from node.state.values import JobId, effect_id, effect_subject
from node.state.verifier import verifier_transition

Transition = Callable[[Identity, StateView, StateChange], Step]

_BY_ROLE: dict[Role, Transition] = {
    Role.PROVIDER: provider_transition,
    Role.CLIENT: client_transition,
    Role.VERIFIER: verifier_transition,
}

# A revert while the job waits on our own transaction leaves nothing else to wait for.
_WAITING_ON_US = frozenset({JobStatus.REQUESTED, JobStatus.ACCEPTING, JobStatus.SUBMITTING})


def transition(me: Identity, view: StateView, change: StateChange) -> Step:
    """Pure: the same identity, state and change always give the same step."""
    match change:
        case TxConfirmed():
            return Step(settled=(Settlement(change.effect_id, True),))
        case TxReverted():
            settled = (Settlement(change.effect_id, False, change.reason),)
            job = view.get(JobId(effect_subject(change.effect_id)))
            if job is None:
                return Step(settled=settled)
            status = JobStatus.FAILED if job.status in _WAITING_ON_US else job.status
            return Step(job=replace(job, status=status, error=change.reason), settled=settled)
        case EffectCompleted():
            return Step(settled=(Settlement(change.effect_id, change.ok, change.detail),))
        case WithdrawRequested() if me.role is not Role.VERIFIER:
            send = SendTransaction(
                effect_id("withdraw", change.request_id),
                "withdraw",
                json.dumps([change.amount, change.to]),
                0,
            )
            return Step(effects=(send,))
        case OfferReceived():
            return Step(offer=change)
        case PeerSeen():
            return Step(peer=change)
    return _BY_ROLE[me.role](me, view, change)
