"""Pure transitions per role and the codec: the same inputs always give the same outputs."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from node.config.model import Role
from node.state import changes as sc
from node.state.codec import decode_change, decode_snapshot, encode_change, encode_snapshot
from node.state.effects import Effect, SendTransaction, StartJob
from node.state.machine import transition
from node.state.model import Identity, JobStatus, NodeState, StateView
from node.state.values import Address, BlockNumber, EffectId, Hash32, JobId, TxHash

PROVIDER = Address("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
CLIENT = Address("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC")
OTHER = Address("0x90F79bf6EB2c4f870365E785982E1f101E93b906")
JOB = JobId("0x" + "11" * 32)
H = Hash32("0x" + "22" * 32)


def _matched(job: JobId = JOB, provider: Address = PROVIDER, block: int = 10) -> sc.JobMatched:
    return sc.JobMatched(
        BlockNumber(block),
        H,
        TxHash("0x" + "33" * 32),
        f"k{job[-4:]}",
        job,
        CLIENT,
        provider,
        100,
        5000,
        H,
        H,
    )


def _run(role: Role, me: Address, changes: list[sc.StateChange]) -> tuple[NodeState, list[Effect]]:
    state = NodeState()
    view = StateView(state)
    effects: list[Effect] = []
    for seq, change in enumerate(changes, 1):
        step = transition(Identity(role, me), view, change)
        effects.extend(step.effects)
        state.absorb(step, seq)
    return state, effects


def test_provider_runs_a_matched_job_and_submits_its_result() -> None:
    state, effects = _run(
        Role.PROVIDER,
        PROVIDER,
        [
            _matched(),
            sc.JobExecuted(JOB, H, "0x" + "44" * 65),
            sc.JobSettled(BlockNumber(12), H, TxHash("0x" + "55" * 32), "k2", JOB, PROVIDER, H, 98),
        ],
    )
    assert isinstance(effects[0], StartJob)
    assert isinstance(effects[1], SendTransaction) and effects[1].function == "submitResult"
    assert json.loads(effects[1].args)[0] == JOB
    assert state.jobs[JOB].status is JobStatus.SETTLED
    assert state.pending == {}  # StartJob settled by the result, submitResult by JobSettled


def test_provider_ignores_jobs_matched_to_others() -> None:
    state, effects = _run(Role.PROVIDER, PROVIDER, [_matched(provider=OTHER)])
    assert state.jobs == {} and effects == []


def test_a_revert_fails_the_waiting_job_with_its_reason() -> None:
    submit = EffectId(f"submitResult:{JOB}")
    state, _ = _run(
        Role.PROVIDER,
        PROVIDER,
        [
            _matched(),
            sc.JobExecuted(JOB, H, "0x00"),
            sc.TxReverted(submit, None, "DeadlinePassed(5000)"),
        ],
    )
    assert state.jobs[JOB].status is JobStatus.FAILED
    assert state.jobs[JOB].error == "DeadlinePassed(5000)"
    assert submit not in state.pending


def test_provider_gives_a_failed_job_back() -> None:
    release = EffectId(f"releaseJob:{JOB}")
    state, effects = _run(
        Role.PROVIDER,
        PROVIDER,
        [
            _matched(),
            sc.JobExecutionFailed(JOB, "trap: unreachable"),
            sc.JobReleased(
                BlockNumber(11), H, TxHash("0x" + "88" * 32), "k4", JOB, CLIENT, PROVIDER, 100
            ),
        ],
    )
    assert isinstance(effects[1], SendTransaction) and effects[1].function == "releaseJob"
    assert json.loads(effects[1].args) == [JOB]
    assert state.jobs[JOB].status is JobStatus.REFUNDED
    assert release not in state.pending and state.pending == {}


def test_client_sees_a_released_job_refunded() -> None:
    state, _ = _run(
        Role.CLIENT,
        CLIENT,
        [
            sc.MatchJobRequested("r1", JOB, "[]", 100),
            _matched(),
            sc.JobReleased(
                BlockNumber(11), H, TxHash("0x" + "88" * 32), "k4", JOB, CLIENT, PROVIDER, 100
            ),
        ],
    )
    assert state.jobs[JOB].status is JobStatus.REFUNDED


def test_client_match_then_refund() -> None:
    state, effects = _run(
        Role.CLIENT,
        CLIENT,
        [
            sc.MatchJobRequested("r1", JOB, "[]", 100),
            _matched(),
            sc.ClaimTimeoutRequested("r2", JOB),
            sc.JobRefunded(
                BlockNumber(20), H, TxHash("0x" + "66" * 32), "k3", JOB, CLIENT, 100, 100
            ),
        ],
    )
    kinds = [type(e).__name__ + ":" + e.effect_id.split(":")[0] for e in effects]
    assert kinds == ["SendTransaction:matchJob", "SendInput:input", "SendTransaction:claimTimeout"]
    claim = effects[2]
    assert isinstance(claim, SendTransaction)
    assert json.loads(claim.args) == [JOB, "0x"]  # no input receipt: refund only
    assert state.jobs[JOB].status is JobStatus.REFUNDED
    assert list(state.pending) == [
        EffectId(f"input:{JOB}")
    ]  # the input hand-over has no chain trace


def test_actions_on_the_wrong_job_are_rejected_with_a_reason() -> None:
    view = StateView(NodeState())
    step = transition(
        Identity(Role.PROVIDER, PROVIDER), view, sc.AcceptJobRequested("r", JOB, OTHER, 600)
    )
    assert "not open" in step.rejected and step.effects == ()


def test_verifier_checks_then_publishes() -> None:
    state, effects = _run(
        Role.VERIFIER,
        OTHER,
        [
            sc.ApprovalRequested("a1", PROVIDER, CLIENT, H),
            sc.EvidenceChecked("a1", True, "policy ok", "0xsig"),
        ],
    )
    assert [type(e).__name__ for e in effects] == ["CheckEvidence", "Publish"]
    assert state.approvals["a1"].status.value == "approved"


job_ids = st.sampled_from([JobId("0x" + f"{i:064x}") for i in range(1, 5)])
change_strategy = st.one_of(
    st.builds(lambda j, p: _matched(j, p), job_ids, st.sampled_from([PROVIDER, OTHER])),
    st.builds(lambda j: sc.JobExecuted(j, H, "0x01"), job_ids),
    st.builds(lambda j: sc.JobExecutionFailed(j, "crash"), job_ids),
    st.builds(lambda j: sc.AcceptJobRequested("r" + j[-3:], j, OTHER, 600), job_ids),
    st.builds(
        lambda j: sc.JobSettled(
            BlockNumber(9), H, TxHash("0x" + "77" * 32), "s" + j[-3:], j, PROVIDER, H, 1
        ),
        job_ids,
    ),
    st.builds(lambda j: sc.TxReverted(EffectId(f"submitResult:{j}"), None, "x"), job_ids),
    st.builds(
        lambda j: sc.JobReleased(
            BlockNumber(9), H, TxHash("0x" + "99" * 32), "r" + j[-3:], j, CLIENT, PROVIDER, 1
        ),
        job_ids,
    ),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(change_strategy, max_size=30))
def test_replaying_encoded_changes_rebuilds_the_same_state(changes: list[sc.StateChange]) -> None:
    direct, _ = _run(Role.PROVIDER, PROVIDER, changes)
    decoded = [decode_change(type(c).__name__, encode_change(c)) for c in changes]
    assert decoded == changes
    replayed, _ = _run(Role.PROVIDER, PROVIDER, decoded)
    assert replayed == direct
    assert decode_snapshot(encode_snapshot(direct)) == direct
