"""Evidence sources. Each takes the 64-byte report data built by `proofs.binding` and returns raw
evidence bytes; parsing and verification belong to `proofs`.

- configfs-tsm (TDX, SEV-SNP, Arm CCA realms): a report entry under
  /sys/kernel/config/tsm/report; a CCA realm's outblob is its attestation token (platform and
  realm token), its inblob the 64-byte realm challenge.
- Gramine /dev/attestation (SGX DCAP).
- NVIDIA GPUs in confidential-computing mode, through NVML.
- sim: a host-key-signed JSON document, INSECURE (proofs.sim), for machines with no TEE.

The hardware interfaces are files or a library, so tests drive them with a fake tree or a fake
library; nothing here pretends a machine has hardware it lacks.
"""

from __future__ import annotations

import contextlib
import ctypes
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from node.enclave.errors import AttestationFailed, AttestationUnavailable
from node.enclave.workloads import WorkloadMeasurement
from proofs.claims import ReportData, TeeKind
from proofs.sim import create_sim_evidence

CONFIGFS_TSM_REPORT_ROOT = Path("/sys/kernel/config/tsm/report")
GRAMINE_ATTESTATION_ROOT = Path("/dev/attestation")
# The provider names are the guest drivers' module names (KBUILD_MODNAME) in Linux.
_TSM_PROVIDERS = {
    TeeKind.TDX: "tdx_guest",
    TeeKind.SEV_SNP: "sev_guest",
    TeeKind.CCA: "arm_cca_guest",
}
MAX_EVIDENCE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Availability:
    available: bool
    detail: str


@dataclass(frozen=True)
class GpuEvidence:
    index: int
    name: str
    nonce: bytes
    report: bytes
    certificate_chain: bytes


@dataclass(frozen=True)
class AttesterEvidence:
    kind: TeeKind
    evidence: bytes
    report_data: ReportData
    auxiliary: bytes | None = None
    """configfs-tsm auxblob (e.g. SEV-SNP certificate table), when the provider gives one."""
    insecure: bool = False


class Attester(Protocol):
    @property
    def kind(self) -> TeeKind: ...

    def availability(self) -> Availability: ...

    def evidence(
        self, report_data: ReportData, measurement: WorkloadMeasurement
    ) -> AttesterEvidence: ...


def _check_report_data(report_data: bytes) -> None:
    if len(report_data) != 64:
        raise AttestationFailed(f"report data must be 64 bytes, got {len(report_data)}")


class _HasAvailability(Protocol):
    def availability(self) -> Availability: ...


def _check_ready(attester: _HasAvailability, report_data: bytes) -> None:
    """Before touching hardware: well-formed report data, and the interface is there."""
    _check_report_data(report_data)
    availability = attester.availability()
    if not availability.available:
        raise AttestationUnavailable(availability.detail)


def _read_limited(path: Path) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(MAX_EVIDENCE_BYTES + 1)
    if len(data) > MAX_EVIDENCE_BYTES:
        raise AttestationFailed(f"{path} is larger than {MAX_EVIDENCE_BYTES} bytes")
    return data


