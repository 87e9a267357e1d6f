"""Hypothesis against a live node: every place where py-libp2p parses a peer's bytes.

One provider node runs in its own process for the module (target_node.py, with admission
limits opened wide so every example gets through to the parser under test). Each example
dials with a fresh identity from its own loopback address, sends what hypothesis made,
and leaves; the node must still be alive after each example, and serve an honest peer
at the end of each surface.

Surfaces: the multistream-select handshake before security, Noise handshake messages,
Yamux frames, pubsub RPCs as raw bytes and as structures (subscriptions, messages with
arbitrary keys and signatures, control messages, sender peer records), and
identify/push (protocols, addresses, keys, signed peer records).
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import trio
from adversary import DATA, IDENTIFY_PUSH, MESHSUB, SYN, Session, dial, endpoint, rpc_bytes
from attack_harness import Target, serves
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from libp2p.crypto.pb import crypto_pb2
from libp2p.identity.identify.pb.identify_pb2 import Identify
from libp2p.pubsub.pb import rpc_pb2
from libp2p.utils.varint import encode_delim, encode_uvarint

pytestmark = pytest.mark.integration

# 25 examples per surface keep CI within its budget; P2P_FUZZ_EXAMPLES=2000 (say) digs
# deeper by hand.
EXAMPLES = settings(
    max_examples=int(os.environ.get("P2P_FUZZ_EXAMPLES", "25")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
WIDE_OPEN = {
    "admission": {
        "handshake_burst_per_ip": 100_000,
        "handshake_rate_per_ip": 10_000.0,
        "max_pending_handshakes_per_ip": 64,
    },
}
_source = iter(range(10**9))


def source_ip() -> str:
    """Loopback addresses 127.0.1.1 to 127.0.254.254: one per example."""
    n = next(_source) % (254 * 254)
    return f"127.0.{1 + n // 254}.{1 + n % 254}"


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    node = Target(tmp_path_factory.mktemp("fuzz"), WIDE_OPEN)
    yield node
    node.stop()


# The example that killed the node: once it is dead every later example fails too, and
# hypothesis shrinks towards one of those, so the real culprit is named here.
_killed_by: list[object] = []


def run(target: Target, body: Callable[[], Coroutine[Any, Any, None]], example: object) -> None:
    """One example: whatever the peer side hits is its problem; the node must live."""
    assert not _killed_by, f"the node was killed earlier, by {_killed_by[0]!r}"

    async def bounded() -> None:
        with trio.move_on_after(5.0), contextlib.suppress(Exception):
            await body()  # the node cuts us off, as it should for most of these

    trio.run(bounded)
    if not target.responsive():
        _killed_by.append(example)
        raise AssertionError(f"the node died on {example!r}\n{target.log_tail()}")


async def session_to(target: Target) -> Session:
    return await dial(str(target.address), timeout_s=3.0, local_ip=source_ip())


async def on_stream(target: Target, protocol: str, payload: bytes) -> None:
    session = await session_to(target)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.drain)
        await session.open_stream(protocol, payload)
        with trio.move_on_after(0.3):
            await session.closed.wait()
        await session.close()
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------- before and at security


@EXAMPLES
@given(raw=st.binary(max_size=300))
def test_fuzz_multistream_before_security(target: Target, raw: bytes) -> None:
    async def body() -> None:
        host, port = endpoint(str(target.address))
        stream = await trio.open_tcp_stream(host, port, local_address=source_ip())
        async with stream:
            await stream.send_all(encode_delim(b"/multistream/1.0.0") + raw)
            with trio.move_on_after(0.2):
                await stream.receive_some(4096)

    run(target, body, raw)


@EXAMPLES
@given(messages=st.lists(st.binary(max_size=200), min_size=1, max_size=3))
def test_fuzz_noise_handshake_messages(target: Target, messages: list[bytes]) -> None:
    async def body() -> None:
        host, port = endpoint(str(target.address))
        stream = await trio.open_tcp_stream(host, port, local_address=source_ip())
        async with stream:
            await stream.send_all(encode_delim(b"/multistream/1.0.0") + encode_delim(b"/noise"))
            for message in messages:
                await stream.send_all(struct.pack("!H", len(message)) + message)
            with trio.move_on_after(0.2):
                await stream.receive_some(4096)

    run(target, body, messages)
    # a second round with a handshake that is well-formed up to the payload
    run(target, lambda: _noise_with_payload(target, messages[0]), messages[0])


async def _noise_with_payload(target: Target, payload: bytes) -> None:
    # A valid first message (an ephemeral key), then garbage as the third message.
    host, port = endpoint(str(target.address))
    stream = await trio.open_tcp_stream(host, port, local_address=source_ip())
    async with stream:
        await stream.send_all(encode_delim(b"/multistream/1.0.0") + encode_delim(b"/noise"))
        await stream.send_all(struct.pack("!H", 32) + os.urandom(32))
        with trio.move_on_after(0.3):
            await stream.receive_some(65536)
        await stream.send_all(struct.pack("!H", len(payload) + 48) + payload + os.urandom(48))
        with trio.move_on_after(0.2):
            await stream.receive_some(4096)


# ---------------------------------------------------------------------------- Yamux


frames = st.lists(
    st.tuples(
        st.integers(0, 255),  # version
        st.integers(0, 255),  # type
        st.integers(0, 0xFFFF),  # flags
        st.integers(0, 0xFFFFFFFF),  # stream id
        st.integers(0, 0xFFFFFFFF),  # length as announced
        st.binary(max_size=256),  # body actually sent
    ),
    min_size=1,
    max_size=8,
)


@EXAMPLES
@given(sequence=frames)
def test_fuzz_yamux_frames(target: Target, sequence: list[tuple[int, ...]]) -> None:
    async def body() -> None:
        session = await session_to(target)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.drain)
            for version, typ, flags, sid, length, data in sequence:
                header = struct.pack("!BBHII", version, typ, flags, sid, length)
                await session.secure.write(header + data)
            with trio.move_on_after(0.3):
                await session.closed.wait()
            await session.close()
            nursery.cancel_scope.cancel()

    run(target, body, sequence)


@EXAMPLES
@given(protocol=st.binary(max_size=80), payload=st.binary(max_size=200))
def test_fuzz_multistream_on_a_stream(target: Target, protocol: bytes, payload: bytes) -> None:
    async def body() -> None:
        session = await session_to(target)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.drain)
            negotiation = encode_delim(b"/multistream/1.0.0") + encode_delim(protocol) + payload
            await session.frame(DATA, SYN, 1, len(negotiation), negotiation)
            with trio.move_on_after(0.3):
                await session.closed.wait()
            await session.close()
            nursery.cancel_scope.cancel()

    run(target, body, (protocol, payload))


def test_fuzzed_yamux_and_handshakes_leave_the_node_serving(target: Target) -> None:
    serves(target)


# ----------------------------------------------------------------------------- pubsub


@EXAMPLES
@given(raw=st.binary(max_size=600))
def test_fuzz_pubsub_rpc_bytes(target: Target, raw: bytes) -> None:
    run(target, lambda: on_stream(target, MESHSUB, encode_uvarint(len(raw)) + raw), raw)


texts = st.one_of(st.text(max_size=40), st.just(""), st.binary(max_size=40))
blobs = st.binary(max_size=80)


def topic_field(value: str | bytes) -> str:
    # Bytes are smuggled through as latin-1 text, so the wire carries raw bytes.
    return value if isinstance(value, str) else value.decode("latin-1")


@st.composite
def keys(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(-1, 5))
    data = draw(st.binary(max_size=80))
    if kind < 0:
        return data
    try:
        return crypto_pb2.PublicKey(key_type=kind, data=data).SerializeToString()
    except ValueError:
        return data


@st.composite
def messages(draw: st.DrawFn, topic: str) -> rpc_pb2.Message:
    return rpc_pb2.Message(
        from_id=draw(st.one_of(blobs, st.just(b"\x00\x24\x08\x01\x12\x20" + os.urandom(32)))),
        data=draw(st.binary(max_size=200)),
        seqno=draw(st.binary(max_size=12)),
        topicIDs=draw(st.lists(st.sampled_from([topic, "other"]), max_size=2)),
        signature=draw(st.binary(max_size=96)),
        key=draw(keys()),
    )


@st.composite
def rpcs(draw: st.DrawFn, topic: str) -> bytes:
    ids = st.lists(blobs, max_size=4)
    topics = st.one_of(st.just(topic), texts.map(topic_field))
    control = rpc_pb2.ControlMessage(
        ihave=[
            rpc_pb2.ControlIHave(topicID=draw(topics), messageIDs=draw(ids))
            for _ in range(draw(st.integers(0, 2)))
        ],
        iwant=[rpc_pb2.ControlIWant(messageIDs=draw(ids)) for _ in range(draw(st.integers(0, 2)))],
        graft=[rpc_pb2.ControlGraft(topicID=draw(topics)) for _ in range(draw(st.integers(0, 2)))],
        prune=[
            rpc_pb2.ControlPrune(
                topicID=draw(topics),
                backoff=draw(st.integers(0, 2**64 - 1)),
                peers=[
                    rpc_pb2.PeerInfo(peerID=draw(blobs), signedPeerRecord=draw(blobs))
                    for _ in range(draw(st.integers(0, 2)))
                ],
            )
            for _ in range(draw(st.integers(0, 2)))
        ],
        idontwant=[
            rpc_pb2.ControlIDontWant(messageIDs=draw(ids)) for _ in range(draw(st.integers(0, 1)))
        ],
    )
    rpc = rpc_pb2.RPC(
        subscriptions=[
            rpc_pb2.RPC.SubOpts(subscribe=draw(st.booleans()), topicid=draw(topics))
            for _ in range(draw(st.integers(0, 3)))
        ],
        publish=draw(st.lists(messages(topic), max_size=3)),
        control=control,
    )
    if draw(st.booleans()):
        rpc.senderRecord = draw(st.binary(max_size=200))
    return rpc_bytes(rpc)


@EXAMPLES
@given(data=st.data())
def test_fuzz_pubsub_rpc_structures(target: Target, data: st.DataObject) -> None:
    payload = b"".join(data.draw(st.lists(rpcs(target.topic), min_size=1, max_size=3)))
    run(target, lambda: on_stream(target, MESHSUB, payload), payload)


def test_fuzzed_pubsub_leaves_the_node_serving(target: Target) -> None:
    serves(target)


# ---------------------------------------------------------------------------- identify


@st.composite
def identifies(draw: st.DrawFn) -> bytes:
    message = Identify(
        protocol_version=draw(st.text(max_size=20)),
        agent_version=draw(st.text(max_size=20)),
        public_key=draw(keys()),
        listen_addrs=draw(st.lists(blobs, max_size=4)),
        observed_addr=draw(blobs),
        protocols=draw(st.lists(st.text(max_size=30), max_size=8)),
    )
    if draw(st.booleans()):
        message.signedPeerRecord = draw(st.binary(max_size=300))
    raw = message.SerializeToString()
    if draw(st.booleans()):
        raw = draw(st.binary(max_size=300))
    return encode_uvarint(len(raw)) + raw


@EXAMPLES
@given(payload=identifies())
def test_fuzz_identify_push(target: Target, payload: bytes) -> None:
    run(target, lambda: on_stream(target, IDENTIFY_PUSH, payload), payload)


def test_fuzzed_identify_leaves_the_node_serving(target: Target) -> None:
    serves(target)
    assert target.stats()["rss_mib"] < 400
