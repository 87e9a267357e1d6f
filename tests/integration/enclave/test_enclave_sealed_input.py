"""Sealed inputs that must not open: tampered, truncated, replayed, for another job or another
instance. Each ends as a failed job (input-rejected) before or while the workload runs."""

from __future__ import annotations

import io
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from node.enclave.envelope import seal_job_input_bytes
from node.enclave.errors import SealingError
from node.enclave.jobs import FailureReason, JobLimits
from node.enclave.sealing import Direction, open_stream, public_key_bytes, seal_bytes
from node.enclave.workloads import WasmWorkload


@pytest.fixture
def upper(backend, wasm_module):
    return backend.create_instance(WasmWorkload(wasm_module("upper")))


def _rejected(ran) -> None:
    assert ran.outcome.failure is not None
    assert ran.outcome.failure.reason is FailureReason.INPUT_REJECTED, ran.outcome.failure
    assert ran.outcome.receipt is None


def test_a_flipped_byte_is_rejected(upper, client):
    spec = client.spec(JobLimits())
    sealed = bytearray(client.seal(upper, spec, b"x" * 100))
    sealed[-5] ^= 1
    _rejected(client.run(upper, spec=spec, sealed_input=bytes(sealed)))


def test_tampering_deep_in_the_stream_fails_the_job_mid_run(upper, client):
    spec = client.spec(JobLimits())
    data = os.urandom(1024 * 1024)
    sealed = bytearray(client.seal(upper, spec, data))
    sealed[len(sealed) // 2] ^= 1
    ran = client.run(upper, spec=spec, sealed_input=bytes(sealed))
    _rejected(ran)


def test_a_truncated_stream_is_rejected(upper, client):
    spec = client.spec(JobLimits())
    data = os.urandom(200 * 1024)
    sealed = client.seal(upper, spec, data)
    _rejected(client.run(upper, spec=spec, sealed_input=sealed[: len(sealed) - 1000]))


def test_a_replayed_input_is_rejected(upper, client):
    spec = client.spec(JobLimits())
    sealed = client.seal(upper, spec, b"once")
    first = client.run(upper, spec=spec, sealed_input=sealed)
    assert first.outcome.succeeded
    again = client.run(upper, spec=spec, sealed_input=sealed)
    _rejected(again)
    assert "already opened" in again.outcome.failure.detail


def test_an_input_for_another_job_is_rejected(upper, client):
    other = client.spec(JobLimits())
    sealed = client.seal(upper, other, b"data")
    _rejected(client.run(upper, spec=client.spec(JobLimits()), sealed_input=sealed))


def test_an_input_sealed_for_another_instance_is_rejected(backend, wasm_module, upper, client):
    other = backend.create_instance(WasmWorkload(wasm_module("upper")))
    spec = client.spec(JobLimits())
    sealed = client.seal(other, spec, b"data")
    _rejected(client.run(upper, spec=spec, sealed_input=sealed))


def test_garbage_is_rejected(upper, client):
    _rejected(client.run(upper, sealed_input=os.urandom(500)))


def test_an_input_without_the_job_envelope_is_rejected(upper, client):
    spec = client.spec(JobLimits())
    sealed = seal_bytes(upper.hpke_public_key, spec.job_id, Direction.INPUT, b"no key inside")
    ran = client.run(upper, spec=spec, sealed_input=sealed)
    _rejected(ran)
    assert "job envelope" in ran.outcome.failure.detail


def test_the_output_is_sealed_to_the_key_inside_the_input_only(upper, client):
    """No one but the sealer names the output key: the host has no say in it."""
    spec = client.spec(JobLimits())
    chosen = X25519PrivateKey.generate()
    sealed = seal_job_input_bytes(
        upper.hpke_public_key, spec.job_id, public_key_bytes(chosen), b"for my eyes"
    )
    sink = io.BytesIO()
    assert upper.run_job(spec, io.BytesIO(sealed), sink).succeeded
    opened = b"".join(
        open_stream(chosen, spec.job_id, Direction.OUTPUT, io.BytesIO(sink.getvalue()))
    )
    assert opened == b"FOR MY EYES"
    with pytest.raises(SealingError):
        b"".join(
            open_stream(client.key, spec.job_id, Direction.OUTPUT, io.BytesIO(sink.getvalue()))
        )