class SimAttester:
    """INSECURE: proves only which host key signed. Never a fallback for a hardware attester."""

    def __init__(
        self, host_private_key: bytes, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._host_private_key = host_private_key
        self._clock = clock

    @property
    def kind(self) -> TeeKind:
        return TeeKind.SIM

    def availability(self) -> Availability:
        return Availability(True, "sim: host-key signed, INSECURE, no hardware isolation")

    def evidence(
        self, report_data: ReportData, measurement: WorkloadMeasurement
    ) -> AttesterEvidence:
        _check_report_data(report_data)
        document = create_sim_evidence(
            self._host_private_key, measurement, report_data, self._clock()
        )
        return AttesterEvidence(TeeKind.SIM, document, report_data, insecure=True)


class TsmEntries(Protocol):
    """Creates and removes configfs-tsm report entries (the kernel fills in their attributes)."""

    def create(self, path: Path) -> None: ...

    def remove(self, path: Path) -> None: ...


class ConfigfsEntries:
    def create(self, path: Path) -> None:
        path.mkdir()

    def remove(self, path: Path) -> None:
        path.rmdir()


class ConfigfsTsmAttester:
    """TDX quote, SEV-SNP report or CCA realm token through Linux configfs-tsm.

    Each request uses a fresh entry: write `inblob`, read `outblob`, `auxblob`, `provider`,
    then `generation`. A fresh entry starts at generation 0 and our one write makes it 1; any
    other value means another writer changed the entry under us, so the outblob may not be for
    our report data and is refused.
    """

    def __init__(
        self,
        kind: TeeKind,
        report_root: Path = CONFIGFS_TSM_REPORT_ROOT,
        entries: TsmEntries | None = None,
    ) -> None:
        if kind not in _TSM_PROVIDERS:
            raise ValueError(f"configfs-tsm serves tdx, sev-snp and cca, not {kind.label}")
        self._kind = kind
        self._root = report_root
        self._entries = entries or ConfigfsEntries()

    @property
    def kind(self) -> TeeKind:
        return self._kind

    def availability(self) -> Availability:
        if not self._root.is_dir():
            return Availability(
                False,
                f"{self._root} absent: not a confidential VM, or configfs/tsm_report not loaded",
            )
        return Availability(
            True, f"{self._root} present (expects provider {_TSM_PROVIDERS[self._kind]})"
        )

    def evidence(
        self, report_data: ReportData, measurement: WorkloadMeasurement
    ) -> AttesterEvidence:
        _check_ready(self, report_data)
        entry = self._root / f"capacloud-{uuid.uuid4().hex}"
        try:
            self._entries.create(entry)
        except OSError as exc:
            raise AttestationFailed(f"cannot create report entry {entry}: {exc}") from exc
        try:
            (entry / "inblob").write_bytes(report_data)
            outblob = _read_limited(entry / "outblob")
            provider = (entry / "provider").read_text().strip()
            auxblob_path = entry / "auxblob"
            auxblob = _read_limited(auxblob_path) if auxblob_path.exists() else b""
            generation = int((entry / "generation").read_text().strip())
        except (OSError, ValueError) as exc:
            raise AttestationFailed(f"configfs-tsm report failed: {exc}") from exc
        finally:
            # A leftover entry is harmless; the next request uses a new name.
            with contextlib.suppress(OSError):
                self._entries.remove(entry)
        expected = _TSM_PROVIDERS[self._kind]
        if provider != expected:
            raise AttestationFailed(f"configfs-tsm provider is {provider!r}, expected {expected!r}")
        if generation != 1:
            raise AttestationFailed(
                f"report entry generation is {generation}, expected 1: another writer raced us"
            )
        if not outblob:
            raise AttestationFailed("configfs-tsm returned an empty outblob")
        return AttesterEvidence(self._kind, outblob, report_data, auxiliary=auxblob or None)


class GramineAttester:
    """SGX DCAP quote through Gramine's /dev/attestation pseudo-files."""

    def __init__(self, root: Path = GRAMINE_ATTESTATION_ROOT) -> None:
        self._root = root

    @property
    def kind(self) -> TeeKind:
        return TeeKind.SGX

    def availability(self) -> Availability:
        type_file = self._root / "attestation_type"
        if not type_file.is_file():
            return Availability(False, f"{type_file} absent: not running inside Gramine-SGX")
        attestation_type = type_file.read_text().strip()
        if attestation_type != "dcap":
            return Availability(
                False, f"Gramine attestation type is {attestation_type!r}; DCAP is required"
            )
        return Availability(True, "Gramine-SGX with DCAP attestation")

    def evidence(
        self, report_data: ReportData, measurement: WorkloadMeasurement
    ) -> AttesterEvidence:
        _check_ready(self, report_data)
        try:
            (self._root / "user_report_data").write_bytes(report_data)
            quote = _read_limited(self._root / "quote")
        except OSError as exc:
            raise AttestationFailed(f"Gramine quote failed: {exc}") from exc
        if not quote:
            raise AttestationFailed("Gramine returned an empty quote")
        return AttesterEvidence(TeeKind.SGX, quote, report_data)


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    memory_bytes: int


class NvmlLibrary(Protocol):
    """The few NVML calls the runtime needs; `PynvmlLibrary` is the real one."""

    def gpus(self) -> list[GpuInfo]: ...

    def confidential_computing_enabled(self) -> bool: ...

    def attestation_report(self, index: int, nonce: bytes) -> bytes: ...

    def certificate_chain(self, index: int) -> bytes: ...


class PynvmlLibrary:
    """nvidia-ml-py; every NVML error becomes AttestationUnavailable with NVML's words."""

    def __init__(self) -> None:
        import pynvml

        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise AttestationUnavailable(f"NVML unavailable: {exc}") from exc

    def gpus(self) -> list[GpuInfo]:
        nvml = self._nvml
        try:
            found = []
            for index in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                name = nvml.nvmlDeviceGetName(handle)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle).total
                found.append(GpuInfo(index, str(name), int(memory)))
            return found
        except nvml.NVMLError as exc:
            raise AttestationUnavailable(f"NVML device query failed: {exc}") from exc

    def confidential_computing_enabled(self) -> bool:
        nvml = self._nvml
        try:
            state = nvml.nvmlSystemGetConfComputeState()
        except nvml.NVMLError as exc:
            raise AttestationUnavailable(
                f"NVML has no confidential-computing state: {exc}"
            ) from exc
        return bool(state.ccFeature)

    def attestation_report(self, index: int, nonce: bytes) -> bytes:
        nvml = self._nvml
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            report = nvml.nvmlDeviceGetConfComputeGpuAttestationReport(handle, nonce)
        except nvml.NVMLError as exc:
            raise AttestationFailed(f"GPU {index} attestation report failed: {exc}") from exc
        return ctypes.string_at(report.attestationReport, report.attestationReportSize)

    def certificate_chain(self, index: int) -> bytes:
        nvml = self._nvml
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            certificate = nvml.nvmlDeviceGetConfComputeGpuCertificate(handle)
        except nvml.NVMLError as exc:
            raise AttestationFailed(f"GPU {index} certificate failed: {exc}") from exc
        return ctypes.string_at(
            certificate.attestationCertChain, certificate.attestationCertChainSize
        )


class NvidiaGpuAttester:
    """GPU evidence bound to the CPU evidence: its nonce is the binding digest
    (report_data[0:32]), so the GPU reports name the same keys, provider and expiry."""

    def __init__(self, nvml: NvmlLibrary) -> None:
        self._nvml = nvml

    def availability(self) -> Availability:
        try:
            gpus = self._nvml.gpus()
            enabled = self._nvml.confidential_computing_enabled()
        except AttestationUnavailable as exc:
            return Availability(False, str(exc))
        if not gpus:
            return Availability(False, "NVML reports no GPU")
        if not enabled:
            return Availability(False, f"{len(gpus)} GPU(s), confidential-computing mode off")
        return Availability(True, f"{len(gpus)} GPU(s) in confidential-computing mode")

    def evidence(self, report_data: ReportData) -> tuple[GpuEvidence, ...]:
        _check_ready(self, report_data)
        nonce = bytes(report_data[:32])
        return tuple(
            GpuEvidence(
                index=gpu.index,
                name=gpu.name,
                nonce=nonce,
                report=self._nvml.attestation_report(gpu.index, nonce),
                certificate_chain=self._nvml.certificate_chain(gpu.index),
            )
            for gpu in self._nvml.gpus()
        )
