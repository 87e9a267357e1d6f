"""Pubsub and GossipSub with every peer-controlled input checked before the library sees it.

Red-team findings against py-libp2p 0.8.1, and where each is handled here:

- `Pubsub.continuously_read_stream` lets protobuf's DecodeError (6 bytes on /meshsub)
  escape into the swarm and end the process; a topic that is not UTF-8 arrives as bytes
  and breaks the handlers after it. Our reader parses, checks every string field and
  every count, and contains whatever still goes wrong to the stream it came on.
- `signature_validator` raises PyNaCl's ValueError for a `key` that is not an Ed25519
  key, inside a pubsub task: the node died. Bad signatures were dropped before any topic
  validator ran, so the sender was never penalised. `push_msg` here verifies (after the
  cheap checks), contains exceptions and penalises the forwarder.
- Control messages for topics we never joined, unbounded entries per RPC and a PRUNE
  back-off of 2^62 s grew router state by millions of entries that outlived the peer.
  The sanitiser drops entries for other topics, caps counts and back-off, strips peer
  exchange (we discover peers ourselves), and `GuardedGossipSub.remove_peer` drops the
  peer's back-off and flood-tracking state.
- Messages were each handed to a new task: a flood of them ran as many tasks at once.
  Here a peer's messages are validated one after another on its own stream, which
  pushes back on the sender, behind a per-peer rate limit.

Upstream fixes: catch DecodeError in the reader, reject non-UTF-8 topics, make
`signature_validator` return False for undecodable keys and report the sender to the
scorer, and filter control messages by joined topics with a bounded back-off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio
from google.protobuf.message import DecodeError
from libp2p.abc import IHost, INetStream
from libp2p.exceptions import ParseError, ValidationError
from libp2p.io.exceptions import MessageTooLarge
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.utils import maybe_consume_signed_record
from libp2p.pubsub.validators import signature_validator
from libp2p.utils.varint import read_varint_prefixed_bytes_limited

from node.p2p.config import PeerLimits
from node.p2p.penalties import Clock, ReportViolation, TokenBuckets
from node.p2p.teardown import close_quietly, is_stream_end

logger = logging.getLogger(__name__)

# Topics a remote may be recorded as subscribed to: ours are one or two.
_MAX_SUBSCRIPTIONS_PER_PEER = 8

IsBanned = Callable[[ID], bool]


class RpcRejected(Exception):
    """An RPC that breaks our limits; `reason` is a penalty reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def sanitise_rpc(rpc: rpc_pb2.RPC, joined: Sequence[str], limits: PeerLimits) -> int:
    """Check counts and strings, drop control entries for topics we have not joined, cap
    back-offs and strip peer exchange, in place; returns how many entries were dropped.

    Raises RpcRejected for what no honest peer sends.
    """
    control = rpc.control
    entries = (
        len(rpc.publish)
        + len(control.ihave)
        + len(control.iwant)
        + len(control.graft)
        + len(control.prune)
        + len(control.idontwant)
        + len(control.observe)
        + len(control.unobserve)
    )
    if entries > limits.max_rpc_entries:
        raise RpcRejected("oversized_rpc", f"{entries} entries in one RPC")
    if len(rpc.subscriptions) > limits.max_subscriptions_per_rpc:
        raise RpcRejected("oversized_rpc", f"{len(rpc.subscriptions)} subscriptions")
    # proto2 hands back bytes for a string field that is not UTF-8.
    for sub in rpc.subscriptions:
        _require_text(sub.topicid)
    for msg in rpc.publish:
        for topic in msg.topicIDs:
            _require_text(topic)
    with_ids: list[Any] = [*control.ihave, *control.iwant, *control.idontwant]
    for entry in with_ids:
        if len(entry.messageIDs) > limits.max_ids_per_entry:
            raise RpcRejected("oversized_rpc", f"{len(entry.messageIDs)} ids in one entry")
    with_topic: list[Any] = [
        *control.ihave,
        *control.graft,
        *control.prune,
        *control.observe,
        *control.unobserve,
    ]
    for entry in with_topic:
        _require_text(entry.topicID)

    dropped = 0
    for field in ("ihave", "graft", "prune", "observe", "unobserve"):
        items = getattr(control, field)
        kept = [item for item in items if item.topicID in joined]
        dropped += len(items) - len(kept)
        if len(kept) != len(items):
            del items[:]
            items.extend(kept)
    for prune in control.prune:
        prune.backoff = min(prune.backoff, limits.max_backoff_s)
        del prune.peers[:]
    if rpc.HasField("control") and not control.ListFields():
        rpc.ClearField("control")
    return dropped


def _require_text(value: object) -> None:
    if not isinstance(value, str):
        raise RpcRejected("malformed_rpc", "a topic is not UTF-8")


def verify_message_signature(msg: rpc_pb2.Message) -> bool:
    """The library's check, with whatever a malformed key or signature raises as False."""
    try:
        return bool(signature_validator(msg))
    except Exception:
        return False


