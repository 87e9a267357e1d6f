"""Properties that must hold for any market: hypothesis generates the offers and jobs."""

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.admission import AdmissionPolicy, JobQueue, run_admission
from scheduler.bidding import BidAction, ProviderState, reoffer
from scheduler.capacity import CapacityLedger
from scheduler.constraints import constraints_for, failures_of
from scheduler.errors import OverCommitError
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
    Resources,
    TcbStatus,
    TeeKind,
    Timestamp,
    Wei,
    WorkloadKind,
)
from scheduler.scoring import MarketContext, ScoringConfig, ScoringWeights

NOW = Timestamp(100_000)
PROVIDERS = [ProviderAddress(f"0x{n:040x}") for n in range(1, 5)]
MEASUREMENTS = [Measurement(f"{n:02x}" * 32) for n in range(3)]
MODELS = [GpuModel("H100"), GpuModel("A100")]
REGIONS = [Region("eu"), Region("us")]
PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# Few distinct values on purpose: collisions make ties and borderline cases common.
prices = st.sampled_from([0, 5, 10, 20, 40]).map(Wei)
tee_kinds = st.sampled_from(list(TeeKind))


@st.composite
def gpu_offers(draw: st.DrawFn) -> GpuOffer | None:
    if draw(st.booleans()):
        return None
    return GpuOffer(
        model=draw(st.sampled_from(MODELS)),
        vram_mib=draw(st.sampled_from([24, 40, 80])) * 1024,
        count=draw(st.integers(1, 4)),
        cc_mode=draw(st.booleans()),
    )


@st.composite
def offer_books(draw: st.DrawFn) -> list[ResourceOffer]:
    count = draw(st.integers(0, 14))
    offers = []
    for nonce in range(count):
        verified = draw(st.sampled_from([True, True, True, False]))
        valid_from = Timestamp(NOW + draw(st.sampled_from([-500, -500, -500, -1, 1])))
        offers.append(
            ResourceOffer(
                provider=draw(st.sampled_from(PROVIDERS)),
                peer_id=PeerId(f"peer-{nonce}"),
                # Unique per book, so (provider, nonce) identities never collide.
                nonce=nonce,
                price_per_hour=draw(prices),
                cpu_cores=draw(st.sampled_from([2, 8])),
                memory_mib=draw(st.sampled_from([4, 16])) * 1024,
                tee_kind=draw(tee_kinds),
                measurement=draw(st.sampled_from(MEASUREMENTS)),
                tcb_status=draw(st.sampled_from([*TcbStatus, *[TcbStatus.UP_TO_DATE] * 4])),
                valid_from=valid_from,
                valid_until=Timestamp(
                    valid_from + draw(st.sampled_from([1, 500, 5000, 5000, 5000, 5000]))
                ),
                gpu=draw(gpu_offers()),
                workloads=draw(
                    st.one_of(
                        st.just(frozenset(WorkloadKind)),
                        st.frozensets(st.sampled_from(list(WorkloadKind))),
                    )
                ),
                evidence_verified=verified,
                evidence_verified_at=(
                    Timestamp(NOW - draw(st.sampled_from([0, 30, 100, 4000]))) if verified else None
                ),
                region=draw(st.sampled_from(REGIONS)),
                latency_hint_ms=draw(st.sampled_from([5, 50, 150])),
                load_permille=draw(st.sampled_from([0, 500, 1000])),
            )
        )
    return offers


@st.composite
def gpu_requirements(draw: st.DrawFn) -> GpuRequirement | None:
    if draw(st.booleans()):
        return None
    return GpuRequirement(
        count=draw(st.integers(1, 4)),
        min_vram_mib=draw(st.sampled_from([0, 40 * 1024])),
        model=draw(st.sampled_from([None, *MODELS])),
        cc_mode_required=draw(st.booleans()),
    )


