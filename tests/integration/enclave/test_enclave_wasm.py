"""wasm workloads in the sim backend: round trip with a verifiable receipt, and every limit
proven by a module that breaks it, each ending as a failed job while this process carries on."""

from __future__ import annotations

import hashlib
import threading

import pytest
import wasmtime

from node.enclave.backend import SandboxBackend
from node.enclave.jobs import FailureReason, JobLimits
from node.enclave.workloads import WasmWorkload
from proofs.receipts import job_market_domain, result_digest, verify_signed_by

JOB_MARKET = "0x" + "11" * 20


@pytest.fixture(scope="module")
def hostile(backend: SandboxBackend, wasm_module):
    return backend.create_instance(WasmWorkload(wasm_module("hostile")))


def test_round_trip_is_sealed_and_the_receipt_verifies(backend, wasm_module, client):
    module = wasm_module("upper")
    instance = backend.create_instance(WasmWorkload(module))
    assert instance.measurement == hashlib.sha256(module).digest()
    marker = b"confidential-marker-7f3a " * 1000

    ran = client.run(instance, marker)

    assert ran.outcome.succeeded, ran.outcome.failure
    assert ran.plaintext_output == marker.upper()
    assert b"confidential-marker" not in ran.sealed_output
    assert b"CONFIDENTIAL-MARKER" not in ran.sealed_output
    assert ran.outcome.input_hash == hashlib.sha256(ran.sealed_input).digest()
    assert ran.outcome.output_hash == hashlib.sha256(ran.sealed_output).digest()
    receipt = ran.outcome.receipt
    assert receipt is not None
    digest = result_digest(job_market_domain(31337, JOB_MARKET), receipt.result)
    verify_signed_by(digest, receipt.signature, instance.enclave_address)
    assert ran.outcome.usage.fuel_consumed and ran.outcome.usage.fuel_consumed > 0


def test_hash_kernel_matches_hashlib(backend, wasm_module, client):
    instance = backend.create_instance(WasmWorkload(wasm_module("sha256")))
    data = bytes(range(256)) * 4096
    ran = client.run(instance, data)
    assert ran.plaintext_output == hashlib.sha256(data).hexdigest().encode() + b"\n"


def test_infinite_loop_ends_at_the_wall_clock_deadline(hostile, client):
    ran = client.run(hostile, args=("loop",), limits=JobLimits(wall_seconds=0.3))
    assert ran.outcome.failure is not None
    assert ran.outcome.failure.reason is FailureReason.TIMEOUT
    assert ran.outcome.receipt is None


def test_infinite_loop_ends_when_its_fuel_is_spent(hostile, client):
    ran = client.run(hostile, args=("loop",), limits=JobLimits(fuel=5_000_000))
    assert ran.outcome.failure is not None
    assert ran.outcome.failure.reason is FailureReason.FUEL_EXHAUSTED
    assert ran.outcome.usage.fuel_consumed == 5_000_000


def test_memory_bomb_stops_at_the_memory_cap(hostile, client):
    cap = 32 * 1024 * 1024
    ran = client.run(hostile, args=("memory",), limits=JobLimits(memory_bytes=cap))
    assert ran.outcome.failure is not None
    assert ran.outcome.failure.reason is FailureReason.MEMORY_LIMIT
    peak = ran.outcome.usage.peak_memory_bytes
    assert peak is not None and cap - 4 * 1024 * 1024 <= peak <= cap


def test_trapping_module_fails_with_a_trap(hostile, client):
    ran = client.run(hostile, args=("trap",))
    assert ran.outcome.failure is not None
    assert ran.outcome.failure.reason is FailureReason.TRAP


def test_output_over_the_cap_fails_the_job(hostile, client):
    ran = client.run(hostile, args=("output",), limits=JobLimits(output_bytes=100_000))
    assert ran.outcome.failure is not None
    assert ran.outcome.failure.reason is FailureReason.OUTPUT_LIMIT
    assert ran.outcome.usage.output_bytes <= 100_000


def test_no_filesystem_reads_or_writes_escape(hostile, client, tmp_path):
    target = tmp_path / "escaped"
    read = client.run(hostile, args=("shadow",))
    write = client.run(hostile, args=("write", "/x", str(target), "/tmp/y"))
    assert read.plaintext_output is not None and read.plaintext_output.startswith(b"blocked")
    assert write.outcome.succeeded, write.outcome.failure
    assert write.plaintext_output is not None and b"ESCAPED" not in write.plaintext_output
    assert not target.exists()


def test_a_module_asking_for_a_socket_is_refused(backend, client):
    module = wasmtime.wat2wasm(
        '(module (import "env" "socket" (func (param i32 i32 i32) (result i32)))'
        ' (memory (export "memory") 1) (func (export "_start")))'
    )
    instance = backend.create_instance(WasmWorkload(bytes(module)))
    ran = client.run(instance)
    assert ran.outcome.failure is not None
    assert ran.outcome.failure.reason is FailureReason.WORKLOAD_INVALID
    assert "socket" in ran.outcome.failure.detail


def test_concurrent_jobs_on_one_instance_take_turns(backend, wasm_module, client):
    instance = backend.create_instance(WasmWorkload(wasm_module("upper")))
    inputs = [f"job-{n}-".encode() * 100 for n in range(3)]
    results: dict[int, object] = {}
    threads = [
        threading.Thread(target=lambda n=n: results.update({n: client.run(instance, inputs[n])}))
        for n in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for n, data in enumerate(inputs):
        ran = results[n]
        assert ran.outcome.succeeded, ran.outcome.failure
        assert ran.plaintext_output == data.upper()


def test_a_job_is_not_charged_the_cpu_its_runtime_took_to_start(backend, wasm_module, client):
    """Starting Python and wasmtime takes a tenth of a CPU second or more, in the same cgroup;
    an empty job's own share is a few milliseconds."""
    instance = backend.create_instance(WasmWorkload(wasm_module("upper")))
    ran = client.run(instance, b"")
    assert ran.outcome.succeeded, ran.outcome.failure
    cpu = ran.outcome.usage.cpu_seconds
    assert cpu is not None and cpu < 0.05, cpu
