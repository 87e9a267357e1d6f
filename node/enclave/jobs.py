"""Domain values of a job run: its spec, its limits, and how it ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import NewType

from proofs.receipts import Eip712Domain, Result

MIN_SCRATCH_BYTES = 64 * 1024
"""Four pages for each writable mount: a tmpfs of size 0 would have no limit at all."""

JobId = NewType("JobId", bytes)
"""bytes32, as on-chain; also the HPKE info of the job's sealed input and output."""


@dataclass(frozen=True)
class JobLimits:
    wall_seconds: float = 60.0
    memory_bytes: int = 512 * 1024 * 1024
    output_bytes: int = 64 * 1024 * 1024
    fuel: int | None = None
    """wasm only: instructions budget; None meters fuel for billing without a cap."""
    pids: int = 64
    cpus: float = 1.0
    scratch_bytes: int = 64 * 1024 * 1024
    """exec/onnx: every byte the job may write, in all: half for its folder /work, a quarter
    each for /tmp and /dev/shm (each a private tmpfs of that size)."""

    def __post_init__(self) -> None:
        if self.wall_seconds <= 0 or self.memory_bytes <= 0 or self.output_bytes < 0:
            raise ValueError("limits must be positive")
        if self.pids < 1 or self.cpus <= 0 or self.scratch_bytes <= 0:
            raise ValueError("limits must be positive")
        if self.scratch_bytes < MIN_SCRATCH_BYTES:
            raise ValueError(f"scratch must be at least {MIN_SCRATCH_BYTES} bytes")


@dataclass(frozen=True)
class JobSpec:
    job_id: JobId
    provider: str
    receipt_domain: Eip712Domain
    limits: JobLimits = field(default_factory=JobLimits)
    args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.job_id) != 32:
            raise ValueError("job id must be 32 bytes")


class FailureReason(Enum):
    INPUT_REJECTED = "input-rejected"
    TIMEOUT = "timeout"
    FUEL_EXHAUSTED = "fuel-exhausted"
    MEMORY_LIMIT = "memory-limit"
    PIDS_LIMIT = "pids-limit"
    OUTPUT_LIMIT = "output-limit"
    TRAP = "trap"
    KILLED = "killed-by-signal"
    NONZERO_EXIT = "nonzero-exit"
    WORKLOAD_INVALID = "workload-invalid"
    SANDBOX_ERROR = "sandbox-error"


@dataclass(frozen=True)
class Failure:
    reason: FailureReason
    detail: str

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}"


@dataclass(frozen=True)
class Usage:
    wall_seconds: float = 0.0
    cpu_seconds: float | None = None
    fuel_consumed: int | None = None
    peak_memory_bytes: int | None = None
    output_bytes: int = 0


@dataclass(frozen=True)
class RunReport:
    """What a runner says about one run; plaintext-free by construction."""

    exit_code: int | None
    failure: Failure | None
    usage: Usage
    start_seconds: float = 0.0


@dataclass(frozen=True)
class SignedReceipt:
    result: Result
    signature: bytes
    """65 bytes r || s || v by the instance's enclave key (EIP-712 over `result`)."""


@dataclass(frozen=True)
class JobOutcome:
    job_id: JobId
    failure: Failure | None
    input_hash: bytes
    """sha256 of the sealed input bytes as received (ciphertext, never plaintext)."""
    output_hash: bytes | None
    """sha256 of the sealed output bytes; None when the job failed."""
    receipt: SignedReceipt | None
    usage: Usage
    exit_code: int | None = None

    @property
    def succeeded(self) -> bool:
        return self.failure is None
