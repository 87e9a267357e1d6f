"""The pieces that stand between py-libp2p and a peer's bytes, one by one."""

from __future__ import annotations

import os

import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.pb import crypto_pb2
from libp2p.identity.identify.pb.identify_pb2 import Identify
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import PUBSUB_SIGNING_PREFIX
from multiaddr import Multiaddr

from node.p2p.config import PeerLimits
from node.p2p.errors import ProtocolViolation
from node.p2p.identify_guard import BoundedPeerStore, identify_problem
from node.p2p.identity import peer_id_of
from node.p2p.pubsub_guard import (
    GuardedGossipSub,
    RpcRejected,
    sanitise_rpc,
    verify_message_signature,
)
from node.p2p.supervisor import PeerFault, attribute_peers
from node.p2p.transfer import _run_together

TOPIC = "/capa/offers/1/31337/0x5fbdb2315678afecb367f032d93f642f64180aa3"
LIMITS = PeerLimits()


def peer() -> ID:
    return ID.from_pubkey(create_new_key_pair().public_key)


def test_control_entries_for_topics_we_did_not_join_are_dropped_and_backoff_capped() -> None:
    prunes = [rpc_pb2.ControlPrune(topicID=os.urandom(8).hex(), backoff=2**62) for _ in range(50)]
    ours = rpc_pb2.ControlPrune(topicID=TOPIC, backoff=2**62, peers=[rpc_pb2.PeerInfo(peerID=b"x")])
    grafts = [rpc_pb2.ControlGraft(topicID="elsewhere"), rpc_pb2.ControlGraft(topicID=TOPIC)]
    rpc = rpc_pb2.RPC(control=rpc_pb2.ControlMessage(prune=[*prunes, ours], graft=grafts))
    assert sanitise_rpc(rpc, [TOPIC], LIMITS) == 51
    assert [p.topicID for p in rpc.control.prune] == [TOPIC]
    assert rpc.control.prune[0].backoff == LIMITS.max_backoff_s
    assert not rpc.control.prune[0].peers  # no peer exchange: we pick our own peers
    assert [g.topicID for g in rpc.control.graft] == [TOPIC]

    only_foreign = rpc_pb2.RPC(control=rpc_pb2.ControlMessage(graft=grafts[:1]))
    sanitise_rpc(only_foreign, [TOPIC], LIMITS)
    assert not only_foreign.HasField("control")


def test_rpcs_beyond_what_an_honest_peer_sends_are_rejected() -> None:
    too_many = rpc_pb2.RPC(
        control=rpc_pb2.ControlMessage(
            graft=[rpc_pb2.ControlGraft(topicID=TOPIC)] * (LIMITS.max_rpc_entries + 1)
        )
    )
    with pytest.raises(RpcRejected, match="entries"):
        sanitise_rpc(too_many, [TOPIC], LIMITS)
    ids = rpc_pb2.RPC(
        control=rpc_pb2.ControlMessage(
            iwant=[rpc_pb2.ControlIWant(messageIDs=[b"x"] * (LIMITS.max_ids_per_entry + 1))]
        )
    )
    with pytest.raises(RpcRejected, match="ids"):
        sanitise_rpc(ids, [TOPIC], LIMITS)
    # A topic that is not UTF-8 parses (proto2) but comes back as bytes.
    sub = bytes([0x08, 1, 0x12, 2, 0xFF, 0xFE])
    bad = rpc_pb2.RPC()
    bad.ParseFromString(bytes([0x0A, len(sub)]) + sub)
    with pytest.raises(RpcRejected, match="UTF-8"):
        sanitise_rpc(bad, [TOPIC], LIMITS)


def test_a_key_that_is_no_ed25519_key_fails_verification_instead_of_raising() -> None:
    key = crypto_pb2.PublicKey(key_type=crypto_pb2.Ed25519, data=b"12345").SerializeToString()
    msg = rpc_pb2.Message(
        from_id=b"\x12\x20" + os.urandom(32),
        data=b"{}",
        seqno=os.urandom(8),
        topicIDs=[TOPIC],
        signature=os.urandom(64),
        key=key,
    )
    assert verify_message_signature(msg) is False
    pair = create_new_key_pair()
    good = rpc_pb2.Message(
        from_id=ID.from_pubkey(pair.public_key).to_bytes(),
        data=b"{}",
        seqno=os.urandom(8),
        topicIDs=[TOPIC],
    )
    good.signature = pair.private_key.sign(
        PUBSUB_SIGNING_PREFIX.encode() + good.SerializeToString()
    )
    assert verify_message_signature(good) is True
    good.data = b"{ }"
    assert verify_message_signature(good) is False


