"""Client transitions: pay into escrow, hand the input over, fetch the output, claim refunds."""

from __future__ import annotations

import json
from dataclasses import replace

from node.state.changes import (
    CancelJobRequested,
    ClaimTimeoutRequested,
    JobAccepted,
    JobCancelled,
    JobMatched,
    JobPosted,
    JobRefunded,
    JobReleased,
    JobSettled,
    MatchJobRequested,
    PostJobRequested,
    StateChange,
)
from node.state.effects import FetchOutput, SendInput, SendTransaction, Settlement
from node.state.model import (
    FINAL_STATUSES,
    NO_STEP,
    Identity,
    Job,
    JobStatus,
    StateView,
    Step,
    matched_job,
    posted_job,
)
from node.state.values import effect_id


def client_transition(me: Identity, jobs: StateView, change: StateChange) -> Step:
    match change:
        case MatchJobRequested() | PostJobRequested():
            if change.job_id in jobs:
                return Step(rejected=f"job {change.job_id} already exists")
            function = "matchJob" if isinstance(change, MatchJobRequested) else "postJob"
            send = SendTransaction(
                effect_id(function, change.job_id), function, change.args, change.value
            )
            job = Job(change.job_id, JobStatus.REQUESTED, client=me.address)
            return Step(job=job, effects=(send,))
        case JobMatched() if change.client == me.address:
            known = jobs.get(change.job_id)
            if known is not None and known.status is not JobStatus.REQUESTED:
                return NO_STEP
            job = matched_job(change, JobStatus.ASSIGNED)
            hand_over = SendInput(effect_id("input", change.job_id), change.job_id, change.provider)
            matched = Settlement(effect_id("matchJob", change.job_id), True)
            return Step(job=job, effects=(hand_over,), settled=(matched,))
        case JobPosted() if change.client == me.address:
            known = jobs.get(change.job_id)
            if known is not None and known.status is not JobStatus.REQUESTED:
                return NO_STEP
            job = posted_job(change)
            return Step(job=job, settled=(Settlement(effect_id("postJob", change.job_id), True),))
        case JobAccepted():
            known = jobs.get(change.job_id)
            if known is None or known.status is not JobStatus.OPEN:
                return NO_STEP
            job = replace(known, status=JobStatus.ASSIGNED, provider=change.provider)
            hand_over = SendInput(effect_id("input", change.job_id), change.job_id, change.provider)
            return Step(job=job, effects=(hand_over,))
        case JobSettled():
            known = jobs.get(change.job_id)
            if known is None or known.status in FINAL_STATUSES:
                return NO_STEP
            job = replace(known, status=JobStatus.SETTLED, output_hash=change.output_hash)
            fetch = FetchOutput(
                effect_id("output", change.job_id),
                change.job_id,
                change.provider,
                change.output_hash,
            )
            return Step(job=job, effects=(fetch,))
        case JobRefunded() | JobReleased():
            known = jobs.get(change.job_id)
            if known is None:
                return NO_STEP
            done = Settlement(effect_id("claimTimeout", change.job_id), True)
            return Step(job=replace(known, status=JobStatus.REFUNDED), settled=(done,))
        case JobCancelled():
            known = jobs.get(change.job_id)
            if known is None:
                return NO_STEP
            done = Settlement(effect_id("cancelJob", change.job_id), True)
            return Step(job=replace(known, status=JobStatus.CANCELLED), settled=(done,))
        case ClaimTimeoutRequested():
            known = jobs.get(change.job_id)
            if known is None or known.status is not JobStatus.ASSIGNED:
                return Step(rejected=f"job {change.job_id} is not assigned to a provider")
            # No input receipt yet: the claim refunds without a slash. The provider's receipt
            # for the input hand-over goes here once the upload protocol returns it.
            send = SendTransaction(
                effect_id("claimTimeout", change.job_id),
                "claimTimeout",
                json.dumps([change.job_id, "0x"]),
                0,
            )
            return Step(effects=(send,))
        case CancelJobRequested():
            known = jobs.get(change.job_id)
            if known is None or known.status is not JobStatus.OPEN:
                return Step(rejected=f"job {change.job_id} is not open")
            send = SendTransaction(
                effect_id("cancelJob", change.job_id), "cancelJob", json.dumps([change.job_id]), 0
            )
            return Step(effects=(send,))
    return NO_STEP
