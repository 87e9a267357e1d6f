"""The provider's sealed outputs on disk, served on /capa/result/1.

Each finished job leaves `<job>.sealed` (the output as the enclave sealed it to the client:
ciphertext only) and `<job>.json` (the enclave's signed Result over it). A job's output is
written under a temporary name and renamed into place with its receipt, so a crash never
leaves an output that looks finished; a restart finds every finished output again and keeps
serving it (a client that lost its download asks again).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import trio

from node.daemon.errors import DaemonError
from node.p2p.identity import PeerId
from node.p2p.transfer import SealedResult
from proofs.receipts import Result

log = logging.getLogger(__name__)

_SEALED = ".sealed"
_RECEIPT = ".json"
_PARTIAL = ".partial"


@dataclass(frozen=True)
class StoredResult:
    result: Result
    signature: bytes
    path: Path


class ResultStore:
    def __init__(self, directory: Path) -> None:
        self._dir = directory
        try:
            self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise DaemonError(f"cannot create the output directory {directory}: {exc}") from exc
        # Partial outputs of runs a crash interrupted: never finished, never served.
        for stale in self._dir.glob("*" + _PARTIAL):
            stale.unlink(missing_ok=True)

    def partial_path(self, job_id: bytes) -> Path:
        """Where a run writes its sealed output before it is known to be complete."""
        return self._dir / (job_id.hex() + _PARTIAL)

    def commit(self, job_id: bytes, result: Result, signature: bytes) -> StoredResult:
        """Keep the run's sealed output with its receipt (the receipt lands last)."""
        sealed = self._dir / (job_id.hex() + _SEALED)
        receipt = self._dir / (job_id.hex() + _RECEIPT)
        os.replace(self.partial_path(job_id), sealed)
        tmp = receipt.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "job_id": result.job_id.hex(),
                    "provider": result.provider,
                    "spec_hash": result.spec_hash.hex(),
                    "input_hash": result.input_hash.hex(),
                    "output_hash": result.output_hash.hex(),
                    "signature": signature.hex(),
                }
            )
        )
        os.replace(tmp, receipt)
        return StoredResult(result, signature, sealed)

    def discard(self, job_id: bytes) -> None:
        self.partial_path(job_id).unlink(missing_ok=True)

    def find(self, job_id: bytes) -> StoredResult | None:
        """The finished output of a job, or None (also when its files are unreadable)."""
        sealed = self._dir / (job_id.hex() + _SEALED)
        receipt = self._dir / (job_id.hex() + _RECEIPT)
        try:
            doc = json.loads(receipt.read_text())
            result = Result(
                job_id=bytes.fromhex(doc["job_id"]),
                provider=str(doc["provider"]),
                spec_hash=bytes.fromhex(doc["spec_hash"]),
                input_hash=bytes.fromhex(doc["input_hash"]),
                output_hash=bytes.fromhex(doc["output_hash"]),
            )
            signature = bytes.fromhex(doc["signature"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("unreadable receipt %s: %s", receipt, exc)
            return None
        if result.job_id != job_id or not sealed.is_file():
            return None
        return StoredResult(result, signature, sealed)

    # ------------------------------------------------------------------ ResultSource

    async def result(self, peer: PeerId, job_id: bytes) -> SealedResult | None:
        # Anyone may fetch: the output is sealed to the client's key, and the receipt is
        # what the chain already settled on.
        stored = self.find(job_id)
        if stored is None:
            return None
        output = await trio.to_thread.run_sync(stored.path.read_bytes)
        return SealedResult(output, stored.result, stored.signature)