def test_the_peerstore_keeps_a_bounded_amount_per_peer() -> None:
    limits = PeerLimits(max_protocols_per_peer=8, max_protocol_length=16, max_addrs_per_peer=3)
    store = BoundedPeerStore(limits)
    who = peer()
    store.add_protocols(who, [f"/p/{i}" for i in range(1000)] + ["/x" * 100])
    store.add_protocols(who, ["/p/0", "/extra"])
    assert len(store.get_protocols(who)) == 8
    store.add_addrs(who, [Multiaddr(f"/ip4/10.0.0.{i}/tcp/1") for i in range(50)], 60)
    assert len(store.addrs(who)) == 3
    assert identify_problem(Identify(protocols=["/a"] * 9), limits) == "9 protocols"
    assert identify_problem(Identify(protocols=["/a"]), limits) is None


def test_a_failure_from_sibling_tasks_has_no_exception_cycle() -> None:
    """`raise primary from None` inside `except` made the primary its group's context while
    the group held the primary; libp2p's shutdown check looped on it until a segfault."""

    async def failing() -> None:
        raise ValueError("append at 0, have 262144")

    async def waiting() -> None:
        await trio.sleep_forever()

    async def scenario() -> BaseException:
        try:
            await _run_together(failing, waiting)
        except ValueError as exc:
            return exc
        raise AssertionError("no failure")

    error = trio.run(scenario)
    assert not _reaches(error, error), "the exception is its own context"


def _reaches(start: BaseException, target: BaseException) -> bool:
    """Whether following __context__, __cause__ and group members from `start` leads back
    to `target` (what libp2p's is_expected_connection_shutdown walks)."""
    stack: list[BaseException] = []
    seen: set[int] = set()

    def links(exc: BaseException) -> list[BaseException]:
        out = [e for e in (exc.__context__, exc.__cause__) if e is not None]
        if isinstance(exc, BaseExceptionGroup):
            out.extend(exc.exceptions)
        return out

    stack.extend(links(start))
    while stack:
        current = stack.pop()
        if current is target:
            return True
        if id(current) not in seen:
            seen.add(id(current))
            stack.extend(links(current))
    return False


def test_protocol_violations_still_leave_run_together_unwrapped() -> None:
    async def violating() -> None:
        raise ProtocolViolation("bad chunk")

    with pytest.raises(ProtocolViolation):
        trio.run(_run_together, violating)


def test_escaped_faults_are_attributed_to_the_peer_behind_them() -> None:
    culprit, other = peer(), peer()

    async def library_task(peer_id: ID) -> None:
        raise KeyError(peer_id)

    async def scenario() -> BaseException:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(library_task, culprit)
        except BaseExceptionGroup as group:
            return group
        raise AssertionError("no failure")

    group = trio.run(scenario)
    assert attribute_peers(group) == [peer_id_of(culprit)]
    named = PeerFault(peer_id_of(other), "named explicitly")
    assert attribute_peers(ExceptionGroup("x", [named, KeyError(1)])) == [peer_id_of(other)]
    cyclic = ValueError("cycle")
    cyclic.__context__ = ExceptionGroup("g", [cyclic])
    assert attribute_peers(cyclic) == []  # terminates


def test_gossipsub_state_of_a_peer_leaves_with_it() -> None:
    router = GuardedGossipSub(
        report=lambda *args, **kwargs: None,
        protocols=["/meshsub/1.1.0"],
        degree=6,
        degree_low=4,
        degree_high=12,
    )
    gone, stays = peer(), peer()
    router._add_back_off(gone, TOPIC, False, LIMITS.max_backoff_s)
    router._add_back_off(stays, TOPIC, False, LIMITS.max_backoff_s)
    router._add_back_off(gone, "another", False, LIMITS.max_backoff_s)
    router.graft_flood_tracking[gone][TOPIC] = 1.0
    router.remove_peer(gone)
    assert router.back_off == {TOPIC: {stays: router.back_off[TOPIC][stays]}}
    assert gone not in router.graft_flood_tracking
