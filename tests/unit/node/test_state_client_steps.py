"""Client transitions step by step: each step compared whole (new job, effects, settlements).

A wrong client transition pays the wrong provider, pays twice, or loses a refund, so every
test here states the exact step a change must give, from a state built directly, and the
edges on both sides (candidate index, status, whose job it is).
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from node.config.model import Role
from node.state import changes as sc
from node.state.effects import (
    CheckProvider,
    Effect,
    FetchOutput,
    FindProviders,
    RequestQuote,
    SealInput,
    SendInput,
    SendTransaction,
    Settlement,
)
from node.state.machine import transition
from node.state.model import (
    NO_STEP,
    ClientTerms,
    Identity,
    Job,
    JobStatus,
    NodeState,
    StateView,
    Step,
)
from node.state.values import Address, BlockNumber, EffectId, Hash32, JobId, TxHash
from proofs.receipts import workload_spec_hash

ME = Address("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC")
SOMEONE = Address("0x90F79bf6EB2c4f870365E785982E1f101E93b906")
FIRST = Address("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
SECOND = Address("0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc")
ENCLAVE = Address("0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65")
OLD_ENCLAVE = Address("0x976EA74026E726554dB657fA54763abd0C3a0aa9")
JOB = JobId("0x" + "11" * 32)
OTHER_JOB = JobId("0x" + "12" * 32)
MEASUREMENT = Hash32("0x" + "ab" * 32)
SEALED = Hash32("0x" + "5e" * 32)
CHAIN_INPUT = Hash32("0x" + "5f" * 32)
SPEC = Hash32("0x" + "5c" * 32)
OUT = Hash32("0x" + "0a" * 32)
TX = TxHash("0x" + "7a" * 32)
HPKE = "0x" + "33" * 32

CLIENT = Identity(Role.CLIENT, ME, client=ClientTerms(max_candidates=2))


def _view(*jobs: Job, pending: tuple[Effect, ...] = ()) -> StateView:
    state = NodeState()
    state.jobs = {job.job_id: job for job in jobs}
    state.pending = {effect.effect_id: effect for effect in pending}
    return StateView(state)


def _event(cls: type, *fields: object) -> sc.StateChange:
    return cls(BlockNumber(7), Hash32("0x" + "22" * 32), TX, "log-7", *fields)  # type: ignore[no-any-return]


def _candidate(provider: Address, n: int) -> dict[str, object]:
    return {
        "provider": provider,
        "peer_id": f"peer-{n}",
        "tee_kind": 3 + n,
        "measurement": MEASUREMENT,
    }


CANDIDATES = json.dumps([_candidate(FIRST, 0), _candidate(SECOND, 1)])

SUBMITTED = Job(
    JOB,
    JobStatus.SUBMITTED,
    client=ME,
    workload="onnx",
    measurement=MEASUREMENT,
    tee_kinds=0b101000,
    min_tcb_status=2,
    max_price=10_000,
    timeout_s=600,
    cpu_cores=3,
    memory_mib=768,
    nonce=7,
    input_size=42,
    submitted_at=1_700_000_000,
)


def _effect(action: str, *more: object) -> EffectId:
    return EffectId(":".join([action, JOB, *(str(m) for m in more)]))


# A job that has been through a whole candidate (sealed, quoted) so that moving on to the next
# one must clear everything the last one left.
QUOTING_FIRST = replace(
    SUBMITTED,
    status=JobStatus.QUOTING,
    candidates=CANDIDATES,
    candidate=0,
    provider=FIRST,
    peer_id="peer-0",
    tee_kind=3,
    enclave_key=OLD_ENCLAVE,
    hpke_public_key=HPKE,
    insecure=True,
    input_hash=SEALED,
    deadline=1_000_600,
    request='{"old": true}',
)


def _checking(index: int, base: Job, tried: str) -> Job:
    provider = (FIRST, SECOND)[index]
    return replace(
        base,
        status=JobStatus.CHECKING,
        candidate=index,
        provider=provider,
        peer_id=f"peer-{index}",
        tee_kind=3 + index,
        enclave_key=None,
        hpke_public_key="",
        insecure=False,
        input_hash=None,
        request="",
        tried=tried,
    )


def _check(index: int) -> CheckProvider:
    return CheckProvider(
        _effect("check", index),
        JOB,
        index,
        (FIRST, SECOND)[index],
        f"peer-{index}",
        3 + index,
        MEASUREMENT,
    )


# ---------------------------------------------------------------- submitting and choosing


def test_submit_records_every_field_asked_for_and_asks_the_scheduler() -> None:
    change = sc.JobSubmitRequested(
        "req-1",
        JOB,
        7,
        "onnx",
        MEASUREMENT,
        0b101000,
        2,
        10_000,
        600,
        3,
        768,
        42,
        1_700_000_000,
    )
    step = transition(CLIENT, _view(), change)
    assert step == Step(jobs=(SUBMITTED,), effects=(FindProviders(_effect("find", 0), JOB, 0),))
    assert transition(CLIENT, _view(SUBMITTED), change) == Step(
        rejected=f"job {JOB} already exists"
    )


def test_candidates_found_start_with_the_first_and_settle_the_search() -> None:
    step = transition(CLIENT, _view(SUBMITTED), sc.ProvidersFound(JOB, 4, CANDIDATES, ""))
    assert step == Step(
        jobs=(_checking(0, replace(SUBMITTED, candidates=CANDIDATES), ""),),
        effects=(_check(0),),
        settled=(Settlement(_effect("find", 4), True),),
    )


@pytest.mark.parametrize("offered, kept", [(2, 2), (3, 2), (1, 1)])
def test_candidates_are_capped_at_the_clients_maximum(offered: int, kept: int) -> None:
    found = [_candidate(FIRST, n) for n in range(offered)]
    step = transition(CLIENT, _view(SUBMITTED), sc.ProvidersFound(JOB, 0, json.dumps(found), ""))
    assert json.loads(step.jobs[0].candidates) == found[:kept]


def test_no_candidate_fails_the_job_with_the_schedulers_summary() -> None:
    step = transition(CLIENT, _view(SUBMITTED), sc.ProvidersFound(JOB, 0, "[]", "2 offers: full"))
    failed = replace(
        SUBMITTED, status=JobStatus.FAILED, error="no provider can take the job: 2 offers: full"
    )
    assert step == Step(jobs=(failed,), settled=(Settlement(_effect("find", 0), True),))


@pytest.mark.parametrize("job", [None, replace(SUBMITTED, status=JobStatus.CHECKING)])
def test_candidates_for_a_job_no_longer_searching_only_settle(job: Job | None) -> None:
    view = _view() if job is None else _view(job)
    step = transition(CLIENT, view, sc.ProvidersFound(JOB, 1, CANDIDATES, ""))
    assert step == Step(settled=(Settlement(_effect("find", 1), True),))


# ---------------------------------------------------------------- one candidate's stages


def test_accepted_evidence_keeps_the_enclave_and_seals_the_input_to_it() -> None:
    checking = _checking(1, replace(SUBMITTED, candidates=CANDIDATES), "")
    change = sc.ProviderChecked(JOB, 1, True, "ok", ENCLAVE, HPKE, 9, True)
    sealing = replace(
        checking,
        status=JobStatus.SEALING,
        enclave_key=ENCLAVE,
        hpke_public_key=HPKE,
        tee_kind=9,
        insecure=True,
    )
    assert transition(CLIENT, _view(checking), change) == Step(
        jobs=(sealing,),
        effects=(SealInput(_effect("seal", 1), JOB, 1, HPKE),),
        settled=(Settlement(_effect("check", 1), True),),
    )


def test_refused_evidence_drops_the_candidate_and_checks_the_next() -> None:
    checking = _checking(0, replace(SUBMITTED, candidates=CANDIDATES), "")
    change = sc.ProviderChecked(JOB, 0, False, "debug enclave", "", "", 3, False)
    assert transition(CLIENT, _view(checking), change) == Step(
        jobs=(_checking(1, checking, f"{FIRST} (evidence): debug enclave"),),
        effects=(_check(1),),
        settled=(Settlement(_effect("check", 0), True),),
    )


@pytest.mark.parametrize(
    "job",
    [
        None,
        # an answer about an earlier candidate
        _checking(1, replace(SUBMITTED, candidates=CANDIDATES), ""),
        # the right candidate, but already past this stage
        replace(
            _checking(0, replace(SUBMITTED, candidates=CANDIDATES), ""), status=JobStatus.SEALING
        ),
    ],
)
def test_an_evidence_answer_out_of_turn_only_settles(job: Job | None) -> None:
    view = _view() if job is None else _view(job)
    change = sc.ProviderChecked(JOB, 0, True, "ok", ENCLAVE, HPKE, 9, True)
    assert transition(CLIENT, view, change) == Step(
        settled=(Settlement(_effect("check", 0), True),)
    )


def test_sealed_input_sets_the_deadline_from_chain_time_and_asks_for_a_quote() -> None:
    sealing = replace(
        _checking(1, replace(SUBMITTED, candidates=CANDIDATES), ""),
        status=JobStatus.SEALING,
        enclave_key=ENCLAVE,
        hpke_public_key=HPKE,
    )
    step = transition(CLIENT, _view(sealing), sc.InputSealed(JOB, 1, SEALED, 999, 2_000_000))
    spec = "0x" + workload_spec_hash(bytes.fromhex(MEASUREMENT[2:]), ()).hex()
    request = {
        "specHash": spec,
        "inputHash": SEALED,
        "teeKinds": 0b101000,
        "measurement": MEASUREMENT,
        "minTcbStatus": 2,
        "maxPrice": 10_000,
        "deadline": 2_000_600,
        "nonce": 7,
    }
    quoting = replace(
        sealing,
        status=JobStatus.QUOTING,
        input_hash=SEALED,
        deadline=2_000_600,
        request=json.dumps(request),
    )
    assert step == Step(
        jobs=(quoting,),
        effects=(RequestQuote(_effect("quote", 1), JOB, 1, "peer-1", SECOND, json.dumps(request)),),
        settled=(Settlement(_effect("seal", 1), True),),
    )


def test_a_sealed_input_out_of_turn_only_settles() -> None:
    checking = _checking(0, replace(SUBMITTED, candidates=CANDIDATES), "")
    step = transition(CLIENT, _view(checking), sc.InputSealed(JOB, 0, SEALED, 9, 5))
    assert step == Step(settled=(Settlement(_effect("seal", 0), True),))


def test_a_quote_sends_match_job_paying_the_quoted_price() -> None:
    request = {
        "specHash": SPEC,
        "inputHash": SEALED,
        "teeKinds": 8,
        "measurement": MEASUREMENT,
        "minTcbStatus": 0,
        "maxPrice": 10_000,
        "deadline": 1_000_600,
        "nonce": 7,
    }
    quoting = replace(QUOTING_FIRST, request=json.dumps(request))
    offer = {
        "provider": FIRST,
        "enclaveKey": ENCLAVE,
        "teeKind": 3,
        "measurement": MEASUREMENT,
        "price": 9_999,
        "minDuration": 60,
        "maxDuration": 3600,
        "validUntil": 1_000_500,
        "requestHash": SPEC,
        "nonce": 9,
    }
    change = sc.QuoteReceived(JOB, 0, json.dumps(offer), "0xsig")
    args = [list(request.values()), list(offer.values()), "0xsig"]
    assert transition(CLIENT, _view(quoting), change) == Step(
        jobs=(replace(quoting, status=JobStatus.REQUESTED, price=9_999),),
        effects=(SendTransaction(_effect("matchJob"), "matchJob", json.dumps(args), 9_999),),
        settled=(Settlement(_effect("quote", 0), True),),
    )


def test_a_quote_out_of_turn_only_settles() -> None:
    change = sc.QuoteReceived(JOB, 1, "{}", "0xsig")
    assert transition(CLIENT, _view(QUOTING_FIRST), change) == Step(
        settled=(Settlement(_effect("quote", 1), True),)
    )


def test_dropping_a_candidate_clears_what_the_last_one_left() -> None:
    change = sc.CandidateFailed(JOB, 0, "quote", "declined: full")
    assert transition(CLIENT, _view(QUOTING_FIRST), change) == Step(
        jobs=(_checking(1, QUOTING_FIRST, f"{FIRST} (quote): declined: full"),),
        effects=(_check(1),),
        settled=(Settlement(_effect("quote", 0), False, "declined: full"),),
    )


def test_the_last_candidate_dropped_fails_the_job_with_every_reason() -> None:
    last = replace(QUOTING_FIRST, candidate=1, provider=SECOND, tried=f"{FIRST} (evidence): old")
    step = transition(CLIENT, _view(last), sc.CandidateFailed(JOB, 1, "quote", "gone"))
    failed = replace(
        last,
        status=JobStatus.FAILED,
        tried=f"{FIRST} (evidence): old; {SECOND} (quote): gone",
        error=(
            f"no acceptable provider among 2 candidates: {FIRST} (evidence): old; "
            f"{SECOND} (quote): gone"
        ),
        provider=None,
        peer_id="",
        enclave_key=None,
    )
    assert step == Step(jobs=(failed,), settled=(Settlement(_effect("quote", 1), False, "gone"),))


@pytest.mark.parametrize(
    "stage, action, status",
    [
        ("evidence", "check", JobStatus.CHECKING),
        ("seal", "seal", JobStatus.SEALING),
        ("quote", "quote", JobStatus.QUOTING),
        # a stage this version does not know is taken for the last one, the quote
        ("transport", "quote", JobStatus.QUOTING),
    ],
)
def test_a_failed_stage_settles_its_own_effect(stage: str, action: str, status: JobStatus) -> None:
    at_stage = replace(QUOTING_FIRST, status=status)
    step = transition(CLIENT, _view(at_stage), sc.CandidateFailed(JOB, 0, stage, "why"))
    assert step.settled == (Settlement(_effect(action, 0), False, "why"),)
    assert step.jobs == (_checking(1, at_stage, f"{FIRST} ({stage}): why"),)


def test_a_failure_of_another_stage_leaves_the_job_alone() -> None:
    sealing = replace(QUOTING_FIRST, status=JobStatus.SEALING)
    step = transition(CLIENT, _view(sealing), sc.CandidateFailed(JOB, 0, "quote", "late"))
    assert step == Step(settled=(Settlement(_effect("quote", 0), False, "late"),))


# ---------------------------------------------------------------- on chain

REQUESTED = replace(
    QUOTING_FIRST,
    status=JobStatus.REQUESTED,
    enclave_key=ENCLAVE,
    price=90,
    error="a retry",
    spec_hash=None,
)


def _job_matched(client: Address = ME) -> sc.StateChange:
    return _event(sc.JobMatched, JOB, client, SECOND, 95, 1_000_700, SPEC, CHAIN_INPUT)


def test_match_takes_the_chains_terms_and_hands_the_input_over() -> None:
    assigned = replace(
        REQUESTED,
        status=JobStatus.ASSIGNED,
        provider=SECOND,
        price=95,
        deadline=1_000_700,
        input_hash=CHAIN_INPUT,
        spec_hash=SPEC,
        error="",
        match_tx=TX,
    )
    hand_over = SendInput(_effect("input"), JOB, SECOND, "peer-0", ENCLAVE, CHAIN_INPUT, 1_000_700)
    assert transition(CLIENT, _view(REQUESTED), _job_matched()) == Step(
        jobs=(assigned,),
        effects=(hand_over,),
        settled=(Settlement(_effect("matchJob"), True),),
    )


@pytest.mark.parametrize("job", [None, replace(REQUESTED, status=JobStatus.ASSIGNED)])
def test_a_match_not_waited_for_only_settles(job: Job | None) -> None:
    view = _view() if job is None else _view(job)
    assert transition(CLIENT, view, _job_matched()) == Step(
        settled=(Settlement(_effect("matchJob"), True),)
    )


def test_a_match_of_another_client_is_not_ours() -> None:
    assert transition(CLIENT, _view(REQUESTED), _job_matched(SOMEONE)) == NO_STEP


ASSIGNED = replace(
    REQUESTED, status=JobStatus.ASSIGNED, provider=SECOND, input_hash=CHAIN_INPUT, error=""
)


def test_delivered_input_keeps_the_receipt() -> None:
    step = transition(CLIENT, _view(ASSIGNED), sc.InputDelivered(JOB, "0xreceipt"))
    assert step == Step(
        jobs=(replace(ASSIGNED, status=JobStatus.DELIVERED, receipt="0xreceipt"),),
        settled=(Settlement(_effect("input"), True),),
    )


def test_undeliverable_input_leaves_the_job_on_chain_until_the_deadline() -> None:
    step = transition(CLIENT, _view(ASSIGNED), sc.InputUndeliverable(JOB, "unreachable"))
    note = "input not delivered (unreachable); refund claimable after the deadline"
    assert step == Step(
        jobs=(replace(ASSIGNED, error=note),),
        settled=(Settlement(_effect("input"), False, "unreachable"),),
    )


@pytest.mark.parametrize("status", [JobStatus.DELIVERED, JobStatus.REFUNDED])
def test_input_answers_for_a_job_no_longer_waiting_only_settle(status: JobStatus) -> None:
    view = _view(replace(ASSIGNED, status=status))
    assert transition(CLIENT, view, sc.InputDelivered(JOB, "0xr")) == Step(
        settled=(Settlement(_effect("input"), True),)
    )
    assert transition(CLIENT, view, sc.InputUndeliverable(JOB, "gone")) == Step(
        settled=(Settlement(_effect("input"), False, "gone"),)
    )


def _pending_around(job_id: JobId) -> tuple[Effect, ...]:
    """Effects a job may still have waiting, and one of another job that must stay."""
    return (
        SendTransaction(_effect("claimTimeout"), "claimTimeout", "[]", 0),
        SendInput(_effect("input"), job_id, SECOND, "peer-0", ENCLAVE, CHAIN_INPUT, 1),
        SendTransaction(EffectId(f"cancelJob:{OTHER_JOB}"), "cancelJob", "[]", 0),
        FetchOutput(_effect("output"), job_id, SECOND, "peer-0", ENCLAVE, CHAIN_INPUT, OUT),
    )


@pytest.mark.parametrize(
    "status",
    [JobStatus.REQUESTED, JobStatus.ASSIGNED, JobStatus.DELIVERED, JobStatus.SETTLED],
)
def test_settlement_fetches_the_output_and_ends_every_other_wait(status: JobStatus) -> None:
    job = replace(ASSIGNED, status=status, error="retrying")
    change = _event(sc.JobSettled, JOB, SECOND, OUT, 93)
    step = transition(CLIENT, _view(job, pending=_pending_around(JOB)), change)
    fetch = FetchOutput(_effect("output"), JOB, SECOND, "peer-0", ENCLAVE, CHAIN_INPUT, OUT)
    assert step == Step(
        jobs=(replace(job, status=JobStatus.SETTLED, output_hash=OUT, error="", settle_tx=TX),),
        effects=(fetch,),
        settled=(
            Settlement(_effect("claimTimeout"), False, "job settled"),
            Settlement(_effect("input"), False, "job settled"),
        ),
    )


@pytest.mark.parametrize(
    "job",
    [
        None,
        replace(ASSIGNED, client=SOMEONE),
        replace(ASSIGNED, status=JobStatus.QUOTING),
        replace(ASSIGNED, status=JobStatus.VERIFIED),
        replace(ASSIGNED, status=JobStatus.FAILED),
    ],
)
def test_settlement_of_a_job_not_ours_on_chain_does_nothing(job: Job | None) -> None:
    view = _view() if job is None else _view(job)
    assert transition(CLIENT, view, _event(sc.JobSettled, JOB, SECOND, OUT, 1)) == NO_STEP


SETTLED = replace(ASSIGNED, status=JobStatus.SETTLED, output_hash=OUT)


def test_verified_output_is_kept_with_its_digest_and_size() -> None:
    step = transition(CLIENT, _view(SETTLED), sc.OutputVerified(JOB, "beef", 12))
    assert step == Step(
        jobs=(replace(SETTLED, status=JobStatus.VERIFIED, output_sha256="beef", output_size=12),),
        settled=(Settlement(_effect("output"), True),),
    )


def test_rejected_output_fails_the_job_with_the_reason() -> None:
    step = transition(CLIENT, _view(SETTLED), sc.OutputRejected(JOB, "bad signature"))
    assert step == Step(
        jobs=(replace(SETTLED, status=JobStatus.FAILED, error="output rejected: bad signature"),),
        settled=(Settlement(_effect("output"), False, "bad signature"),),
    )


@pytest.mark.parametrize("job", [None, replace(SETTLED, status=JobStatus.VERIFIED)])
def test_output_answers_for_a_job_not_settled_only_settle(job: Job | None) -> None:
    view = _view() if job is None else _view(job)
    assert transition(CLIENT, view, sc.OutputVerified(JOB, "beef", 12)) == Step(
        settled=(Settlement(_effect("output"), True),)
    )
    assert transition(CLIENT, view, sc.OutputRejected(JOB, "late")) == Step(
        settled=(Settlement(_effect("output"), False, "late"),)
    )


# ---------------------------------------------------------------- refunds


def _claim(job: Job, why: str, receipt: str) -> Step:
    send = SendTransaction(_effect("claimTimeout"), "claimTimeout", json.dumps([JOB, receipt]), 0)
    return Step(jobs=(replace(job, error=f"claiming the refund: {why}"),), effects=(send,))


@pytest.mark.parametrize(
    "job, receipt",
    [(ASSIGNED, "0x"), (replace(ASSIGNED, status=JobStatus.DELIVERED, receipt="0xr"), "0xr")],
)
def test_the_deadline_claims_the_refund_with_the_receipt_when_there_is_one(
    job: Job, receipt: str
) -> None:
    step = transition(CLIENT, _view(job), sc.DeadlinePassed(JOB, 1_000_701))
    assert step == _claim(job, "deadline passed", receipt)
    asked = transition(CLIENT, _view(job), sc.ClaimTimeoutRequested("r1", JOB))
    assert asked == _claim(job, "asked by the user", receipt)


@pytest.mark.parametrize(
    "status",
    [JobStatus.REQUESTED, JobStatus.SETTLED, JobStatus.VERIFIED, JobStatus.REFUNDED],
)
def test_no_claim_for_a_job_not_waiting_on_its_provider(status: JobStatus) -> None:
    view = _view(replace(ASSIGNED, status=status))
    assert transition(CLIENT, view, sc.DeadlinePassed(JOB, 1_000_701)) == NO_STEP
    assert transition(CLIENT, view, sc.ClaimTimeoutRequested("r1", JOB)) == Step(
        rejected=f"job {JOB} is not assigned to a provider"
    )
    assert transition(CLIENT, _view(), sc.DeadlinePassed(JOB, 1_000_701)) == NO_STEP


@pytest.mark.parametrize(
    "change, why",
    [
        (_event(sc.JobRefunded, JOB, ME, 95, 10), "job refunded"),
        (_event(sc.JobReleased, JOB, ME, SECOND, 95), "job refunded"),
    ],
)
def test_a_refund_ends_the_job_and_every_wait(change: sc.StateChange, why: str) -> None:
    step = transition(CLIENT, _view(ASSIGNED, pending=_pending_around(JOB)), change)
    assert step == Step(
        jobs=(replace(ASSIGNED, status=JobStatus.REFUNDED),),
        settled=(
            Settlement(_effect("claimTimeout"), False, why),
            Settlement(_effect("input"), False, why),
            Settlement(_effect("output"), False, why),
        ),
    )


def test_a_cancellation_ends_the_job_and_every_wait() -> None:
    change = _event(sc.JobCancelled, JOB, ME, 95)
    step = transition(CLIENT, _view(ASSIGNED, pending=_pending_around(JOB)), change)
    assert step == Step(
        jobs=(replace(ASSIGNED, status=JobStatus.CANCELLED),),
        settled=(
            Settlement(_effect("claimTimeout"), False, "job cancelled"),
            Settlement(_effect("input"), False, "job cancelled"),
            Settlement(_effect("output"), False, "job cancelled"),
        ),
    )


@pytest.mark.parametrize(
    "change",
    [
        _event(sc.JobRefunded, JOB, SOMEONE, 95, 10),
        _event(sc.JobReleased, JOB, SOMEONE, SECOND, 95),
        _event(sc.JobCancelled, JOB, SOMEONE, 95),
    ],
)
def test_refunds_and_cancellations_of_others_do_nothing(change: sc.StateChange) -> None:
    assert transition(CLIENT, _view(ASSIGNED, pending=_pending_around(JOB)), change) == NO_STEP
    mine = replace(change, job_id=OTHER_JOB, client=ME)  # type: ignore[call-arg]
    assert transition(CLIENT, _view(ASSIGNED), mine) == NO_STEP


def test_cancel_sends_cancel_job_for_an_open_job_only() -> None:
    open_job = replace(SUBMITTED, status=JobStatus.OPEN)
    step = transition(CLIENT, _view(open_job), sc.CancelJobRequested("r2", JOB))
    send = SendTransaction(_effect("cancelJob"), "cancelJob", json.dumps([JOB]), 0)
    assert step == Step(effects=(send,))
    for view in (_view(), _view(REQUESTED), _view(ASSIGNED)):
        assert transition(CLIENT, view, sc.CancelJobRequested("r2", JOB)) == Step(
            rejected=f"job {JOB} is neither open nor before its match"
        )


@pytest.mark.parametrize(
    "status", [JobStatus.SUBMITTED, JobStatus.CHECKING, JobStatus.SEALING, JobStatus.QUOTING]
)
def test_cancel_before_the_match_ends_the_job_here_and_drops_its_pending_work(
    status: JobStatus,
) -> None:
    job = replace(QUOTING_FIRST, status=status)
    quote = RequestQuote(_effect("quote", 0), JOB, 0, "peer-0", FIRST, "{}")
    step = transition(CLIENT, _view(job, pending=(quote,)), sc.CancelJobRequested("r2", JOB))
    assert step == Step(
        jobs=(replace(job, status=JobStatus.CANCELLED, error="cancelled before matching"),),
        settled=(Settlement(_effect("quote", 0), False, "job cancelled"),),
    )


# ---------------------------------------------------------------- our transactions


def test_a_confirmed_transaction_settles_its_effect() -> None:
    change = sc.TxConfirmed(_effect("matchJob"), TX, BlockNumber(3))
    assert transition(CLIENT, _view(REQUESTED), change) == Step(
        settled=(Settlement(_effect("matchJob"), True),)
    )


def test_a_reverted_match_moves_on_to_the_next_candidate() -> None:
    change = sc.TxReverted(_effect("matchJob"), None, "OfferExpired")
    assert transition(CLIENT, _view(REQUESTED), change) == Step(
        jobs=(_checking(1, REQUESTED, f"{FIRST} (matchJob): OfferExpired"),),
        effects=(_check(1),),
        settled=(Settlement(_effect("matchJob"), False, "OfferExpired"),),
    )


@pytest.mark.parametrize(
    "action, job",
    [
        # matched meanwhile: the escrow is held, the job is not given up
        ("matchJob", ASSIGNED),
        # a claim that came too early for the chain: kept, the deadline tries again
        ("claimTimeout", REQUESTED),
        ("claimTimeout", ASSIGNED),
    ],
)
def test_another_reverted_transaction_only_records_the_reason(action: str, job: Job) -> None:
    change = sc.TxReverted(_effect(action), TX, "TooEarly")
    assert transition(CLIENT, _view(job), change) == Step(
        jobs=(replace(job, error="TooEarly"),),
        settled=(Settlement(_effect(action), False, "TooEarly"),),
    )


def test_a_reverted_transaction_of_an_unknown_job_only_settles() -> None:
    change = sc.TxReverted(EffectId("withdraw:r9"), None, "no balance")
    assert transition(CLIENT, _view(ASSIGNED), change) == Step(
        settled=(Settlement(EffectId("withdraw:r9"), False, "no balance"),)
    )
