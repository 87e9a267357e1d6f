"""The provider's enclave instances: started at boot, rotated before their keys expire, and
the jobs and batches they run and sign.

An instance's keys live only in the instance: nothing here reads a private key or a
plaintext. Jobs run off the trio thread (the sandbox blocks), one at a time per instance,
each with a wall-clock limit that ends before the job's deadline; what they write is the
output sealed to the client, kept by the result store.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from node.config.model import WorkloadConfig
from node.daemon.provider_results import ResultStore
from node.enclave.backend import BindingRequest, EnclaveBackend, EnclaveEvidence, EnclaveInstance
from node.enclave.errors import EnclaveError
from node.enclave.jobs import JobId, JobLimits, JobOutcome, JobSpec
from node.enclave.workloads import ExecWorkload, OnnxWorkload, WasmWorkload, Workload
from node.state import changes as sc
from node.state.effects import SignBatch, StartJob
from node.state.values import Address, Hash32, to_address, to_hash32
from proofs.claims import TeeKind
from proofs.receipts import Eip712Domain, measurement_word, workload_spec_hash

if TYPE_CHECKING:
    from trio_typing import TaskStatus

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


def measurement_hash(measurement: bytes) -> Hash32:
    """A measurement as the chain keeps it (longer ones, such as a 48-byte MRTD, hashed)."""
    return to_hash32(measurement_word(bytes(measurement)))


@dataclass
class _Running:
    workload: WorkloadConfig
    instance: EnclaveInstance
    lock: trio.Lock


class EnclaveHost:
    """Owns this boot's instances, by enclave key."""

    def __init__(self, workloads: Sequence[WorkloadConfig], results: ResultStore) -> None:
        self._workloads = {w.name: w for w in workloads}
        self._results = results
        self._backend: EnclaveBackend | None = None
        self._loaded: dict[str, Workload] = {}
        self.boot_id = ""
        self._running: dict[Address, _Running] = {}

    def open(self, backend: EnclaveBackend, boot_id: str) -> None:
        """Boot: the backend chosen by config and the workloads read from disk."""
        self._loaded = {name: load_workload(w) for name, w in self._workloads.items()}
        self._backend = backend
        self.boot_id = boot_id

    @property
    def backend(self) -> EnclaveBackend:
        if self._backend is None:
            raise EnclaveError("the enclave host has not booted yet")
        return self._backend

    @property
    def kind(self) -> TeeKind:
        return self.backend.kind

    @property
    def insecure(self) -> bool:
        return self._backend is not None and self._backend.kind is TeeKind.SIM

    def workload(self, name: str) -> WorkloadConfig | None:
        return self._workloads.get(name)

    def spec_hash_of(self, enclave_key: str) -> bytes | None:
        """The spec a job must name to run on this instance (its workload, no arguments)."""
        running = self._running.get(to_address(enclave_key))
        if running is None:
            return None
        return workload_spec_hash(running.instance.measurement, ())

    def start(self, name: str) -> sc.EnclaveStarted:
        """A new instance of a workload (fresh keys); the change that records it."""
        workload = self._workloads.get(name)
        if workload is None:
            raise EnclaveError(f"no workload named {name!r} in [provider] workloads")
        instance = self.backend.create_instance(self._loaded[name])
        key = to_address(instance.enclave_address)
        self._running[key] = _Running(workload, instance, trio.Lock())
        log.info(
            "enclave %s for workload %s (%s, %s, measurement %s)%s",
            key,
            name,
            workload.kind,
            instance.kind.label,
            bytes(instance.measurement).hex(),
            " INSECURE: sim, no hardware isolation" if self.insecure else "",
        )
        return sc.EnclaveStarted(
            self.boot_id,
            name,
            workload.kind,
            int(instance.kind),
            measurement_hash(instance.measurement),
            key,
            "0x" + instance.hpke_public_key.hex(),
        )

    def start_all(self) -> list[sc.EnclaveStarted]:
        return [self.start(name) for name in self._workloads]

    def running_keys(self) -> list[Address]:
        return list(self._running)

    def instance(self, enclave_key: str) -> EnclaveInstance | None:
        running = self._running.get(to_address(enclave_key))
        return running.instance if running else None

    async def evidence(self, enclave_key: str, request: BindingRequest) -> EnclaveEvidence:
        """Fresh evidence bound to the instance's keys (hardware attesters block: a thread)."""
        running = self._running.get(to_address(enclave_key))
        if running is None:
            raise EnclaveError(f"no running enclave holds key {enclave_key}")
        return await trio.to_thread.run_sync(running.instance.evidence, request)

    def retire_unused(self, in_use: Iterable[str]) -> list[Address]:
        """Destroy the instances no key or job needs any more (a refused or replaced key
        whose jobs have ended): their keys die with them. Returns the keys destroyed."""
        keep = {to_address(k) for k in in_use}
        gone = [key for key in self._running if key not in keep]
        for key in gone:
            running = self._running.pop(key)
            if running.lock.locked():  # a job is running in it right now
                self._running[key] = running
                continue
            running.instance.destroy()
            log.info("enclave %s destroyed: no key or job needs it any more", key)
        return [key for key in gone if key not in self._running]

    def close(self) -> None:
        for running in self._running.values():
            running.instance.destroy()
        self._running.clear()

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Holds the instances while the daemon runs; their keys die with it."""
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            self.close()

    # ------------------------------------------------------------------ effects

    async def run_job(
        self,
        effect: StartJob,
        *,
        provider: str,
        domain: Eip712Domain,
        sealed_input: Path | None,
        chain_time: Callable[[], int],
    ) -> sc.StateChange:
        job_id = bytes.fromhex(effect.job_id[2:])
        done = self._results.find(job_id)
        if done is not None:
            # Ran before the answer was committed (the handler is retried): answer again.
            return self._executed(effect, done.result.output_hash, done.signature, chain_time)
        running = self._running.get(effect.enclave_key)
        if running is None:
            return sc.JobExecutionFailed(
                effect.job_id, "the enclave instance this job was sealed to is not running"
            )
        if sealed_input is None or not sealed_input.is_file():
            return sc.JobExecutionFailed(effect.job_id, "the sealed input is not on disk")
        left = effect.deadline - chain_time() - SUBMIT_MARGIN_S
        if left <= 0:
            return sc.JobExecutionFailed(effect.job_id, "too close to the deadline to run")
        workload = running.workload
        spec = JobSpec(
            job_id=JobId(job_id),
            provider=provider,
            receipt_domain=domain,
            limits=JobLimits(
                wall_seconds=float(min(workload.wall_seconds, left)),
                memory_bytes=workload.memory_mib << 20,
                cpus=float(workload.cpu_cores),
            ),
        )
        partial = self._results.partial_path(job_id)
        async with running.lock:
            outcome = await trio.to_thread.run_sync(
                _run_job, running.instance, spec, sealed_input, partial
            )
        if outcome.receipt is None or outcome.output_hash is None:
            self._results.discard(job_id)
            log.info("job %s failed in the enclave: %s", effect.job_id, outcome.failure)
            return sc.JobExecutionFailed(effect.job_id, str(outcome.failure))
        stored = self._results.commit(job_id, outcome.receipt.result, outcome.receipt.signature)
        log.info("job %s ran in %.2f s", effect.job_id, outcome.usage.wall_seconds)
        return self._executed(effect, stored.result.output_hash, stored.signature, chain_time)

    @staticmethod
    def _executed(
        effect: StartJob, output_hash: bytes, signature: bytes, chain_time: Callable[[], int]
    ) -> sc.JobExecuted:
        return sc.JobExecuted(
            effect.job_id, to_hash32(output_hash), "0x" + signature.hex(), chain_time()
        )

    def sign_batch(self, effect: SignBatch, *, domain: Eip712Domain) -> sc.BatchSigned:
        running = self._running.get(effect.enclave_key)
        if running is None:
            raise EnclaveError(f"no running enclave holds key {effect.enclave_key}")
        job_ids = [bytes.fromhex(str(j)[2:]) for j in json.loads(effect.job_ids)]
        signature = running.instance.sign_batch(domain, job_ids)
        return sc.BatchSigned(
            effect.batch_id, effect.job_ids, effect.output_hashes, "0x" + signature.hex()
        )


def _run_job(
    instance: EnclaveInstance, spec: JobSpec, sealed_input: Path, output: Path
) -> JobOutcome:
    with sealed_input.open("rb") as source, output.open("wb") as sink:
        return instance.run_job(spec, source, sink)
