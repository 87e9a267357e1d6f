"""Client-side matching: the choice, the ranking, and why every other offer lost."""

from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from scheduler.constraints import ConstraintFailure, ConstraintKind
from scheduler.errors import DuplicateOfferError, InvalidWeightsError
from scheduler.matching import OfferIndex, scan_choose, scan_match
from scheduler.models import (
    GpuModel,
    GpuOffer,
    GpuRequirement,
    JobId,
    JobRequirements,
    Measurement,
    PeerId,
    ProviderAddress,
    ProviderHistory,
    Region,
    ResourceOffer,
    TcbStatus,
    TeeKind,
    Timestamp,
    Wei,
    WorkloadKind,
)
from scheduler.scoring import (
    SCALE,
    MarketContext,
    ScoringConfig,
    ScoringWeights,
    freshness_component,
    latency_component,
    load_component,
    price_component,
    reputation_component,
)

NOW = Timestamp(10_000)
MILLI = 10**15
GOOD = Measurement("11" * 32)
OTHER = Measurement("22" * 32)
H100 = GpuOffer(GpuModel("H100"), 80 * 1024, 8, True)


def address(n: int) -> ProviderAddress:
    return ProviderAddress(f"0x{n:040x}")


def offer(n: int = 1, **overrides: Any) -> ResourceOffer:
    fields: dict[str, Any] = {
        "provider": address(n),
        "peer_id": PeerId(f"peer-{n}"),
        "nonce": 0,
        "price_per_hour": Wei(8 * MILLI),
        "cpu_cores": 32,
        "memory_mib": 128 * 1024,
        "tee_kind": TeeKind.TDX,
        "measurement": GOOD,
        "tcb_status": TcbStatus.UP_TO_DATE,
        "valid_from": Timestamp(0),
        "valid_until": Timestamp(20_000),
        "gpu": H100,
        "evidence_verified": True,
        "evidence_verified_at": Timestamp(NOW - 60),
    }
    fields.update(overrides)
    return ResourceOffer(**fields)


def job(job_id: str = "job", **overrides: Any) -> JobRequirements:
    fields: dict[str, Any] = {
        "job_id": JobId(job_id),
        "workload": WorkloadKind.WASM,
        "accepted_tee_kinds": frozenset({TeeKind.TDX, TeeKind.SEV_SNP}),
        "max_price_per_hour": Wei(10 * MILLI),
        "deadline": Timestamp(NOW + 7200),
        "duration_s": 600,
        "gpu": GpuRequirement(2, 80 * 1024, GpuModel("H100")),
        "cpu_cores": 8,
        "memory_mib": 32 * 1024,
    }
    fields.update(overrides)
    return JobRequirements(**fields)


CONTEXT = MarketContext()


def only_failure(result_offer: ResourceOffer, requirements: JobRequirements) -> ConstraintFailure:
    result = scan_match(requirements, [result_offer], NOW, CONTEXT)
    assert result.chosen is None
    (rejection,) = result.rejections
    assert len(rejection.failures) == 1, rejection.reason
    return rejection.failures[0]


def test_a_matching_offer_is_chosen_with_a_reason() -> None:
    result = scan_match(job(), [offer()], NOW, CONTEXT)
    assert result.chosen is not None
    assert result.chosen.offer == offer()
    assert result.rejections == ()
    assert result.reason.startswith(f"job job -> {address(1)} (offer #0) at 0.008 ETH/h")
    assert result.summary.text == "1 offer: 1 match"


