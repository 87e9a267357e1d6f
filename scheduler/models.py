"""Domain values: resource offers, job requirements, on-chain history, resource amounts.

Prices are integer wei (``Wei``) per hour of compute. Integers match the contracts' uint256
amounts and the EIP-712 offer exactly, compare and hash fast in the matcher's hot loop, and
never round; ``scheduler.units`` renders them as ETH only for reason texts.

Times are integer unix seconds (``Timestamp``) and the current time is always a parameter.
Memory and VRAM are integer MiB.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import NewType

from scheduler.errors import (
    InvalidAddressError,
    InvalidMeasurementError,
    InvalidPriceError,
    InvalidRequirementError,
    InvalidTimeWindowError,
    NegativeResourceError,
)

ProviderAddress = NewType("ProviderAddress", str)
"""A provider's EVM address, lower-case ``0x`` + 40 hex digits."""

PeerId = NewType("PeerId", str)
"""A libp2p peer id, as the p2p layer prints it."""

JobId = NewType("JobId", str)
"""A job identifier, unique within the market."""

Wei = NewType("Wei", int)
"""An amount of wei; prices are wei per hour of compute."""

Timestamp = NewType("Timestamp", int)
"""Unix time in whole seconds."""

GpuModel = NewType("GpuModel", str)
"""A GPU model name as providers advertise it, e.g. ``H100``."""

Region = NewType("Region", str)
"""A coarse location hint, e.g. ``eu-west``."""

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_HEX32 = re.compile(r"[0-9a-fA-F]{64}")


def provider_address(text: str) -> ProviderAddress:
    """Validate an EVM address and return it in lower case, the form used as a map key."""
    if not _ADDRESS.fullmatch(text):
        raise InvalidAddressError(f"not a 20-byte hex address: {text!r}")
    return ProviderAddress(text.lower())


class TeeKind(enum.IntEnum):
    """Trusted execution environment kinds; values are the uint8 codes used on chain."""

    SGX = 1
    TDX = 2
    SEV_SNP = 3
    NVIDIA_CC = 4
    SIM = 5
    CCA = 6

    @property
    def is_hardware(self) -> bool:
        """Whether the kind is backed by hardware isolation (everything except SIM)."""
        return self is not TeeKind.SIM

    @property
    def label(self) -> str:
        """The name used in reason texts; SIM is flagged INSECURE wherever it shows."""
        return "SIM (INSECURE)" if self is TeeKind.SIM else self.name


class TcbStatus(enum.IntEnum):
    """Platform TCB status, ordered worst to best; values are shared with the contracts."""

    REVOKED = 0
    OUT_OF_DATE = 1
    OUT_OF_DATE_CONFIGURATION_NEEDED = 2
    CONFIGURATION_AND_SW_HARDENING_NEEDED = 3
    CONFIGURATION_NEEDED = 4
    SW_HARDENING_NEEDED = 5
    UP_TO_DATE = 6

    @property
    def label(self) -> str:
        """Intel's CamelCase spelling, e.g. ``OutOfDate``, as users see it in quotes."""
        return _TCB_LABELS[self]


_TCB_LABELS = {
    TcbStatus.REVOKED: "Revoked",
    TcbStatus.OUT_OF_DATE: "OutOfDate",
    TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED: "OutOfDateConfigurationNeeded",
    TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED: "ConfigurationAndSWHardeningNeeded",
    TcbStatus.CONFIGURATION_NEEDED: "ConfigurationNeeded",
    TcbStatus.SW_HARDENING_NEEDED: "SWHardeningNeeded",
    TcbStatus.UP_TO_DATE: "UpToDate",
}


class WorkloadKind(enum.Enum):
    """What a job runs; see the Workloads section of the architecture."""

    WASM = "wasm"
    ONNX = "onnx"
    EXEC = "exec"
    OCI = "oci"


