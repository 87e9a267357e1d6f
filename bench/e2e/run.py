"""Jobs through the daemons, end to end: latency per job and the jobs one provider settles.

    .venv/bin/python bench/e2e/run.py [--jobs 20] [--burst 20] [--batch-size 10]
                                      [--batch-max-wait 3] [--confirmations 1]

A devnet (anvil with 1 s blocks, one verifier, one provider, one client, each a `capa node
run` process, libp2p on loopback; the INSECURE sim enclave) runs small wasm jobs
(workloads/wasm/upper.wasm on a few bytes) submitted to the client daemon through its API,
as `capa job submit` does (stage the input, submit, follow, fetch the output), without a CLI
start-up per job; one `capa job submit` run is timed as well.

1. Latency: --jobs jobs one after another. Each runs from staging the input to holding the
   verified, decrypted output. The baseline, measured in the same run, is the same module on
   the same inputs through the sim backend directly (seal input, open inside, run, seal output,
   sign: the enclave's whole job path, as bench/enclave runs it), each after a pause, as
   jobs through the daemons arrive seconds apart at an instance whose next runtime is ready
   (sent back to back, each waits for the next runtime: shown too). Added latency = p50
   through the daemons minus p50 bare. `capa job submit` adds its own start-up (imports).
   The stages come from the job's status as the client daemon reports it, polled every 20 ms
   (a stage shorter than that shows as 0 and its time goes to the next one).
2. Throughput: --burst jobs submitted at once, settled by the one provider, first with a
   result transaction per job (batch_size 1, the latency devnet), then on a second devnet whose
   provider sends submitResults batches (--batch-size, --batch-max-wait). Jobs per minute run
   from the first submission to the last job the client sees settled; the provider's own
   transaction list gives the submitResult(s) transactions it sent.

One provider: a job goes to one provider whatever the number, and a second provider would
only add a candidate the client ranks; it adds load on this machine (every daemon polls the
chain) and nothing to the path a job takes. The provider offers 32 cores, so the burst is not
held back by the cores of the machine the bench runs on (each job asks one; they are tiny).

Confirmations 1 (the devnet's default): a node acts on an event once one block sits on its
block, as it would on a real chain with a low depth; anvil mines a transaction at once and
then a block every second, so each on-chain step waits for the next block (0.5 s on average)
and for the next poll of the node's chain watcher (every 0.25 s on a devnet).
--confirmations 0 acts on the head block itself (only sound where there are no reorgs).

Prints the tables, then one JSON line of figures.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey  # noqa: E402
from eth_account import Account  # noqa: E402

from node.api.client import ApiClient  # noqa: E402
from node.api.models import SubmitJob, WorkloadKindText  # noqa: E402
from node.devnet.launcher import WASM_DIR, Devnet, DevnetOptions, node_environment  # noqa: E402
from node.enclave.backend import SandboxInstance, sim_backend  # noqa: E402
from node.enclave.envelope import seal_job_input_bytes  # noqa: E402
from node.enclave.jobs import JobId, JobLimits, JobSpec  # noqa: E402
from node.enclave.native_sandbox import detect_native_sandbox  # noqa: E402
from node.enclave.sealing import public_key_bytes  # noqa: E402
from node.enclave.workloads import WasmWorkload  # noqa: E402
from node.state.model import JobStatus  # noqa: E402
from proofs.receipts import job_market_domain  # noqa: E402

UPPER = WASM_DIR / "upper.wasm"
GOAL_ADDED_P50_S = 2.0
POLL_S = 0.02
IDLE_S = 1.0
JOB_TIMEOUT_S = 180.0
LIMITS = JobLimits(wall_seconds=60, memory_bytes=256 << 20, output_bytes=1 << 20, cpus=1.0)
PROVIDER_CORES = 32
# A job's way through the client daemon, in order; each stage ends where the next begins.
MILESTONES = (
    JobStatus.SUBMITTED,
    JobStatus.CHECKING,
    JobStatus.SEALING,
    JobStatus.QUOTING,
    JobStatus.REQUESTED,
    JobStatus.ASSIGNED,
    JobStatus.DELIVERED,
    JobStatus.SETTLED,
    JobStatus.VERIFIED,
)
STAGES = (
    ("submit: staged and accepted", "start", JobStatus.SUBMITTED),
    ("rank offers", JobStatus.SUBMITTED, JobStatus.CHECKING),
    ("check evidence (policy, isValidKey)", JobStatus.CHECKING, JobStatus.SEALING),
    ("seal input", JobStatus.SEALING, JobStatus.QUOTING),
    ("quote", JobStatus.QUOTING, JobStatus.REQUESTED),
    ("matchJob until the client sees it", JobStatus.REQUESTED, JobStatus.ASSIGNED),
    ("upload input, receipt", JobStatus.ASSIGNED, JobStatus.DELIVERED),
    ("run, submitResult, settle seen", JobStatus.DELIVERED, JobStatus.SETTLED),
    ("fetch output, verify, decrypt", JobStatus.SETTLED, JobStatus.VERIFIED),
    ("read the output (GET .../output)", JobStatus.VERIFIED, "end"),
)
ENDS = frozenset({JobStatus.VERIFIED, JobStatus.FAILED, JobStatus.REFUNDED, JobStatus.CANCELLED})


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: with 20 values p99 is the slowest, p50 the 10th."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def job_input(tag: str, i: int) -> bytes:
    # Distinct inputs: a staged input is named by its hash.
    return f"bench {tag} job {i}: confidential words".encode()


# ---------------------------------------------------------------------------- baseline


def bare_runs(inputs: Sequence[bytes]) -> tuple[list[float], list[float]]:
    """Each input through a sim enclave instance of upper.wasm directly: seconds per job,
    (arriving at an idle instance, sent right after the previous one)."""
    backend = sim_backend(bytes(Account.create().key), detect_native_sandbox())
    instance = backend.create_instance(WasmWorkload(UPPER.read_bytes()))
    idle, back_to_back = [], []
    for data in inputs:
        # Jobs through the daemons come seconds apart: the instance has its next runtime
        # ready when one arrives, as it has here after the pause.
        time.sleep(IDLE_S)
        idle.append(timed_bare(instance, data))
    for data in inputs:
        back_to_back.append(timed_bare(instance, data))
    return idle, back_to_back


def timed_bare(instance: SandboxInstance, data: bytes) -> float:
    started = time.perf_counter()
    output = run_bare(instance, data)
    elapsed = time.perf_counter() - started
    assert output, "the bare job wrote no output"
    return elapsed


def run_bare(instance: SandboxInstance, data: bytes) -> int:
    client = X25519PrivateKey.generate()
    spec = JobSpec(JobId(os.urandom(32)), "0x" + "33" * 20,
                   job_market_domain(1, "0x" + "11" * 20), LIMITS, ())  # fmt: skip
    sealed = seal_job_input_bytes(
        instance.hpke_public_key, spec.job_id, public_key_bytes(client), data
    )
    sink = io.BytesIO()
    outcome = instance.run_job(spec, io.BytesIO(sealed), sink)
    if not outcome.succeeded:
        raise SystemExit(f"the bare wasm job failed: {outcome.failure}")
    return len(sink.getvalue())


# ---------------------------------------------------------------------------- through the daemons


@dataclass
class Tracked:
    job_id: str
    started: float  # before staging the input
    seen: dict[str, float] = field(default_factory=dict)  # status -> first seen
    ended: float | None = None  # output bytes in hand
    status: str = ""
    error: str = ""


def submission(data_id: str) -> SubmitJob:
    measurement = "0x" + WasmWorkload(UPPER.read_bytes()).measure().hex()
    return SubmitJob(
        workload=WorkloadKindText.WASM,
        measurement=measurement,
        input_id=data_id,
        max_price=str(10**16),
        timeout_s="600",
    )


def submit(api: ApiClient, data: bytes) -> Tracked:
    started = time.monotonic()
    staged = api.stage_input(data)
    submitted = api.submit(submission(staged.input_id))
    if submitted.rejected:
        raise SystemExit(f"the client daemon refused a job: {submitted.rejected}")
    return Tracked(submitted.job_id, started)


def follow(api: ApiClient, jobs: Sequence[Tracked], expected: dict[str, bytes]) -> None:
    """Poll the client daemon's job list until every job ended; read each verified output."""
    waiting = {t.job_id: t for t in jobs}
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while waiting:
        now = time.monotonic()
        for view in api.jobs(limit=max(100, len(waiting))):
            tracked = waiting.get(view.job_id)
            if tracked is None:
                continue
            tracked.seen.setdefault(view.status.value, now)
            tracked.status, tracked.error = view.status.value, view.error
            if view.status in ENDS:
                if view.status is JobStatus.VERIFIED:
                    output = api.output(view.job_id)
                    if output != expected[view.job_id]:
                        raise SystemExit(f"job {view.job_id}: wrong output {output!r}")
                tracked.ended = time.monotonic()
                del waiting[view.job_id]
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(waiting)} jobs did not end in {JOB_TIMEOUT_S:.0f} s")
        time.sleep(POLL_S)
    failed = [t for t in jobs if t.status != JobStatus.VERIFIED.value]
    if failed:
        raise SystemExit(f"{len(failed)} jobs did not verify: {failed[0].status} {failed[0].error}")


