"""Provider side: capacity ledger, admission, priority queue, bid strategy, re-offering."""

from typing import Any

import pytest

from scheduler.admission import (
    AdmissionOutcome,
    AdmissionPolicy,
    JobQueue,
    admit,
    run_admission,
)
from scheduler.bidding import (
    BidAction,
    BidDecision,
    ProviderState,
    decide_bid,
    price_floor_rule,
    reoffer,
)
from scheduler.capacity import CapacityLedger
from scheduler.errors import (
    DuplicateReservationError,
    InvalidPriceError,
    OverCommitError,
    UnknownReservationError,
)
from scheduler.models import (
    GpuModel,
    GpuOffer,
    GpuRequirement,
    JobId,
    JobRequirements,
    Measurement,
    PeerId,
    ProviderAddress,
    ResourceOffer,
    Resources,
    TcbStatus,
    TeeKind,
    Timestamp,
    Wei,
    WorkloadKind,
)

NOW = Timestamp(50_000)
MILLI = 10**15
MACHINE = Resources(gpus=8, cpu_cores=64, memory_mib=512 * 1024)


def job(job_id: str, gpus: int = 1, **overrides: Any) -> JobRequirements:
    fields: dict[str, Any] = {
        "job_id": JobId(job_id),
        "workload": WorkloadKind.WASM,
        "accepted_tee_kinds": frozenset({TeeKind.TDX}),
        "max_price_per_hour": Wei(10 * MILLI),
        "deadline": Timestamp(NOW + 3600),
        "duration_s": 600,
        "gpu": GpuRequirement(gpus, model=GpuModel("H100")) if gpus else None,
        "cpu_cores": 4,
        "memory_mib": 8 * 1024,
    }
    fields.update(overrides)
    return JobRequirements(**fields)


def own_offer(**overrides: Any) -> ResourceOffer:
    fields: dict[str, Any] = {
        "provider": ProviderAddress("0x" + "aa" * 20),
        "peer_id": PeerId("me"),
        "nonce": 3,
        "price_per_hour": Wei(5 * MILLI),
        "cpu_cores": MACHINE.cpu_cores,
        "memory_mib": MACHINE.memory_mib,
        "tee_kind": TeeKind.TDX,
        "measurement": Measurement("33" * 32),
        "tcb_status": TcbStatus.UP_TO_DATE,
        "valid_from": Timestamp(0),
        "valid_until": Timestamp(NOW * 2),
        "gpu": GpuOffer(GpuModel("H100"), 80 * 1024, MACHINE.gpus, True),
    }
    fields.update(overrides)
    return ResourceOffer(**fields)


def state(ledger: CapacityLedger | None = None, **overrides: Any) -> ProviderState:
    return ProviderState(
        offer=overrides.pop("offer", own_offer()),
        ledger=ledger or CapacityLedger(MACHINE),
        floor_price_per_hour=overrides.pop("floor", Wei(4 * MILLI)),
        **overrides,
    )


# Capacity ledger


def test_ledger_reserves_and_releases_exactly() -> None:
    ledger = CapacityLedger(MACHINE)
    ledger = ledger.reserve(JobId("a"), Resources(2, 8, 1024))
    ledger = ledger.reserve(JobId("b"), Resources(6, 8, 1024))
    assert ledger.free == Resources(0, 48, 510 * 1024)
    assert ledger.utilization_permille == 1000
    assert not ledger.can_reserve(Resources(1, 0, 0))
    released = ledger.release(JobId("a"))
    assert released.free == Resources(2, 56, 511 * 1024)
    assert set(released.reservations) == {"b"}
    # The old ledger is untouched: decisions can be computed before they are adopted.
    assert set(ledger.reservations) == {"a", "b"}


def test_ledger_refuses_over_commit_duplicates_and_unknown_releases() -> None:
    ledger = CapacityLedger(MACHINE).reserve(JobId("a"), Resources(8, 1, 1))
    with pytest.raises(OverCommitError, match="needs 1 GPUs, 0 free"):
        ledger.reserve(JobId("b"), Resources(1, 1, 1))
    with pytest.raises(DuplicateReservationError):
        ledger.reserve(JobId("a"), Resources(0, 1, 1))
    with pytest.raises(UnknownReservationError):
        ledger.release(JobId("zzz"))
    with pytest.raises(OverCommitError):
        CapacityLedger(MACHINE, {JobId("x"): Resources(9, 0, 0)})


