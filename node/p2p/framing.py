"""Length-prefixed frames over a libp2p stream, with a size cap and deadline on every read.

A frame is a 4-byte big-endian length and that many bytes. The cap is checked on the
prefix, before any payload is buffered, so an oversized announcement costs us four bytes.
The deadline covers the whole frame, so a peer that dribbles one byte at a time (slowloris)
is cut off just as one that sends nothing.
"""

from __future__ import annotations

import contextlib
from typing import Protocol

import trio
from libp2p.exceptions import BaseLibp2pError

from node.p2p.errors import FrameTooLarge, PeerTimeoutError, StreamClosedError

FRAME_HEADER_SIZE = 4
_READ_SIZE = 256 * 1024
_COALESCE_LIMIT = 64 * 1024


class ByteStream(Protocol):
    """The part of libp2p's INetStream we use; tests substitute in-memory streams."""

    async def read(self, n: int | None = None) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...

    async def reset(self) -> None: ...


_TRANSPORT_ERRORS = (
    BaseLibp2pError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    ConnectionError,
    EOFError,
)


class FramedStream:
    """Reads and writes frames on one stream; every libp2p error leaves as a P2PError."""

    def __init__(self, stream: ByteStream, read_timeout_s: float) -> None:
        self._stream = stream
        self._read_timeout_s = read_timeout_s
        self._buffer = bytearray()

    async def read_frame(self, max_size: int, timeout_s: float | None = None) -> bytes:
        deadline = self._read_timeout_s if timeout_s is None else timeout_s
        with trio.move_on_after(deadline):
            header = await self._read_exactly(FRAME_HEADER_SIZE)
            size = int.from_bytes(header, "big")
            if size > max_size:
                raise FrameTooLarge(f"frame of {size} bytes announced, cap is {max_size}")
            return await self._read_exactly(size)
        raise PeerTimeoutError(f"no complete frame within {deadline:.1f} s")

    async def write_frame(self, payload: bytes) -> None:
        header = len(payload).to_bytes(FRAME_HEADER_SIZE, "big")
        try:
            if len(payload) <= _COALESCE_LIMIT:
                await self._stream.write(header + payload)
            else:
                # Two writes beat copying a large payload just to prepend four bytes.
                await self._stream.write(header)
                await self._stream.write(payload)
        except _TRANSPORT_ERRORS as exc:
            raise StreamClosedError(f"write failed: {exc!r}") from exc

    async def close(self) -> None:
        """Half-close our side; errors mean the stream is already gone, which is fine."""
        with contextlib.suppress(*_TRANSPORT_ERRORS):
            await self._stream.close()

    async def reset(self) -> None:
        with contextlib.suppress(*_TRANSPORT_ERRORS):
            await self._stream.reset()

    async def expect_end(self, timeout_s: float | None = None) -> None:
        """Wait for the remote's half-close; it must not send anything more."""
        deadline = self._read_timeout_s if timeout_s is None else timeout_s
        with trio.move_on_after(deadline):
            try:
                extra = await self._read_some()
            except StreamClosedError:
                return
            if extra:
                raise StreamClosedError("remote sent data after the final frame")
            return
        raise PeerTimeoutError("remote did not close the stream")

    async def _read_some(self) -> bytes:
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            return data
        try:
            data = await self._stream.read(_READ_SIZE)
        except _TRANSPORT_ERRORS as exc:
            raise StreamClosedError(f"stream ended: {exc!r}") from exc
        if not data:
            raise StreamClosedError("stream ended")
        return data

    async def _read_exactly(self, size: int) -> bytes:
        # Pieces are joined once at the end: chunks are up to 1 MiB, and every extra copy
        # shows in the input protocol's throughput.
        pieces = []
        have = 0
        if self._buffer:
            taken = bytes(self._buffer[:size])
            del self._buffer[: len(taken)]
            pieces.append(taken)
            have = len(taken)
        while have < size:
            try:
                data = await self._stream.read(max(size - have, _READ_SIZE))
            except _TRANSPORT_ERRORS as exc:
                raise StreamClosedError(f"stream ended mid-frame: {exc!r}") from exc
            if not data:
                raise StreamClosedError("stream ended mid-frame")
            missing = size - have
            if len(data) > missing:
                self._buffer += data[missing:]
                data = data[:missing]
            pieces.append(data)
            have += len(data)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)
