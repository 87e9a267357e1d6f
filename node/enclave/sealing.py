"""HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / ChaCha20-Poly1305,
built from `cryptography` primitives, and a chunked stream format on top of it.

The job id is the HPKE `info`, so a sealed input opens only for the job it was sealed for. A
stream is cut into records so that 1 GB never sits in memory:

    header  = "CAPASEAL" | version u8 | direction u8 | kem u16 | kdf u16 | aead u16
              | chunk_size u32 | enc (32 B)
    record  = final u8 | length u32 | AEAD ciphertext of at most chunk_size plaintext bytes

Record i is sealed with the context's i-th nonce (reordering fails) and `header || final` as
associated data (a changed header, a dropped final record or a record after it fails). The
direction byte keeps an input from being replayed as an output and back.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from node.enclave.errors import SealingError

KEM_ID = 0x0020
KDF_ID = 0x0001
AEAD_ID = 0x0003
MODE_BASE = 0x00
_KEM_SUITE = b"KEM" + KEM_ID.to_bytes(2, "big")
_HPKE_SUITE = (
    b"HPKE" + KEM_ID.to_bytes(2, "big") + KDF_ID.to_bytes(2, "big") + AEAD_ID.to_bytes(2, "big")
)
_NK = 32
_NN = 12
_NH = 32
_TAG = 16

MAGIC = b"CAPASEAL"
STREAM_VERSION = 1
DEFAULT_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 1024 * 1024
_HEADER = struct.Struct(">8sBBHHHI32s")
_RECORD = struct.Struct(">BI")


class ByteSource(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class ByteSink(Protocol):
    def write(self, data: bytes, /) -> object: ...


class Direction(IntEnum):
    INPUT = 1
    OUTPUT = 2


def _labeled_extract(salt: bytes, label: bytes, ikm: bytes, suite: bytes) -> bytes:
    mac = hmac.HMAC(salt or bytes(_NH), hashes.SHA256())
    mac.update(b"HPKE-v1" + suite + label + ikm)
    return mac.finalize()


def _labeled_expand(prk: bytes, label: bytes, info: bytes, length: int, suite: bytes) -> bytes:
    labeled_info = length.to_bytes(2, "big") + b"HPKE-v1" + suite + label + info
    return HKDFExpand(hashes.SHA256(), length, labeled_info).derive(prk)


def public_key_bytes(private_key: X25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def derive_key_pair(ikm: bytes) -> X25519PrivateKey:
    """RFC 9180 DeriveKeyPair for X25519 (used by the test vectors and deterministic tests)."""
    dkp_prk = _labeled_extract(b"", b"dkp_prk", ikm, _KEM_SUITE)
    secret = _labeled_expand(dkp_prk, b"sk", b"", 32, _KEM_SUITE)
    return X25519PrivateKey.from_private_bytes(secret)


def _load_public_key(raw: bytes) -> X25519PublicKey:
    if len(raw) != 32:
        raise SealingError(f"an X25519 public key is 32 bytes, got {len(raw)}")
    return X25519PublicKey.from_public_bytes(raw)


def _extract_and_expand(dh: bytes, kem_context: bytes) -> bytes:
    eae_prk = _labeled_extract(b"", b"eae_prk", dh, _KEM_SUITE)
    return _labeled_expand(eae_prk, b"shared_secret", kem_context, 32, _KEM_SUITE)


def _exchange(private_key: X25519PrivateKey, public_key: X25519PublicKey) -> bytes:
    try:
        return private_key.exchange(public_key)
    except ValueError as exc:  # an all-zero shared secret: a low-order public key
        raise SealingError(f"X25519 exchange refused: {exc}") from exc


@dataclass(frozen=True)
class KeySchedule:
    key: bytes
    base_nonce: bytes
    exporter_secret: bytes


def key_schedule(shared_secret: bytes, info: bytes) -> KeySchedule:
    psk_id_hash = _labeled_extract(b"", b"psk_id_hash", b"", _HPKE_SUITE)
    info_hash = _labeled_extract(b"", b"info_hash", info, _HPKE_SUITE)
    context = bytes([MODE_BASE]) + psk_id_hash + info_hash
    secret = _labeled_extract(shared_secret, b"secret", b"", _HPKE_SUITE)
    return KeySchedule(
        key=_labeled_expand(secret, b"key", context, _NK, _HPKE_SUITE),
        base_nonce=_labeled_expand(secret, b"base_nonce", context, _NN, _HPKE_SUITE),
        exporter_secret=_labeled_expand(secret, b"exp", context, _NH, _HPKE_SUITE),
    )


class HpkeContext:
    """One direction of an HPKE context: a key, a base nonce and a sequence number."""

    def __init__(self, schedule: KeySchedule) -> None:
        self._aead = ChaCha20Poly1305(schedule.key)
        self._base_nonce = schedule.base_nonce
        self.sequence = 0

    def _next_nonce(self) -> bytes:
        if self.sequence >= 2 ** (8 * _NN) - 1:
            raise SealingError("HPKE sequence number overflow")
        counter = self.sequence.to_bytes(_NN, "big")
        self.sequence += 1
        return bytes(a ^ b for a, b in zip(self._base_nonce, counter, strict=True))

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        return self._aead.encrypt(self._next_nonce(), plaintext, aad)

    def open(self, aad: bytes, ciphertext: bytes) -> bytes:
        try:
            return self._aead.decrypt(self._next_nonce(), ciphertext, aad)
        except InvalidTag as exc:
            raise SealingError("ciphertext does not authenticate") from exc


def setup_base_sender(
    recipient_public_key: bytes, info: bytes, ephemeral: X25519PrivateKey | None = None
) -> tuple[bytes, HpkeContext]:
    """SetupBaseS: returns enc and the sender context. `ephemeral` only for test vectors."""
    recipient = _load_public_key(recipient_public_key)
    ephemeral = ephemeral or X25519PrivateKey.generate()
    enc = public_key_bytes(ephemeral)
    shared_secret = _extract_and_expand(_exchange(ephemeral, recipient), enc + recipient_public_key)
    return enc, HpkeContext(key_schedule(shared_secret, info))


def setup_base_recipient(enc: bytes, private_key: X25519PrivateKey, info: bytes) -> HpkeContext:
    """SetupBaseR."""
    ephemeral = _load_public_key(enc)
    shared_secret = _extract_and_expand(
        _exchange(private_key, ephemeral), enc + public_key_bytes(private_key)
    )
    return HpkeContext(key_schedule(shared_secret, info))


@dataclass(frozen=True)
class StreamHeader:
    direction: Direction
    chunk_size: int
    enc: bytes

    def encode(self) -> bytes:
        return _HEADER.pack(
            MAGIC,
            STREAM_VERSION,
            self.direction,
            KEM_ID,
            KDF_ID,
            AEAD_ID,
            self.chunk_size,
            self.enc,
        )

    @classmethod
    def decode(cls, raw: bytes) -> StreamHeader:
        if len(raw) != _HEADER.size:
            raise SealingError("sealed stream truncated in its header")
        magic, version, direction, kem, kdf, aead, chunk_size, enc = _HEADER.unpack(raw)
        if magic != MAGIC or version != STREAM_VERSION:
            raise SealingError("not a CapaCloud sealed stream (magic or version)")
        if (kem, kdf, aead) != (KEM_ID, KDF_ID, AEAD_ID):
            raise SealingError(f"unsupported HPKE suite kem={kem} kdf={kdf} aead={aead}")
        if not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise SealingError(f"chunk size {chunk_size} out of range")
        try:
            return cls(Direction(direction), chunk_size, enc)
        except ValueError as exc:
            raise SealingError(f"unknown stream direction {direction}") from exc


def _read_exact(source: ByteSource, size: int) -> bytes:
    parts: list[bytes] = []
    remaining = size
    while remaining:
        part = source.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


class StreamSealer:
    """Seals a stream record by record into `sink`; `close()` writes the final record."""

    def __init__(
        self,
        recipient_public_key: bytes,
        info: bytes,
        direction: Direction,
        sink: ByteSink,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        if not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size {chunk_size} out of range")
        enc, self._context = setup_base_sender(recipient_public_key, info)
        self._header = StreamHeader(direction, chunk_size, enc).encode()
        self._sink = sink
        self._chunk_size = chunk_size
        self._pending = bytearray()
        self._closed = False
        sink.write(self._header)

    @property
    def enc(self) -> bytes:
        return self._header[-32:]

    def _emit(self, plaintext: bytes, final: bool) -> None:
        ciphertext = self._context.seal(self._header + bytes([final]), plaintext)
        self._sink.write(_RECORD.pack(final, len(ciphertext)) + ciphertext)

    def write(self, data: bytes) -> None:
        if self._closed:
            raise SealingError("sealed stream already closed")
        self._pending += data
        # Keep at least one byte pending so that close() always has a record to mark final.
        while len(self._pending) > self._chunk_size:
            self._emit(bytes(self._pending[: self._chunk_size]), final=False)
            del self._pending[: self._chunk_size]

    def close(self) -> None:
        if not self._closed:
            self._emit(bytes(self._pending), final=True)
            self._pending.clear()
            self._closed = True


def seal_stream(
    recipient_public_key: bytes,
    info: bytes,
    direction: Direction,
    source: ByteSource,
    sink: ByteSink,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> None:
    sealer = StreamSealer(recipient_public_key, info, direction, sink, chunk_size)
    while block := source.read(chunk_size):
        sealer.write(block)
    sealer.close()


def seal_bytes(
    recipient_public_key: bytes, info: bytes, direction: Direction, plaintext: bytes
) -> bytes:
    sink = io.BytesIO()
    seal_stream(recipient_public_key, info, direction, io.BytesIO(plaintext), sink)
    return sink.getvalue()


def read_stream_header(source: ByteSource, direction: Direction) -> StreamHeader:
    header = StreamHeader.decode(_read_exact(source, _HEADER.size))
    if header.direction is not direction:
        raise SealingError(
            f"sealed stream is an {header.direction.name.lower()}, not an {direction.name.lower()}"
        )
    return header


def open_records(header: StreamHeader, context: HpkeContext, source: ByteSource) -> Iterator[bytes]:
    """Yields plaintext records; raises SealingError on any tampering, truncation or excess."""
    aad_prefix = header.encode()
    while True:
        prefix = _read_exact(source, _RECORD.size)
        if len(prefix) != _RECORD.size:
            raise SealingError("sealed stream truncated: no final record")
        final, length = _RECORD.unpack(prefix)
        if final not in (0, 1) or not _TAG <= length <= header.chunk_size + _TAG:
            raise SealingError("malformed record in sealed stream")
        ciphertext = _read_exact(source, length)
        if len(ciphertext) != length:
            raise SealingError("sealed stream truncated inside a record")
        yield context.open(aad_prefix + bytes([final]), ciphertext)
        if final:
            if source.read(1):
                raise SealingError("bytes after the final record of a sealed stream")
            return


def open_stream(
    private_key: X25519PrivateKey, info: bytes, direction: Direction, source: ByteSource
) -> Iterator[bytes]:
    """The recipient side for a key the caller holds (a client opening its job's output)."""
    header = read_stream_header(source, direction)
    context = setup_base_recipient(header.enc, private_key, info)
    yield from open_records(header, context, source)