@st.composite
def jobs(draw: st.DrawFn, job_id: str | None = None) -> JobRequirements:
    return JobRequirements(
        job_id=JobId(job_id or draw(st.sampled_from(["a", "b", "c"]))),
        workload=draw(st.sampled_from(list(WorkloadKind))),
        accepted_tee_kinds=draw(st.frozensets(tee_kinds, min_size=1, max_size=4)),
        max_price_per_hour=draw(prices),
        deadline=Timestamp(NOW + draw(st.sampled_from([100, 10_000, 10_000, 10_000]))),
        duration_s=draw(st.sampled_from([50, 600])),
        min_tcb_status=draw(st.sampled_from([*TcbStatus, TcbStatus.REVOKED])),
        allowed_measurements=draw(
            st.one_of(
                st.just(frozenset[Measurement]()),
                st.frozensets(st.sampled_from(MEASUREMENTS), max_size=2),
            )
        ),
        gpu=draw(gpu_requirements()),
        cpu_cores=draw(st.sampled_from([0, 1, 2, 8])),
        memory_mib=draw(st.sampled_from([0, 8 * 1024])),
        max_evidence_age_s=draw(st.sampled_from([50, 3600, 3600])),
        regions=draw(
            st.one_of(
                st.just(frozenset[Region]()), st.frozensets(st.sampled_from(REGIONS), max_size=1)
            )
        ),
        max_latency_ms=draw(st.sampled_from([None, None, 60])),
    )


BREAKABLE = ["price", "tee", "tcb", "measurement", "evidence", "workload", "gpu", "validity"]


@st.composite
def offer_near(draw: st.DrawFn, job: JobRequirements, nonce: int) -> ResourceOffer:
    """An offer that meets the job except for a few deliberately broken fields."""
    broken = draw(st.frozensets(st.sampled_from(BREAKABLE), max_size=2))
    fits_price = [p for p in (0, 5, 10, 20, 40) if p <= job.max_price_per_hour]
    too_dear = [p for p in (5, 10, 20, 40, 80) if p > job.max_price_per_hour]
    price = draw(st.sampled_from(too_dear if "price" in broken else fits_price))
    other_kinds = [k for k in TeeKind if k not in job.accepted_tee_kinds]
    kinds = other_kinds if "tee" in broken and other_kinds else sorted(job.accepted_tee_kinds)
    low_tcb = [t for t in TcbStatus if t < job.min_tcb_status]
    tcbs = (
        low_tcb
        if "tcb" in broken and low_tcb
        else [t for t in TcbStatus if t >= job.min_tcb_status]
    )
    allowed = sorted(job.allowed_measurements, key=lambda m: m.hex) or MEASUREMENTS
    outside = [m for m in MEASUREMENTS if m not in allowed]
    measures = outside if "measurement" in broken and outside else allowed
    gpu = draw(gpu_offers())
    if job.gpu is not None and "gpu" not in broken:
        gpu = GpuOffer(
            model=job.gpu.model or draw(st.sampled_from(MODELS)),
            vram_mib=max(job.gpu.min_vram_mib, draw(st.sampled_from([24, 80])) * 1024),
            count=draw(st.integers(job.gpu.count, 4)),
            cc_mode=job.gpu.cc_mode_required or draw(st.booleans()),
        )
    verified = "evidence" not in broken
    return ResourceOffer(
        provider=draw(st.sampled_from(PROVIDERS)),
        peer_id=PeerId(f"peer-{nonce}"),
        nonce=nonce,
        price_per_hour=Wei(price),
        cpu_cores=max(job.cpu_cores, draw(st.sampled_from([2, 8]))),
        memory_mib=max(job.memory_mib, 4096),
        tee_kind=draw(st.sampled_from(kinds)),
        measurement=draw(st.sampled_from(measures)),
        tcb_status=draw(st.sampled_from(tcbs)),
        valid_from=Timestamp(NOW - 10),
        valid_until=Timestamp(NOW - 1 if "validity" in broken else NOW + 5000),
        gpu=gpu,
        workloads=(
            frozenset(WorkloadKind) - {job.workload}
            if "workload" in broken
            else frozenset(WorkloadKind)
        ),
        evidence_verified=verified,
        evidence_verified_at=(
            Timestamp(NOW - draw(st.sampled_from([0, 20, job.max_evidence_age_s])))
            if verified
            else None
        ),
        region=draw(st.sampled_from(sorted(job.regions) or REGIONS)),
        latency_hint_ms=draw(st.sampled_from([5, 50] if job.max_latency_ms else [5, 50, 150])),
        load_permille=draw(st.sampled_from([0, 500, 1000])),
    )