@dataclass(frozen=True, slots=True)
class Measurement:
    """A 32-byte enclave/workload measurement, held as 64 lower-case hex digits."""

    hex: str

    def __post_init__(self) -> None:
        text = self.hex.removeprefix("0x")
        if not _HEX32.fullmatch(text):
            raise InvalidMeasurementError(f"measurement must be 32 bytes of hex: {self.hex!r}")
        object.__setattr__(self, "hex", text.lower())

    @classmethod
    def from_bytes(cls, raw: bytes) -> Measurement:
        """Build a measurement from its 32 raw bytes."""
        if len(raw) != 32:
            raise InvalidMeasurementError(f"measurement must be 32 bytes, got {len(raw)}")
        return cls(raw.hex())

    @property
    def short(self) -> str:
        """The first 8 hex digits, enough to tell measurements apart in a reason text."""
        return f"0x{self.hex[:8]}…"


def _require_non_negative(**amounts: int) -> None:
    for name, amount in amounts.items():
        if amount < 0:
            raise NegativeResourceError(f"{name} must be >= 0, got {amount}")


@dataclass(frozen=True, slots=True)
class Resources:
    """An amount of machine resources: what a job needs or a provider has."""

    gpus: int = 0
    cpu_cores: int = 0
    memory_mib: int = 0

    def __post_init__(self) -> None:
        _require_non_negative(gpus=self.gpus, cpu_cores=self.cpu_cores, memory_mib=self.memory_mib)

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.gpus + other.gpus,
            self.cpu_cores + other.cpu_cores,
            self.memory_mib + other.memory_mib,
        )

    def __sub__(self, other: Resources) -> Resources:
        """Subtract; raises NegativeResourceError when ``other`` does not fit in ``self``."""
        return Resources(
            self.gpus - other.gpus,
            self.cpu_cores - other.cpu_cores,
            self.memory_mib - other.memory_mib,
        )

    def fits_within(self, available: Resources) -> bool:
        """Whether every amount here is at most the same amount in ``available``."""
        return (
            self.gpus <= available.gpus
            and self.cpu_cores <= available.cpu_cores
            and self.memory_mib <= available.memory_mib
        )


@dataclass(frozen=True, slots=True)
class GpuOffer:
    """A homogeneous pool of GPUs in one offer.

    A machine with several GPU models publishes one offer per model, so one offer is one pool.
    """

    model: GpuModel
    vram_mib: int
    count: int
    cc_mode: bool

    def __post_init__(self) -> None:
        _require_non_negative(vram_mib=self.vram_mib, count=self.count)
        if self.count == 0:
            raise NegativeResourceError("a GPU offer needs at least one GPU; use gpu=None")


@dataclass(frozen=True, slots=True)
class ResourceOffer:
    """A provider's signed offer, as the client sees it after checking the signature."""

    provider: ProviderAddress
    peer_id: PeerId
    nonce: int
    price_per_hour: Wei
    cpu_cores: int
    memory_mib: int
    tee_kind: TeeKind
    measurement: Measurement
    tcb_status: TcbStatus
    valid_from: Timestamp
    valid_until: Timestamp
    gpu: GpuOffer | None = None
    workloads: frozenset[WorkloadKind] = frozenset(WorkloadKind)
    evidence_verified: bool = False
    # When the client (or a verifier it trusts) last verified the provider's evidence.
    evidence_verified_at: Timestamp | None = None
    region: Region = Region("unknown")
    latency_hint_ms: int = 0
    # Share of the provider's capacity in use, 0..1000; self-reported, used only for scoring.
    load_permille: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "provider", provider_address(self.provider))
        _require_non_negative(
            cpu_cores=self.cpu_cores,
            memory_mib=self.memory_mib,
            latency_hint_ms=self.latency_hint_ms,
            nonce=self.nonce,
        )
        if self.price_per_hour < 0:
            raise InvalidPriceError(f"price must be >= 0 wei, got {self.price_per_hour}")
        if self.valid_until <= self.valid_from:
            raise InvalidTimeWindowError(
                f"offer validity ends ({self.valid_until}) before it starts ({self.valid_from})"
            )
        if not 0 <= self.load_permille <= 1000:
            raise InvalidRequirementError(
                f"load must be 0..1000 permille, got {self.load_permille}"
            )
        if self.evidence_verified and self.evidence_verified_at is None:
            raise InvalidTimeWindowError("verified evidence needs the time it was verified")

    @property
    def key(self) -> tuple[ProviderAddress, int]:
        """Identity of the offer: a provider replaces an offer by publishing a higher nonce."""
        return (self.provider, self.nonce)

    @property
    def resources(self) -> Resources:
        """The machine resources this offer puts on the market."""
        return Resources(
            gpus=self.gpu.count if self.gpu else 0,
            cpu_cores=self.cpu_cores,
            memory_mib=self.memory_mib,
        )


