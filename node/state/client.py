"""Client transitions: choose a provider, pay into escrow, hand the input over, get the output.

A job walks SUBMITTED -> (per candidate: CHECKING -> SEALING -> QUOTING) -> REQUESTED ->
ASSIGNED -> DELIVERED -> SETTLED -> VERIFIED, or ends REFUNDED after its deadline. Until
matchJob is sent nothing has moved: a candidate that fails any check is dropped with its
reason and the next one is tried. Once the job is on chain only the chain ends it: a local
failure is recorded in `error`, and the deadline brings the refund.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from node.chain.typed_data import JobRequest, Offer, TypedMessage
from node.state import changes as sc
from node.state.effects import (
    CheckProvider,
    FetchOutput,
    FindProviders,
    RequestQuote,
    SealInput,
    SendInput,
    SendTransaction,
    Settlement,
)
from node.state.model import (
    NO_STEP,
    Identity,
    Job,
    JobStatus,
    StateView,
    Step,
)
from node.state.shared import (
    SHARED_HANDLERS,
    drop_pending,
    ignore,
    tx_action,
    tx_job,
)
from node.state.values import Address, Hash32, JobId, effect_id, to_hash32
from proofs.receipts import workload_spec_hash

# Once matchJob is on its way, money may move: only the chain (or the deadline) ends the job.
_ON_CHAIN = frozenset(
    {JobStatus.REQUESTED, JobStatus.ASSIGNED, JobStatus.DELIVERED, JobStatus.SETTLED}
)
_REFUNDABLE = frozenset({JobStatus.ASSIGNED, JobStatus.DELIVERED})
# Before matchJob is sent: a cancel needs no transaction.
_BEFORE_CHAIN = frozenset(
    {JobStatus.SUBMITTED, JobStatus.CHECKING, JobStatus.SEALING, JobStatus.QUOTING}
)


def spec_hash(measurement: Hash32) -> Hash32:
    """What the client asks to run, as the enclave will compute it from what it runs."""
    return to_hash32(workload_spec_hash(bytes.fromhex(measurement[2:]), ()))


def job_request(job: Job, input_hash: Hash32, deadline: int) -> dict[str, Any]:
    """The EIP-712 JobRequest (camelCase names, bytes as 0x hex) matchJob will carry."""
    assert job.measurement is not None
    return {
        "specHash": spec_hash(job.measurement),
        "inputHash": input_hash,
        "teeKinds": job.tee_kinds,
        "measurement": job.measurement,
        "minTcbStatus": job.min_tcb_status,
        "maxPrice": job.max_price,
        "deadline": deadline,
        "nonce": job.nonce,
    }


def abi_tuple(message: type[TypedMessage], fields: dict[str, Any]) -> list[Any]:
    """A struct's JSON (camelCase names) as the tuple an ABI call takes, in EIP-712 order."""
    return [fields[name] for name, _ in message.field_types()]


def _mine(view: StateView, job_id: JobId, *expected: JobStatus) -> Job | None:
    job = view.get(job_id)
    if job is None or (expected and job.status not in expected):
        return None
    return job


# ---------------------------------------------------------------- choosing a provider


def handle_job_submit(me: Identity, view: StateView, change: sc.JobSubmitRequested) -> Step:
    if change.job_id in view:
        return Step(rejected=f"job {change.job_id} already exists")
    job = Job(
        change.job_id,
        JobStatus.SUBMITTED,
        client=me.address,
        workload=change.workload,
        measurement=change.measurement,
        tee_kinds=change.tee_kinds,
        min_tcb_status=change.min_tcb_status,
        max_price=change.max_price,
        timeout_s=change.timeout_s,
        cpu_cores=change.cpu_cores,
        memory_mib=change.memory_mib,
        nonce=change.nonce,
        input_size=change.input_size,
        submitted_at=change.submitted_at,
    )
    find = FindProviders(effect_id("find", change.job_id, 0), change.job_id, 0)
    return Step(jobs=(job,), effects=(find,))


def handle_providers_found(me: Identity, view: StateView, change: sc.ProvidersFound) -> Step:
    done = Settlement(effect_id("find", change.job_id, change.attempt), True)
    job = _mine(view, change.job_id, JobStatus.SUBMITTED)
    if job is None:
        return Step(settled=(done,))
    candidates = json.loads(change.candidates)[: me.client.max_candidates]
    if not candidates:
        failed = replace(
            job, status=JobStatus.FAILED, error=f"no provider can take the job: {change.why_none}"
        )
        return Step(jobs=(failed,), settled=(done,))
    job = replace(job, candidates=json.dumps(candidates))
    step = _try_candidate(job, 0)
    return replace(step, settled=(done,))