@st.composite
def markets(draw: st.DrawFn) -> tuple[list[ResourceOffer], JobRequirements]:
    """A job plus offers: some built to nearly match it, some random."""
    job = draw(jobs())
    random_offers = draw(offer_books())
    near = [draw(offer_near(job, len(random_offers) + n)) for n in range(draw(st.integers(0, 8)))]
    order = draw(st.permutations(range(len(random_offers) + len(near))))
    pool = random_offers + near
    return [pool[i] for i in order], job


@st.composite
def contexts(draw: st.DrawFn) -> MarketContext:
    histories = {
        provider: ProviderHistory(draw(st.integers(0, 20)), draw(st.integers(0, 5)))
        for provider in PROVIDERS
        if draw(st.booleans())
    }
    weights = draw(
        st.sampled_from(
            [ScoringWeights(), ScoringWeights(1, 0, 0, 0, 0), ScoringWeights(0, 1, 1, 0, 1)]
        )
    )
    return MarketContext(histories, ScoringConfig(weights, freshness_horizon_s=5000))


@PROPERTY_SETTINGS
@given(markets(), contexts())
def test_chosen_offer_satisfies_every_constraint(
    market: tuple[list[ResourceOffer], JobRequirements], context: MarketContext
) -> None:
    offers, job = market
    result = scan_match(job, offers, NOW, context)
    for scored in result.ranked:
        assert failures_of(constraints_for(job), scored.offer, NOW) == ()
    assert len(result.ranked) + len(result.rejections) == len(offers)
    assert result.summary.matching + sum(g.count for g in result.summary.groups) == len(offers)
    if result.chosen is not None:
        assert result.chosen == result.ranked[0]
        assert job.accepts_sim or result.chosen.offer.tee_kind is not TeeKind.SIM


@PROPERTY_SETTINGS
@given(markets(), contexts())
def test_each_rejection_names_a_constraint_that_fails(
    market: tuple[list[ResourceOffer], JobRequirements], context: MarketContext
) -> None:
    offers, job = market
    constraints = constraints_for(job)
    for rejection in scan_match(job, offers, NOW, context).rejections:
        assert rejection.failures
        for failure in rejection.failures:
            failing = [
                c
                for c in constraints
                if c.kind is failure.kind and not c.accepts(rejection.offer, NOW)
            ]
            assert failing, f"{failure.kind} named but not failing"
            assert failure.message
        if rejection.offer.tee_kind is TeeKind.SIM and not job.accepts_sim:
            assert "INSECURE" in rejection.reason


@PROPERTY_SETTINGS
@given(markets(), contexts(), st.randoms(use_true_random=False))
def test_same_inputs_give_the_same_choice_in_any_offer_order(
    market: tuple[list[ResourceOffer], JobRequirements],
    context: MarketContext,
    rng: random.Random,
) -> None:
    offers, job = market
    first = scan_match(job, offers, NOW, context)
    assert scan_match(job, offers, NOW, context) == first
    shuffled = offers[:]
    rng.shuffle(shuffled)
    again = scan_match(job, shuffled, NOW, context)
    assert again.chosen == first.chosen
    assert again.ranked == first.ranked


@PROPERTY_SETTINGS
@given(markets(), st.lists(jobs(), max_size=3), contexts())
def test_indexed_matcher_and_naive_scan_choose_the_same_offer(
    market: tuple[list[ResourceOffer], JobRequirements],
    more_jobs: list[JobRequirements],
    context: MarketContext,
) -> None:
    offers, first_job = market
    index = OfferIndex.build(offers, context)
    for job in [first_job, *more_jobs]:
        naive = scan_choose(job, offers, NOW, context)
        assert index.choose(job, NOW) == naive
        assert scan_match(job, offers, NOW, context).chosen == naive


resources = st.builds(
    Resources, st.integers(0, 4), st.integers(0, 16), st.sampled_from([0, 1024, 4096])
)


