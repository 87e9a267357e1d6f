"""Money or a job lost is a WARNING line with the job id; good news is not."""

from __future__ import annotations

import logging

import pytest

from node.config.model import Role
from node.daemon.alerts import warn_about
from node.state import changes as sc
from node.state.model import Identity, Job, JobStatus, NodeState, StateView
from node.state.values import Address, BlockNumber, EffectId, Hash32, JobId, TxHash

ME = Address("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
OTHER = Address("0x90F79bf6EB2c4f870365E785982E1f101E93b906")
JOB = JobId("0x" + "11" * 32)
H = Hash32("0x" + "22" * 32)


def _view(provider: Address) -> StateView:
    state = NodeState()
    state.jobs[JOB] = Job(JOB, JobStatus.RUNNING, client=OTHER, provider=provider)
    return StateView(state)


def _refund(slashed: int) -> sc.JobRefunded:
    return sc.JobRefunded(BlockNumber(5), H, TxHash("0x" + "33" * 32), "k", JOB, OTHER, 10, slashed)


def test_a_refund_against_this_provider_is_a_warning_with_the_slash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="node.alerts"):
        warn_about(Identity(Role.PROVIDER, ME), _view(ME), _refund(7))
        warn_about(Identity(Role.PROVIDER, ME), _view(OTHER), _refund(7))  # not ours
        warn_about(Identity(Role.CLIENT, OTHER), _view(ME), _refund(7))  # the client's gain
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            f"job {JOB} refunded to its client after the deadline: 7 wei of our stake slashed",
        )
    ]


def test_a_failed_settlement_and_a_failed_run_are_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    me = Identity(Role.PROVIDER, ME)
    with caplog.at_level(logging.INFO, logger="node.alerts"):
        warn_about(
            me, _view(ME), sc.TxReverted(EffectId(f"submitResult:{JOB}"), None, "KeyExpired")
        )
        warn_about(me, _view(ME), sc.TxReverted(EffectId("withdraw:r1"), None, "Nothing"))
        warn_about(me, _view(ME), sc.JobExecutionFailed(JOB, "timeout"))
    assert [r.getMessage() for r in caplog.records] == [
        f"settlement failed (submitResult for job {JOB}): KeyExpired",
        f"job {JOB} failed in the enclave: timeout",
    ]
    assert {r.levelname for r in caplog.records} == {"WARNING"}