def _try_candidate(job: Job, index: int) -> Step:
    candidates = json.loads(job.candidates)
    if index >= len(candidates):
        failed = replace(
            job,
            status=JobStatus.FAILED,
            error=f"no acceptable provider among {len(candidates)} candidates: {job.tried}",
            provider=None,
            peer_id="",
            enclave_key=None,
        )
        return Step(jobs=(failed,))
    candidate = candidates[index]
    provider = Address(candidate["provider"])
    trying = replace(
        job,
        status=JobStatus.CHECKING,
        candidate=index,
        provider=provider,
        peer_id=candidate["peer_id"],
        tee_kind=int(candidate["tee_kind"]),
        enclave_key=None,
        hpke_public_key="",
        insecure=False,
        input_hash=None,
        request="",
    )
    check = CheckProvider(
        effect_id("check", job.job_id, index),
        job.job_id,
        index,
        provider,
        candidate["peer_id"],
        int(candidate["tee_kind"]),
        Hash32(candidate["measurement"]),
    )
    return Step(jobs=(trying,), effects=(check,))


def _drop_candidate(job: Job, stage: str, reason: str) -> Step:
    note = f"{job.provider} ({stage}): {reason}"
    tried = f"{job.tried}; {note}" if job.tried else note
    return _try_candidate(replace(job, tried=tried), job.candidate + 1)


def _at_candidate(view: StateView, job_id: JobId, candidate: int, status: JobStatus) -> Job | None:
    job = _mine(view, job_id, status)
    return job if job is not None and job.candidate == candidate else None


def handle_provider_checked(me: Identity, view: StateView, change: sc.ProviderChecked) -> Step:
    done = Settlement(effect_id("check", change.job_id, change.candidate), True)
    job = _at_candidate(view, change.job_id, change.candidate, JobStatus.CHECKING)
    if job is None:
        return Step(settled=(done,))
    if not change.accepted:
        return replace(_drop_candidate(job, "evidence", change.reason), settled=(done,))
    sealing = replace(
        job,
        status=JobStatus.SEALING,
        enclave_key=Address(change.enclave_key),
        hpke_public_key=change.hpke_public_key,
        tee_kind=change.tee_kind,
        insecure=change.insecure,
    )
    seal = SealInput(
        effect_id("seal", job.job_id, change.candidate),
        job.job_id,
        change.candidate,
        change.hpke_public_key,
    )
    return Step(jobs=(sealing,), effects=(seal,), settled=(done,))


def handle_input_sealed(me: Identity, view: StateView, change: sc.InputSealed) -> Step:
    done = Settlement(effect_id("seal", change.job_id, change.candidate), True)
    job = _at_candidate(view, change.job_id, change.candidate, JobStatus.SEALING)
    if job is None:
        return Step(settled=(done,))
    deadline = change.chain_time + job.timeout_s
    request = job_request(job, change.input_hash, deadline)
    quoting = replace(
        job,
        status=JobStatus.QUOTING,
        input_hash=change.input_hash,
        deadline=deadline,
        request=json.dumps(request),
    )
    assert job.provider is not None
    quote = RequestQuote(
        effect_id("quote", job.job_id, change.candidate),
        job.job_id,
        change.candidate,
        job.peer_id,
        job.provider,
        quoting.request,
    )
    return Step(jobs=(quoting,), effects=(quote,), settled=(done,))


def handle_quote_received(me: Identity, view: StateView, change: sc.QuoteReceived) -> Step:
    done = Settlement(effect_id("quote", change.job_id, change.candidate), True)
    job = _at_candidate(view, change.job_id, change.candidate, JobStatus.QUOTING)
    if job is None:
        return Step(settled=(done,))
    offer = json.loads(change.offer)
    request = json.loads(job.request)
    price = int(offer["price"])
    # matchJob takes the two structs as tuples in their EIP-712 field order.
    args = [abi_tuple(JobRequest, request), abi_tuple(Offer, offer), change.signature]
    send = SendTransaction(effect_id("matchJob", job.job_id), "matchJob", json.dumps(args), price)
    requested = replace(job, status=JobStatus.REQUESTED, price=price)
    return Step(jobs=(requested,), effects=(send,), settled=(done,))


_STAGE_EFFECT = {
    "evidence": ("check", JobStatus.CHECKING),
    "seal": ("seal", JobStatus.SEALING),
    "quote": ("quote", JobStatus.QUOTING),
}


