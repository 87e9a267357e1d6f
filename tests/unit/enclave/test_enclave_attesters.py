"""Evidence sources against fake trees and a fake NVML: the file protocols, the binding of the
report data, and the refusals. Nothing here pretends this machine has TEE hardware."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from pathlib import Path

import pytest
from eth_account import Account

from node.enclave.attesters import (
    ConfigfsTsmAttester,
    GpuInfo,
    GramineAttester,
    NvidiaGpuAttester,
    SimAttester,
)
from node.enclave.backend import BindingRequest, SandboxInstance
from node.enclave.errors import AttestationFailed, AttestationUnavailable
from node.enclave.keys import InstanceKeys
from node.enclave.workloads import WasmWorkload, WorkloadMeasurement
from proofs.binding import KeyBinding, check_binding
from proofs.claims import ReportData, TeeKind
from proofs.collateral_directory import CollateralDirectory
from proofs.evidence import verify_evidence
from proofs.sim import verify_sim_evidence

REPORT_DATA = ReportData(bytes(range(64)))
MEASUREMENT = WorkloadMeasurement(bytes(32))
MODULE = b"\x00asm\x01\x00\x00\x00"


class _NoJobs:
    """A runner for an instance that only attests: evidence never touches the sandbox."""

    def run(self, *_: object) -> object:
        raise AssertionError("no job runs in an evidence test")

    def close(self) -> None:
        pass


class FakeKernelEntries:
    """Plays the kernel's part of configfs-tsm: a new entry appears with its attributes."""

    def __init__(self, provider: str, outblob: bytes, generation: int = 1) -> None:
        self.provider, self.outblob, self.generation = provider, outblob, generation
        self.inblobs: list[bytes] = []

    def create(self, path: Path) -> None:
        path.mkdir()
        (path / "provider").write_text(self.provider + "\n")
        (path / "outblob").write_bytes(self.outblob)
        (path / "auxblob").write_bytes(b"certs")
        (path / "generation").write_text(f"{self.generation}\n")

    def remove(self, path: Path) -> None:
        self.inblobs.append((path / "inblob").read_bytes())
        for child in path.iterdir():
            child.unlink()
        path.rmdir()


def test_sim_evidence_is_insecure_signed_and_bound(tmp_path):
    host = Account.create()
    workload = WasmWorkload(MODULE)
    instance = SandboxInstance(
        TeeKind.SIM, workload.measure(), _NoJobs(), SimAttester(bytes(host.key)), None
    )
    request = BindingRequest(31337, "0x" + "22" * 20, "0x" + "33" * 20, bytes(32), 2_000_000_000)

    evidence = instance.evidence(request)

    assert evidence.insecure and evidence.cpu.kind is TeeKind.SIM
    parsed = verify_sim_evidence(evidence.cpu.evidence)
    assert parsed.insecure and parsed.host_key == host.address
    assert parsed.measurement == instance.measurement
    binding = KeyBinding(
        31337,
        request.verifier,
        request.provider,
        instance.enclave_address,
        instance.hpke_public_key,
        request.nonce,
        request.expires_at,
    )
    check_binding(parsed.report_data, binding, datetime(2030, 1, 1, tzinfo=UTC))
    assert b'"insecure": true' in evidence.cpu.evidence


def test_configfs_tsm_writes_inblob_and_returns_outblob(tmp_path):
    entries = FakeKernelEntries("tdx_guest", b"TDX-QUOTE-BYTES")
    attester = ConfigfsTsmAttester(TeeKind.TDX, tmp_path, entries)
    evidence = attester.evidence(REPORT_DATA, MEASUREMENT)
    assert evidence.evidence == b"TDX-QUOTE-BYTES"
    assert evidence.auxiliary == b"certs"
    assert entries.inblobs == [REPORT_DATA]
    assert list(tmp_path.iterdir()) == []  # the entry is removed after use


