"""Where a workload's stdout goes: sealed to the client's key as it is written, under a cap."""

from __future__ import annotations

import hashlib
from typing import Protocol

from node.enclave.errors import OutputCapExceeded
from node.enclave.sealing import ByteSink, Direction, StreamSealer


class OutputWriter(Protocol):
    @property
    def written(self) -> int: ...

    def write(self, data: bytes) -> None: ...


class _HashingSink:
    def __init__(self, sink: ByteSink) -> None:
        self._sink = sink
        self.digest = hashlib.sha256()

    def write(self, data: bytes, /) -> object:
        self.digest.update(data)
        return self._sink.write(data)


class SealedOutput:
    """Seals plaintext output record by record; the host sink only ever receives ciphertext."""

    def __init__(self, client_public_key: bytes, job_id: bytes, cap: int, sink: ByteSink) -> None:
        self._hashing = _HashingSink(sink)
        self._sealer = StreamSealer(client_public_key, job_id, Direction.OUTPUT, self._hashing)
        self._cap = cap
        self._written = 0

    @property
    def written(self) -> int:
        return self._written

    def write(self, data: bytes) -> None:
        if self._written + len(data) > self._cap:
            raise OutputCapExceeded(f"output over its cap of {self._cap} bytes")
        self._written += len(data)
        self._sealer.write(data)

    def finish(self) -> bytes:
        """Writes the final record; returns sha256 of every sealed byte written."""
        self._sealer.close()
        return self._hashing.digest.digest()
