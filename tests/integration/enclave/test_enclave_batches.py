"""An enclave signs one ResultBatch over results it produced, and nothing else."""

from __future__ import annotations

import pytest

from node.enclave.errors import BatchRefused
from node.enclave.jobs import JobLimits
from node.enclave.workloads import WasmWorkload
from proofs.receipts import ResultBatch, batch_root, recover_signer, typed_data_digest

from .conftest import JOB_MARKET


@pytest.fixture
def upper(backend, wasm_module):
    return backend.create_instance(WasmWorkload(wasm_module("upper")))


def test_a_batch_over_its_own_results_recovers_to_the_enclave_key(upper, client):
    runs = [client.run(upper, b"job %d" % i, limits=JobLimits(wall_seconds=10)) for i in range(3)]
    assert all(r.outcome.succeeded for r in runs)
    results = [r.outcome.receipt.result for r in runs]
    domain = client.spec(JobLimits()).receipt_domain
    signature = upper.sign_batch(domain, [r.job_id for r in results])
    batch = ResultBatch(client.provider, batch_root([r.hash_struct() for r in results]), 3)
    assert recover_signer(typed_data_digest(domain, batch.hash_struct()), signature) == (
        upper.enclave_address
    )
    assert domain.verifying_contract.lower() == JOB_MARKET.lower()


def test_a_batch_naming_a_job_it_did_not_run_is_refused(upper, client):
    ran = client.run(upper, b"real", limits=JobLimits(wall_seconds=10))
    domain = client.spec(JobLimits()).receipt_domain
    made_up = bytes(32)
    with pytest.raises(BatchRefused, match="no result of this enclave for job 0000"):
        upper.sign_batch(domain, [ran.outcome.job_id, made_up])
    with pytest.raises(BatchRefused, match="twice"):
        upper.sign_batch(domain, [ran.outcome.job_id, ran.outcome.job_id])
    with pytest.raises(BatchRefused, match="at least one"):
        upper.sign_batch(domain, [])