@pytest.mark.parametrize(
    ("overrides", "kind", "message"),
    [
        (
            {"gpu": GpuOffer(GpuModel("H100"), 24 * 1024, 8, True)},
            ConstraintKind.GPU_VRAM,
            "needs 80 GiB VRAM, offers 24 GiB",
        ),
        (
            {"gpu": GpuOffer(GpuModel("A100"), 80 * 1024, 8, True)},
            ConstraintKind.GPU_MODEL,
            "needs H100, offers A100",
        ),
        (
            {"gpu": GpuOffer(GpuModel("H100"), 80 * 1024, 1, True)},
            ConstraintKind.GPU_COUNT,
            "needs 2 GPUs, offers 1",
        ),
        ({"cpu_cores": 4}, ConstraintKind.CPU_CORES, "needs 8 CPU cores, offers 4"),
        ({"memory_mib": 16 * 1024}, ConstraintKind.MEMORY, "needs 32 GiB memory, offers 16 GiB"),
        (
            {"price_per_hour": Wei(12 * MILLI)},
            ConstraintKind.PRICE,
            "too expensive: 0.012 ETH/h > max 0.01 ETH/h",
        ),
        (
            {"tcb_status": TcbStatus.OUT_OF_DATE},
            ConstraintKind.TCB_STATUS,
            "needs TCB UpToDate or better, offers OutOfDate",
        ),
        ({"tee_kind": TeeKind.SGX}, ConstraintKind.TEE_KIND, "needs TEE TDX/SEV_SNP, offers SGX"),
        ({"valid_until": Timestamp(NOW)}, ConstraintKind.OFFER_VALIDITY, "offer expired 0 s ago"),
        (
            {"valid_from": Timestamp(NOW + 5)},
            ConstraintKind.OFFER_VALIDITY,
            "offer not valid yet: starts in 5 s",
        ),
        (
            {"evidence_verified": False, "evidence_verified_at": None},
            ConstraintKind.EVIDENCE,
            "evidence not verified",
        ),
        (
            {"evidence_verified_at": Timestamp(NOW - 2 * 86400)},
            ConstraintKind.EVIDENCE,
            "evidence is 172800 s old, max 86400 s",
        ),
        (
            {"workloads": frozenset({WorkloadKind.ONNX})},
            ConstraintKind.WORKLOAD,
            "needs wasm workloads, offers onnx",
        ),
    ],
)
def test_each_rejection_names_the_constraint_and_both_values(
    overrides: dict[str, Any], kind: ConstraintKind, message: str
) -> None:
    failure = only_failure(offer(**overrides), job())
    assert failure.kind is kind
    assert failure.message == message


def test_offer_without_gpus_fails_every_gpu_constraint() -> None:
    (rejection,) = scan_match(job(), [offer(gpu=None)], NOW, CONTEXT).rejections
    assert [f.message for f in rejection.failures] == [
        "needs H100, offers no GPU",
        "needs 2 GPUs, offers 0",
        "needs 80 GiB VRAM, offers 0 MiB",
    ]
    assert rejection.primary.kind is ConstraintKind.GPU_MODEL


def test_optional_constraints_explain_themselves() -> None:
    picky = job(
        allowed_measurements=frozenset({OTHER}),
        regions=frozenset({Region("eu-west")}),
        max_latency_ms=50,
        gpu=GpuRequirement(1, cc_mode_required=True),
    )
    no_cc = GpuOffer(GpuModel("H100"), 80 * 1024, 8, False)
    result = scan_match(
        picky, [offer(region=Region("us-east"), latency_hint_ms=80, gpu=no_cc)], NOW, CONTEXT
    )
    messages = [failure.message for failure in result.rejections[0].failures]
    assert messages == [
        "measurement 0x11111111… is not among the 1 allowed",
        "needs GPUs in CC mode, offers CC mode off",
        "needs region eu-west, offers us-east",
        "needs latency <= 50 ms, offers 80 ms",
    ]


def test_deadline_that_cannot_be_met_rejects_every_offer() -> None:
    late = job(deadline=Timestamp(NOW + 30), duration_s=600)
    result = scan_match(late, [offer(1), offer(2)], NOW, CONTEXT)
    assert result.chosen is None
    assert result.summary.text == (
        "2 offers: 2 deadline unreachable (deadline unreachable: job needs 600 s, 30 s left)"
    )
    assert OfferIndex.build([offer(1)], CONTEXT).choose(late, NOW) is None


def test_sim_offer_is_rejected_as_insecure_unless_explicitly_accepted() -> None:
    sim = offer(tee_kind=TeeKind.SIM)
    failure = only_failure(sim, job())
    assert failure.kind is ConstraintKind.INSECURE_SIM
    assert "INSECURE" in failure.message
    assert OfferIndex.build([sim], CONTEXT).choose(job(), NOW) is None

    devnet_job = job(accepted_tee_kinds=frozenset({TeeKind.SIM}))
    assert scan_match(devnet_job, [sim], NOW, CONTEXT).chosen is not None
    chosen = OfferIndex.build([sim], CONTEXT).choose(devnet_job, NOW)
    assert chosen is not None and chosen.offer == sim


