"""A client's job submission: the plaintext stored for the daemon, the job's id fixed.

The API calls `prepare_submission` for `capa job submit`, then hands the returned change to
the state service. The id is fixed here (keccak(client, nonce), as JobMarket computes it)
because the input is sealed under it before anything goes on chain.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from node.chain.typed_data import job_id_for
from node.daemon.errors import DaemonError
from node.daemon.job_files import JobFiles
from node.state.changes import JobSubmitRequested
from node.state.values import to_hash32, to_job_id

WORKLOAD_KINDS = ("wasm", "onnx", "exec")
# A JobRequest's teeKinds is a uint8 bit mask over TEE kinds 1..6 (bit 0 unused).
_TEE_MASK = 0b0111_1110


@dataclass(frozen=True)
class Submission:
    """What the user asks for, in the units the chain uses."""

    workload: str  # wasm | onnx | exec
    measurement: bytes  # the workload's 32-byte measurement
    tee_kinds: int  # bit mask
    max_price: int  # wei for the whole job
    timeout_s: int
    cpu_cores: int = 1
    memory_mib: int = 256
    min_tcb_status: int = 1


def prepare_submission(
    data_dir: Path,
    client: str,
    request_id: str,
    submission: Submission,
    plaintext: bytes,
    *,
    max_input_bytes: int,
    nonce: int | None = None,
) -> JobSubmitRequested:
    """Check the request, store the plaintext under the job's id, return the change.

    DaemonError names what is wrong; nothing is written then.
    """
    if submission.workload not in WORKLOAD_KINDS:
        raise DaemonError(
            f"workload kind {submission.workload!r} is not one of {', '.join(WORKLOAD_KINDS)}"
        )
    if len(submission.measurement) != 32:
        raise DaemonError(f"a measurement is 32 bytes, not {len(submission.measurement)}")
    if not submission.tee_kinds or submission.tee_kinds & ~_TEE_MASK:
        raise DaemonError(f"TEE kinds mask {submission.tee_kinds:#x} names no known kind")
    if submission.max_price <= 0:
        raise DaemonError("the maximum price must be more than 0 wei")
    if submission.timeout_s <= 0:
        raise DaemonError("the timeout must be at least 1 s")
    if not plaintext:
        raise DaemonError("the input is empty: a job needs at least one byte of input")
    if len(plaintext) > max_input_bytes:
        raise DaemonError(
            f"the input is {len(plaintext)} bytes, more than [client] max_input_bytes "
            f"({max_input_bytes})"
        )
    nonce = secrets.randbits(63) if nonce is None else nonce
    job_id = to_job_id(job_id_for(client, nonce))
    files = JobFiles(data_dir, job_id)
    if files.folder.exists():
        raise DaemonError(f"job {job_id} already has files in {files.folder}")
    files.store_plaintext(plaintext)
    return JobSubmitRequested(
        request_id=request_id,
        job_id=job_id,
        nonce=nonce,
        workload=submission.workload,
        measurement=to_hash32(submission.measurement),
        tee_kinds=submission.tee_kinds,
        min_tcb_status=submission.min_tcb_status,
        max_price=submission.max_price,
        timeout_s=submission.timeout_s,
        cpu_cores=submission.cpu_cores,
        memory_mib=submission.memory_mib,
        input_size=len(plaintext),
        submitted_at=int(time.time()),
    )