def handle_candidate_failed(me: Identity, view: StateView, change: sc.CandidateFailed) -> Step:
    action, status = _STAGE_EFFECT.get(change.stage, ("quote", JobStatus.QUOTING))
    done = Settlement(effect_id(action, change.job_id, change.candidate), False, change.reason)
    job = _at_candidate(view, change.job_id, change.candidate, status)
    if job is None:
        return Step(settled=(done,))
    return replace(_drop_candidate(job, change.stage, change.reason), settled=(done,))


# ---------------------------------------------------------------- on chain


def handle_job_matched(me: Identity, view: StateView, change: sc.JobMatched) -> Step:
    if change.client != me.address:
        return NO_STEP
    matched = Settlement(effect_id("matchJob", change.job_id), True)
    job = view.get(change.job_id)
    if job is None or job.status is not JobStatus.REQUESTED:
        # Matched outside this daemon, or already seen: nothing of ours waits on it.
        return Step(settled=(matched,))
    assert job.enclave_key is not None
    assigned = replace(
        job,
        status=JobStatus.ASSIGNED,
        provider=change.provider,
        price=change.price,
        deadline=change.deadline,
        input_hash=change.input_hash,
        spec_hash=change.spec_hash,
        error="",
        match_tx=change.tx_hash,
    )
    hand_over = SendInput(
        effect_id("input", change.job_id),
        change.job_id,
        change.provider,
        job.peer_id,
        job.enclave_key,
        change.input_hash,
        change.deadline,
    )
    return Step(jobs=(assigned,), effects=(hand_over,), settled=(matched,))


def handle_input_delivered(me: Identity, view: StateView, change: sc.InputDelivered) -> Step:
    done = Settlement(effect_id("input", change.job_id), True)
    job = _mine(view, change.job_id, JobStatus.ASSIGNED)
    if job is None:
        return Step(settled=(done,))
    delivered = replace(job, status=JobStatus.DELIVERED, receipt=change.receipt_signature)
    return Step(jobs=(delivered,), settled=(done,))


def handle_input_undeliverable(
    me: Identity, view: StateView, change: sc.InputUndeliverable
) -> Step:
    done = Settlement(effect_id("input", change.job_id), False, change.reason)
    job = _mine(view, change.job_id, JobStatus.ASSIGNED)
    if job is None:
        return Step(settled=(done,))
    # The escrow stays until the deadline; then the refund is claimed without a slash.
    note = f"input not delivered ({change.reason}); refund claimable after the deadline"
    return Step(jobs=(replace(job, error=note),), settled=(done,))


def handle_job_settled(me: Identity, view: StateView, change: sc.JobSettled) -> Step:
    job = view.get(change.job_id)
    if job is None or job.client != me.address or job.status not in _ON_CHAIN:
        return NO_STEP
    settled = replace(
        job,
        status=JobStatus.SETTLED,
        output_hash=change.output_hash,
        error="",
        settle_tx=change.tx_hash,
    )
    assert job.enclave_key is not None and job.input_hash is not None
    fetch = FetchOutput(
        effect_id("output", change.job_id),
        change.job_id,
        change.provider,
        job.peer_id,
        job.enclave_key,
        job.input_hash,
        change.output_hash,
    )
    # A settlement ends every other wait: an upload still retrying is moot.
    dropped = drop_pending(view, change.job_id, "job settled", keep=fetch.effect_id)
    return Step(jobs=(settled,), effects=(fetch,), settled=dropped)


def handle_output_verified(me: Identity, view: StateView, change: sc.OutputVerified) -> Step:
    done = Settlement(effect_id("output", change.job_id), True)
    job = _mine(view, change.job_id, JobStatus.SETTLED)
    if job is None:
        return Step(settled=(done,))
    verified = replace(
        job,
        status=JobStatus.VERIFIED,
        output_sha256=change.output_sha256,
        output_size=change.output_size,
    )
    return Step(jobs=(verified,), settled=(done,))


def handle_output_rejected(me: Identity, view: StateView, change: sc.OutputRejected) -> Step:
    done = Settlement(effect_id("output", change.job_id), False, change.reason)
    job = _mine(view, change.job_id, JobStatus.SETTLED)
    if job is None:
        return Step(settled=(done,))
    failed = replace(job, status=JobStatus.FAILED, error=f"output rejected: {change.reason}")
    return Step(jobs=(failed,), settled=(done,))


def handle_deadline_passed(me: Identity, view: StateView, change: sc.DeadlinePassed) -> Step:
    job = _mine(view, change.job_id, *_REFUNDABLE)
    if job is None:
        return NO_STEP
    return _claim(job, "deadline passed")


