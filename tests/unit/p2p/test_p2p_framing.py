"""Framing over an in-memory stream: round trips, caps, deadlines, early EOF."""

from __future__ import annotations

import pytest
import trio

from node.chain.typed_data import JobRequest, Offer
from node.p2p.errors import FrameTooLarge, PeerTimeoutError, ProtocolViolation, StreamClosedError
from node.p2p.framing import FramedStream
from node.p2p.wire import (
    decode_object,
    read_hex,
    read_int,
    typed_message_from_json,
    typed_message_to_json,
)


class ScriptedStream:
    """A stream whose reads come from a channel, one item per read; b"" means EOF."""

    def __init__(self) -> None:
        self.send, self._receive = trio.open_memory_channel[bytes](100)
        self.written = bytearray()
        self.reset_called = False

    async def read(self, n: int | None = None) -> bytes:
        return await self._receive.receive()

    async def write(self, data: bytes) -> None:
        self.written += data

    async def close(self) -> None:
        pass

    async def reset(self) -> None:
        self.reset_called = True


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


def test_frames_round_trip_across_arbitrary_read_boundaries() -> None:
    async def scenario() -> None:
        stream = ScriptedStream()
        data = frame(b"hello") + frame(b"") + frame(b"x" * 300_000)
        for i in range(0, len(data), 7777):
            stream.send.send_nowait(data[i : i + 7777])
        framed = FramedStream(stream, read_timeout_s=1.0)
        assert await framed.read_frame(10) == b"hello"
        assert await framed.read_frame(10) == b""
        assert await framed.read_frame(300_000) == b"x" * 300_000
        await framed.write_frame(b"abc")
        assert bytes(stream.written) == frame(b"abc")

    trio.run(scenario)


def test_oversized_announcement_is_refused_before_the_payload() -> None:
    async def scenario() -> None:
        stream = ScriptedStream()
        stream.send.send_nowait((10_000_000).to_bytes(4, "big"))
        with pytest.raises(FrameTooLarge):
            await FramedStream(stream, 1.0).read_frame(1024)

    trio.run(scenario)


def test_slowloris_dribbling_a_frame_hits_the_frame_deadline() -> None:
    async def scenario() -> None:
        stream = ScriptedStream()
        framed = FramedStream(stream, read_timeout_s=0.3)

        async def dribble() -> None:
            stream.send.send_nowait((100).to_bytes(4, "big"))
            for _ in range(100):
                stream.send.send_nowait(b"x")
                await trio.sleep(0.05)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(dribble)
            with pytest.raises(PeerTimeoutError):
                await framed.read_frame(1024)
            nursery.cancel_scope.cancel()

    trio.run(scenario)


def test_eof_mid_frame_is_a_closed_stream() -> None:
    async def scenario() -> None:
        stream = ScriptedStream()
        stream.send.send_nowait(frame(b"0123456789")[:8])
        stream.send.send_nowait(b"")
        with pytest.raises(StreamClosedError):
            await FramedStream(stream, 1.0).read_frame(1024)

    trio.run(scenario)


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"[1,2]", b'{"n": true}', b'{"n": -1}', b'{"h": "0x12"}', b'{"h": "zz"}'],
)
def test_malformed_control_messages_are_protocol_violations(payload: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        obj = decode_object(payload)
        read_int(obj, "n") if "n" in obj else read_hex(obj, "h", 32)


def test_typed_messages_travel_by_their_eip712_field_names() -> None:
    offer = Offer(
        "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
        5,
        b"\x01" * 32,
        10,
        15,
        20,
        30,
        bytes(32),
        4,
    )
    request = JobRequest(b"\x02" * 32, b"\x03" * 32, 32, bytes(32), 6, 10**18, 99, 1)
    for message in (offer, request):
        as_json = typed_message_to_json(message)
        assert typed_message_from_json(type(message), as_json) == message
    as_json = dict(typed_message_to_json(offer), teeKind=256)
    with pytest.raises(ProtocolViolation):
        typed_message_from_json(Offer, as_json)
    with pytest.raises(ProtocolViolation):
        typed_message_from_json(Offer, dict(typed_message_to_json(offer), provider="0x12"))