def test_configfs_tsm_serves_a_cca_realm_token_that_proofs_verifies(tmp_path):
    # The fake kernel hands out Arm's example token as a realm's outblob would be.
    data = Path(__file__).resolve().parents[2] / "data" / "attestation-cca"
    token = (data / "cca-example-token.cbor").read_bytes()
    entries = FakeKernelEntries("arm_cca_guest", token)
    attester = ConfigfsTsmAttester(TeeKind.CCA, tmp_path, entries)
    evidence = attester.evidence(REPORT_DATA, MEASUREMENT)
    assert evidence.kind is TeeKind.CCA and entries.inblobs == [REPORT_DATA]
    claims = verify_evidence(evidence.evidence, CollateralDirectory(data), datetime.now(UTC)).claims
    assert claims.kind is TeeKind.CCA and claims.insecure  # the simulator's key, not hardware
    with pytest.raises(AttestationFailed, match="provider"):
        ConfigfsTsmAttester(TeeKind.CCA, tmp_path, FakeKernelEntries("tdx_guest", token)).evidence(
            REPORT_DATA, MEASUREMENT
        )


def test_configfs_tsm_refuses_a_raced_generation(tmp_path):
    attester = ConfigfsTsmAttester(TeeKind.TDX, tmp_path, FakeKernelEntries("tdx_guest", b"q", 2))
    with pytest.raises(AttestationFailed, match="generation"):
        attester.evidence(REPORT_DATA, MEASUREMENT)


def test_configfs_tsm_refuses_another_provider(tmp_path):
    attester = ConfigfsTsmAttester(TeeKind.SEV_SNP, tmp_path, FakeKernelEntries("tdx_guest", b"q"))
    with pytest.raises(AttestationFailed, match="sev_guest"):
        attester.evidence(REPORT_DATA, MEASUREMENT)


def test_configfs_tsm_absent_says_why(tmp_path):
    attester = ConfigfsTsmAttester(TeeKind.TDX, tmp_path / "missing")
    assert not attester.availability().available
    with pytest.raises(AttestationUnavailable, match="not a confidential VM"):
        attester.evidence(REPORT_DATA, MEASUREMENT)


def test_gramine_writes_user_report_data_and_reads_the_quote(tmp_path):
    (tmp_path / "attestation_type").write_text("dcap")
    (tmp_path / "quote").write_bytes(b"SGX-QUOTE")
    evidence = GramineAttester(tmp_path).evidence(REPORT_DATA, MEASUREMENT)
    assert evidence.evidence == b"SGX-QUOTE" and evidence.kind is TeeKind.SGX
    assert (tmp_path / "user_report_data").read_bytes() == REPORT_DATA


def test_gramine_without_dcap_is_unavailable(tmp_path):
    (tmp_path / "attestation_type").write_text("none")
    with pytest.raises(AttestationUnavailable, match="DCAP"):
        GramineAttester(tmp_path).evidence(REPORT_DATA, MEASUREMENT)


class FakeNvml:
    def __init__(self, gpus: list[GpuInfo], cc: bool) -> None:
        self._gpus, self._cc = gpus, cc
        self.nonces: list[bytes] = []

    def gpus(self) -> list[GpuInfo]:
        return self._gpus

    def confidential_computing_enabled(self) -> bool:
        return self._cc

    def attestation_report(self, index: int, nonce: bytes) -> bytes:
        self.nonces.append(nonce)
        return b"GPU-REPORT-%d" % index

    def certificate_chain(self, index: int) -> bytes:
        return b"CHAIN"


def test_gpu_evidence_is_bound_to_the_cpu_report_data():
    nvml = FakeNvml([GpuInfo(0, "NVIDIA H100", 80 << 30)], cc=True)
    evidence = NvidiaGpuAttester(nvml).evidence(REPORT_DATA)
    assert [e.report for e in evidence] == [b"GPU-REPORT-0"]
    assert nvml.nonces == [REPORT_DATA[:32]]


def test_gpu_without_cc_mode_is_unavailable():
    attester = NvidiaGpuAttester(FakeNvml([GpuInfo(0, "NVIDIA H100", 80 << 30)], cc=False))
    assert "mode off" in attester.availability().detail
    with pytest.raises(AttestationUnavailable):
        attester.evidence(REPORT_DATA)


def test_instance_keys_never_leave():
    keys = InstanceKeys()
    assert "key" not in repr(keys).lower().replace("instancekeys", "")
    with pytest.raises(TypeError):
        pickle.dumps(keys)
    assert not any(
        isinstance(getattr(keys, n, None), bytes)
        and len(getattr(keys, n)) == 32
        and n != "hpke_public_key"
        for n in dir(keys)
        if not n.startswith("_")
    )