def handle_claim_timeout(me: Identity, view: StateView, change: sc.ClaimTimeoutRequested) -> Step:
    job = _mine(view, change.job_id, *_REFUNDABLE)
    if job is None:
        return Step(rejected=f"job {change.job_id} is not assigned to a provider")
    return _claim(job, "asked by the user")


def _claim(job: Job, why: str) -> Step:
    # With the provider's input receipt the claim also slashes it: it had what it needed.
    send = SendTransaction(
        effect_id("claimTimeout", job.job_id),
        "claimTimeout",
        json.dumps([job.job_id, job.receipt or "0x"]),
        0,
    )
    return Step(jobs=(replace(job, error=f"claiming the refund: {why}"),), effects=(send,))


def handle_job_refunded(
    me: Identity, view: StateView, change: sc.JobRefunded | sc.JobReleased
) -> Step:
    job = view.get(change.job_id)
    if job is None or change.client != me.address:
        return NO_STEP
    dropped = drop_pending(view, change.job_id, "job refunded")
    refunded = replace(job, status=JobStatus.REFUNDED)
    return Step(jobs=(refunded,), settled=dropped)


def handle_job_cancelled(me: Identity, view: StateView, change: sc.JobCancelled) -> Step:
    job = view.get(change.job_id)
    if job is None or change.client != me.address:
        return NO_STEP
    dropped = drop_pending(view, change.job_id, "job cancelled")
    return Step(jobs=(replace(job, status=JobStatus.CANCELLED),), settled=dropped)


def handle_cancel_job(me: Identity, view: StateView, change: sc.CancelJobRequested) -> Step:
    local = _mine(view, change.job_id, *_BEFORE_CHAIN)
    if local is not None:
        # Nothing has reached the chain or a provider's enclave: the job ends here. An answer
        # still on its way for a candidate finds the job no longer at that candidate.
        cancelled = replace(local, status=JobStatus.CANCELLED, error="cancelled before matching")
        dropped = drop_pending(view, change.job_id, "job cancelled")
        return Step(jobs=(cancelled,), settled=dropped)
    job = _mine(view, change.job_id, JobStatus.OPEN)
    if job is None:
        return Step(rejected=f"job {change.job_id} is neither open nor before its match")
    send = SendTransaction(
        effect_id("cancelJob", change.job_id), "cancelJob", json.dumps([change.job_id]), 0
    )
    return Step(effects=(send,))


# ---------------------------------------------------------------- our transactions


def handle_tx_confirmed(me: Identity, view: StateView, change: sc.TxConfirmed) -> Step:
    # The job's own events (JobMatched, JobRefunded) carry what follows a confirmation.
    return Step(settled=(Settlement(change.effect_id, True),))


def handle_tx_reverted(me: Identity, view: StateView, change: sc.TxReverted) -> Step:
    settled = (Settlement(change.effect_id, False, change.reason),)
    job = view.get(JobId(tx_job(change.effect_id)))
    if job is None:
        return Step(settled=settled)
    if tx_action(change.effect_id) == "matchJob" and job.status is JobStatus.REQUESTED:
        # Nothing was escrowed: the next candidate may still take the job.
        return replace(_drop_candidate(job, "matchJob", change.reason), settled=settled)
    return Step(jobs=(replace(job, error=change.reason),), settled=settled)


HANDLERS: dict[type[sc.StateChange], Callable[[Identity, StateView, Any], Step]] = {
    **SHARED_HANDLERS,
    sc.JobSubmitRequested: handle_job_submit,
    sc.ProvidersFound: handle_providers_found,
    sc.ProviderChecked: handle_provider_checked,
    sc.InputSealed: handle_input_sealed,
    sc.QuoteReceived: handle_quote_received,
    sc.CandidateFailed: handle_candidate_failed,
    sc.JobMatched: handle_job_matched,
    sc.InputDelivered: handle_input_delivered,
    sc.InputUndeliverable: handle_input_undeliverable,
    sc.JobSettled: handle_job_settled,
    sc.OutputVerified: handle_output_verified,
    sc.OutputRejected: handle_output_rejected,
    sc.DeadlinePassed: handle_deadline_passed,
    sc.ClaimTimeoutRequested: handle_claim_timeout,
    sc.CancelJobRequested: handle_cancel_job,
    sc.JobRefunded: handle_job_refunded,
    sc.JobReleased: handle_job_refunded,
    sc.JobCancelled: handle_job_cancelled,
    sc.TxConfirmed: handle_tx_confirmed,
    sc.TxReverted: handle_tx_reverted,
    # Open jobs are a provider's business; a client only follows its own matched jobs.
    sc.JobPosted: ignore,
    sc.JobAccepted: ignore,
}
