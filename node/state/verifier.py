"""Verifier transitions: check a provider's evidence, publish an approval or a refusal."""

from __future__ import annotations

import json

from node.state.changes import ApprovalRequested, EvidenceChecked, StateChange
from node.state.effects import CheckEvidence, Publish, Settlement
from node.state.model import NO_STEP, Approval, ApprovalStatus, Identity, StateView, Step
from node.state.values import effect_id

APPROVALS_TOPIC = "capa/approvals/1"


def verifier_transition(me: Identity, jobs: StateView, change: StateChange) -> Step:
    match change:
        case ApprovalRequested():
            if jobs.approval(change.request_id) is not None:
                return NO_STEP
            approval = Approval(
                change.request_id, ApprovalStatus.CHECKING, change.provider, change.enclave_key
            )
            check = CheckEvidence(
                effect_id("check", change.request_id), change.request_id, change.evidence_hash
            )
            return Step(approval=approval, effects=(check,))
        case EvidenceChecked():
            known = jobs.approval(change.request_id)
            check_id = effect_id("check", change.request_id)
            if known is None or known.status is not ApprovalStatus.CHECKING:
                return NO_STEP
            status = ApprovalStatus.APPROVED if change.accepted else ApprovalStatus.REFUSED
            payload = json.dumps(
                {
                    "request_id": change.request_id,
                    "verifier": me.address,
                    "approved": change.accepted,
                    "reason": change.reason,
                    "signature": change.signature,
                },
                sort_keys=True,
            )
            publish = Publish(effect_id("publish", change.request_id), APPROVALS_TOPIC, payload)
            updated = Approval(
                known.request_id, status, known.provider, known.enclave_key, change.reason
            )
            return Step(
                approval=updated,
                effects=(publish,),
                settled=(Settlement(check_id, True, change.reason),),
            )
    return NO_STEP
