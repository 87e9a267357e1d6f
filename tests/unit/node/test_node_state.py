"""Pure transitions per role and the codec: the same inputs always give the same outputs."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.config.model import Role
from node.state import changes as sc
from node.state.codec import decode_change, decode_snapshot, encode_change, encode_snapshot
from node.state.effects import (
    CheckEvidence,
    CheckProvider,
    Contract,
    Effect,
    FetchOutput,
    FindProviders,
    Publish,
    RequestApprovals,
    RequestQuote,
    SealInput,
    SendInput,
    SendTransaction,
    Settlement,
    SignBatch,
    StartJob,
)
from node.state.errors import UnexpectedChange
from node.state.machine import transition
from node.state.model import (
    ApprovalStatus,
    ClientTerms,
    Identity,
    JobStatus,
    KeyStatus,
    NodeState,
    ProviderTerms,
    StateView,
)
from node.state.values import Address, BlockNumber, EffectId, Hash32, JobId, TxHash

PROVIDER = Address("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
CLIENT = Address("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC")
OTHER = Address("0x90F79bf6EB2c4f870365E785982E1f101E93b906")
ENCLAVE = Address("0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65")
JOB = JobId("0x" + "11" * 32)
H = Hash32("0x" + "22" * 32)
MEASUREMENT = Hash32("0x" + "ab" * 32)
SEALED = Hash32("0x" + "5e" * 32)
OUT = Hash32("0x" + "0a" * 32)

TERMS = ProviderTerms(
    peer_id="12D3KooWProvider",
    cpu_cores=4,
    memory_mib=4096,
    floor_price_per_hour=3600,
    surge_permille=0,
    min_duration_s=60,
    max_duration_s=3600,
)
PROVIDER_ME = Identity(Role.PROVIDER, PROVIDER, provider=TERMS)
CLIENT_ME = Identity(Role.CLIENT, CLIENT, client=ClientTerms(max_candidates=3))
VERIFIER_ME = Identity(Role.VERIFIER, OTHER)

_block = iter(range(10, 10_000))


def _event(cls: type, *fields: object) -> sc.StateChange:
    n = next(_block)
    return cls(BlockNumber(n), H, TxHash("0x" + f"{n:064x}"), f"k{n}", *fields)  # type: ignore[no-any-return]


def _matched(job: JobId = JOB, provider: Address = PROVIDER, input_hash: Hash32 = SEALED):
    return _event(sc.JobMatched, job, CLIENT, provider, 100, 5000, H, input_hash)


class Machine:
    """Runs changes through the transitions the way the state service does."""

    def __init__(self, me: Identity) -> None:
        self.me = me
        self.state = NodeState()
        self.view = StateView(self.state)
        self.effects: list[Effect] = []
        self.seq = 0

    def feed(self, *changes: sc.StateChange) -> str:
        rejected = ""
        for change in changes:
            self.seq += 1
            step = transition(self.me, self.view, change)
            self.effects.extend(step.effects)
            self.state.absorb(step, self.seq)
            rejected = step.rejected or step.reply
        return rejected

    def last(self, kind: type[Effect]) -> Effect:
        found = [e for e in self.effects if isinstance(e, kind)]
        assert found, f"no {kind.__name__} among {self.effects}"
        return found[-1]

    def job(self, job_id: JobId = JOB):
        return self.state.jobs[job_id]


# ---------------------------------------------------------------- client


def _submit(job: JobId = JOB) -> sc.JobSubmitRequested:
    return sc.JobSubmitRequested(
        "req-1", job, 7, "wasm", MEASUREMENT, 1 << 5, 0, 10_000, 600, 1, 256, 42, 1_700_000_000
    )


def _candidates(*providers: Address) -> str:
    return json.dumps(
        [
            {
                "provider": p,
                "peer_id": f"peer-{i}",
                "tee_kind": 5,
                "measurement": MEASUREMENT,
                "price_per_hour": 3600,
            }
            for i, p in enumerate(providers)
        ]
    )


def _client_to_quote(m: Machine, *providers: Address) -> None:
    m.feed(_submit(), sc.ProvidersFound(JOB, 0, _candidates(*providers), ""))
    m.feed(sc.ProviderChecked(JOB, 0, True, "ok", ENCLAVE, "0x" + "33" * 32, 5, True))
    m.feed(sc.InputSealed(JOB, 0, SEALED, 1000, 1_000_000))


def _offer(price: int = 100) -> str:
    return json.dumps(
        {
            "provider": PROVIDER,
            "enclaveKey": ENCLAVE,
            "teeKind": 5,
            "measurement": MEASUREMENT,
            "price": price,
            "minDuration": 60,
            "maxDuration": 3600,
            "validUntil": 1_000_500,
            "requestHash": H,
            "nonce": 9,
        }
    )


def test_client_submit_asks_the_scheduler_first() -> None:
    m = Machine(CLIENT_ME)
    m.feed(_submit())
    assert m.job().status is JobStatus.SUBMITTED
    find = m.last(FindProviders)
    assert find.job_id == JOB and find.attempt == 0


def test_client_with_no_candidates_fails_with_the_schedulers_summary() -> None:
    m = Machine(CLIENT_ME)
    m.feed(_submit(), sc.ProvidersFound(JOB, 0, "[]", "3 offers: 3 too expensive"))
    assert m.job().status is JobStatus.FAILED
    assert m.job().error == "no provider can take the job: 3 offers: 3 too expensive"
    assert m.state.pending == {}


def test_client_checks_seals_quotes_then_pays() -> None:
    m = Machine(CLIENT_ME)
    m.feed(_submit(), sc.ProvidersFound(JOB, 0, _candidates(PROVIDER), ""))
    check = m.last(CheckProvider)
    assert (check.provider, check.peer_id, check.measurement) == (PROVIDER, "peer-0", MEASUREMENT)
    assert m.job().status is JobStatus.CHECKING
    m.feed(sc.ProviderChecked(JOB, 0, True, "ok", ENCLAVE, "0x" + "33" * 32, 5, True))
    seal = m.last(SealInput)
    assert seal.hpke_public_key == "0x" + "33" * 32
    assert m.job().status is JobStatus.SEALING and m.job().insecure
    m.feed(sc.InputSealed(JOB, 0, SEALED, 1000, 1_000_000))
    quote = m.last(RequestQuote)
    request = json.loads(quote.request)
    assert request["inputHash"] == SEALED
    assert request["deadline"] == 1_000_000 + 600
    assert request["nonce"] == 7 and request["maxPrice"] == 10_000
    assert list(request) == [
        "specHash",
        "inputHash",
        "teeKinds",
        "measurement",
        "minTcbStatus",
        "maxPrice",
        "deadline",
        "nonce",
    ]
    m.feed(sc.QuoteReceived(JOB, 0, _offer(), "0x" + "99" * 65))
    send = m.last(SendTransaction)
    assert send.function == "matchJob" and send.value == 100
    args = json.loads(send.args)
    assert args[0][1] == SEALED and args[0][6] == 1_000_600  # tuple in EIP-712 field order
    assert args[1][:2] == [PROVIDER, ENCLAVE] and args[1][4] == 100 and args[1][5] == 60
    assert args[2] == "0x" + "99" * 65
    assert m.job().status is JobStatus.REQUESTED
    assert set(m.state.pending) == {EffectId(f"matchJob:{JOB}")}


def test_client_refused_evidence_moves_to_the_next_candidate_with_the_reason_kept() -> None:
    m = Machine(CLIENT_ME)
    m.feed(_submit(), sc.ProvidersFound(JOB, 0, _candidates(OTHER, PROVIDER), ""))
    m.feed(sc.ProviderChecked(JOB, 0, False, "sim evidence refused", "", "", 5, True))
    check = m.last(CheckProvider)
    assert check.candidate == 1 and check.provider == PROVIDER
    assert m.job().tried == f"{OTHER} (evidence): sim evidence refused"
    assert not any(isinstance(e, SealInput) for e in m.effects)  # nothing went to OTHER


def test_client_runs_out_of_candidates_and_says_why_for_each() -> None:
    m = Machine(CLIENT_ME)
    m.feed(_submit(), sc.ProvidersFound(JOB, 0, _candidates(OTHER, PROVIDER), ""))
    m.feed(sc.ProviderChecked(JOB, 0, False, "debug enclave", "", "", 5, False))
    m.feed(sc.ProviderChecked(JOB, 1, True, "ok", ENCLAVE, "0x" + "33" * 32, 5, True))
    m.feed(sc.InputSealed(JOB, 1, SEALED, 1000, 1_000_000))
    m.feed(sc.CandidateFailed(JOB, 1, "quote", "declined: full"))
    job = m.job()
    assert job.status is JobStatus.FAILED
    assert job.error == (
        f"no acceptable provider among 2 candidates: {OTHER} (evidence): debug enclave; "
        f"{PROVIDER} (quote): declined: full"
    )
    assert m.state.pending == {}


def test_client_candidate_count_is_capped_by_its_terms() -> None:
    m = Machine(CLIENT_ME)
    m.feed(_submit(), sc.ProvidersFound(JOB, 0, _candidates(*[OTHER] * 5), ""))
    assert len(json.loads(m.job().candidates)) == 3


def test_client_stale_answers_for_an_earlier_candidate_are_ignored() -> None:
    m = Machine(CLIENT_ME)
    m.feed(_submit(), sc.ProvidersFound(JOB, 0, _candidates(OTHER, PROVIDER), ""))
    m.feed(sc.ProviderChecked(JOB, 0, False, "bad", "", "", 5, False))
    before = m.job()
    m.feed(sc.CandidateFailed(JOB, 0, "evidence", "late"))
    assert m.job() == before


def test_client_match_revert_tries_the_next_candidate() -> None:
    m = Machine(CLIENT_ME)
    _client_to_quote(m, PROVIDER, OTHER)
    m.feed(sc.QuoteReceived(JOB, 0, _offer(), "0x" + "99" * 65))
    m.feed(sc.TxReverted(EffectId(f"matchJob:{JOB}"), None, "OfferExpired"))
    assert m.job().status is JobStatus.CHECKING and m.job().candidate == 1
    assert "OfferExpired" in m.job().tried


def test_client_matched_sends_input_then_holds_the_receipt() -> None:
    m = Machine(CLIENT_ME)
    _client_to_quote(m, PROVIDER)
    m.feed(sc.QuoteReceived(JOB, 0, _offer(), "0x" + "99" * 65), _matched())
    send = m.last(SendInput)
    assert (send.provider, send.peer_id, send.enclave_key) == (PROVIDER, "peer-0", ENCLAVE)
    assert send.input_hash == SEALED and send.deadline == 5000
    assert m.job().status is JobStatus.ASSIGNED
    assert EffectId(f"matchJob:{JOB}") not in m.state.pending
    m.feed(sc.InputDelivered(JOB, "0x" + "77" * 65))
    assert m.job().status is JobStatus.DELIVERED and m.job().receipt == "0x" + "77" * 65
    assert m.state.pending == {}


def test_client_settled_fetches_checks_and_verifies() -> None:
    m = Machine(CLIENT_ME)
    _client_to_quote(m, PROVIDER)
    m.feed(sc.QuoteReceived(JOB, 0, _offer(), "0x" + "99" * 65), _matched())
    m.feed(sc.InputDelivered(JOB, "0x" + "77" * 65))
    m.feed(_event(sc.JobSettled, JOB, PROVIDER, OUT, 98))
    fetch = m.last(FetchOutput)
    assert (fetch.output_hash, fetch.input_hash, fetch.enclave_key) == (OUT, SEALED, ENCLAVE)
    assert m.job().status is JobStatus.SETTLED
    m.feed(sc.OutputVerified(JOB, "beef", 12))
    assert m.job().status is JobStatus.VERIFIED
    assert (m.job().output_sha256, m.job().output_size) == ("beef", 12)
    assert m.state.pending == {}


def test_client_settlement_drops_an_upload_still_retrying() -> None:
    m = Machine(CLIENT_ME)
    _client_to_quote(m, PROVIDER)
    m.feed(sc.QuoteReceived(JOB, 0, _offer(), "0x" + "99" * 65), _matched())
    m.feed(_event(sc.JobSettled, JOB, PROVIDER, OUT, 98))
    assert set(m.state.pending) == {EffectId(f"output:{JOB}")}


def test_client_deadline_claims_the_refund_and_refund_drops_pending_effects() -> None:
    m = Machine(CLIENT_ME)
    _client_to_quote(m, PROVIDER)
    m.feed(sc.QuoteReceived(JOB, 0, _offer(), "0x" + "99" * 65), _matched())
    m.feed(sc.InputUndeliverable(JOB, "provider unreachable"))
    assert m.job().status is JobStatus.ASSIGNED  # still on chain: not failed
    assert "refund claimable" in m.job().error
    m.feed(sc.DeadlinePassed(JOB, 5001))
    claim = m.last(SendTransaction)
    assert claim.function == "claimTimeout" and json.loads(claim.args) == [JOB, "0x"]
    m.feed(_event(sc.JobRefunded, JOB, CLIENT, 100, 0))
    assert m.job().status is JobStatus.REFUNDED
    assert m.state.pending == {}


def test_client_refund_drops_an_input_hand_over_still_pending() -> None:
    m = Machine(CLIENT_ME)
    _client_to_quote(m, PROVIDER)
    m.feed(sc.QuoteReceived(JOB, 0, _offer(), "0x" + "99" * 65), _matched())
    assert EffectId(f"input:{JOB}") in m.state.pending
    m.feed(_event(sc.JobRefunded, JOB, CLIENT, 100, 0))
    assert m.state.pending == {}


def test_client_deadline_before_match_or_after_verify_does_nothing() -> None:
    m = Machine(CLIENT_ME)
    m.feed(_submit(), sc.DeadlinePassed(JOB, 9))
    assert not any(isinstance(e, SendTransaction) for e in m.effects)


def test_client_claim_on_an_unassigned_job_is_refused() -> None:
    m = Machine(CLIENT_ME)
    assert "not assigned" in m.feed(sc.ClaimTimeoutRequested("r", JOB))


def test_client_cancel_before_the_match_ends_the_job_without_a_transaction() -> None:
    m = Machine(CLIENT_ME)
    _client_to_quote(m, PROVIDER)
    assert m.job().status is JobStatus.QUOTING
    assert m.feed(sc.CancelJobRequested("c", JOB)) == ""
    assert m.job().status is JobStatus.CANCELLED
    assert m.state.pending == {}  # the quote asked for is dropped
    m.feed(sc.QuoteReceived(JOB, 0, _offer(), "0x" + "44" * 65))  # the answer comes late
    assert m.job().status is JobStatus.CANCELLED
    assert not any(isinstance(e, SendTransaction) for e in m.effects)


def test_client_cancel_of_a_matched_job_is_refused() -> None:
    m = Machine(CLIENT_ME)
    _client_to_quote(m, PROVIDER)
    m.feed(sc.QuoteReceived(JOB, 0, _offer(), "0x" + "44" * 65))
    assert "neither open nor before its match" in m.feed(sc.CancelJobRequested("c", JOB))
    assert m.job().status is JobStatus.REQUESTED


def test_client_duplicate_submit_is_refused() -> None:
    m = Machine(CLIENT_ME)
    m.feed(_submit())
    assert "already exists" in m.feed(_submit())


def test_client_ignores_jobs_of_other_clients() -> None:
    m = Machine(CLIENT_ME)
    m.feed(_event(sc.JobMatched, JOB, OTHER, PROVIDER, 1, 2, H, H))
    m.feed(_event(sc.JobSettled, JOB, PROVIDER, OUT, 1))
    assert m.state.jobs == {} and m.effects == []


# ---------------------------------------------------------------- provider


def _boot(m: Machine, *, registered: bool = True) -> None:
    m.feed(sc.ProviderBooted("boot-1", registered, registered, 10**18))
    m.feed(sc.EnclaveStarted("boot-1", "upper", "wasm", 5, MEASUREMENT, ENCLAVE, "0x" + "33" * 32))


def _registered(m: Machine) -> None:
    _boot(m)
    m.feed(sc.KeyApproved(ENCLAVE, json.dumps({"abi": [1], "expiresAt": 9_999}), '["0x01"]'))
    m.feed(
        sc.TxConfirmed(EffectId(f"registerKey:{ENCLAVE}"), TxHash("0x" + "aa" * 32), BlockNumber(3))
    )


def _quote_request(job: JobId = JOB, cores: int = 1, max_price: int = 10**6) -> sc.QuoteRequested:
    return sc.QuoteRequested(
        f"q-{job[-4:]}",
        job,
        CLIENT,
        MEASUREMENT,
        1 << 5,
        max_price,
        1_000 + 1800,
        cores,
        256,
        1_000,
    )


def test_provider_boot_attests_registers_the_key_then_publishes() -> None:
    m = Machine(PROVIDER_ME)
    _boot(m)
    assert m.state.keys[ENCLAVE].status is KeyStatus.ATTESTING
    assert m.last(RequestApprovals).enclave_key == ENCLAVE
    m.feed(sc.KeyApproved(ENCLAVE, json.dumps({"abi": [1, 2], "expiresAt": 9_999}), '["0x01"]'))
    register = m.last(SendTransaction)
    assert (register.function, register.contract) == ("registerKey", Contract.VERIFIER)
    assert json.loads(register.args) == [[1, 2], ["0x01"]]
    assert m.state.keys[ENCLAVE].status is KeyStatus.REGISTERING
    assert m.state.keys[ENCLAVE].expires_at == 9_999
    m.feed(
        sc.TxConfirmed(EffectId(f"registerKey:{ENCLAVE}"), TxHash("0x" + "aa" * 32), BlockNumber(3))
    )
    assert m.state.keys[ENCLAVE].status is KeyStatus.REGISTERED
    listing = json.loads(m.last(Publish).listing)
    assert listing["cpu_cores"] == 4 and listing["measurement"] == MEASUREMENT
    assert listing["min_duration"] == 60


def test_provider_not_registered_registers_with_its_stake_before_attesting() -> None:
    m = Machine(Identity(Role.PROVIDER, PROVIDER, provider=ProviderTerms(stake=5, peer_id="p")))
    _boot(m, registered=False)
    register = m.last(SendTransaction)
    assert (register.function, register.contract, register.value) == (
        "register",
        Contract.REGISTRY,
        5,
    )
    # The registry takes the peer id's multihash bytes: base58 "p" is the byte 0x2f.
    assert json.loads(register.args) == ["0x2f", 5]
    assert not any(isinstance(e, RequestApprovals) for e in m.effects)
    m.feed(sc.TxConfirmed(EffectId("register:boot-1"), TxHash("0x" + "ab" * 32), BlockNumber(2)))
    assert m.state.facts.registered
    assert m.last(RequestApprovals).enclave_key == ENCLAVE


def test_provider_not_registered_without_a_stake_is_refused_with_the_fix() -> None:
    m = Machine(PROVIDER_ME)
    reason = m.feed(sc.ProviderBooted("boot-1", False, False, 0))
    assert "not registered" in reason and "provider.stake" in reason
    assert m.effects == []


def test_provider_key_refused_by_the_committee_keeps_the_reason() -> None:
    m = Machine(PROVIDER_ME)
    _boot(m)
    m.feed(sc.KeyRefused(ENCLAVE, "verifier 0xV: sim evidence is INSECURE, policy refuses it"))
    key = m.state.keys[ENCLAVE]
    assert key.status is KeyStatus.REFUSED and "INSECURE" in key.reason
    assert m.state.pending == {}


def test_provider_bids_within_capacity_and_declines_what_does_not_fit() -> None:
    m = Machine(PROVIDER_ME)
    _registered(m)
    reply = json.loads(m.feed(_quote_request()))
    assert reply["enclave_key"] == ENCLAVE
    assert reply["price"] == 1800  # 3600 wei/h floor for the 1800 s the deadline leaves
    assert reply["valid_until"] == 1_000 + TERMS.quote_ttl_s
    assert m.job().status is JobStatus.OPEN and m.job().cpu_cores == 1
    refused = m.feed(_quote_request(JobId("0x" + "12" * 32), cores=8))
    assert refused == "decline: needs 8 CPU cores, offers 4"


def test_provider_refuses_a_deadline_shorter_than_its_minimum() -> None:
    m = Machine(PROVIDER_ME)
    _registered(m)
    short = sc.QuoteRequested("q", JOB, CLIENT, MEASUREMENT, 1 << 5, 10**6, 1_030, 1, 256, 1_000)
    assert m.feed(short) == "deadline leaves 30 s, this provider needs at least 60 s"


def test_provider_refuses_unknown_measurement_and_unpaying_jobs() -> None:
    m = Machine(PROVIDER_ME)
    _registered(m)
    other = sc.QuoteRequested("q", JOB, CLIENT, H, 1 << 5, 10**6, 2_800, 1, 256, 1_000)
    assert "no registered enclave" in m.feed(other)
    assert m.feed(_quote_request(max_price=10)).startswith("decline:")


def test_provider_runs_a_matched_job_once_its_input_arrived() -> None:
    m = Machine(PROVIDER_ME)
    _registered(m)
    m.feed(_quote_request(), _matched())
    assert m.job().status is JobStatus.ASSIGNED
    assert json.loads(m.last(Publish).listing)["cpu_cores"] == 3  # one core held
    wrong = m.feed(sc.InputReceived(JOB, H, 10, ENCLAVE))
    assert wrong.startswith("input hash")
    reply = json.loads(m.feed(sc.InputReceived(JOB, SEALED, 10, ENCLAVE)))
    assert reply == {"spec_hash": H, "input_hash": SEALED}
    start = m.last(StartJob)
    assert (start.job_id, start.input_hash, start.enclave_key) == (JOB, SEALED, ENCLAVE)
    m.feed(sc.JobExecuted(JOB, OUT, "0x" + "44" * 65, 1_100))
    submit = m.last(SendTransaction)
    assert submit.function == "submitResult"
    assert json.loads(submit.args) == [JOB, OUT, "0x" + "44" * 65]
    m.feed(_event(sc.JobSettled, JOB, PROVIDER, OUT, 98))
    assert m.job().status is JobStatus.SETTLED and m.job().payout == 98
    assert m.state.facts.earned == 98
    assert json.loads(m.last(Publish).listing)["cpu_cores"] == 4  # capacity freed
    assert all(not e.startswith(("start:", "submitResult:")) for e in m.state.pending)


def test_provider_input_for_a_key_that_is_not_running_is_refused() -> None:
    m = Machine(PROVIDER_ME)
    _registered(m)
    m.feed(_quote_request(), _matched())
    assert "not running here" in m.feed(sc.InputReceived(JOB, SEALED, 10, OTHER))


def test_provider_ignores_jobs_matched_to_others_and_marks_its_quote_taken() -> None:
    m = Machine(PROVIDER_ME)
    _registered(m)
    m.feed(_quote_request(), _matched(provider=OTHER))
    assert m.job().status is JobStatus.TAKEN
    m.feed(_matched(JobId("0x" + "99" * 32), provider=OTHER))
    assert JobId("0x" + "99" * 32) not in m.state.jobs


def test_provider_withdraws_once_earnings_reach_the_threshold() -> None:
    me = Identity(Role.PROVIDER, PROVIDER, provider=ProviderTerms(withdraw_threshold=150))
    m = Machine(me)
    _registered(m)
    for i, job in enumerate((JobId("0x" + "a1" * 32), JobId("0x" + "a2" * 32))):
        m.feed(_matched(job), sc.InputReceived(job, SEALED, 1, ENCLAVE))
        m.feed(sc.JobExecuted(job, OUT, "0x01", 5), _event(sc.JobSettled, job, PROVIDER, OUT, 100))
        withdrawals = [
            e for e in m.effects if isinstance(e, SendTransaction) and e.function == "withdraw"
        ]
        assert len(withdrawals) == i
    assert json.loads(withdrawals[0].args) == [200, PROVIDER]
    assert m.state.facts.earned == 0


def test_provider_batches_results_until_the_batch_is_full() -> None:
    me = Identity(
        Role.PROVIDER, PROVIDER, provider=ProviderTerms(batch_size=2, batch_max_wait_s=30)
    )
    m = Machine(me)
    _registered(m)
    jobs = [JobId("0x" + f"{i:064x}") for i in (1, 2)]
    for job in jobs:
        m.feed(_matched(job), sc.InputReceived(job, SEALED, 1, ENCLAVE))
    m.feed(sc.JobExecuted(jobs[0], OUT, "0x01", 100))
    assert m.job(jobs[0]).status is JobStatus.READY
    assert not any(isinstance(e, SignBatch) for e in m.effects)
    m.feed(sc.JobExecuted(jobs[1], OUT, "0x02", 101))
    sign = m.last(SignBatch)
    assert json.loads(sign.job_ids) == jobs and sign.enclave_key == ENCLAVE
    assert {m.job(j).status for j in jobs} == {JobStatus.SUBMITTING}
    m.feed(sc.BatchSigned(sign.batch_id, sign.job_ids, sign.output_hashes, "0x" + "55" * 65))
    submit = m.last(SendTransaction)
    assert submit.function == "submitResults"
    assert json.loads(submit.args) == [jobs, [OUT, OUT], "0x" + "55" * 65]


def test_provider_flushes_a_partial_batch_only_once_it_waited_long_enough() -> None:
    me = Identity(
        Role.PROVIDER, PROVIDER, provider=ProviderTerms(batch_size=5, batch_max_wait_s=30)
    )
    m = Machine(me)
    _registered(m)
    m.feed(
        _matched(), sc.InputReceived(JOB, SEALED, 1, ENCLAVE), sc.JobExecuted(JOB, OUT, "0x1", 100)
    )
    m.feed(sc.BatchDue(ENCLAVE, 129))
    assert not any(isinstance(e, SignBatch) for e in m.effects)
    m.feed(sc.BatchDue(ENCLAVE, 130))
    assert json.loads(m.last(SignBatch).job_ids) == [JOB]


def test_provider_restart_retires_old_keys_and_fails_jobs_sealed_to_them() -> None:
    m = Machine(PROVIDER_ME)
    _registered(m)
    m.feed(_matched(), sc.InputReceived(JOB, SEALED, 1, ENCLAVE))
    assert EffectId(f"start:{JOB}") in m.state.pending
    m.feed(sc.ProviderBooted("boot-2", True, True, 10**18))
    assert m.state.keys[ENCLAVE].status is KeyStatus.RETIRED
    assert m.job().status is JobStatus.FAILED
    assert m.job().error == "its enclave instance ended with a restart"
    assert EffectId(f"start:{JOB}") not in m.state.pending
    # Given back at once: refunded now, and never slashed for a timeout.
    release = m.last(SendTransaction)
    assert (release.function, json.loads(release.args)) == ("releaseJob", [JOB])


def test_provider_restart_gives_back_a_job_still_waiting_for_input_to_a_lost_key() -> None:
    m = Machine(PROVIDER_ME)
    _registered(m)
    m.feed(_quote_request(), _matched())
    assert m.job().status is JobStatus.ASSIGNED and m.job().enclave_key == ENCLAVE
    m.feed(sc.ProviderBooted("boot-2", True, True, 10**18))
    assert m.job().status is JobStatus.FAILED
    assert EffectId(f"releaseJob:{JOB}") in m.state.pending


def test_provider_restart_submits_results_of_a_lost_key_on_their_own_signatures() -> None:
    me = Identity(
        Role.PROVIDER, PROVIDER, provider=ProviderTerms(batch_size=3, batch_max_wait_s=30)
    )
    m = Machine(me)
    _registered(m)
    jobs = [JobId("0x" + f"{i:064x}") for i in (1, 2, 3)]
    for job in jobs:
        m.feed(_matched(job), sc.InputReceived(job, SEALED, 1, ENCLAVE))
    m.feed(sc.JobExecuted(jobs[0], OUT, "0x01", 100))
    m.feed(sc.BatchDue(ENCLAVE, 200))  # jobs[0] waits in a batch nobody signed yet
    batch = m.last(SignBatch)
    m.feed(sc.JobExecuted(jobs[1], OUT, "0x02", 201))  # jobs[1] waits for a batch
    m.feed(sc.ProviderBooted("boot-2", True, True, 10**18))
    assert not m.view.is_pending(batch.effect_id)
    sent = {
        json.loads(e.args)[0]: json.loads(e.args)[2]
        for e in m.effects
        if isinstance(e, SendTransaction) and e.function == "submitResult"
    }
    assert sent == {jobs[0]: "0x01", jobs[1]: "0x02"}
    assert {m.job(j).status for j in jobs[:2]} == {JobStatus.SUBMITTING}
    assert m.job(jobs[2]).status is JobStatus.FAILED  # was running: given back


def test_provider_rotation_starts_a_new_instance_and_retires_the_old_key_once_replaced() -> None:
    m = Machine(PROVIDER_ME)
    _registered(m)
    m.feed(sc.KeyExpiring(ENCLAVE, 9_000))
    assert m.last(Effect).effect_id == f"rotate:{ENCLAVE}"
    new = Address("0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc")
    m.feed(sc.EnclaveStarted("boot-1", "upper", "wasm", 5, MEASUREMENT, new, "0x" + "34" * 32))
    m.feed(sc.KeyApproved(new, json.dumps({"abi": [], "expiresAt": 99_999}), "[]"))
    m.feed(sc.TxConfirmed(EffectId(f"registerKey:{new}"), TxHash("0x" + "bb" * 32), BlockNumber(9)))
    assert m.state.keys[new].status is KeyStatus.REGISTERED
    assert m.state.keys[ENCLAVE].status is KeyStatus.RETIRED
    assert EffectId(f"rotate:{ENCLAVE}") not in m.state.pending


def test_client_claim_with_the_receipt_lets_the_chain_slash() -> None:
    m = Machine(CLIENT_ME)
    _client_to_quote(m, PROVIDER)
    m.feed(sc.QuoteReceived(JOB, 0, _offer(), "0x" + "99" * 65), _matched())
    m.feed(sc.InputDelivered(JOB, "0x" + "77" * 65), sc.DeadlinePassed(JOB, 5001))
    assert json.loads(m.last(SendTransaction).args) == [JOB, "0x" + "77" * 65]


def test_client_released_job_is_refunded_and_its_effects_dropped() -> None:
    m = Machine(CLIENT_ME)
    _client_to_quote(m, PROVIDER)
    m.feed(sc.QuoteReceived(JOB, 0, _offer(), "0x" + "99" * 65), _matched())
    m.feed(_event(sc.JobReleased, JOB, CLIENT, PROVIDER, 100))
    assert m.job().status is JobStatus.REFUNDED and m.state.pending == {}


def test_provider_gives_a_failed_job_back_before_its_deadline() -> None:
    m = Machine(PROVIDER_ME)
    _registered(m)
    m.feed(_matched(), sc.InputReceived(JOB, SEALED, 1, ENCLAVE))
    m.feed(sc.JobExecutionFailed(JOB, "timeout: ran past 60 s"))
    assert m.job().status is JobStatus.FAILED and m.job().error == "timeout: ran past 60 s"
    release = [e for e in m.effects if isinstance(e, SendTransaction)][-1]
    assert (release.function, json.loads(release.args)) == ("releaseJob", [JOB])
    m.feed(_event(sc.JobReleased, JOB, CLIENT, PROVIDER, 100))
    assert m.job().status is JobStatus.REFUNDED
    assert [e for e in m.state.pending if JOB in e] == []


def test_provider_refund_drops_pending_effects_and_frees_capacity() -> None:
    m = Machine(PROVIDER_ME)
    _registered(m)
    m.feed(_matched(), sc.InputReceived(JOB, SEALED, 1, ENCLAVE))
    m.feed(_event(sc.JobRefunded, JOB, CLIENT, 100, 5))
    assert m.job().status is JobStatus.REFUNDED
    assert not any(e.startswith("start:") for e in m.state.pending)
    assert json.loads(m.last(Publish).listing)["cpu_cores"] == 4


def test_accept_on_a_job_that_is_not_open_is_refused() -> None:
    m = Machine(PROVIDER_ME)
    assert "not open" in m.feed(sc.AcceptJobRequested("r", JOB, OTHER, 600))


# ---------------------------------------------------------------- verifier


def test_verifier_checks_then_answers_with_its_signature() -> None:
    m = Machine(VERIFIER_ME)
    m.feed(sc.ApprovalRequested("a1", PROVIDER, ENCLAVE, H, "peer"))
    assert m.last(CheckEvidence).request_id == "a1"
    reply = json.loads(m.feed(sc.EvidenceChecked("a1", True, "policy ok", "0xsig")))
    assert reply == {"approved": True, "reason": "policy ok", "signature": "0xsig"}
    approval = m.state.approvals["a1"]
    assert approval.status is ApprovalStatus.APPROVED and approval.signature == "0xsig"
    assert m.state.pending == {}


def test_verifier_refusal_keeps_its_reasons_and_no_signature() -> None:
    m = Machine(VERIFIER_ME)
    m.feed(sc.ApprovalRequested("a1", PROVIDER, ENCLAVE, H, "peer"))
    reply = json.loads(m.feed(sc.EvidenceChecked("a1", False, "sim refused", "")))
    assert reply == {"approved": False, "reason": "sim refused", "signature": ""}
    assert m.state.approvals["a1"].status is ApprovalStatus.REFUSED


def test_verifier_records_who_asked_and_checks_exactly_that_evidence() -> None:
    m = Machine(VERIFIER_ME)
    assert m.feed(sc.ApprovalRequested("a1", PROVIDER, ENCLAVE, H, "12D3KooWAsker")) == ""
    approval = m.state.approvals["a1"]
    assert (approval.provider, approval.enclave_key, approval.peer_id) == (
        PROVIDER,
        ENCLAVE,
        "12D3KooWAsker",
    )
    assert approval.status is ApprovalStatus.CHECKING
    check = m.last(CheckEvidence)
    assert (check.effect_id, check.request_id, check.evidence_hash) == ("check:a1", "a1", H)
    # The same request again is refused by id, whatever else it says; nothing new to check.
    again = sc.ApprovalRequested("a1", OTHER, OTHER, SEALED, "other")
    assert m.feed(again) == "request a1 was already received"
    assert m.state.approvals["a1"].provider == PROVIDER and len(m.effects) == 1


def test_verifier_answer_settles_its_check_and_keeps_the_approval_fields() -> None:
    m = Machine(VERIFIER_ME)
    m.feed(sc.ApprovalRequested("a1", PROVIDER, ENCLAVE, H, "peer"))
    step = transition(
        VERIFIER_ME, m.view, sc.EvidenceChecked("a1", True, "all checks passed", "0xsig")
    )
    assert step.settled == (Settlement(EffectId("check:a1"), True, "all checks passed"),)
    assert step.reply == ('{"approved": true, "reason": "all checks passed", "signature": "0xsig"}')
    approval = step.approval
    assert approval is not None
    assert (approval.provider, approval.enclave_key, approval.peer_id, approval.reason) == (
        PROVIDER,
        ENCLAVE,
        "peer",
        "all checks passed",
    )


def test_verifier_approves_only_an_accepted_check_with_a_signature() -> None:
    for accepted, signature in ((True, ""), (False, "0xsig")):
        m = Machine(VERIFIER_ME)
        m.feed(sc.ApprovalRequested("a1", PROVIDER, ENCLAVE, H, "peer"))
        reply = json.loads(m.feed(sc.EvidenceChecked("a1", accepted, "why", signature)))
        assert reply == {"approved": False, "reason": "why", "signature": ""}
        assert m.state.approvals["a1"].status is ApprovalStatus.REFUSED
        assert m.state.approvals["a1"].signature == ""


def test_verifier_answer_for_an_unknown_or_decided_request_only_settles() -> None:
    m = Machine(VERIFIER_ME)
    unknown = transition(VERIFIER_ME, m.view, sc.EvidenceChecked("zz", True, "r", "0xs"))
    assert unknown.approval is None and unknown.reply == ""
    assert unknown.settled == (Settlement(EffectId("check:zz"), True, "r"),)
    m.feed(sc.ApprovalRequested("a1", PROVIDER, ENCLAVE, H, "peer"))
    m.feed(sc.EvidenceChecked("a1", False, "refused", ""))
    late = transition(VERIFIER_ME, m.view, sc.EvidenceChecked("a1", True, "late", "0xs"))
    assert late.approval is None and late.reply == ""
    assert m.state.approvals["a1"].status is ApprovalStatus.REFUSED


def test_verifier_transaction_outcomes_settle_their_effects() -> None:
    view = StateView(NodeState())
    confirmed = transition(
        VERIFIER_ME, view, sc.TxConfirmed(EffectId("e1"), TxHash("0x" + "33" * 32), BlockNumber(3))
    )
    assert confirmed.settled == (Settlement(EffectId("e1"), True),)
    reverted = transition(VERIFIER_ME, view, sc.TxReverted(EffectId("e2"), None, "no funds"))
    assert reverted.settled == (Settlement(EffectId("e2"), False, "no funds"),)


def test_a_role_handed_a_change_it_does_not_handle_raises() -> None:
    with pytest.raises(
        UnexpectedChange, match="verifier role has no handler for JobSubmitRequested"
    ):
        transition(VERIFIER_ME, StateView(NodeState()), _submit())
    with pytest.raises(UnexpectedChange, match="QuoteRequested"):
        transition(CLIENT_ME, StateView(NodeState()), _quote_request())


# ---------------------------------------------------------------- codec and replay


job_ids = st.sampled_from([JobId("0x" + f"{i:064x}") for i in range(1, 5)])
provider_changes = st.one_of(
    st.builds(lambda j, p: _matched(j, p), job_ids, st.sampled_from([PROVIDER, OTHER])),
    st.builds(lambda j: _quote_request(j), job_ids),
    st.builds(lambda j: sc.InputReceived(j, SEALED, 1, ENCLAVE), job_ids),
    st.builds(lambda j: sc.JobExecuted(j, H, "0x01", 5), job_ids),
    st.builds(lambda j: sc.JobExecutionFailed(j, "crash"), job_ids),
    st.builds(lambda j: sc.AcceptJobRequested("r" + j[-3:], j, OTHER, 600), job_ids),
    st.builds(lambda j: _event(sc.JobSettled, j, PROVIDER, H, 1), job_ids),
    st.builds(lambda j: _event(sc.JobRefunded, j, CLIENT, 1, 0), job_ids),
    st.builds(lambda j: sc.TxReverted(EffectId(f"submitResult:{j}"), None, "x"), job_ids),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(provider_changes, max_size=30))
def test_replaying_encoded_changes_rebuilds_the_same_state(changes: list[sc.StateChange]) -> None:
    def run(seq: list[sc.StateChange]) -> NodeState:
        m = Machine(PROVIDER_ME)
        _registered(m)
        m.feed(*seq)
        return m.state

    direct = run(changes)
    decoded = [decode_change(type(c).__name__, encode_change(c)) for c in changes]
    assert decoded == changes
    assert run(decoded) == direct
    assert decode_snapshot(encode_snapshot(direct)) == direct