def test_ledger_reservations_cannot_be_mutated_behind_its_back() -> None:
    backing = {JobId("a"): Resources(1, 1, 1)}
    ledger = CapacityLedger(MACHINE, backing)
    backing[JobId("b")] = Resources(8, 0, 0)
    assert set(ledger.reservations) == {"a"}
    with pytest.raises(TypeError):
        ledger.reservations[JobId("c")] = Resources()  # type: ignore[index]


# Admission control and the queue


def test_admit_explains_each_outcome() -> None:
    ledger = CapacityLedger(MACHINE).reserve(JobId("busy"), Resources(6, 0, 0))
    decision, after = admit(job("a", gpus=2), ledger, NOW)
    assert decision.admitted and after.free.gpus == 0

    decision, same = admit(job("b", gpus=4), ledger, NOW)
    assert decision.outcome is AdmissionOutcome.WAITING
    assert decision.reason == "waiting for capacity: needs 4 GPUs, 2 free"
    assert same is ledger

    decision, _ = admit(job("c", gpus=16), ledger, NOW)
    assert decision.outcome is AdmissionOutcome.NEVER_FITS
    assert decision.reason == "never fits this machine: needs 16 GPUs, 8 in total"

    decision, _ = admit(job("d", deadline=Timestamp(NOW + 60)), ledger, NOW)
    assert decision.outcome is AdmissionOutcome.DEADLINE_UNREACHABLE
    assert decision.reason == "deadline unreachable: needs 600 s, 60 s left"


def test_queue_orders_by_price_then_deadline_then_arrival() -> None:
    queue = JobQueue()
    queue = queue.push(job("cheap", max_price_per_hour=Wei(MILLI)))
    queue = queue.push(job("late", deadline=Timestamp(NOW + 9000)))
    queue = queue.push(job("soon", deadline=Timestamp(NOW + 900)))
    queue = queue.push(job("late-2", deadline=Timestamp(NOW + 9000)))
    queue = queue.push(job("rich", max_price_per_hour=Wei(50 * MILLI)))
    assert queue.job_ids == ("rich", "soon", "late", "late-2", "cheap")
    assert len(queue) == 5


def test_small_jobs_are_not_starved_behind_a_large_one() -> None:
    ledger = CapacityLedger(MACHINE).reserve(JobId("running"), Resources(4, 0, 0))
    queue = JobQueue().push(job("large", gpus=8, max_price_per_hour=Wei(20 * MILLI)))
    queue = queue.push(job("small-1", gpus=1)).push(job("small-2", gpus=1))
    round_ = run_admission(queue, ledger, NOW)
    assert round_.admitted == ("small-1", "small-2")
    assert round_.queue.job_ids == ("large",)
    assert round_.queue.entries[0].bypassed == 1
    assert round_.ledger.free.gpus == 2


def test_a_large_job_bypassed_too_often_gets_capacity_drained_for_it() -> None:
    ledger = CapacityLedger(MACHINE).reserve(JobId("running"), Resources(4, 0, 0))
    queue = JobQueue().push(job("large", gpus=8, max_price_per_hour=Wei(20 * MILLI)))
    policy = AdmissionPolicy(starvation_limit=2)
    for n in range(2):
        queue = queue.push(job(f"small-{n}", gpus=1))
        round_ = run_admission(queue, ledger, NOW, policy)
        assert round_.admitted == (f"small-{n}",)
        ledger, queue = round_.ledger, round_.queue
    queue = queue.push(job("small-late", gpus=1))
    held = run_admission(queue, ledger, NOW, policy)
    assert held.admitted == ()
    (decision,) = [d for d in held.decisions if d.job_id == "small-late"]
    assert decision.outcome is AdmissionOutcome.HELD_FOR_STARVING_JOB
    assert "large" in decision.reason
    # Once the running jobs finish, the large job goes first.
    for finished in ("running", "small-0", "small-1"):
        ledger = ledger.release(JobId(finished))
    after = run_admission(held.queue, ledger, NOW, policy)
    assert after.admitted == ("large",)
    assert after.queue.job_ids == ("small-late",)


def test_impossible_jobs_leave_the_queue_with_their_reason() -> None:
    queue = JobQueue().push(job("huge", gpus=9)).push(job("late", deadline=Timestamp(NOW + 1)))
    round_ = run_admission(queue, CapacityLedger(MACHINE), NOW)
    assert len(round_.queue) == 0
    assert {d.outcome for d in round_.decisions} == {
        AdmissionOutcome.NEVER_FITS,
        AdmissionOutcome.DEADLINE_UNREACHABLE,
    }