def test_summary_groups_rejections_and_shows_the_nearest_miss() -> None:
    offers = [offer(n, price_per_hour=Wei((11 + n) * MILLI)) for n in range(21)]
    offers += [
        offer(100 + n, gpu=GpuOffer(GpuModel("A100"), 80 * 1024, 8, False)) for n in range(12)
    ]
    offers += [offer(200 + n, tcb_status=TcbStatus.OUT_OF_DATE) for n in range(4)]
    result = scan_match(job(), offers, NOW, CONTEXT)
    assert result.chosen is None
    assert result.summary.text == (
        "37 offers: 21 too expensive (cheapest 0.011 ETH/h > 0.01 ETH/h), "
        "12 no H100, 4 TCB OutOfDate"
    )
    assert result.reason.startswith("no provider can take job job: 37 offers:")


def test_summary_counts_each_offer_once_under_its_hardest_failure() -> None:
    # Both too expensive and the wrong GPU: raising the price would not help, so "no H100".
    both = offer(
        gpu=GpuOffer(GpuModel("A100"), 80 * 1024, 8, False), price_per_hour=Wei(MILLI * 50)
    )
    result = scan_match(job(), [both], NOW, CONTEXT)
    assert [f.kind for f in result.rejections[0].failures] == [
        ConstraintKind.GPU_MODEL,
        ConstraintKind.PRICE,
    ]
    assert result.summary.text == "1 offer: 1 no H100"


def test_mixed_tcb_group_reports_the_best_offered_status() -> None:
    offers = [offer(1, tcb_status=TcbStatus.OUT_OF_DATE), offer(2, tcb_status=TcbStatus.REVOKED)]
    text = scan_match(job(), offers, NOW, CONTEXT).summary.text
    assert text == "2 offers: 2 TCB below UpToDate (best OutOfDate)"


def test_empty_market_says_so() -> None:
    assert scan_match(job(), [], NOW, CONTEXT).summary.text == "0 offers: nothing on the market"


@dataclass(frozen=True)
class NoRegionConstraint:
    """A caller-defined constraint: refuse one region."""

    kind: ClassVar[ConstraintKind] = ConstraintKind.REGION
    banned: Region

    def accepts(self, offer: ResourceOffer, now: Timestamp) -> bool:
        return offer.region != self.banned

    def explain(self, offer: ResourceOffer, now: Timestamp) -> ConstraintFailure:
        return ConstraintFailure(self.kind, f"not {self.banned}", offer.region, "banned region")


def test_extra_constraints_compose_with_the_standard_ones() -> None:
    offers = [offer(1, price_per_hour=Wei(MILLI), region=Region("xx")), offer(2)]
    extra = (NoRegionConstraint(Region("xx")),)
    result = scan_match(job(), offers, NOW, CONTEXT, extra)
    assert result.chosen is not None and result.chosen.offer.provider == address(2)
    assert result.rejections[0].reason == "banned region"
    indexed = OfferIndex.build(offers, CONTEXT).choose(job(), NOW, extra)
    assert indexed is not None and indexed.offer.provider == address(2)


def test_cheaper_offer_wins_when_all_else_is_equal() -> None:
    offers = [offer(1, price_per_hour=Wei(9 * MILLI)), offer(2, price_per_hour=Wei(5 * MILLI))]
    result = scan_match(job(), offers, NOW, CONTEXT)
    assert [s.offer.provider for s in result.ranked] == [address(2), address(1)]


def test_reputation_from_chain_history_can_outweigh_a_small_price_gap() -> None:
    offers = [offer(1, price_per_hour=Wei(7 * MILLI)), offer(2, price_per_hour=Wei(8 * MILLI))]
    context = MarketContext(
        histories={address(1): ProviderHistory(2, 30), address(2): ProviderHistory(300, 1)}
    )
    chosen = scan_choose(job(), offers, NOW, context)
    assert chosen is not None and chosen.offer.provider == address(2)
    assert chosen.score.reputation > SCALE * 99 // 100


def test_weights_change_the_choice() -> None:
    offers = [
        offer(1, price_per_hour=Wei(5 * MILLI), latency_hint_ms=200),
        offer(2, price_per_hour=Wei(9 * MILLI), latency_hint_ms=1),
    ]
    price_only = MarketContext(scoring=ScoringConfig(ScoringWeights(1, 0, 0, 0, 0)))
    latency_only = MarketContext(scoring=ScoringConfig(ScoringWeights(0, 0, 0, 1, 0)))
    by_price = scan_choose(job(), offers, NOW, price_only)
    by_latency = scan_choose(job(), offers, NOW, latency_only)
    assert by_price is not None and by_price.offer.provider == address(1)
    assert by_latency is not None and by_latency.offer.provider == address(2)