def milestone_times(tracked: Tracked) -> dict[Any, float]:
    """When the job reached each milestone: first seen there or at any later one."""
    assert tracked.ended is not None
    times: dict[Any, float] = {"start": tracked.started, "end": tracked.ended}
    later = tracked.ended
    for status in reversed(MILESTONES):
        later = min(later, tracked.seen.get(status.value, later))
        times[status] = later
    return times


def latency_run(net: Devnet, count: int) -> list[Tracked]:
    api = net.client.api()
    try:
        done = []
        for i in range(count):
            data = job_input("latency", i)
            tracked = submit(api, data)
            follow(api, [tracked], {tracked.job_id: data.upper()})
            done.append(tracked)
        return done
    finally:
        api.close()


def burst_run(net: Devnet, count: int, tag: str) -> tuple[list[Tracked], float]:
    """`count` jobs submitted together; (the jobs, seconds from first submission to the
    last job seen settled)."""
    api = net.client.api()
    try:
        inputs = [job_input(tag, i) for i in range(count)]
        jobs = [submit(api, data) for data in inputs]
        follow(api, jobs, {t.job_id: d.upper() for t, d in zip(jobs, inputs, strict=True)})
    finally:
        api.close()
    first = min(t.started for t in jobs)
    settled = max(milestone_times(t)[JobStatus.SETTLED] for t in jobs)
    return jobs, settled - first


