"""The enclave backend interface and its one implementation over a sandbox and an attester.

A backend measures workloads and creates instances. An instance generates its keys inside
itself, produces evidence whose report data is `proofs.binding`'s, and runs jobs: it opens the
sealed input, runs the workload under limits, seals the output to the client's key and signs
the EIP-712 Result receipt over the spec it ran (its measurement and the job's arguments) and
the input it read. Nothing it returns holds a private key or plaintext; the caller
hands it ciphertext in and gets ciphertext out.

Which evidence an instance produces is the attester's business: `sim` (INSECURE, host-key
signed) or a hardware one. A backend is built for exactly one kind and never falls back to
another: a TDX backend on a machine without TDX raises, it does not become `sim`.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from node.enclave.attesters import (
    Attester,
    AttesterEvidence,
    ConfigfsTsmAttester,
    GpuEvidence,
    GramineAttester,
    NvidiaGpuAttester,
    SimAttester,
)
from node.enclave.envelope import open_envelope
from node.enclave.errors import (
    AttestationUnavailable,
    BatchRefused,
    InstanceDestroyed,
    SandboxUnavailable,
    SealingError,
)
from node.enclave.exec_runner import ExecRunner
from node.enclave.jobs import (
    Failure,
    FailureReason,
    JobLimits,
    JobOutcome,
    JobSpec,
    RunReport,
    SignedReceipt,
    Usage,
)
from node.enclave.keys import InstanceKeys
from node.enclave.native_sandbox import NativeSandbox
from node.enclave.onnx_runner import OnnxRunner
from node.enclave.output import OutputWriter, SealedOutput
from node.enclave.sealing import ByteSink, ByteSource
from node.enclave.wasm_runner import WasmRunner
from node.enclave.workloads import (
    ExecWorkload,
    OnnxWorkload,
    WasmWorkload,
    Workload,
    WorkloadMeasurement,
)
from proofs.binding import KeyBinding
from proofs.claims import TeeKind
from proofs.receipts import Eip712Domain, Result, ResultBatch, batch_root, workload_spec_hash


@dataclass(frozen=True)
class BindingRequest:
    """What a verifier asks an instance to bind into its evidence (besides its own keys)."""

    chain_id: int
    verifier: str
    provider: str
    nonce: bytes
    expires_at: int


@dataclass(frozen=True)
class EnclaveEvidence:
    measurement: WorkloadMeasurement
    binding: KeyBinding
    cpu: AttesterEvidence
    gpus: tuple[GpuEvidence, ...] = ()

    @property
    def insecure(self) -> bool:
        return self.cpu.insecure


class WorkloadRunner(Protocol):
    def run(
        self,
        args: tuple[str, ...],
        limits: JobLimits,
        plaintext: Iterator[bytes],
        output: OutputWriter,
    ) -> RunReport: ...

    def close(self) -> None: ...


class EnclaveInstance(Protocol):
    @property
    def kind(self) -> TeeKind: ...

    @property
    def measurement(self) -> WorkloadMeasurement: ...

    @property
    def enclave_address(self) -> str: ...

    @property
    def hpke_public_key(self) -> bytes: ...

    def evidence(self, request: BindingRequest) -> EnclaveEvidence: ...

    def run_job(
        self, spec: JobSpec, sealed_input: ByteSource, sealed_output: ByteSink
    ) -> JobOutcome:
        """Runs one job; on failure `sealed_output` may hold a partial stream to discard."""
        ...

    def sign_batch(self, domain: Eip712Domain, job_ids: Sequence[bytes]) -> bytes:
        """Signs one ResultBatch over results this instance produced, in the given order."""
        ...

    def destroy(self) -> None: ...


class EnclaveBackend(Protocol):
    @property
    def kind(self) -> TeeKind: ...

    def measure(self, workload: Workload) -> WorkloadMeasurement: ...

    def create_instance(self, workload: Workload) -> EnclaveInstance: ...


class _HashingSource:
    def __init__(self, source: ByteSource) -> None:
        self._source = source
        self._digest = hashlib.sha256()

    def read(self, size: int = -1, /) -> bytes:
        data = self._source.read(size)
        self._digest.update(data)
        return data

    def finish(self) -> bytes:
        """Hashes what the workload left unread, so the hash covers the whole sealed input."""
        while self.read(1 << 20):
            pass
        return self._digest.digest()


class SandboxInstance:
    def __init__(
        self,
        kind: TeeKind,
        measurement: WorkloadMeasurement,
        runner: WorkloadRunner,
        attester: Attester,
        gpu_attester: NvidiaGpuAttester | None,
    ) -> None:
        self._kind = kind
        self._measurement = measurement
        self._runner = runner
        self._attester = attester
        self._gpu_attester = gpu_attester
        self._keys = InstanceKeys()
        self._destroyed = threading.Event()
        # The results this instance signed: a batch may only cover these, never a result the
        # host made up (its output hash would be settled under this enclave's signature).
        self._results: dict[bytes, Result] = {}

    @property
    def kind(self) -> TeeKind:
        return self._kind

    @property
    def measurement(self) -> WorkloadMeasurement:
        return self._measurement

    @property
    def enclave_address(self) -> str:
        return self._keys.address

    @property
    def hpke_public_key(self) -> bytes:
        return self._keys.hpke_public_key

    def _check_alive(self) -> None:
        if self._destroyed.is_set():
            raise InstanceDestroyed("instance destroyed")

    def evidence(self, request: BindingRequest) -> EnclaveEvidence:
        self._check_alive()
        binding = KeyBinding(
            chain_id=request.chain_id,
            verifier=request.verifier,
            provider=request.provider,
            enclave_key=self._keys.address,
            hpke_public_key=self._keys.hpke_public_key,
            nonce=request.nonce,
            expires_at=request.expires_at,
        )
        report_data = binding.report_data()
        cpu = self._attester.evidence(report_data, self._measurement)
        gpus = self._gpu_attester.evidence(report_data) if self._gpu_attester else ()
        return EnclaveEvidence(self._measurement, binding, cpu, gpus)

    def run_job(
        self, spec: JobSpec, sealed_input: ByteSource, sealed_output: ByteSink
    ) -> JobOutcome:
        self._check_alive()
        source = _HashingSource(sealed_input)
        try:
            client_key, records = open_envelope(self._keys.open_input(spec.job_id, source))
        except SealingError as exc:
            return _failed(spec, source.finish(), Failure(FailureReason.INPUT_REJECTED, str(exc)))
        output = SealedOutput(client_key, spec.job_id, spec.limits.output_bytes, sealed_output)
        report = self._runner.run(spec.args, spec.limits, records, output)
        input_hash = source.finish()
        if report.failure is not None:
            return _failed(spec, input_hash, report.failure, report.usage, report.exit_code)
        output_hash = output.finish()
        # The spec hash is computed here from what ran, not taken from the host: a result of
        # another image or other arguments cannot settle the job the client asked for.
        spec_hash = workload_spec_hash(self._measurement, spec.args)
        result = Result(spec.job_id, spec.provider, spec_hash, input_hash, output_hash)
        signature = self._keys.sign_result(spec.receipt_domain, result)
        self._results[spec.job_id] = result
        return JobOutcome(
            job_id=spec.job_id,
            failure=None,
            input_hash=input_hash,
            output_hash=output_hash,
            receipt=SignedReceipt(result, signature),
            usage=report.usage,
            exit_code=report.exit_code,
        )

    def sign_batch(self, domain: Eip712Domain, job_ids: Sequence[bytes]) -> bytes:
        self._check_alive()
        if not job_ids:
            raise BatchRefused("a batch needs at least one result")
        unknown = [j.hex() for j in job_ids if j not in self._results]
        if unknown:
            raise BatchRefused(f"no result of this enclave for job {unknown[0]}")
        if len(set(job_ids)) != len(job_ids):
            raise BatchRefused("a job appears twice in the batch")
        results = [self._results[j] for j in job_ids]
        provider = results[0].provider
        root = batch_root([r.hash_struct() for r in results])
        return self._keys.sign_batch(domain, ResultBatch(provider, root, len(results)))

    def destroy(self) -> None:
        self._destroyed.set()
        self._keys.destroy()
        self._runner.close()


def _failed(
    spec: JobSpec,
    input_hash: bytes,
    failure: Failure,
    usage: Usage | None = None,
    exit_code: int | None = None,
) -> JobOutcome:
    return JobOutcome(
        job_id=spec.job_id,
        failure=failure,
        input_hash=input_hash,
        output_hash=None,
        receipt=None,
        usage=usage or Usage(),
        exit_code=exit_code,
    )


class SandboxBackend:
    """Runs workloads in this process's sandboxes, with evidence from one attester."""

    def __init__(
        self,
        attester: Attester,
        native_sandbox: NativeSandbox | None = None,
        gpu_attester: NvidiaGpuAttester | None = None,
    ) -> None:
        self._attester = attester
        self._native = native_sandbox
        self._gpu_attester = gpu_attester

    @property
    def kind(self) -> TeeKind:
        return self._attester.kind

    def measure(self, workload: Workload) -> WorkloadMeasurement:
        return workload.measure()

    def _native_sandbox(self, what: str) -> NativeSandbox:
        if self._native is None:
            raise SandboxUnavailable(
                f"{what} workloads need the native sandbox (bubblewrap + cgroups), which this "
                "backend was built without; `capa node probe` says why"
            )
        return self._native

    def create_instance(self, workload: Workload) -> SandboxInstance:
        measurement = workload.measure()
        runner: WorkloadRunner
        if isinstance(workload, WasmWorkload):
            runner = WasmRunner(workload, self._native_sandbox("wasm"))
        elif isinstance(workload, ExecWorkload):
            runner = ExecRunner(workload, self._native_sandbox("exec"))
        elif isinstance(workload, OnnxWorkload):
            runner = OnnxRunner(workload, self._native_sandbox("onnx"))
        else:  # pragma: no cover - the union is closed
            raise TypeError(f"unknown workload {type(workload).__name__}")
        return SandboxInstance(self.kind, measurement, runner, self._attester, self._gpu_attester)


def hardware_attester(kind: TeeKind) -> Attester:
    """The attester for a hardware kind, or AttestationUnavailable: never a silent `sim`."""
    attester: Attester
    if kind in (TeeKind.TDX, TeeKind.SEV_SNP, TeeKind.CCA):
        attester = ConfigfsTsmAttester(kind)
    elif kind is TeeKind.SGX:
        attester = GramineAttester()
    else:
        raise AttestationUnavailable(f"{kind.label} is not a CPU attester kind")
    availability = attester.availability()
    if not availability.available:
        raise AttestationUnavailable(f"{kind.label}: {availability.detail}")
    return attester


def sim_backend(host_private_key: bytes, native_sandbox: NativeSandbox | None) -> SandboxBackend:
    """The INSECURE backend: real sandboxes, no hardware. Only ever chosen by name."""
    return SandboxBackend(SimAttester(host_private_key), native_sandbox)
