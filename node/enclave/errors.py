"""The one error hierarchy of `node.enclave`.

Foreign exceptions (cryptography, wasmtime, onnxruntime, OS errors) are translated where they
are raised (`raise X(...) from exc`). A job that misbehaves is not an error: it ends as a failed
`JobOutcome` with a reason; these exceptions are for callers that misuse the runtime or a machine
that cannot run it.
"""

from __future__ import annotations


class EnclaveError(Exception):
    """Base of every error raised by `node.enclave`."""


class SandboxUnavailable(EnclaveError):
    """A sandbox capability is missing on this machine; the message says exactly which and why."""


class SealingError(EnclaveError):
    """Sealed bytes do not open: wrong key or job, tampered, truncated or malformed."""


class ReplayedInput(SealingError):
    """This instance has already opened this sealed input once."""


class OutputCapExceeded(EnclaveError):
    """The workload wrote more output than its job allows."""


class WorkloadInvalid(EnclaveError):
    """A module, model or root filesystem that cannot be measured or loaded."""


class AttestationUnavailable(EnclaveError):
    """The evidence source is absent here (no configfs-tsm, no /dev/attestation, no NVML)."""


class AttestationFailed(EnclaveError):
    """The evidence source exists but did not produce evidence for this request."""


class InstanceDestroyed(EnclaveError):
    """The instance was destroyed; its keys are gone."""


class BatchRefused(EnclaveError):
    """The enclave will not sign this batch: it covers a result the enclave did not produce."""