@dataclass(frozen=True, slots=True)
class GpuRequirement:
    """GPUs a job needs, all from one pool; ``model=None`` accepts any model."""

    count: int
    min_vram_mib: int = 0
    model: GpuModel | None = None
    cc_mode_required: bool = False

    def __post_init__(self) -> None:
        _require_non_negative(count=self.count, min_vram_mib=self.min_vram_mib)
        if self.count == 0:
            raise InvalidRequirementError("a GPU requirement needs count >= 1; use gpu=None")


@dataclass(frozen=True, slots=True)
class JobRequirements:
    """What a job accepts: the client's side of a match and the provider's bid input."""

    job_id: JobId
    workload: WorkloadKind
    accepted_tee_kinds: frozenset[TeeKind]
    max_price_per_hour: Wei
    deadline: Timestamp
    duration_s: int
    min_tcb_status: TcbStatus = TcbStatus.UP_TO_DATE
    # Empty means any measurement; the client then relies on the proofs policy instead.
    allowed_measurements: frozenset[Measurement] = frozenset()
    gpu: GpuRequirement | None = None
    cpu_cores: int = 1
    memory_mib: int = 1024
    max_evidence_age_s: int = 24 * 3600
    # Empty means any region.
    regions: frozenset[Region] = frozenset()
    max_latency_ms: int | None = None
    submitted_at: Timestamp = Timestamp(0)

    def __post_init__(self) -> None:
        _require_non_negative(
            cpu_cores=self.cpu_cores,
            memory_mib=self.memory_mib,
            max_evidence_age_s=self.max_evidence_age_s,
        )
        if self.max_price_per_hour < 0:
            raise InvalidPriceError(f"max price must be >= 0 wei, got {self.max_price_per_hour}")
        if self.duration_s <= 0:
            raise InvalidTimeWindowError(f"duration must be > 0 s, got {self.duration_s}")
        if not self.accepted_tee_kinds:
            raise InvalidRequirementError("a job must accept at least one TEE kind")
        if self.max_latency_ms is not None and self.max_latency_ms < 0:
            raise NegativeResourceError(f"max latency must be >= 0, got {self.max_latency_ms}")

    @property
    def resources(self) -> Resources:
        """The machine resources the job holds while it runs."""
        return Resources(
            gpus=self.gpu.count if self.gpu else 0,
            cpu_cores=self.cpu_cores,
            memory_mib=self.memory_mib,
        )

    @property
    def accepts_sim(self) -> bool:
        """Whether the client explicitly accepts INSECURE simulated enclaves (devnets only)."""
        return TeeKind.SIM in self.accepted_tee_kinds


@dataclass(frozen=True, slots=True)
class ProviderHistory:
    """A provider's settled jobs, read from JobMarket events and handed in as data."""

    completed: int = 0
    timed_out: int = 0

    def __post_init__(self) -> None:
        _require_non_negative(completed=self.completed, timed_out=self.timed_out)
