"""`capa node probe` reports this machine as it is: checked against independent facts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

import node.cli.node_probe  # noqa: F401  registers `probe` on node_app
from node.cli.main import app
from node.enclave.attesters import GpuInfo
from node.enclave.native_sandbox import job_identity
from node.enclave.probe import probe_gpus


def test_probe_json_matches_this_machine():
    result = CliRunner().invoke(app, ["node", "probe", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    sandboxes = {c["name"]: c for c in report["sandboxes"]}
    attesters = {c["name"]: c for c in report["attesters"]}
    assert sandboxes["bubblewrap"]["available"] == (shutil.which("bwrap") is not None)
    assert sandboxes["wasmtime"]["available"] is True
    assert attesters["sim"]["available"] is True
    assert attesters["tdx"]["available"] == Path("/sys/kernel/config/tsm/report").is_dir()
    assert attesters["sgx"]["available"] == Path("/dev/attestation/attestation_type").is_file()
    # This machine runs the suite as root with the sandbox user set up (make deps): every
    # protection of issue 10 must show as active, seen from a real job.
    identity = job_identity()
    assert sandboxes["sandbox user"]["available"] is True
    isolation = sandboxes["sandbox isolation"]
    assert isolation["available"] is True, isolation["detail"]
    assert f"job processes at host uid {identity.uid};" in isolation["detail"]
    for words in ("/proc/sys read-only", "host /proc entries masked", "/dev read-only"):
        assert words in isolation["detail"]
    assert sandboxes["wasm isolation"]["available"] is True
    assert "multi-memory off" in sandboxes["wasm isolation"]["detail"]
    for capability in [*report["sandboxes"], *report["attesters"]]:
        assert capability["detail"], f"{capability['name']} gives no reason"
    assert report["cpu"]["logical_cores"] >= 1 and report["memory_bytes"] > 0


def test_probe_table_names_every_section():
    result = CliRunner().invoke(app, ["node", "probe"])
    assert result.exit_code == 0, result.output
    for word in ("CPU", "Memory", "Attesters", "Sandboxes", "native sandbox"):
        assert word in result.output


class _Nvml:
    def gpus(self) -> list[GpuInfo]:
        return [GpuInfo(0, "NVIDIA H100 80GB HBM3", 80 * 2**30)]

    def confidential_computing_enabled(self) -> bool:
        return True

    def attestation_report(self, index: int, nonce: bytes) -> bytes:
        return b""

    def certificate_chain(self, index: int) -> bytes:
        return b""


def test_gpu_section_reports_names_memory_and_cc_mode():
    report = probe_gpus(_Nvml())
    assert report.gpus[0].name == "NVIDIA H100 80GB HBM3"
    assert report.confidential_computing is True
