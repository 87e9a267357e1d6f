"""Each match constraint on both sides of its edge, with the exact failure it explains.

A failure is compared whole (kind, required, offered, message, closeness), so a wrong figure in
a reason, or a wrong nearest miss, fails here and not only in a user's report.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from scheduler.constraints import (
    Constraint,
    ConstraintFailure,
    ConstraintKind,
    CpuCoresConstraint,
    DeadlineConstraint,
    EvidenceConstraint,
    GpuCcModeConstraint,
    GpuCountConstraint,
    GpuModelConstraint,
    GpuVramConstraint,
    InsecureSimConstraint,
    LatencyConstraint,
    MeasurementConstraint,
    MemoryConstraint,
    OfferValidityConstraint,
    PriceConstraint,
    RegionConstraint,
    TcbStatusConstraint,
    TeeKindConstraint,
    WorkloadConstraint,
    check,
    constraints_for,
    failures_of,
)
from scheduler.matching import Rejection, summarize
from scheduler.models import (
    GpuModel,
    GpuOffer,
    GpuRequirement,
    JobId,
    JobRequirements,
    Measurement,
    PeerId,
    ProviderAddress,
    Region,
    ResourceOffer,
    TcbStatus,
    TeeKind,
    Timestamp,
    Wei,
    WorkloadKind,
)

NOW = Timestamp(10_000)
MILLI = 10**15
GOOD = Measurement("11" * 32)
OTHER = Measurement("22" * 32)
H100 = GpuOffer(GpuModel("H100"), 80 * 1024, 8, True)
K = ConstraintKind


def offer(**overrides: Any) -> ResourceOffer:
    fields: dict[str, Any] = {
        "provider": ProviderAddress("0x" + "01" * 20),
        "peer_id": PeerId("peer-1"),
        "nonce": 0,
        "price_per_hour": Wei(10 * MILLI),
        "cpu_cores": 32,
        "memory_mib": 128 * 1024,
        "tee_kind": TeeKind.TDX,
        "measurement": GOOD,
        "tcb_status": TcbStatus.SW_HARDENING_NEEDED,
        "valid_from": Timestamp(9_000),
        "valid_until": Timestamp(11_000),
        "gpu": H100,
        "workloads": frozenset({WorkloadKind.WASM}),
        "evidence_verified": True,
        "evidence_verified_at": Timestamp(NOW - 3600),
        "region": Region("eu-west"),
        "latency_hint_ms": 50,
    }
    fields.update(overrides)
    return ResourceOffer(**fields)


def job(**overrides: Any) -> JobRequirements:
    fields: dict[str, Any] = {
        "job_id": JobId("job"),
        "workload": WorkloadKind.WASM,
        "accepted_tee_kinds": frozenset({TeeKind.TDX}),
        "max_price_per_hour": Wei(10 * MILLI),
        "deadline": Timestamp(NOW + 3600),
        "duration_s": 3600,
    }
    fields.update(overrides)
    return JobRequirements(**fields)


def failure_of(constraint: Constraint, at: Timestamp = NOW, **overrides: Any) -> ConstraintFailure:
    """The failure for an offer the constraint must refuse (asserted, not assumed)."""
    found = check(constraint, offer(**overrides), at)
    assert found is not None, "the constraint accepted an offer it should refuse"
    return found


def accepts(constraint: Constraint, at: Timestamp = NOW, **overrides: Any) -> bool:
    result = constraint.accepts(offer(**overrides), at)
    assert (check(constraint, offer(**overrides), at) is None) is result
    return result


# --- time ------------------------------------------------------------------------------------


def test_offer_is_valid_from_valid_from_inclusive_to_valid_until_exclusive() -> None:
    validity = OfferValidityConstraint()
    assert not accepts(validity, Timestamp(8_999))
    assert accepts(validity, Timestamp(9_000))
    assert accepts(validity, Timestamp(10_999))
    assert not accepts(validity, Timestamp(11_000))


def test_offer_validity_failures_say_how_early_or_late() -> None:
    validity = OfferValidityConstraint()
    assert failure_of(validity, Timestamp(8_990)) == ConstraintFailure(
        K.OFFER_VALIDITY,
        "valid at t=8990",
        "valid from t=9000",
        "offer not valid yet: starts in 10 s",
    )
    assert failure_of(validity, Timestamp(8_999)).message == "offer not valid yet: starts in 1 s"
    assert failure_of(validity, Timestamp(11_000)) == ConstraintFailure(
        K.OFFER_VALIDITY, "valid at t=11000", "valid until t=11000", "offer expired 0 s ago"
    )
    assert failure_of(validity, Timestamp(11_025)).message == "offer expired 25 s ago"


def test_deadline_met_exactly_is_accepted_one_second_late_is_not() -> None:
    on_time = DeadlineConstraint(Timestamp(NOW + 3600), 3600)
    late = DeadlineConstraint(Timestamp(NOW + 3599), 3600)
    assert accepts(on_time)
    assert failure_of(late) == ConstraintFailure(
        K.DEADLINE,
        "3600 s to run",
        "3599 s left",
        "deadline unreachable: job needs 3600 s, 3599 s left",
        closeness=3599,
    )
    past = DeadlineConstraint(Timestamp(NOW - 5), 10)
    assert failure_of(past).offered == "-5 s left"
    assert failure_of(past).closeness == -5


# --- TEE -------------------------------------------------------------------------------------


def test_sim_offers_are_refused_as_insecure() -> None:
    insecure = InsecureSimConstraint()
    assert accepts(insecure, tee_kind=TeeKind.TDX)
    assert failure_of(insecure, tee_kind=TeeKind.SIM) == ConstraintFailure(
        K.INSECURE_SIM,
        "hardware TEE",
        "SIM",
        "INSECURE: simulated enclave (SIM) has no hardware isolation; the job does not accept SIM",
    )


def test_tee_kind_outside_the_accepted_set_is_refused_naming_the_accepted_ones_in_order() -> None:
    kinds = TeeKindConstraint(frozenset({TeeKind.TDX, TeeKind.SGX}))
    assert accepts(kinds, tee_kind=TeeKind.TDX)
    assert accepts(kinds, tee_kind=TeeKind.SGX)
    assert failure_of(kinds, tee_kind=TeeKind.SEV_SNP) == ConstraintFailure(
        K.TEE_KIND, "SGX/TDX", "SEV_SNP", "needs TEE SGX/TDX, offers SEV_SNP"
    )


def test_sim_is_left_to_the_insecure_constraint_unless_the_job_accepts_it() -> None:
    hardware_only = TeeKindConstraint(frozenset({TeeKind.TDX}))
    assert accepts(hardware_only, tee_kind=TeeKind.SIM)
    sim_only = TeeKindConstraint(frozenset({TeeKind.SIM}))
    assert accepts(sim_only, tee_kind=TeeKind.SIM)
    assert failure_of(sim_only, tee_kind=TeeKind.TDX) == ConstraintFailure(
        K.TEE_KIND, "SIM (INSECURE)", "TDX", "needs TEE SIM (INSECURE), offers TDX"
    )


def test_tcb_exactly_at_the_minimum_is_accepted_one_below_is_not() -> None:
    minimum = TcbStatusConstraint(TcbStatus.SW_HARDENING_NEEDED)
    assert accepts(minimum, tcb_status=TcbStatus.SW_HARDENING_NEEDED)
    assert accepts(minimum, tcb_status=TcbStatus.UP_TO_DATE)
    assert failure_of(minimum, tcb_status=TcbStatus.CONFIGURATION_NEEDED) == ConstraintFailure(
        K.TCB_STATUS,
        "SWHardeningNeeded",
        "ConfigurationNeeded",
        "needs TCB SWHardeningNeeded or better, offers ConfigurationNeeded",
        closeness=4,
    )


def test_measurement_must_be_on_the_allowlist() -> None:
    allowed = MeasurementConstraint(frozenset({GOOD, Measurement("33" * 32)}))
    assert accepts(allowed, measurement=GOOD)
    assert failure_of(allowed, measurement=OTHER) == ConstraintFailure(
        K.MEASUREMENT,
        "one of 2 allowed measurements",
        "0x22222222…",
        "measurement 0x22222222… is not among the 2 allowed",
    )


def test_evidence_exactly_at_the_maximum_age_is_accepted_one_second_older_is_not() -> None:
    fresh_enough = EvidenceConstraint(3600)
    assert accepts(fresh_enough, evidence_verified_at=Timestamp(NOW - 3600))
    assert accepts(fresh_enough, evidence_verified_at=Timestamp(NOW + 10))
    assert failure_of(fresh_enough, evidence_verified_at=Timestamp(NOW - 3601)) == (
        ConstraintFailure(
            K.EVIDENCE,
            "verified within 3600 s",
            "3601 s old",
            "evidence is 3601 s old, max 3600 s",
            closeness=-3601,
        )
    )


def test_unverified_evidence_is_refused_and_is_the_farthest_miss() -> None:
    unverified = ConstraintFailure(
        K.EVIDENCE, "verified within 3600 s", "unverified", "evidence not verified", -(2**62)
    )
    fresh_enough = EvidenceConstraint(3600)
    never = failure_of(fresh_enough, evidence_verified=False, evidence_verified_at=None)
    assert never == unverified
    # A verification time without the verified flag is still unverified.
    flag_off = failure_of(fresh_enough, evidence_verified=False, evidence_verified_at=NOW)
    assert flag_off == unverified


# --- resources -------------------------------------------------------------------------------


def test_workload_kind_must_be_offered() -> None:
    wasm = WorkloadConstraint(WorkloadKind.WASM)
    assert accepts(wasm, workloads=frozenset({WorkloadKind.ONNX, WorkloadKind.WASM}))
    both = frozenset({WorkloadKind.ONNX, WorkloadKind.EXEC})
    assert failure_of(wasm, workloads=both) == ConstraintFailure(
        K.WORKLOAD, "wasm", "exec/onnx", "needs wasm workloads, offers exec/onnx"
    )
    assert failure_of(wasm, workloads=frozenset()) == ConstraintFailure(
        K.WORKLOAD, "wasm", "none", "needs wasm workloads, offers none"
    )


def test_gpu_model_must_match() -> None:
    model = GpuModelConstraint(GpuModel("A100"))
    assert accepts(model, gpu=replace(H100, model=GpuModel("A100")))
    assert failure_of(model) == ConstraintFailure(
        K.GPU_MODEL, "A100", "H100", "needs A100, offers H100"
    )
    assert failure_of(model, gpu=None) == ConstraintFailure(
        K.GPU_MODEL, "A100", "no GPU", "needs A100, offers no GPU"
    )


def test_exactly_the_requested_gpu_count_is_accepted_one_fewer_is_not() -> None:
    assert accepts(GpuCountConstraint(8))
    assert failure_of(GpuCountConstraint(9)) == ConstraintFailure(
        K.GPU_COUNT, "9", "8", "needs 9 GPUs, offers 8", closeness=8
    )
    assert failure_of(GpuCountConstraint(1), gpu=None) == ConstraintFailure(
        K.GPU_COUNT, "1", "0", "needs 1 GPUs, offers 0", closeness=0
    )


def test_exactly_the_requested_vram_is_accepted_less_is_not() -> None:
    assert accepts(GpuVramConstraint(80 * 1024))
    assert not accepts(GpuVramConstraint(80 * 1024 + 1))
    assert failure_of(GpuVramConstraint(81 * 1024)) == ConstraintFailure(
        K.GPU_VRAM, "81 GiB", "80 GiB", "needs 81 GiB VRAM, offers 80 GiB", closeness=80 * 1024
    )
    assert failure_of(GpuVramConstraint(512), gpu=None) == ConstraintFailure(
        K.GPU_VRAM, "512 MiB", "0 MiB", "needs 512 MiB VRAM, offers 0 MiB", closeness=0
    )


def test_gpus_must_be_in_cc_mode() -> None:
    cc = GpuCcModeConstraint()
    assert accepts(cc)
    assert failure_of(cc, gpu=replace(H100, cc_mode=False)) == ConstraintFailure(
        K.GPU_CC_MODE, "CC mode on", "CC mode off", "needs GPUs in CC mode, offers CC mode off"
    )
    assert failure_of(cc, gpu=None) == ConstraintFailure(
        K.GPU_CC_MODE, "CC mode on", "no GPU", "needs GPUs in CC mode, offers no GPU"
    )


def test_exactly_the_requested_cores_are_accepted_one_fewer_is_not() -> None:
    assert accepts(CpuCoresConstraint(32))
    assert failure_of(CpuCoresConstraint(33)) == ConstraintFailure(
        K.CPU_CORES, "33", "32", "needs 33 CPU cores, offers 32", closeness=32
    )


def test_exactly_the_requested_memory_is_accepted_one_mib_less_is_not() -> None:
    assert accepts(MemoryConstraint(128 * 1024))
    assert not accepts(MemoryConstraint(128 * 1024 + 1))
    assert failure_of(MemoryConstraint(129 * 1024)) == ConstraintFailure(
        K.MEMORY,
        "129 GiB",
        "128 GiB",
        "needs 129 GiB memory, offers 128 GiB",
        closeness=128 * 1024,
    )


# --- place, latency, price -------------------------------------------------------------------


def test_region_must_be_one_of_the_jobs() -> None:
    regions = RegionConstraint(frozenset({Region("us-east"), Region("eu-west")}))
    assert accepts(regions)
    assert failure_of(regions, region=Region("ap-south")) == ConstraintFailure(
        K.REGION, "eu-west/us-east", "ap-south", "needs region eu-west/us-east, offers ap-south"
    )


def test_latency_exactly_at_the_limit_is_accepted_one_ms_more_is_not() -> None:
    assert accepts(LatencyConstraint(50))
    assert failure_of(LatencyConstraint(49)) == ConstraintFailure(
        K.LATENCY, "<= 49 ms", "50 ms", "needs latency <= 49 ms, offers 50 ms", closeness=-50
    )


def test_price_exactly_at_the_maximum_is_accepted_one_wei_more_is_not() -> None:
    assert accepts(PriceConstraint(Wei(10 * MILLI)))
    assert failure_of(PriceConstraint(Wei(10 * MILLI - 1))) == ConstraintFailure(
        K.PRICE,
        "0.009999999999999999 ETH/h",
        "0.01 ETH/h",
        "too expensive: 0.01 ETH/h > max 0.009999999999999999 ETH/h",
        closeness=-10 * MILLI,
    )


# --- nearest miss ----------------------------------------------------------------------------


def _nearest(constraint: Constraint, offers: list[ResourceOffer]) -> ConstraintFailure:
    rejections = [Rejection(o, failures_of([constraint], o, NOW)) for o in offers]
    (group,) = summarize(rejections)
    assert group.count == len(offers)
    return group.nearest


def test_nearest_miss_for_evidence_is_the_freshest_and_unverified_is_last() -> None:
    ages = [7200, 3700, 5000]
    offers = [offer(evidence_verified_at=Timestamp(NOW - age)) for age in ages]
    offers.insert(0, offer(evidence_verified=False, evidence_verified_at=None))
    assert _nearest(EvidenceConstraint(3600), offers).offered == "3700 s old"


def test_nearest_miss_for_latency_is_the_lowest() -> None:
    offers = [offer(latency_hint_ms=ms) for ms in (300, 80, 120)]
    assert _nearest(LatencyConstraint(50), offers).offered == "80 ms"


def test_nearest_miss_for_amounts_is_the_largest_offered() -> None:
    offers = [offer(cpu_cores=cores) for cores in (4, 24, 8)]
    assert _nearest(CpuCoresConstraint(32), offers).offered == "24"
    offers = [offer(tcb_status=status) for status in (TcbStatus.REVOKED, TcbStatus.OUT_OF_DATE)]
    assert _nearest(TcbStatusConstraint(TcbStatus.UP_TO_DATE), offers).offered == "OutOfDate"


# --- failures of several constraints ---------------------------------------------------------


def test_failures_follow_kind_order_whatever_order_the_caller_gives() -> None:
    bad = offer(cpu_cores=2, price_per_hour=Wei(11 * MILLI), latency_hint_ms=500)
    caller_order: list[Constraint] = [
        PriceConstraint(Wei(10 * MILLI)),
        LatencyConstraint(100),
        CpuCoresConstraint(4),
    ]
    kinds = [failure.kind for failure in failures_of(caller_order, bad, NOW)]
    assert kinds == [K.CPU_CORES, K.LATENCY, K.PRICE]
    two: list[Constraint] = [LatencyConstraint(100), OfferValidityConstraint()]
    kinds = [failure.kind for failure in failures_of(two, bad, Timestamp(20_000))]
    assert kinds == [K.OFFER_VALIDITY, K.LATENCY]


def test_failures_of_an_acceptable_offer_are_none() -> None:
    assert failures_of(constraints_for(job()), offer(tcb_status=TcbStatus.UP_TO_DATE), NOW) == ()
    assert failures_of([CpuCoresConstraint(64)], offer(), NOW) == (
        ConstraintFailure(K.CPU_CORES, "64", "32", "needs 64 CPU cores, offers 32", closeness=32),
    )


def test_kind_rank_is_declaration_order() -> None:
    assert [kind.rank for kind in ConstraintKind] == list(range(len(ConstraintKind)))
    assert K.OFFER_VALIDITY.rank < K.TEE_KIND.rank < K.GPU_MODEL.rank < K.PRICE.rank


# --- the standard set ------------------------------------------------------------------------


def test_a_plain_job_gets_the_standard_constraints_in_explanation_order() -> None:
    plain = job()
    assert constraints_for(plain) == (
        OfferValidityConstraint(),
        DeadlineConstraint(plain.deadline, 3600),
        InsecureSimConstraint(),
        TeeKindConstraint(frozenset({TeeKind.TDX})),
        TcbStatusConstraint(TcbStatus.UP_TO_DATE),
        EvidenceConstraint(24 * 3600),
        WorkloadConstraint(WorkloadKind.WASM),
        CpuCoresConstraint(1),
        MemoryConstraint(1024),
        PriceConstraint(Wei(10 * MILLI)),
    )


def test_a_job_naming_everything_gets_every_constraint() -> None:
    full = job(
        accepted_tee_kinds=frozenset({TeeKind.TDX, TeeKind.SIM}),
        min_tcb_status=TcbStatus.SW_HARDENING_NEEDED,
        allowed_measurements=frozenset({GOOD}),
        gpu=GpuRequirement(
            count=2, min_vram_mib=40 * 1024, model=GpuModel("H100"), cc_mode_required=True
        ),
        cpu_cores=8,
        memory_mib=2048,
        max_evidence_age_s=600,
        regions=frozenset({Region("eu-west")}),
        max_latency_ms=0,
    )
    assert constraints_for(full) == (
        OfferValidityConstraint(),
        DeadlineConstraint(full.deadline, 3600),
        TeeKindConstraint(frozenset({TeeKind.TDX, TeeKind.SIM})),
        TcbStatusConstraint(TcbStatus.SW_HARDENING_NEEDED),
        MeasurementConstraint(frozenset({GOOD})),
        EvidenceConstraint(600),
        WorkloadConstraint(WorkloadKind.WASM),
        GpuModelConstraint(GpuModel("H100")),
        GpuCountConstraint(2),
        GpuVramConstraint(40 * 1024),
        GpuCcModeConstraint(),
        CpuCoresConstraint(8),
        MemoryConstraint(2048),
        RegionConstraint(frozenset({Region("eu-west")})),
        LatencyConstraint(0),
        PriceConstraint(Wei(10 * MILLI)),
    )


def test_optional_constraints_are_left_out_when_the_job_does_not_ask() -> None:
    lean = job(gpu=GpuRequirement(count=1), cpu_cores=0, memory_mib=0)
    kinds = [constraint.kind for constraint in constraints_for(lean)]
    assert kinds == [
        K.OFFER_VALIDITY,
        K.DEADLINE,
        K.INSECURE_SIM,
        K.TEE_KIND,
        K.TCB_STATUS,
        K.EVIDENCE,
        K.WORKLOAD,
        K.GPU_COUNT,
        K.PRICE,
    ]
    assert constraints_for(lean)[7] == GpuCountConstraint(1)


@pytest.mark.parametrize(
    ("changes", "present"),
    [
        ({"cpu_cores": 1}, K.CPU_CORES),
        ({"memory_mib": 1}, K.MEMORY),
        ({"gpu": GpuRequirement(count=1, min_vram_mib=1)}, K.GPU_VRAM),
    ],
)
def test_the_smallest_amount_asked_for_adds_its_constraint(
    changes: dict[str, Any], present: ConstraintKind
) -> None:
    lean = job(**{"cpu_cores": 0, "memory_mib": 0, **changes})
    assert present in [constraint.kind for constraint in constraints_for(lean)]
