"""The plaintext a client seals to an enclave: whom the output is for, then the job's input.

    envelope = MAGIC ("CAPAIN01", 8 bytes) || client X25519 public key (32 bytes) || input

The key the output is sealed to travels inside the sealed input, never beside it: the host
that carries the ciphertext cannot put a key of its own in its place and read the output.
The chain commits to the sealed bytes (JobRequest.inputHash), so the key an enclave uses is
the one the paying client chose.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

from node.enclave.errors import SealingError
from node.enclave.sealing import ByteSink, ByteSource, Direction, StreamSealer

MAGIC = b"CAPAIN01"
KEY_SIZE = 32
HEADER_SIZE = len(MAGIC) + KEY_SIZE


def seal_job_input(
    enclave_hpke_key: bytes,
    job_id: bytes,
    client_output_key: bytes,
    source: ByteSource,
    sink: ByteSink,
) -> None:
    if len(client_output_key) != KEY_SIZE:
        raise ValueError("the client's output key must be 32 bytes (X25519)")
    sealer = StreamSealer(enclave_hpke_key, job_id, Direction.INPUT, sink)
    sealer.write(MAGIC + client_output_key)
    while block := source.read(1 << 20):
        sealer.write(block)
    sealer.close()


def seal_job_input_bytes(
    enclave_hpke_key: bytes, job_id: bytes, client_output_key: bytes, data: bytes
) -> bytes:
    sink = io.BytesIO()
    seal_job_input(enclave_hpke_key, job_id, client_output_key, io.BytesIO(data), sink)
    return sink.getvalue()


def open_envelope(records: Iterator[bytes]) -> tuple[bytes, Iterator[bytes]]:
    """The client's output key and the input's plaintext records after the envelope header.

    Reading the header authenticates the stream's first records; a stream without the header
    is refused (SealingError), so no job runs without knowing whom its output is for."""
    head = b""
    for record in records:
        head += record
        if len(head) >= HEADER_SIZE:
            break
    if len(head) < HEADER_SIZE or head[: len(MAGIC)] != MAGIC:
        raise SealingError("sealed input does not start with the job envelope (magic and key)")
    key = head[len(MAGIC) : HEADER_SIZE]

    def rest() -> Iterator[bytes]:
        if len(head) > HEADER_SIZE:
            yield head[HEADER_SIZE:]
        yield from records

    return key, rest()