def result_transactions(net: Devnet) -> tuple[int, int]:
    """(submitResult, submitResults) transactions the provider sent so far."""
    [provider] = net.providers
    rows = provider.get("/v1/transactions?limit=1000")["transactions"]
    singles = sum(1 for r in rows if r["effect_id"].startswith("submitResult:"))
    batches = sum(1 for r in rows if r["effect_id"].startswith("submitResults:"))
    return singles, batches


def cli_run(net: Devnet, folder: Path) -> tuple[float, dict[str, float], dict[str, Any]]:
    """One `capa job submit --json` as a user runs it, the daemon's job list polled
    meanwhile; (wall seconds, where the time went, its JSON)."""
    source, target = folder / "cli.in", folder / "cli.out"
    source.write_bytes(job_input("cli", 0))
    command = [sys.executable, "-c", "from node.cli.main import main; main()"]
    api = net.client.api()
    try:
        known = {view.job_id for view in api.jobs(limit=1000)}
        started = time.monotonic()
        process = subprocess.Popen(
            [*command, "job", "submit", "-c", str(net.client.config), "--json",
             "--wasm", str(UPPER), "--input", str(source), "--output", str(target)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=node_environment(),
            cwd=REPO,
        )  # fmt: skip
        seen: dict[str, float] = {}
        while process.poll() is None:
            now = time.monotonic()
            for view in api.jobs(limit=10):
                if view.job_id not in known:
                    seen.setdefault(view.status.value, now)
            time.sleep(POLL_S)
        out, err = process.communicate(timeout=JOB_TIMEOUT_S)
        wall = time.monotonic() - started
    finally:
        api.close()
    if process.returncode != 0 or target.read_bytes() != source.read_bytes().upper():
        raise SystemExit(f"capa job submit failed ({process.returncode}): {err[-2000:]}")
    submitted = min(seen.values(), default=started)
    verified = seen.get(JobStatus.VERIFIED.value, started + wall)
    parts = {
        "start-up, read, stage, submit": submitted - started,
        "the job in the daemon": verified - submitted,
        "CLI sees it, reads, writes, exits": started + wall - verified,
    }
    return wall, parts, json.loads(out)


def cli_start_up() -> float:
    """`capa --help`: what a CLI process costs before it does anything."""
    command = [sys.executable, "-c", "from node.cli.main import main; main()", "--help"]
    started = time.monotonic()
    subprocess.run(command, capture_output=True, check=True, env=node_environment(), cwd=REPO)
    return time.monotonic() - started


def devnet_options(args: argparse.Namespace, provider: dict[str, Any]) -> DevnetOptions:
    served = tuple(w for w in DevnetOptions().served() if w.name == "upper")
    return DevnetOptions(
        providers=1,
        verifiers=1,
        workloads=served,
        confirmations=args.confirmations,
        block_time=args.block_time,
        settings={"provider": {"provider": {"cpu_cores": PROVIDER_CORES, **provider}}},
    )


def timed(label: str, action: Callable[[], Any]) -> Any:
    started = time.monotonic()
    print(f"  {label} ...", end="", flush=True)
    value = action()
    print(f" {time.monotonic() - started:.1f} s", flush=True)
    return value


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20, help="jobs in the latency run")
    parser.add_argument("--burst", type=int, default=20, help="jobs submitted at once")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--batch-max-wait", type=int, default=3, help="seconds")
    parser.add_argument("--confirmations", type=int, default=1)
    parser.add_argument("--block-time", type=float, default=1.0, help="anvil's, seconds")
    args = parser.parse_args()

    print(
        f"e2e bench: 1 verifier, 1 provider (sim enclave, INSECURE), 1 client; anvil "
        f"{args.block_time:g} s blocks, confirmations {args.confirmations}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="capa-bench-e2e-") as temp:
        folder = Path(temp)
        net = timed("devnet up", lambda: Devnet.up(folder / "single", devnet_options(args, {})))
        with net:
            latency = timed(f"{args.jobs} jobs one by one", lambda: latency_run(net, args.jobs))
            cli_wall, cli_parts, cli_json = timed(
                "one `capa job submit`", lambda: cli_run(net, folder)
            )
            before = result_transactions(net)
            single_jobs, single_s = timed(
                f"{args.burst} jobs at once, batch_size 1",
                lambda: burst_run(net, args.burst, "single"),
            )
            after = result_transactions(net)
            single_txs = (after[0] - before[0], after[1] - before[1])
        batching = {"batch_size": args.batch_size, "batch_max_wait": args.batch_max_wait}
        net = timed(
            "devnet up (batching provider)",
            lambda: Devnet.up(folder / "batched", devnet_options(args, batching)),
        )
        with net:
            batched_jobs, batched_s = timed(
                f"{args.burst} jobs at once, batch_size {args.batch_size}",
                lambda: burst_run(net, args.burst, "batched"),
            )
            batched_txs = result_transactions(net)
    bare, bare_back_to_back = timed(
        "the same inputs through the sim backend directly",
        lambda: bare_runs([job_input("latency", i) for i in range(args.jobs)]),
    )
    start_up = cli_start_up()

    through = [t.ended - t.started for t in latency if t.ended is not None]
    p50, p99 = percentile(through, 50), percentile(through, 99)
    bare_p50, bare_p99 = percentile(bare, 50), percentile(bare, 99)
    added_p50 = p50 - bare_p50

    print()
    print(f"latency over {len(through)} jobs, staging the input to the verified output")
    print(f"{'measure':<44}{'p50 s':>9}{'p99 s':>9}{'goal':>10}")
    print(f"{'through the daemons (ApiClient)':<44}{p50:>9.3f}{p99:>9.3f}")
    print(f"{'bare: the module through the sim backend':<44}{bare_p50:>9.4f}{bare_p99:>9.4f}")
    print(f"{'  the same, sent back to back':<44}{percentile(bare_back_to_back, 50):>9.4f}"
          f"{percentile(bare_back_to_back, 99):>9.4f}")  # fmt: skip
    print(f"{'added by the daemons, p50 minus p50':<44}{added_p50:>9.3f}{'':>9}"
          f"{'<= ' + format(GOAL_ADDED_P50_S, 'g'):>10}")  # fmt: skip
    print(f"{'ratio through / bare (p50)':<44}{p50 / bare_p50:>9.0f}")
    print(f"{'one `capa job submit` (wall, one run)':<44}{cli_wall:>9.3f}")
    for label, seconds in cli_parts.items():
        print(f"{'  ' + label:<44}{seconds:>9.3f}")
    print(f"{'CLI start-up alone (capa --help)':<44}{start_up:>9.3f}")

    stages: dict[str, list[float]] = {}
    for tracked in latency:
        times = milestone_times(tracked)
        for label, begin, end in STAGES:
            stages.setdefault(label, []).append(times[end] - times[begin])
    print()
    print(f"stages (client daemon's job status, polled every {POLL_S * 1000:.0f} ms)")
    print(f"{'stage':<44}{'p50 s':>9}{'p99 s':>9}{'mean s':>9}")
    for label, values in stages.items():
        print(f"{label:<44}{percentile(values, 50):>9.3f}{percentile(values, 99):>9.3f}"
              f"{statistics.fmean(values):>9.3f}")  # fmt: skip

    single_rate, batched_rate = 60 * args.burst / single_s, 60 * args.burst / batched_s
    print()
    print(f"throughput: {args.burst} jobs submitted at once to one provider")
    print(f"{'provider':<30}{'settled in s':>14}{'jobs/min':>10}{'submitResult':>14}"
          f"{'submitResults':>15}")  # fmt: skip
    print(f"{'batch_size 1':<30}{single_s:>14.2f}{single_rate:>10.1f}{single_txs[0]:>14}"
          f"{single_txs[1]:>15}")  # fmt: skip
    label = f"batch_size {args.batch_size}, wait {args.batch_max_wait} s"
    print(f"{label:<30}{batched_s:>14.2f}{batched_rate:>10.1f}{batched_txs[0]:>14}"
          f"{batched_txs[1]:>15}")  # fmt: skip
    print(f"{'ratio batched / batch_size 1':<30}{'':>14}{batched_rate / single_rate:>10.2f}")

    figures = {
        "jobs": len(through),
        "confirmations": args.confirmations,
        "block_time_s": args.block_time,
        "latency_p50_s": round(p50, 3),
        "latency_p99_s": round(p99, 3),
        "bare_p50_s": round(bare_p50, 4),
        "bare_p99_s": round(bare_p99, 4),
        "bare_back_to_back_p50_s": round(percentile(bare_back_to_back, 50), 4),
        "added_p50_s": round(added_p50, 3),
        "goal_added_p50_s": GOAL_ADDED_P50_S,
        "cli_submit_s": round(cli_wall, 3),
        "cli_start_up_s": round(start_up, 3),
        "cli_parts_s": {k: round(v, 3) for k, v in cli_parts.items()},
        "cli_state": cli_json.get("state"),
        "stages_p50_s": {k: round(percentile(v, 50), 3) for k, v in stages.items()},
        "burst_jobs": args.burst,
        "single_jobs_per_min": round(single_rate, 1),
        "single_submit_result_txs": single_txs[0],
        "batch_size": args.batch_size,
        "batch_max_wait_s": args.batch_max_wait,
        "batched_jobs_per_min": round(batched_rate, 1),
        "batched_submit_result_txs": batched_txs[0],
        "batched_submit_results_txs": batched_txs[1],
        "batched_over_single": round(batched_rate / single_rate, 2),
        "burst_latency_p50_single_s": round(
            percentile([t.ended - t.started for t in single_jobs if t.ended], 50), 3
        ),
        "burst_latency_p50_batched_s": round(
            percentile([t.ended - t.started for t in batched_jobs if t.ended], 50), 3
        ),
    }
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
