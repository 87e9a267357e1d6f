"""/capa/input/1 (sealed input upload) and /capa/result/1 (sealed output + receipt download).

Input: the client announces job, size, SHA-256 and chunk size; the provider answers with the
offset it already holds (resume); chunks of 256 KiB-1 MiB follow, each acknowledged once
stored; at most `window_chunks` may be unacknowledged. The provider checks the hash of the
whole input at the end and discards it on mismatch.

The provider reads chunks in one task and stores/acks them in another: a Yamux writer
resets its stream when the reader stops for 5 s, so reading never waits on storage. The
window bounds what the reader can have buffered.

The bytes are sealed (HPKE to the enclave key) before they reach this layer; SHA-256 here
is transfer integrity and the hash a JobRequest commits to.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import trio

from node.chain.typed_data import Result
from node.p2p.config import StreamLimits
from node.p2p.errors import (
    IntegrityError,
    PeerTimeoutError,
    ProtocolViolation,
    RemoteRefused,
    UploadRefused,
)
from node.p2p.framing import FramedStream
from node.p2p.host import P2PHost
from node.p2p.identity import PeerId
from node.p2p.input_store import InputStore, InputUpload
from node.p2p.wire import (
    JsonObject,
    decode_object,
    encode_object,
    hex_of,
    read_address,
    read_bool,
    read_hex,
    read_int,
    read_object,
    read_str,
)

logger = logging.getLogger(__name__)

INPUT_PROTOCOL = "/capa/input/1"
RESULT_PROTOCOL = "/capa/result/1"
MAX_CONTROL_FRAME = 4096


@dataclass(frozen=True)
class UploadReceipt:
    job_id: bytes
    size: int
    sha256: bytes
    resumed_from: int
    # The provider's EIP-712 InputReceipt signature: its word that it holds the whole input
    # (empty from a provider that serves inputs without a gate, as tests do).
    input_receipt: bytes = b""


@dataclass(frozen=True)
class Announced:
    """What an uploader says about the input before sending a byte of it."""

    peer: PeerId
    job_id: bytes
    size: int
    sha256: bytes
    enclave_key: str


class InputGate(Protocol):
    """The provider's rules around uploads: which to take, and the receipt once one is whole.

    Both raise UploadRefused(reason) to refuse; the reason goes back to the uploader."""

    async def admit(self, announced: Announced) -> None: ...

    async def complete(self, announced: Announced) -> bytes:
        """The InputReceipt signature for an input now whole on disk."""
        ...


async def _run_together(*tasks: Callable[[], Awaitable[None]]) -> None:
    """Run tasks until all finish; the first real failure propagates unwrapped.

    Sibling tasks on one stream fail together, and callers (and the stream handler
    wrapper) expect a P2PError, not trio's ExceptionGroup around it.
    """
    try:
        async with trio.open_nursery() as nursery:
            for task in tasks:
                nursery.start_soon(task)
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        primary = next((e for e in leaves if not isinstance(e, trio.Cancelled)), leaves[0])
    else:
        return
    # Raised outside the `except` block: raising there would set the group as the
    # primary's __context__ while the group holds the primary, a cycle that libp2p's
    # connection-shutdown check follows forever (with py_ecc's 100000 recursion limit,
    # until the process segfaults).
    raise primary


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


def _refusal(reason: str) -> bytes:
    return encode_object({"ok": False, "reason": reason})


def _check_refusal(reply: JsonObject) -> None:
    if "ok" in reply and not read_bool(reply, "ok"):
        raise RemoteRefused(read_str(reply, "reason"))


def serve_inputs(host: P2PHost, store: InputStore, gate: InputGate | None = None) -> None:
    limits = host.stream_limits
    # Uploads in flight: each holds a window of chunks and a Yamux receive buffer, so
    # their number bounds the memory uploads can take, whoever sends them.
    in_flight = trio.CapacityLimiter(limits.max_concurrent_uploads)
    per_peer: dict[PeerId, int] = {}

    async def handle(peer: PeerId, stream: FramedStream) -> None:
        header = decode_object(await stream.read_frame(MAX_CONTROL_FRAME))
        job_id = read_hex(header, "job", 32)
        size = read_int(header, "size", 1, 2**63)
        sha256 = read_hex(header, "sha256", 32)
        chunk = read_int(header, "chunk", 0, 2**31)
        enclave_key = read_address(header, "enclave") if "enclave" in header else ""
        if size > limits.max_input_bytes:
            await stream.write_frame(_refusal("too_large"))
            return
        announced = Announced(peer, job_id, size, sha256, enclave_key)
        if gate is not None:
            # Before any byte is stored: only inputs for jobs this provider holds on chain.
            try:
                await gate.admit(announced)
            except UploadRefused as refusal:
                await stream.write_frame(_refusal(refusal.reason))
                return
        if not limits.min_chunk_size <= chunk <= limits.max_chunk_size:
            raise ProtocolViolation(f"chunk size {chunk} outside the protocol's range")
        if per_peer.get(peer, 0) >= limits.max_uploads_per_peer:
            await stream.write_frame(_refusal("busy"))
            return
        try:
            in_flight.acquire_on_behalf_of_nowait(stream)
        except trio.WouldBlock:
            await stream.write_frame(_refusal("busy"))
            return
        per_peer[peer] = per_peer.get(peer, 0) + 1
        try:
            await _receive_input(stream, store, announced, chunk, limits, gate)
        finally:
            in_flight.release_on_behalf_of(stream)
            per_peer[peer] -= 1
            if not per_peer[peer]:
                del per_peer[peer]

    host.set_stream_handler(INPUT_PROTOCOL, handle, deadline_s=None)


async def _receive_input(
    stream: FramedStream,
    store: InputStore,
    announced: Announced,
    chunk: int,
    limits: StreamLimits,
    gate: InputGate | None,
) -> None:
    peer, job_id, size, sha256 = announced.peer, announced.job_id, announced.size, announced.sha256
    try:
        upload = await store.begin(job_id, peer, size, sha256)
    except UploadRefused as refusal:
        logger.info("input for job %s from %s refused: %s", job_id.hex(), peer, refusal.reason)
        await stream.write_frame(_refusal(refusal.reason))
        return
    try:
        offset = upload.offset
        await stream.write_frame(encode_object({"ok": True, "offset": offset}))
        if offset < size:
            await _receive_chunks(stream, upload, offset, size, chunk, limits)
        if not await upload.finish():
            await stream.write_frame(_refusal("hash_mismatch"))
            logger.warning("input for job %s from %s failed its hash check", job_id.hex(), peer)
            return
    finally:
        with trio.CancelScope(shield=True):
            await upload.close()
    receipt = b""
    if gate is not None:
        try:
            receipt = await gate.complete(announced)
        except UploadRefused as refusal:
            await stream.write_frame(_refusal(refusal.reason))
            return
    await stream.write_frame(
        encode_object({"done": True, "sha256": hex_of(sha256), "receipt": hex_of(receipt)})
    )
    await stream.expect_end()


async def _receive_chunks(
    stream: FramedStream,
    upload: InputUpload,
    offset: int,
    size: int,
    chunk: int,
    limits: StreamLimits,
) -> None:
    received_send, received = trio.open_memory_channel[bytes](limits.window_chunks)

    async def read_all() -> None:
        async with received_send:
            position = offset
            while position < size:
                expected = min(chunk, size - position)
                data = await stream.read_frame(expected)
                if len(data) != expected:
                    raise ProtocolViolation(f"chunk of {len(data)} bytes, expected {expected}")
                await received_send.send(data)
                position += expected

    async def store_and_ack() -> None:
        position = offset
        async with received:
            async for data in received:
                await upload.append(data)
                position += len(data)
                await stream.write_frame(encode_object({"acked": position}))

    await _run_together(read_all, store_and_ack)


async def upload_input(
    host: P2PHost,
    peer: PeerId,
    job_id: bytes,
    sealed: bytes,
    *,
    sha256: bytes | None = None,
    chunk_size: int | None = None,
    timeout_s: float = 10.0,
    enclave_key: str | None = None,
) -> UploadReceipt:
    """Send `sealed` for `job_id`, resuming where the provider left off.

    Pass `sha256` when it is already known (the JobRequest commits to it) to save a pass
    over the input.
    """
    limits = host.stream_limits
    chunk = chunk_size or limits.chunk_size
    if sha256 is None:
        sha256 = hashlib.sha256(sealed).digest()
    size = len(sealed)
    announce: dict[str, object] = {
        "job": hex_of(job_id),
        "size": size,
        "sha256": hex_of(sha256),
        "chunk": chunk,
    }
    if enclave_key is not None:
        announce["enclave"] = enclave_key
    async with host.exchange(peer, INPUT_PROTOCOL, timeout_s) as stream:
        await stream.write_frame(encode_object(announce))
        reply = decode_object(await stream.read_frame(MAX_CONTROL_FRAME, timeout_s))
        _check_refusal(reply)
        resumed_from = read_int(reply, "offset", 0, size)
        await _send_chunks(stream, sealed, resumed_from, chunk, limits.window_chunks, timeout_s)
        final = decode_object(await stream.read_frame(MAX_CONTROL_FRAME, timeout_s))
        _check_refusal(final)
        if not read_bool(final, "done") or read_hex(final, "sha256", 32) != sha256:
            raise IntegrityError("provider confirmed a different input hash")
        receipt = read_hex(final, "receipt", max_size=65) if "receipt" in final else b""
    return UploadReceipt(job_id, size, sha256, resumed_from, receipt)


async def _send_chunks(
    stream: FramedStream, data: bytes, offset: int, chunk: int, window: int, timeout_s: float
) -> None:
    size = len(data)
    view = memoryview(data)
    # One token per chunk in flight; acks return them. The ack reader runs alongside so
    # the provider's acks are always drained.
    credit_send, credit = trio.open_memory_channel[None](window)
    for _ in range(window):
        credit_send.send_nowait(None)

    async def read_acks() -> None:
        acked = offset
        while acked < size:
            ack = decode_object(await stream.read_frame(MAX_CONTROL_FRAME, timeout_s))
            _check_refusal(ack)
            position = read_int(ack, "acked", 0, size)
            if position <= acked:
                raise ProtocolViolation(f"ack went backwards: {position} after {acked}")
            acked = position
            credit_send.send_nowait(None)

    async def send_all() -> None:
        position = offset
        while position < size:
            with trio.move_on_after(timeout_s):
                await credit.receive()
                end = min(position + chunk, size)
                await stream.write_frame(bytes(view[position:end]))
                position = end
                continue
            raise PeerTimeoutError(f"no ack within {timeout_s:.1f} s")

    await _run_together(read_acks, send_all)


@dataclass(frozen=True)
class SealedResult:
    """The sealed output and the enclave's signed receipt over it."""

    output: bytes
    receipt: Result
    receipt_signature: bytes


