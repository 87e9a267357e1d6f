"""Exceptions raised for input the scheduler refuses to reason about.

Decisions (a rejected offer, a declined bid) are results, never exceptions; these errors mean
the caller handed in data that cannot describe a real offer, job or machine.
"""


class SchedulerError(Exception):
    """Base class for every error raised by the scheduler package."""


class InvalidInputError(SchedulerError, ValueError):
    """A value that cannot describe a real offer, job or machine."""


class NegativeResourceError(InvalidInputError):
    """A resource amount (GPUs, cores, memory, VRAM) below zero."""


class InvalidPriceError(InvalidInputError):
    """A price below zero."""


class InvalidMeasurementError(InvalidInputError):
    """A measurement that is not 32 bytes of hex."""


class InvalidAddressError(InvalidInputError):
    """A provider address that is not a 20-byte hex EVM address."""


class InvalidTimeWindowError(InvalidInputError):
    """A time window that ends before it starts, or a negative duration."""


class InvalidRequirementError(InvalidInputError):
    """Job requirements that no offer could ever satisfy by construction."""


class DuplicateOfferError(InvalidInputError):
    """Two offers with the same (provider, nonce) identity in one offer book."""


class InvalidWeightsError(InvalidInputError):
    """Scoring weights that are negative or all zero."""


class CapacityError(SchedulerError):
    """A capacity-ledger operation that would corrupt the ledger."""


class OverCommitError(CapacityError):
    """A reservation that does not fit the free capacity."""


class DuplicateReservationError(CapacityError):
    """A second reservation for a job that already holds one."""


class UnknownReservationError(CapacityError):
    """A release for a job that holds no reservation."""