# Bid strategy


def test_bid_price_rises_with_utilization_and_is_capped_by_the_job() -> None:
    idle = decide_bid(job("a", gpus=1), state(), NOW)
    assert idle.action is BidAction.BID and idle.rule == "utilization pricing"
    assert idle.price_per_hour == 4 * MILLI + 4 * MILLI * 500 * 125 // 1_000_000
    assert idle.reason.startswith("bid 0.00425 ETH/h: floor 0.004 ETH/h, utilization")

    busy_ledger = CapacityLedger(MACHINE).reserve(JobId("x"), Resources(7, 0, 0))
    busy = decide_bid(job("b", gpus=1), state(busy_ledger), NOW)
    assert busy.price_per_hour == 6 * MILLI
    capped = decide_bid(
        job("c", gpus=1, max_price_per_hour=Wei(5 * MILLI)), state(busy_ledger), NOW
    )
    assert capped.price_per_hour == 5 * MILLI


def test_bid_declines_below_floor_with_both_prices() -> None:
    decision = decide_bid(job("a", max_price_per_hour=Wei(3 * MILLI)), state(), NOW)
    assert decision == BidDecision(
        BidAction.DECLINE,
        "price floor",
        "max price 0.003 ETH/h is below our floor 0.004 ETH/h",
    )


def test_bid_declines_requirements_the_machine_never_meets() -> None:
    decision = decide_bid(job("a", gpus=16), state(), NOW)
    assert decision.action is BidAction.DECLINE
    assert decision.reason == "needs 16 GPUs, offers 8"
    outdated = state(offer=own_offer(tcb_status=TcbStatus.OUT_OF_DATE))
    assert decide_bid(job("b"), outdated, NOW).reason == (
        "needs TCB UpToDate or better, offers OutOfDate"
    )


def test_sim_provider_declines_jobs_that_do_not_accept_insecure_enclaves() -> None:
    sim_state = state(offer=own_offer(tee_kind=TeeKind.SIM))
    decision = decide_bid(job("a"), sim_state, NOW)
    assert decision.action is BidAction.DECLINE
    assert "INSECURE" in decision.reason
    devnet = job("b", accepted_tee_kinds=frozenset({TeeKind.SIM}))
    assert decide_bid(devnet, sim_state, NOW).action is BidAction.BID


def test_full_provider_defers_and_bids_again_when_capacity_frees() -> None:
    full = CapacityLedger(MACHINE).reserve(JobId("running"), Resources(8, 8, 1024))
    waiting = [job("w-cheap", gpus=2, max_price_per_hour=Wei(6 * MILLI)), job("w-rich", gpus=4)]
    first = [decide_bid(j, state(full), NOW) for j in waiting]
    assert [d.action for d in first] == [BidAction.DEFER, BidAction.DEFER]
    assert first[0].reason == "full now: needs 2 GPUs, 0 free; will bid again when capacity frees"

    still_full = reoffer(waiting, state(full), NOW)
    assert still_full.bids == ()
    assert len(still_full.still_deferred) == 2

    freed = full.release(JobId("running")).reserve(JobId("other"), Resources(4, 0, 0))
    later = reoffer(waiting, state(freed), NOW)
    # Only 4 GPUs free: the better-paying job gets the bid, the other waits for more.
    assert [j.job_id for j, _ in later.bids] == ["w-rich"]
    assert [j.job_id for j in later.still_deferred] == ["w-cheap"]


def test_custom_rule_chain_decides_first_come() -> None:
    def no_onnx(j: JobRequirements, s: ProviderState, now: Timestamp) -> BidDecision | None:
        if j.workload is WorkloadKind.ONNX:
            return BidDecision(BidAction.DECLINE, "no onnx", "we do not run onnx today")
        return None

    onnx_job = job("a", workload=WorkloadKind.ONNX)
    assert decide_bid(onnx_job, state(), NOW, (no_onnx, price_floor_rule)).rule == "no onnx"
    assert decide_bid(job("b"), state(), NOW, (no_onnx,)) == BidDecision(
        BidAction.DECLINE, "no rule", "no bid rule made a decision"
    )


def test_provider_state_refuses_negative_prices() -> None:
    with pytest.raises(InvalidPriceError):
        state(floor=Wei(-1))
