"""Fixtures of the enclave integration tests: a sim backend over the real sandboxes of this
machine, static test binaries in a measured root filesystem, and a client that seals input and
opens output. A machine without bubblewrap or a usable cgroup hierarchy fails these tests with
the probe's reason; it never skips them.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account

from node.enclave.backend import SandboxBackend, SandboxInstance, sim_backend
from node.enclave.envelope import seal_job_input_bytes
from node.enclave.errors import SandboxUnavailable
from node.enclave.jobs import JobId, JobLimits, JobOutcome, JobSpec
from node.enclave.native_sandbox import NativeSandbox, detect_native_sandbox
from node.enclave.sealing import Direction, open_stream, public_key_bytes
from proofs.receipts import job_market_domain

REPO = Path(__file__).resolve().parents[3]
WORKLOADS = REPO / "workloads"
JOB_MARKET = "0x" + "11" * 20


@pytest.fixture(scope="session")
def native_sandbox() -> NativeSandbox:
    try:
        return detect_native_sandbox()
    except SandboxUnavailable as exc:
        pytest.fail(f"native sandbox unavailable on this machine: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def host_account() -> Account:
    return Account.create()


@pytest.fixture(scope="session")
def backend(native_sandbox: NativeSandbox, host_account: Account) -> SandboxBackend:
    return sim_backend(bytes(host_account.key), native_sandbox)


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny root filesystem: the workloads' C sources built static with the host's gcc."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.fail("no C compiler: run tools/system-deps.sh", pytrace=False)
    root = tmp_path_factory.mktemp("rootfs")
    (root / "bin").mkdir()
    for name in ("hostile", "upper", "sha256"):
        subprocess.run(
            [
                compiler,
                "-O2",
                "-static",
                "-o",
                str(root / "bin" / name),
                str(WORKLOADS / "src" / f"{name}.c"),
            ],
            check=True,
        )
    return root


@dataclass
class Ran:
    outcome: JobOutcome
    sealed_input: bytes
    sealed_output: bytes
    plaintext_output: bytes | None


@dataclass
class Client:
    key: X25519PrivateKey
    provider: str

    def spec(self, limits: JobLimits, args: tuple[str, ...] = ()) -> JobSpec:
        return JobSpec(
            job_id=JobId(os.urandom(32)),
            provider=self.provider,
            receipt_domain=job_market_domain(31337, JOB_MARKET),
            limits=limits,
            args=args,
        )

    def seal(self, instance: SandboxInstance, spec: JobSpec, data: bytes) -> bytes:
        return seal_job_input_bytes(
            instance.hpke_public_key, spec.job_id, public_key_bytes(self.key), data
        )

    def run(
        self,
        instance: SandboxInstance,
        data: bytes = b"",
        args: tuple[str, ...] = (),
        limits: JobLimits | None = None,
        sealed_input: bytes | None = None,
        spec: JobSpec | None = None,
    ) -> Ran:
        spec = spec or self.spec(limits or JobLimits(wall_seconds=10), args)
        if sealed_input is None:
            sealed_input = seal_job_input_bytes(
                instance.hpke_public_key, spec.job_id, public_key_bytes(self.key), data
            )
        sink = io.BytesIO()
        outcome = instance.run_job(spec, io.BytesIO(sealed_input), sink)
        plaintext = None
        if outcome.succeeded:
            records = open_stream(
                self.key, spec.job_id, Direction.OUTPUT, io.BytesIO(sink.getvalue())
            )
            plaintext = b"".join(records)
        return Ran(outcome, sealed_input, sink.getvalue(), plaintext)


@pytest.fixture
def client(host_account: Account) -> Client:
    return Client(X25519PrivateKey.generate(), Account.create().address)


@pytest.fixture(scope="session")
def wasm_module() -> Callable[[str], bytes]:
    return lambda name: (WORKLOADS / "wasm" / f"{name}.wasm").read_bytes()