class ResultSource(Protocol):
    async def result(self, peer: PeerId, job_id: bytes) -> SealedResult | None: ...


def _receipt_to_json(result: SealedResult) -> dict[str, object]:
    r = result.receipt
    return {
        "jobId": hex_of(r.job_id),
        "provider": r.provider,
        "specHash": hex_of(r.spec_hash),
        "inputHash": hex_of(r.input_hash),
        "outputHash": hex_of(r.output_hash),
        "signature": hex_of(result.receipt_signature),
    }


def _receipt_from_json(obj: JsonObject) -> tuple[Result, bytes]:
    return (
        Result(
            job_id=read_hex(obj, "jobId", 32),
            provider=read_str(obj, "provider", 42),
            spec_hash=read_hex(obj, "specHash", 32),
            input_hash=read_hex(obj, "inputHash", 32),
            output_hash=read_hex(obj, "outputHash", 32),
        ),
        read_hex(obj, "signature", 65),
    )


def serve_results(host: P2PHost, source: ResultSource) -> None:
    limits = host.stream_limits

    async def handle(peer: PeerId, stream: FramedStream) -> None:
        request = decode_object(await stream.read_frame(MAX_CONTROL_FRAME))
        job_id = read_hex(request, "job", 32)
        result = await source.result(peer, job_id)
        if result is None:
            await stream.write_frame(_refusal("no_result"))
            return
        output = result.output
        header = {
            "ok": True,
            "size": len(output),
            "sha256": hex_of(hashlib.sha256(output).digest()),
            "chunk": limits.chunk_size,
            "receipt": _receipt_to_json(result),
        }
        await stream.write_frame(encode_object(header))
        view = memoryview(output)
        for start in range(0, len(output), limits.chunk_size):
            await stream.write_frame(bytes(view[start : start + limits.chunk_size]))

    host.set_stream_handler(RESULT_PROTOCOL, handle, deadline_s=None)


async def download_result(
    host: P2PHost, peer: PeerId, job_id: bytes, timeout_s: float = 10.0
) -> SealedResult:
    """Fetch the sealed output; size and SHA-256 are checked, the receipt is the caller's."""
    limits = host.stream_limits
    async with host.exchange(peer, RESULT_PROTOCOL, timeout_s) as stream:
        await stream.write_frame(encode_object({"job": hex_of(job_id)}))
        header = decode_object(await stream.read_frame(MAX_CONTROL_FRAME, timeout_s))
        _check_refusal(header)
        size = read_int(header, "size", 0, limits.max_result_bytes)
        sha256 = read_hex(header, "sha256", 32)
        chunk = read_int(header, "chunk", limits.min_chunk_size, limits.max_chunk_size)
        receipt, signature = _receipt_from_json(read_object(header, "receipt"))
        if receipt.job_id != job_id:
            raise ProtocolViolation("receipt is for another job")
        output = bytearray()
        while len(output) < size:
            output += await stream.read_frame(min(chunk, size - len(output)), timeout_s)
        if hashlib.sha256(output).digest() != sha256:
            raise IntegrityError("downloaded output does not match its announced hash")
    return SealedResult(bytes(output), receipt, signature)
