"""The provider's enclave instances: started at boot, rotated before their keys expire, and
the jobs and batches they run and sign.

An instance's keys live only in the instance: nothing here reads a private key or a
plaintext. Jobs run off the trio thread (the sandbox blocks) under a limiter, one at a time
per instance, each with a wall-clock limit that ends before the job's deadline.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from node.config.model import WorkloadConfig
from node.enclave.backend import BindingRequest, EnclaveBackend, EnclaveEvidence, EnclaveInstance
from node.enclave.errors import EnclaveError
from node.enclave.jobs import JobId, JobLimits, JobSpec
from node.enclave.workloads import ExecWorkload, OnnxWorkload, WasmWorkload, Workload
from node.state import changes as sc
from node.state.effects import Effect, RotateEnclave, SignBatch, StartJob
from node.state.values import Address, Hash32, to_address, to_hash32
from proofs.receipts import Eip712Domain, Result, ResultBatch, batch_root

log = logging.getLogger(__name__)

# Seconds kept between the end of a job's run and its deadline, to submit the result.
SUBMIT_MARGIN_S = 20


def load_workload(config: WorkloadConfig) -> Workload:
    """The configured workload, read from disk; EnclaveError when it cannot be."""
    try:
        if config.kind == "wasm":
            return WasmWorkload(config.path.read_bytes(), config.path.name)
        if config.kind == "onnx":
            return OnnxWorkload(config.path.read_bytes())
        return ExecWorkload(config.path, config.argv)
    except OSError as exc:
        raise EnclaveError(f"workload {config.name}: cannot read {config.path}: {exc}") from exc


@dataclass
class _Running:
    workload: WorkloadConfig
    instance: EnclaveInstance
    lock: trio.Lock


class EnclaveHost:
    """Owns this boot's instances, by enclave key."""

    def __init__(
        self,
        backend: EnclaveBackend,
        workloads: Sequence[WorkloadConfig],
        boot_id: str,
    ) -> None:
        self._backend = backend
        self._workloads = {w.name: w for w in workloads}
        self._loaded = {w.name: load_workload(w) for w in workloads}
        self.boot_id = boot_id
        self._running: dict[Address, _Running] = {}

    @property
    def kind(self) -> int:
        return int(self._backend.kind)

    def start(self, name: str) -> sc.EnclaveStarted:
        """A new instance of a workload (fresh keys); the change that records it."""
        workload = self._workloads[name]
        instance = self._backend.create_instance(self._loaded[name])
        key = to_address(instance.enclave_address)
        self._running[key] = _Running(workload, instance, trio.Lock())
        log.info(
            "enclave %s for workload %s (%s, measurement %s)%s",
            key,
            name,
            workload.kind,
            instance.measurement.hex(),
            " INSECURE: sim, no hardware" if self._backend.kind.name == "SIM" else "",
        )
        return sc.EnclaveStarted(
            self.boot_id,
            name,
            workload.kind,
            int(instance.kind),
            to_hash32(bytes(instance.measurement)),
            key,
            "0x" + instance.hpke_public_key.hex(),
        )

    def start_all(self) -> list[sc.EnclaveStarted]:
        return [self.start(name) for name in self._workloads]

    def instance(self, enclave_key: str) -> EnclaveInstance | None:
        running = self._running.get(to_address(enclave_key))
        return running.instance if running else None

    def evidence(self, enclave_key: str, request: BindingRequest) -> EnclaveEvidence:
        running = self._running.get(to_address(enclave_key))
        if running is None:
            raise EnclaveError(f"no running enclave holds key {enclave_key}")
        return running.instance.evidence(request)

    def close(self) -> None:
        for running in self._running.values():
            running.instance.destroy()
        self._running.clear()

    # ------------------------------------------------------------------ effects

    async def rotate(self, effect: Effect) -> sc.StateChange | None:
        assert isinstance(effect, RotateEnclave)
        return self.start(effect.workload)

    async def run(
        self,
        effect: StartJob,
        *,
        provider: str,
        domain: Eip712Domain,
        inputs: Path,
        outputs: Path,
        chain_time: Callable[[], int],
    ) -> sc.StateChange:
        running = self._running.get(effect.enclave_key)
        if running is None:
            return sc.JobExecutionFailed(
                effect.job_id, "the enclave instance this job was sealed to is not running"
            )
        sealed_input = inputs / effect.job_id
        if not sealed_input.is_file():
            return sc.JobExecutionFailed(effect.job_id, "the sealed input is not on disk")
        left = effect.deadline - chain_time() - SUBMIT_MARGIN_S
        if left <= 0:
            return sc.JobExecutionFailed(effect.job_id, "too close to the deadline to run")
        workload = running.workload
        limits = JobLimits(
            wall_seconds=float(min(workload.wall_seconds, left)),
            memory_bytes=workload.memory_mib << 20,
            cpus=float(workload.cpu_cores),
        )
        spec = JobSpec(
            job_id=JobId(bytes.fromhex(effect.job_id[2:])),
            provider=provider,
            receipt_domain=domain,
            limits=limits,
        )
        outputs.mkdir(parents=True, exist_ok=True)
        partial = outputs / f"{effect.job_id}.partial"
        async with running.lock:
            outcome = await trio.to_thread.run_sync(
                _run_job, running.instance, spec, sealed_input, partial
            )
        if outcome.receipt is None or outcome.output_hash is None:
            partial.unlink(missing_ok=True)
            return sc.JobExecutionFailed(effect.job_id, str(outcome.failure))
        os.replace(partial, outputs / effect.job_id)
        receipt = outcome.receipt
        log.info("job %s ran in %.2f s", effect.job_id, outcome.usage.wall_seconds)
        return sc.JobExecuted(
            effect.job_id,
            to_hash32(outcome.output_hash),
            "0x" + receipt.signature.hex(),
            chain_time(),
        )

    async def sign_batch(
        self, effect: SignBatch, *, provider: str, domain: Eip712Domain
    ) -> sc.StateChange:
        running = self._running.get(effect.enclave_key)
        if running is None:
            raise EnclaveError(f"no running enclave holds key {effect.enclave_key}")
        job_ids = json.loads(effect.job_ids)
        output_hashes = json.loads(effect.output_hashes)
        signature = running.instance.sign_batch(domain, provider, job_ids, output_hashes)
        return sc.BatchSigned(
            effect.batch_id, effect.job_ids, effect.output_hashes, "0x" + signature.hex()
        )


def _run_job(instance: EnclaveInstance, spec: JobSpec, sealed_input: Path, output: Path):  # type: ignore[no-untyped-def]
    with sealed_input.open("rb") as source, output.open("wb") as sink:
        return instance.run_job(spec, source, sink)


def now() -> int:
    return int(time.time())


__all__ = ["EnclaveHost", "Hash32", "Result", "ResultBatch", "batch_root", "load_workload"]
