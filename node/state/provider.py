"""Provider transitions: take jobs, run them in the enclave, settle them with a result."""

from __future__ import annotations

import json
from dataclasses import replace

from node.state.changes import (
    AcceptJobRequested,
    JobAccepted,
    JobCancelled,
    JobExecuted,
    JobExecutionFailed,
    JobMatched,
    JobPosted,
    JobRefunded,
    JobReleased,
    JobSettled,
    StateChange,
)
from node.state.effects import SendTransaction, Settlement, StartJob
from node.state.model import (
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


def _start(job: Job) -> StartJob:
    assert job.input_hash is not None
    return StartJob(effect_id("start", job.job_id), job.job_id, job.input_hash, job.deadline)


def provider_transition(me: Identity, jobs: StateView, change: StateChange) -> Step:
    match change:
        case JobMatched() if change.provider == me.address:
            known = jobs.get(change.job_id)
            if known is not None and known.status is not JobStatus.OPEN:
                return NO_STEP
            job = matched_job(change, JobStatus.RUNNING)
            return Step(job=job, effects=(_start(job),))
        case JobPosted():
            if change.job_id in jobs:
                return NO_STEP
            job = posted_job(change)
            return Step(job=job)
        case AcceptJobRequested():
            known = jobs.get(change.job_id)
            if known is None or known.status is not JobStatus.OPEN:
                status = known.status.value if known else "unknown"
                return Step(rejected=f"job {change.job_id} is not open (it is {status})")
            send = SendTransaction(
                effect_id("acceptJob", change.job_id),
                "acceptJob",
                json.dumps([change.job_id, change.enclave_key, change.min_duration]),
                0,
            )
            return Step(job=replace(known, status=JobStatus.ACCEPTING), effects=(send,))
        case JobAccepted():
            known = jobs.get(change.job_id)
            accept = effect_id("acceptJob", change.job_id)
            if change.provider != me.address:
                if known is None:
                    return NO_STEP
                lost = Settlement(accept, False, f"accepted by {change.provider}")
                return Step(job=replace(known, status=JobStatus.TAKEN), settled=(lost,))
            if known is None or known.status in (JobStatus.RUNNING, JobStatus.SUBMITTING):
                return NO_STEP
            job = replace(known, status=JobStatus.RUNNING, provider=change.provider, error="")
            return Step(job=job, effects=(_start(job),), settled=(Settlement(accept, True),))
        case JobExecuted():
            known = jobs.get(change.job_id)
            start = effect_id("start", change.job_id)
            if known is None or known.status is not JobStatus.RUNNING:
                return Step(settled=(Settlement(start, False, "job no longer running"),))
            submit = SendTransaction(
                effect_id("submitResult", change.job_id),
                "submitResult",
                json.dumps([change.job_id, change.output_hash, change.enclave_signature]),
                0,
            )
            job = replace(known, status=JobStatus.SUBMITTING, output_hash=change.output_hash)
            return Step(job=job, effects=(submit,), settled=(Settlement(start, True),))
        case JobExecutionFailed():
            known = jobs.get(change.job_id)
            stopped = Settlement(effect_id("start", change.job_id), False, change.reason)
            if known is None:
                return Step(settled=(stopped,))
            failed = replace(known, status=JobStatus.FAILED, error=change.reason)
            # Give the job back at once: the client is refunded now instead of at the deadline,
            # the reserved stake is freed, and no timeout can slash a job given back in time.
            release = SendTransaction(
                effect_id("releaseJob", change.job_id),
                "releaseJob",
                json.dumps([change.job_id]),
                0,
            )
            return Step(job=failed, effects=(release,), settled=(stopped,))
        case JobSettled():
            known = jobs.get(change.job_id)
            if known is None:
                return NO_STEP
            job = replace(known, status=JobStatus.SETTLED, output_hash=change.output_hash)
            done = Settlement(effect_id("submitResult", change.job_id), True)
            return Step(job=job, settled=(done,))
        case JobRefunded():
            known = jobs.get(change.job_id)
            if known is None:
                return NO_STEP
            dropped = tuple(
                Settlement(e, False, "job refunded after its deadline")
                for e in jobs.pending_for(change.job_id)
            )
            return Step(job=replace(known, status=JobStatus.REFUNDED), settled=dropped)
        case JobReleased():
            known = jobs.get(change.job_id)
            if known is None:
                return NO_STEP
            ours = effect_id("releaseJob", change.job_id)
            closed = tuple(
                Settlement(e, e == ours, "" if e == ours else "job given back")
                for e in jobs.pending_for(change.job_id)
            )
            return Step(job=replace(known, status=JobStatus.REFUNDED), settled=closed)
        case JobCancelled():
            known = jobs.get(change.job_id)
            if known is None:
                return NO_STEP
            return Step(job=replace(known, status=JobStatus.CANCELLED))
    return NO_STEP