def test_score_components_have_the_documented_shape() -> None:
    assert price_component(Wei(0), Wei(100)) == SCALE
    assert price_component(Wei(100), Wei(100)) == 0
    assert price_component(Wei(50), Wei(0)) == SCALE
    assert reputation_component(ProviderHistory()) == SCALE // 2
    assert reputation_component(ProviderHistory(98, 0)) == SCALE * 99 // 100
    assert freshness_component(Timestamp(NOW), NOW, 100) == SCALE
    assert freshness_component(Timestamp(NOW - 100), NOW, 100) == 0
    assert freshness_component(None, NOW, 100) == 0
    assert latency_component(50, 50) == SCALE // 2
    assert load_component(0) == SCALE
    assert load_component(1000) == 0


def test_bad_weights_are_refused() -> None:
    with pytest.raises(InvalidWeightsError):
        ScoringWeights(0, 0, 0, 0, 0)
    with pytest.raises(InvalidWeightsError):
        ScoringWeights(price=-1)
    with pytest.raises(InvalidWeightsError):
        ScoringConfig(freshness_horizon_s=0)


def test_equal_providers_share_jobs_and_ties_are_reproducible() -> None:
    offers = [offer(n) for n in range(1, 5)]
    index = OfferIndex.build(offers, CONTEXT)
    winners = []
    for n in range(400):
        chosen = index.choose(job(f"job-{n}"), NOW)
        assert chosen is not None
        winners.append(chosen.offer.provider)
    counts = Counter(winners)
    assert len(counts) == 4
    assert min(counts.values()) >= 60
    again = [index.choose(job(f"job-{n}"), NOW) for n in range(400)]
    assert [c.offer.provider for c in again if c is not None] == winners


def test_lower_load_breaks_an_otherwise_equal_contest() -> None:
    offers = [offer(1, load_permille=900), offer(2, load_permille=100)]
    chosen = OfferIndex.build(offers, CONTEXT).choose(job(), NOW)
    assert chosen is not None and chosen.offer.provider == address(2)


def test_index_refuses_duplicate_offer_identities() -> None:
    with pytest.raises(DuplicateOfferError):
        OfferIndex.build([offer(1), offer(1, price_per_hour=Wei(1))], CONTEXT)


def test_index_explain_matches_the_scan() -> None:
    offers = [offer(1), offer(2, tee_kind=TeeKind.SGX)]
    index = OfferIndex.build(offers, CONTEXT)
    explained = index.explain(job(), NOW)
    assert explained == scan_match(job(), offers, NOW, CONTEXT)
    assert explained.chosen == index.choose(job(), NOW)


def test_gpu_less_job_may_use_any_bucket_and_gpu_job_needs_a_gpu() -> None:
    cpu_offer = offer(1, gpu=None, price_per_hour=Wei(MILLI))
    gpu_offer = offer(2)
    index = OfferIndex.build([cpu_offer, gpu_offer], CONTEXT)
    cpu_job = job(gpu=None)
    any_gpu_job = job(gpu=GpuRequirement(1))
    cpu_choice = index.choose(cpu_job, NOW)
    gpu_choice = index.choose(any_gpu_job, NOW)
    assert cpu_choice is not None and cpu_choice.offer == cpu_offer
    assert gpu_choice is not None and gpu_choice.offer == gpu_offer
    assert cpu_choice == scan_choose(cpu_job, [cpu_offer, gpu_offer], NOW, CONTEXT)


def test_price_breaks_score_ties_even_when_price_has_no_weight() -> None:
    no_price = MarketContext(scoring=ScoringConfig(ScoringWeights(0, 1, 0, 0, 0)))
    offers = [offer(n, price_per_hour=Wei((9 - n) * MILLI)) for n in range(1, 4)]
    index = OfferIndex.build(offers, no_price)
    for n in range(20):
        chosen = index.choose(job(f"job-{n}"), NOW)
        assert chosen is not None and chosen.offer.provider == address(3)
        assert chosen == scan_match(job(f"job-{n}"), offers, NOW, no_price).chosen
