"""Verifier transitions: check a provider's evidence, answer with an approval or the reasons.

The approval travels back on the provider's /capa/approve/1 stream once the check is
recorded here: every decision is a row in /v1/approvals, replayable like any other.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from node.state import changes as sc
from node.state.effects import CheckEvidence, Settlement
from node.state.model import Approval, ApprovalStatus, Identity, StateView, Step
from node.state.shared import SHARED_HANDLERS, ignore
from node.state.values import effect_id


def handle_approval_requested(me: Identity, view: StateView, change: sc.ApprovalRequested) -> Step:
    if view.approval(change.request_id) is not None:
        return Step(rejected=f"request {change.request_id} was already received")
    approval = Approval(
        change.request_id,
        ApprovalStatus.CHECKING,
        change.provider,
        change.enclave_key,
        peer_id=change.peer_id,
    )
    check = CheckEvidence(
        effect_id("check", change.request_id), change.request_id, change.evidence_hash
    )
    return Step(approval=approval, effects=(check,))


def handle_evidence_checked(me: Identity, view: StateView, change: sc.EvidenceChecked) -> Step:
    done = Settlement(effect_id("check", change.request_id), True, change.reason)
    known = view.approval(change.request_id)
    if known is None or known.status is not ApprovalStatus.CHECKING:
        return Step(settled=(done,))
    approved = change.accepted and bool(change.signature)
    status = ApprovalStatus.APPROVED if approved else ApprovalStatus.REFUSED
    updated = Approval(
        known.request_id,
        status,
        known.provider,
        known.enclave_key,
        change.reason,
        known.peer_id,
        change.signature if approved else "",
    )
    reply = json.dumps(
        {"approved": approved, "reason": change.reason, "signature": updated.signature},
        sort_keys=True,
    )
    return Step(approval=updated, settled=(done,), reply=reply)


def handle_tx_outcome(me: Identity, view: StateView, change: sc.TxConfirmed) -> Step:
    return Step(settled=(Settlement(change.effect_id, True),))


def handle_tx_reverted(me: Identity, view: StateView, change: sc.TxReverted) -> Step:
    return Step(settled=(Settlement(change.effect_id, False, change.reason),))


HANDLERS: dict[type[sc.StateChange], Callable[[Identity, StateView, Any], Step]] = {
    **SHARED_HANDLERS,
    sc.ApprovalRequested: handle_approval_requested,
    sc.EvidenceChecked: handle_evidence_checked,
    sc.TxConfirmed: handle_tx_outcome,
    sc.TxReverted: handle_tx_reverted,
    # A verifier that follows the market (for its own status) has no part in its jobs.
    sc.JobMatched: ignore,
    sc.JobPosted: ignore,
    sc.JobAccepted: ignore,
    sc.JobSettled: ignore,
    sc.JobRefunded: ignore,
    sc.JobReleased: ignore,
    sc.JobCancelled: ignore,
}