@PROPERTY_SETTINGS
@given(
    st.lists(
        st.tuples(st.sampled_from(["reserve", "release"]), st.integers(0, 5), resources),
        max_size=40,
    )
)
def test_ledger_is_never_over_committed(ops: list[tuple[str, int, Resources]]) -> None:
    ledger = CapacityLedger(Resources(8, 32, 8192))
    for op, n, need in ops:
        job_id = JobId(f"j{n}")
        if op == "reserve" and job_id not in ledger.reservations:
            fits = ledger.can_reserve(need)
            try:
                ledger = ledger.reserve(job_id, need)
                assert fits
            except OverCommitError:
                assert not fits
        elif op == "release" and job_id in ledger.reservations:
            ledger = ledger.release(job_id)
        assert ledger.reserved.fits_within(ledger.total)
        assert ledger.reserved + ledger.free == ledger.total


@PROPERTY_SETTINGS
@given(
    st.lists(
        st.tuples(
            st.integers(0, 9),
            st.sampled_from([10, 20]),
            st.sampled_from([200, 5000]),
            st.integers(0, 3),
        ),
        max_size=12,
    ),
    st.integers(1, 4),
    st.lists(st.integers(0, 11), max_size=6),
)
def test_admission_rounds_never_over_commit_and_every_job_gets_a_reason(
    specs: list[tuple[int, int, int, int]], starvation_limit: int, finish_order: list[int]
) -> None:
    ledger = CapacityLedger(Resources(8, 32, 64 * 1024))
    queue = JobQueue()
    for n, (gpus, price, deadline, cores) in enumerate(specs):
        queue = queue.push(
            JobRequirements(
                job_id=JobId(f"j{n}"),
                workload=WorkloadKind.WASM,
                accepted_tee_kinds=frozenset({TeeKind.TDX}),
                max_price_per_hour=Wei(price),
                deadline=Timestamp(NOW + deadline),
                duration_s=300,
                gpu=GpuRequirement(gpus) if gpus else None,
                cpu_cores=cores,
                memory_mib=1024,
            )
        )
    policy = AdmissionPolicy(starvation_limit)
    for finished in [*finish_order, None]:
        before = set(queue.job_ids)
        round_ = run_admission(queue, ledger, NOW, policy)
        assert round_.ledger.reserved.fits_within(round_.ledger.total)
        assert {d.job_id for d in round_.decisions} == before
        assert all(d.reason for d in round_.decisions)
        assert set(round_.queue.job_ids) <= before
        ledger, queue = round_.ledger, round_.queue
        done = JobId(f"j{finished}")
        if done in ledger.reservations:
            ledger = ledger.release(done)


@PROPERTY_SETTINGS
@given(st.lists(jobs(), max_size=6, unique_by=lambda j: j.job_id), resources)
def test_reoffered_bids_fit_the_free_capacity_together(
    deferred: list[JobRequirements], held: Resources
) -> None:
    total = Resources(8, 32, 64 * 1024)
    own = ResourceOffer(
        provider=PROVIDERS[0],
        peer_id=PeerId("me"),
        nonce=0,
        price_per_hour=Wei(5),
        cpu_cores=total.cpu_cores,
        memory_mib=total.memory_mib,
        tee_kind=TeeKind.TDX,
        measurement=MEASUREMENTS[0],
        tcb_status=TcbStatus.UP_TO_DATE,
        valid_from=Timestamp(0),
        valid_until=Timestamp(NOW * 2),
        gpu=GpuOffer(MODELS[0], 80 * 1024, total.gpus, True),
    )
    ledger = CapacityLedger(total, {JobId("running"): held})
    result = reoffer(deferred, ProviderState(own, ledger, Wei(5)), NOW)
    bid_total = sum((job.resources for job, _ in result.bids), Resources())
    assert bid_total.fits_within(ledger.free)
    for job, decision in result.decisions:
        assert decision.reason
        if decision.action is BidAction.BID:
            assert decision.price_per_hour is not None
            assert decision.price_per_hour <= job.max_price_per_hour
