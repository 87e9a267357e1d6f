"""Benchmark: match 10,000 jobs against 1,000 offers, indexed matcher vs naive full scan.

Run from the repository root: ``.venv/bin/python bench/scheduler/run.py``.
Prints a table, then as its last line one JSON object with the figures.

Times are measured without tracemalloc (it slows Python allocation several-fold); peak
memory is measured in a second, traced pass of the same work. Both matchers run on the same
market in the same process, and every job's choice is checked to be the same.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scheduler.matching import OfferIndex, ScoredOffer, scan_choose, scan_match
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
from scheduler.scoring import MarketContext

GOAL_TOTAL_S = 1.0
GOAL_PEAK_MB = 200.0
EXPLAIN_SAMPLE = 100
NOW = Timestamp(1_750_000_000)
MILLI_ETH = 10**15

# (model, VRAM GiB, base price in milli-ETH per GPU-hour, CC-capable)
GPU_CATALOG = [
    ("H100", 80, 4.0, True),
    ("H200", 141, 5.0, True),
    ("A100", 80, 2.5, False),
    ("A100-40", 40, 2.0, False),
    ("L40S", 48, 1.5, False),
    ("RTX4090", 24, 0.8, False),
]
TEE_WEIGHTS = {
    TeeKind.TDX: 30,
    TeeKind.SEV_SNP: 25,
    TeeKind.SGX: 20,
    TeeKind.NVIDIA_CC: 15,
    TeeKind.SIM: 10,
}
REGIONS = [Region(r) for r in ("eu-west", "eu-central", "us-east", "us-west", "ap-south")]


def make_market(
    rng: random.Random, offer_count: int
) -> tuple[list[ResourceOffer], MarketContext, list[Measurement]]:
    """A synthetic but plausible offer book, with on-chain histories."""
    measurements = [Measurement(rng.randbytes(32).hex()) for _ in range(12)]
    providers = [ProviderAddress(f"0x{rng.getrandbits(160):040x}") for _ in range(offer_count // 2)]
    histories = {
        p: ProviderHistory(rng.randint(0, 500), rng.randint(0, 25))
        for p in providers
        if rng.random() < 0.8
    }
    nonces: dict[ProviderAddress, int] = {}
    offers = []
    for _ in range(offer_count):
        provider = rng.choice(providers)
        nonces[provider] = nonces.get(provider, -1) + 1
        tee = rng.choices(list(TEE_WEIGHTS), weights=list(TEE_WEIGHTS.values()))[0]
        gpu = None
        price = rng.uniform(0.05, 0.3)
        if rng.random() < 0.75:
            model, vram, unit_price, cc_capable = rng.choice(GPU_CATALOG)
            count = rng.choice([1, 2, 4, 8])
            gpu = GpuOffer(GpuModel(model), vram * 1024, count, cc_capable and rng.random() < 0.8)
            price = unit_price * rng.uniform(0.7, 1.5)
        tcb = TcbStatus.UP_TO_DATE if rng.random() < 0.8 else rng.choice(list(TcbStatus))
        verified = rng.random() < 0.92
        expired = rng.random() < 0.03
        offers.append(
            ResourceOffer(
                provider=provider,
                peer_id=PeerId(f"12D3KooW{rng.getrandbits(64):016x}"),
                nonce=nonces[provider],
                price_per_hour=Wei(int(price * MILLI_ETH)),
                cpu_cores=rng.choice([8, 16, 32, 64, 128]),
                memory_mib=rng.choice([32, 64, 128, 256, 512]) * 1024,
                tee_kind=tee,
                measurement=rng.choice(measurements),
                tcb_status=tcb,
                valid_from=Timestamp(NOW - 3600),
                valid_until=Timestamp(NOW - 60 if expired else NOW + rng.randint(600, 7200)),
                gpu=gpu,
                workloads=frozenset(
                    {WorkloadKind.WASM} | {w for w in WorkloadKind if rng.random() < 0.6}
                ),
                evidence_verified=verified,
                evidence_verified_at=Timestamp(NOW - rng.randint(0, 36 * 3600))
                if verified
                else None,
                region=rng.choice(REGIONS),
                latency_hint_ms=rng.randint(5, 250),
                load_permille=rng.randint(0, 1000),
            )
        )
    return offers, MarketContext(histories=histories), measurements


def make_jobs(
    rng: random.Random, count: int, measurements: Sequence[Measurement]
) -> list[JobRequirements]:
    """Jobs with a spread of requirements: most need GPUs, some are picky about everything."""
    hardware = [k for k in TeeKind if k.is_hardware]
    jobs = []
    for n in range(count):
        kinds = set(rng.sample(hardware, rng.randint(1, 3)))
        if rng.random() < 0.02:
            kinds.add(TeeKind.SIM)
        gpu = None
        max_price = rng.uniform(0.05, 0.4)
        if rng.random() < 0.7:
            model, vram, unit_price, cc_capable = rng.choice(GPU_CATALOG)
            gpu = GpuRequirement(
                count=rng.choice([1, 1, 2, 4, 8]),
                min_vram_mib=vram * 1024 if rng.random() < 0.3 else 0,
                model=GpuModel(model) if rng.random() < 0.85 else None,
                cc_mode_required=cc_capable and rng.random() < 0.3,
            )
            max_price = unit_price * rng.uniform(0.6, 1.6)
        jobs.append(
            JobRequirements(
                job_id=JobId(f"job-{n}"),
                workload=rng.choice(list(WorkloadKind)),
                accepted_tee_kinds=frozenset(kinds),
                max_price_per_hour=Wei(int(max_price * MILLI_ETH)),
                deadline=Timestamp(NOW + rng.randint(60, 24 * 3600)),
                duration_s=rng.randint(30, 3600),
                min_tcb_status=(
                    TcbStatus.UP_TO_DATE if rng.random() < 0.7 else TcbStatus.SW_HARDENING_NEEDED
                ),
                allowed_measurements=(
                    frozenset(rng.sample(list(measurements), 4))
                    if rng.random() < 0.2
                    else frozenset()
                ),
                gpu=gpu,
                cpu_cores=rng.choice([1, 2, 4, 8, 16, 32]),
                memory_mib=rng.choice([1, 4, 16, 64]) * 1024,
                max_evidence_age_s=rng.choice([3600, 6 * 3600, 24 * 3600]),
                regions=frozenset(rng.sample(REGIONS, 2)) if rng.random() < 0.2 else frozenset(),
                max_latency_ms=rng.choice([None, None, 100, 200]),
            )
        )
    return jobs


def timed(run: Callable[[], object]) -> tuple[float, object]:
    gc.collect()
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def traced_peak_mb(run: Callable[[], object]) -> float:
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--offers", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    offers, context, measurements = make_market(rng, args.offers)
    jobs = make_jobs(rng, args.jobs, measurements)

    def build() -> OfferIndex:
        return OfferIndex.build(offers, context)

    build_s, index = timed(build)
    assert isinstance(index, OfferIndex)

    def run_indexed() -> list[ScoredOffer | None]:
        return [index.choose(job, NOW) for job in jobs]

    def run_naive() -> list[ScoredOffer | None]:
        return [scan_choose(job, offers, NOW, context) for job in jobs]

    indexed_s, indexed_out = timed(run_indexed)
    naive_s, naive_out = timed(run_naive)
    assert isinstance(indexed_out, list) and isinstance(naive_out, list)

    mismatches = sum(
        1
        for a, b in zip(indexed_out, naive_out, strict=True)
        if (a.offer.key if a else None) != (b.offer.key if b else None)
    )
    # The explaining scan must agree as well; it is slower, so check a sample.
    for job, chosen in list(zip(jobs, indexed_out, strict=True))[:: max(1, len(jobs) // 200)]:
        explained = scan_match(job, offers, NOW, context).chosen
        assert (explained.offer.key if explained else None) == (
            chosen.offer.key if chosen else None
        )
    assert mismatches == 0, f"{mismatches} jobs got a different offer from the index"

    indexed_peak = traced_peak_mb(lambda: (build(), run_indexed()))
    naive_peak = traced_peak_mb(lambda: [scan_choose(j, offers, NOW, context) for j in jobs[:1000]])

    def run_explaining() -> None:
        for job in jobs[:EXPLAIN_SAMPLE]:
            scan_match(job, offers, NOW, context)

    explain_s, _ = timed(run_explaining)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    matched = sum(1 for chosen in indexed_out if chosen is not None)
    figures = {
        "jobs": len(jobs),
        "offers": len(offers),
        "matched": matched,
        "seed": args.seed,
        "index_build_s": round(build_s, 4),
        "indexed_total_s": round(indexed_s, 4),
        "indexed_total_with_build_s": round(indexed_s + build_s, 4),
        "indexed_per_match_us": round(indexed_s / len(jobs) * 1e6, 2),
        "indexed_peak_traced_mb": round(indexed_peak, 2),
        "naive_total_s": round(naive_s, 4),
        "naive_per_match_us": round(naive_s / len(jobs) * 1e6, 2),
        "naive_peak_traced_mb_1000_jobs": round(naive_peak, 2),
        "explain_per_match_us": round(explain_s / EXPLAIN_SAMPLE * 1e6, 2),
        "speedup": round(naive_s / indexed_s, 1),
        "same_choice": mismatches == 0,
        "process_peak_rss_mb": round(rss_mb, 1),
        "goal_total_s": GOAL_TOTAL_S,
        "goal_peak_mb": GOAL_PEAK_MB,
        "meets_time_goal": indexed_s + build_s <= GOAL_TOTAL_S,
        "meets_memory_goal": rss_mb <= GOAL_PEAK_MB,
        "python": platform.python_version(),
    }

    rows = [
        ("indexed (OfferIndex.choose)", indexed_s, indexed_s / len(jobs), f"{indexed_peak:.1f} MB"),
        ("naive full scan (scan_choose)", naive_s, naive_s / len(jobs), f"{naive_peak:.1f} MB*"),
        (
            "explaining scan (scan_match)",
            explain_s / EXPLAIN_SAMPLE * len(jobs),
            explain_s / EXPLAIN_SAMPLE,
            "-",
        ),
    ]
    print(
        f"scheduler bench: {len(jobs)} jobs x {len(offers)} offers, seed {args.seed}, "
        f"{matched} matched, index build {build_s * 1e3:.1f} ms"
    )
    print(f"{'matcher':<32}{'total s':>10}{'per match us':>15}{'peak traced':>14}")
    for name, total, per, peak in rows:
        print(f"{name:<32}{total:>10.3f}{per * 1e6:>15.1f}{peak:>14}")
    print(
        f"* naive peak over its first 1000 jobs; explaining scan total extrapolated from {EXPLAIN_SAMPLE} jobs"
    )
    print(
        f"speedup {naive_s / indexed_s:.1f}x, same choice on all {len(jobs)} jobs; "
        f"process peak RSS {rss_mb:.1f} MB (goal <= {GOAL_PEAK_MB:.0f} MB); "
        f"indexed total incl. build {indexed_s + build_s:.3f} s (goal <= {GOAL_TOTAL_S} s)"
    )
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
