"""The provider's capacity ledger: what each admitted job holds, and what is left.

The ledger is immutable: ``reserve`` and ``release`` return a new ledger, so the daemon can
compute a decision, record it, and only then adopt the new ledger, and a failed step leaves
the old one untouched. It refuses, by raising, any operation that would over-commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from scheduler.errors import DuplicateReservationError, OverCommitError, UnknownReservationError
from scheduler.models import JobId, Resources
from scheduler.units import format_mib


@dataclass(frozen=True, slots=True)
class CapacityLedger:
    """Total machine resources and the reservation each admitted job holds."""

    total: Resources
    reservations: Mapping[JobId, Resources] = field(default_factory=dict)
    reserved: Resources = field(init=False)

    def __post_init__(self) -> None:
        # A read-only copy: callers cannot change a ledger behind its back.
        frozen = MappingProxyType(dict(self.reservations))
        object.__setattr__(self, "reservations", frozen)
        reserved = sum(frozen.values(), Resources())
        if not reserved.fits_within(self.total):
            raise OverCommitError(f"reservations {reserved} exceed capacity {self.total}")
        object.__setattr__(self, "reserved", reserved)

    @property
    def free(self) -> Resources:
        """Capacity not held by any job."""
        return self.total - self.reserved

    def can_reserve(self, need: Resources) -> bool:
        """Whether ``need`` fits into the free capacity right now."""
        return need.fits_within(self.free)

    def could_ever_fit(self, need: Resources) -> bool:
        """Whether ``need`` fits the machine at all, once every other job has finished."""
        return need.fits_within(self.total)

    def shortfall(self, need: Resources) -> str:
        """What is missing for ``need``, naming each short resource with both values."""
        return describe_shortfall(need, self.free, "free")

    def reserve(self, job_id: JobId, need: Resources) -> CapacityLedger:
        """A ledger with ``need`` held for the job; raises if it does not fit."""
        if job_id in self.reservations:
            raise DuplicateReservationError(f"job {job_id} already holds a reservation")
        if not self.can_reserve(need):
            raise OverCommitError(f"job {job_id}: {self.shortfall(need)}")
        return CapacityLedger(self.total, {**self.reservations, job_id: need})

    def release(self, job_id: JobId) -> CapacityLedger:
        """A ledger without the job's reservation; raises if it holds none."""
        if job_id not in self.reservations:
            raise UnknownReservationError(f"job {job_id} holds no reservation")
        remaining = {job: held for job, held in self.reservations.items() if job != job_id}
        return CapacityLedger(self.total, remaining)

    @property
    def utilization_permille(self) -> int:
        """The most used of GPUs, cores and memory, in permille of the machine."""
        return utilization_permille(self.reserved, self.total)


def utilization_permille(used: Resources, total: Resources) -> int:
    """The most used of GPUs, cores and memory, in permille, capped at 1000."""
    shares = [
        min(1000, part * 1000 // whole)
        for part, whole in (
            (used.gpus, total.gpus),
            (used.cpu_cores, total.cpu_cores),
            (used.memory_mib, total.memory_mib),
        )
        if whole > 0
    ]
    return max(shares, default=0)


def describe_shortfall(need: Resources, available: Resources, available_word: str) -> str:
    """E.g. ``needs 4 GPUs, 2 free; needs 64 GiB memory, 32 GiB free``."""
    parts = []
    if need.gpus > available.gpus:
        parts.append(f"needs {need.gpus} GPUs, {available.gpus} {available_word}")
    if need.cpu_cores > available.cpu_cores:
        parts.append(f"needs {need.cpu_cores} CPU cores, {available.cpu_cores} {available_word}")
    if need.memory_mib > available.memory_mib:
        parts.append(
            f"needs {format_mib(need.memory_mib)} memory, "
            f"{format_mib(available.memory_mib)} {available_word}"
        )
    return "; ".join(parts) or "fits"