class GuardedPubsub(Pubsub):
    def __init__(
        self,
        host: IHost,
        router: GossipSub,
        *,
        limits: PeerLimits,
        report: ReportViolation,
        is_banned: IsBanned,
        allowed_topics: Sequence[str],
        clock: Clock = time.monotonic,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            host,
            router,
            max_inbound_rpc_size=limits.max_rpc_bytes,
            max_subscriptions_per_rpc=limits.max_subscriptions_per_rpc,
            max_subscriptions_per_peer=_MAX_SUBSCRIPTIONS_PER_PEER,
            **kwargs,
        )
        self._allowed_topics = frozenset(allowed_topics)
        self._limits = limits
        self._report = report
        self._is_banned = is_banned
        self._rpcs = TokenBuckets(limits.rpc_burst, limits.rpc_rate_per_s, clock)
        self._messages = TokenBuckets(limits.message_burst, limits.message_rate_per_s, clock)
        self._control = TokenBuckets(limits.rpc_burst, limits.rpc_rate_per_s, clock)
        self._inbound_streams: dict[ID, int] = {}

    async def stream_handler(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        if self._is_banned(peer):
            await close_quietly(stream.reset)
            return
        if self._inbound_streams.get(peer, 0) >= self._limits.max_pubsub_streams_per_peer:
            self._report(peer, "stream_flood", "pubsub streams over the cap")
            await close_quietly(stream.reset)
            return
        self._inbound_streams[peer] = self._inbound_streams.get(peer, 0) + 1
        try:
            await self.continuously_read_stream(stream)
        except RpcRejected as rejection:
            logger.warning("pubsub RPC from %s rejected: %s", peer, rejection)
            self._report(peer, rejection.reason, rejection.detail)
            await close_quietly(stream.reset)
            self._handle_dead_peer(peer)
        except Exception as exc:
            # The library's reader raises its stream and parse errors here too; anything
            # else is our fault or the library's, but the peer caused it.
            if not is_stream_end(exc):
                logger.error("pubsub stream from %s failed: %r", peer, exc)
                self._report(peer, "internal_error", f"pubsub reader: {exc!r}", disconnect=True)
            await close_quietly(stream.reset)
            self._handle_dead_peer(peer)
        finally:
            left = self._inbound_streams.get(peer, 1) - 1
            if left:
                self._inbound_streams[peer] = left
            else:
                self._inbound_streams.pop(peer, None)

    async def continuously_read_stream(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        while self.manager.is_running and not self._is_banned(peer):
            try:
                incoming = await read_varint_prefixed_bytes_limited(
                    stream, self.max_inbound_rpc_size
                )
            except MessageTooLarge as exc:
                raise RpcRejected("oversized_rpc", str(exc)) from exc
            except ParseError as exc:
                raise RpcRejected("malformed_rpc", f"bad length prefix: {exc}") from exc
            if not self._rpcs.take(str(peer)):
                self._report(peer, "message_flood", "RPC rate over the limit")
                continue
            rpc = rpc_pb2.RPC()
            try:
                rpc.ParseFromString(incoming)
            except DecodeError as exc:
                raise RpcRejected("malformed_rpc", f"undecodable RPC: {exc}") from exc
            dropped = sanitise_rpc(rpc, list(self.topic_ids), self._limits)
            if dropped and not self._control.take(str(peer)):
                self._report(peer, "control_flood", f"{dropped} entries for topics we left")
            if not maybe_consume_signed_record(rpc, self.host, peer):
                logger.debug("pubsub RPC from %s with an invalid peer record ignored", peer)
                continue
            for message in rpc.subscriptions:
                self.handle_subscription(peer, message)
            for msg in rpc.publish:
                if self._is_banned(peer):
                    return
                if not self._is_subscribed_to_msg(msg):
                    continue
                if not self._messages.take(str(peer)):
                    self._report(peer, "message_flood", "message rate over the limit")
                    continue
                await self.push_msg(peer, msg)
            if rpc.HasField("control"):
                if not self._control.take(str(peer)):
                    self._report(peer, "control_flood", "control rate over the limit")
                    continue
                await self.router.handle_rpc(rpc, peer)

    def handle_subscription(self, origin_id: ID, sub_message: rpc_pb2.RPC.SubOpts) -> None:
        """A remote's subscription is kept only for a topic we serve (the configured ones
        and any we have joined): its other topics are no business of ours."""
        topic = sub_message.topicid
        if sub_message.subscribe and not (topic in self._allowed_topics or topic in self.topic_ids):
            return
        super().handle_subscription(origin_id, sub_message)

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        """The library's push_msg, reordered so the cheap checks come first, with the
        signature check contained and penalised."""
        try:
            await self._push_msg(msg_forwarder, msg)
        except Exception as exc:
            logger.error("pubsub message from %s failed: %r", msg_forwarder, exc)
            if msg_forwarder != self.my_id:
                self._report(msg_forwarder, "internal_error", f"push_msg: {exc!r}", disconnect=True)

    async def _push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        if self.is_peer_blacklisted(msg_forwarder) or self._is_banned(msg_forwarder):
            return
        origin = ID(msg.from_id)
        if self.is_peer_blacklisted(origin):
            return
        if self._is_msg_seen(msg):
            return
        if origin == self.my_id and msg_forwarder != self.my_id:
            return  # claims to be ours but was not published here
        checks_signature = self.strict_signing and msg_forwarder != self.my_id
        if checks_signature and not verify_message_signature(msg):
            self._report(msg_forwarder, "bad_message_signature", f"origin {origin}")
            return
        try:
            await self.validate_msg(msg_forwarder, msg)
        except ValidationError:
            return  # the topic validator has penalised whoever deserved it
        self._mark_msg_seen(msg)
        self.notify_subscriptions(msg)
        await self.router.publish(msg_forwarder, msg)

    # Per-peer tasks the library spawns into the pubsub service, where an escaping
    # exception stops pubsub for everyone: each is contained to its peer.

    async def _contained(self, what: str, peer: ID, task: Awaitable[None]) -> None:
        try:
            await task
        except Exception as exc:
            if is_stream_end(exc):
                logger.debug("pubsub %s for %s ended: %r", what, peer, exc)
                return
            logger.error("pubsub %s for %s failed: %r", what, peer, exc)
            self._report(peer, "internal_error", f"pubsub {what}: {exc!r}", disconnect=True)

    async def _replay_recent_messages(self, peer_id: ID, topic: str) -> None:
        await self._contained("replay", peer_id, super()._replay_recent_messages(peer_id, topic))

    async def _handle_new_peer_with_retry(self, peer_id: ID, timeout: float | None = None) -> None:
        await self._contained(
            "registration", peer_id, super()._handle_new_peer_with_retry(peer_id, timeout)
        )

    async def handle_sending_messages(self, peer_id: ID, stream: INetStream, queue: Any) -> None:
        await self._contained(
            "sender", peer_id, super().handle_sending_messages(peer_id, stream, queue)
        )

    async def _run_announce_retry(self, peer_id: ID, topic_id: str, subscribe: bool) -> None:
        await self._contained(
            "announce", peer_id, super()._run_announce_retry(peer_id, topic_id, subscribe)
        )

    async def _teardown_if_connected(self, peer_id: ID) -> None:
        """The library's version awaits the stream reset, then `del self.peers[peer_id]`;
        a dead-peer notification in between makes that a KeyError that stops pubsub
        (a ban while the peer disconnects does it). Pop instead."""
        stream = self.peers.pop(peer_id, None)
        if stream is not None:
            await close_quietly(stream.reset)
        self._forget_all_subscriptions(peer_id)

    def _handle_dead_peer(self, peer_id: ID) -> None:
        super()._handle_dead_peer(peer_id)
        if not self.host.get_network().get_connections(peer_id):
            self.router.remove_peer(peer_id)


class GuardedGossipSub(GossipSub):
    """GossipSub whose per-peer state leaves with the peer and whose RPC handling is
    contained (the RPC reaches it already sanitised)."""

    def __init__(self, *args: Any, report: ReportViolation, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._report = report

    def remove_peer(self, peer_id: ID) -> None:
        super().remove_peer(peer_id)
        for peers in self.back_off.values():
            peers.pop(peer_id, None)
        for topic in [t for t, peers in self.back_off.items() if not peers]:
            del self.back_off[topic]
        self.graft_flood_tracking.pop(peer_id, None)

    async def flush_pending_messages(self, peer_id: ID) -> None:
        await self._contained("flush", peer_id, super().flush_pending_messages(peer_id))

    async def on_peer_subscribed(self, peer_id: ID, topic: str) -> None:
        await self._contained("mesh fill", peer_id, super().on_peer_subscribed(peer_id, topic))

    async def heartbeat(self) -> None:
        """The library's heartbeat loop, restarted if one round fails: it walks every
        peer's state, and one peer's odd state must not end the mesh for everyone."""
        while True:
            try:
                await super().heartbeat()
            except Exception as exc:
                logger.error("gossipsub heartbeat failed: %r; restarting it", exc)
                await trio.sleep(self.heartbeat_interval)

    async def _contained(self, what: str, peer: ID, task: Awaitable[None]) -> None:
        try:
            await task
        except Exception as exc:
            if is_stream_end(exc):
                return
            logger.error("gossipsub %s for %s failed: %r", what, peer, exc)
            self._report(peer, "internal_error", f"gossipsub {what}: {exc!r}", disconnect=True)

    async def handle_rpc(self, rpc: rpc_pb2.RPC, sender_peer_id: ID) -> None:
        try:
            await super().handle_rpc(rpc, sender_peer_id)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            logger.debug("control reply to %s not sent: %r", sender_peer_id, exc)
        except Exception as exc:
            logger.error("control message from %s failed: %r", sender_peer_id, exc)
            self._report(
                sender_peer_id, "internal_error", f"gossipsub control: {exc!r}", disconnect=True
            )
