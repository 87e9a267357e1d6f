"""The one error hierarchy of `proofs`.

Every failure leaves this package as a `ProofError` subclass with a one-line reason; foreign
exceptions (cryptography, dcap-qvl, json, eth-account) are translated where they are raised
(`raise X(...) from exc`), so callers never see a traceback from a library they did not call.
"""

from __future__ import annotations


class ProofError(Exception):
    """Base of every error raised by `proofs`."""


class MalformedEvidence(ProofError):
    """The evidence bytes do not parse: truncated, oversized, wrong lengths or fields."""


class UnsupportedEvidence(ProofError):
    """Well-formed, but a format, version or algorithm this verifier does not handle."""


class SignatureInvalid(ProofError):
    """A signature over evidence, collateral or a receipt does not verify."""


class CertificateInvalid(ProofError):
    """A certificate chain is broken, not anchored at a pinned root, expired or revoked."""


class CollateralError(ProofError):
    """Collateral is missing, malformed, for another platform, or not valid at the given time."""


class CollateralUnavailable(CollateralError):
    """The source has no collateral for this evidence at all (none was handed over), as
    opposed to collateral that is broken or could not be fetched. Intel quotes are then
    verified crypto-only."""


class BindingMismatch(ProofError):
    """Evidence is genuine but bound to other data (report data, TCB, chip id)."""


class PolicyInvalid(ProofError):
    """A policy document is malformed: an unknown key, or a value of the wrong type or range."""
