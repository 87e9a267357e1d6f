"""HPKE against RFC 9180's published vectors, and the chunked stream on top of it.

Vectors: RFC 9180 Appendix A.2.1 (DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305,
base mode), as published in the CFRG draft text (github.com/cfrg/draft-irtf-cfrg-hpke, file
auth48/draft-irtf-cfrg-hpke.txt, section B.2.1).
"""

from __future__ import annotations

import io
import tracemalloc

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from node.enclave.errors import SealingError
from node.enclave.sealing import (
    Direction,
    StreamSealer,
    derive_key_pair,
    open_stream,
    public_key_bytes,
    seal_bytes,
    setup_base_recipient,
    setup_base_sender,
)

H = bytes.fromhex
INFO = H("4f6465206f6e2061204772656369616e2055726e")
IKM_E = H("909a9b35d3dc4713a5e72a4da274b55d3d3821a37e5d099e74a647db583a904b")
PK_EM = H("1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a")
IKM_R = H("1ac01f181fdf9f352797655161c58b75c656a6cc2716dcb66372da835542e1df")
PK_RM = H("4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a")
SK_RM = H("8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb")
PT = H("4265617574792069732074727574682c20747275746820626561757479")
ENCRYPTIONS = {
    0: "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28",
    1: "6b53c051e4199c518de79594e1c4ab18b96f081549d45ce015be002090bb119e85285337cc95ba5f59992dc98c",
    2: "71146bd6795ccc9c49ce25dda112a48f202ad220559502cef1f34271e0cb4b02b4f10ecac6f48c32f878fae86b",
    4: "63357a2aa291f5a4e5f27db6baa2af8cf77427c7c1a909e0b37214dd47db122bb153495ff0b02e9e54a50dbe16",
    255: "18ab939d63ddec9f6ac2b60d61d36a7375d2070c9b683861110757062c52b8880a5f6b3936da9cd6c23ef2a95c",
    256: "7a4a13e9ef23978e2c520fd4d2e757514ae160cd0cd05e556ef692370ca53076214c0c40d4c728d6ed9e727a5b",
}


def test_derive_key_pair_matches_rfc9180():
    recipient = derive_key_pair(IKM_R)
    assert recipient.private_bytes_raw() == SK_RM
    assert public_key_bytes(recipient) == PK_RM
    assert public_key_bytes(derive_key_pair(IKM_E)) == PK_EM


def test_sender_matches_rfc9180_encryptions():
    enc, context = setup_base_sender(PK_RM, INFO, ephemeral=derive_key_pair(IKM_E))
    assert enc == PK_EM
    for sequence in range(257):
        aad = f"Count-{sequence}".encode()
        ciphertext = context.seal(aad, PT)
        if sequence in ENCRYPTIONS:
            assert ciphertext.hex() == ENCRYPTIONS[sequence], sequence


def test_recipient_opens_rfc9180_ciphertexts():
    context = setup_base_recipient(PK_EM, derive_key_pair(IKM_R), INFO)
    assert context.open(b"Count-0", H(ENCRYPTIONS[0])) == PT
    assert context.open(b"Count-1", H(ENCRYPTIONS[1])) == PT
    with pytest.raises(SealingError):
        context.open(b"Count-1", H(ENCRYPTIONS[1]))  # wrong sequence number now


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=5000), st.integers(min_value=1, max_value=700))
def test_stream_round_trip(plaintext: bytes, chunk_size: int):
    key = X25519PrivateKey.generate()
    sink = io.BytesIO()
    sealer = StreamSealer(public_key_bytes(key), b"job", Direction.INPUT, sink, chunk_size)
    sealer.write(plaintext)
    sealer.close()
    records = list(open_stream(key, b"job", Direction.INPUT, io.BytesIO(sink.getvalue())))
    assert b"".join(records) == plaintext
    assert all(len(r) <= chunk_size for r in records)


def _sealed(key: X25519PrivateKey, data: bytes = b"a" * 300_000) -> bytes:
    return seal_bytes(public_key_bytes(key), b"job-1", Direction.INPUT, data)


def _open(
    key: X25519PrivateKey,
    sealed: bytes,
    info: bytes = b"job-1",
    direction: Direction = Direction.INPUT,
) -> bytes:
    return b"".join(open_stream(key, info, direction, io.BytesIO(sealed)))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b[:-1],  # truncated in the final record
        lambda b: b[: len(b) // 2],  # truncated mid-stream
        lambda b: b + b"\x00",  # trailing bytes
        lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:],  # flipped bit
        lambda b: b[:10] + bytes([b[10] ^ 2]) + b[11:],  # header (direction) changed
    ],
)
def test_any_change_to_the_stream_is_refused(mutate):
    key = X25519PrivateKey.generate()
    with pytest.raises(SealingError):
        _open(key, mutate(_sealed(key)))


def test_records_cannot_be_reordered():
    key = X25519PrivateKey.generate()
    sealed = _sealed(key, b"x" * (3 * 65536 + 10))
    header, record = 52, 5 + 65536 + 16
    first, second = sealed[header : header + record], sealed[header + record : header + 2 * record]
    swapped = sealed[:header] + second + first + sealed[header + 2 * record :]
    with pytest.raises(SealingError):
        _open(key, swapped)


def test_wrong_key_job_or_direction_is_refused():
    key = X25519PrivateKey.generate()
    sealed = _sealed(key)
    with pytest.raises(SealingError):
        _open(X25519PrivateKey.generate(), sealed)
    with pytest.raises(SealingError):
        _open(key, sealed, info=b"job-2")
    with pytest.raises(SealingError):
        _open(key, sealed, direction=Direction.OUTPUT)


class _Zeros:
    """A 64 MiB source that never exists in memory at once."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, size: int = -1) -> bytes:
        take = min(size, self.left)
        self.left -= take
        return bytes(take)


class _Discard:
    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)


def test_streaming_keeps_memory_flat():
    key = X25519PrivateKey.generate()
    total = 64 * 1024 * 1024
    sink = _Discard()
    tracemalloc.start()
    try:
        sealer = StreamSealer(public_key_bytes(key), b"job", Direction.INPUT, sink)
        source = _Zeros(total)
        while block := source.read(1 << 20):
            sealer.write(block)
        sealer.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sink.size > total
    assert peak < 8 * 1024 * 1024, f"peak {peak} B while sealing {total} B"
