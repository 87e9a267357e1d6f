"""What identify may make us remember about a peer, and how much of it.

py-libp2p 0.8.1 reads identify and identify/push messages of up to 1 MiB and stores every
protocol string and up to 1000 addresses per peer (its address book deduplicates by
linear search, so that is a million comparisons per push). 100 identities pushing 255 k
protocol strings kept 1.9 GiB in the peerstore. `BoundedPeerStore` caps what is kept per
peer and how many peers are kept; our identify/push handler reads at most
`max_identify_bytes` and penalises a peer whose message breaks the caps.

Upstream fix: a size limit on identify messages (go-libp2p: 8 KiB with a signed record)
and per-peer caps in the peerstore's proto and address books.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import trio
from google.protobuf.message import DecodeError
from libp2p.abc import IHost, INetStream
from libp2p.identity.identify.pb.identify_pb2 import Identify
from libp2p.identity.update import update_peerstore_from_identify
from libp2p.io.exceptions import MessageTooLarge
from libp2p.peer.id import ID
from libp2p.peer.peerstore import PeerStore
from libp2p.utils.varint import read_varint_prefixed_bytes_limited
from multiaddr import Multiaddr

from node.p2p.config import PeerLimits
from node.p2p.penalties import Clock, ReportViolation, TokenBuckets
from node.p2p.teardown import close_quietly

logger = logging.getLogger(__name__)


_PUSH_BURST = 4
_PUSH_RATE_PER_S = 0.1
_PUSH_READ_TIMEOUT_S = 10.0


class BoundedPeerStore(PeerStore):
    def __init__(self, limits: PeerLimits) -> None:
        super().__init__(max_peers=limits.max_peerstore_peers)
        self._limits = limits

    def _fit(self, protocols: Sequence[str]) -> list[str]:
        limit = self._limits.max_protocol_length
        return [p for p in protocols if isinstance(p, str) and len(p) <= limit]

    def add_protocols(self, peer_id: ID, protocols: Sequence[str]) -> None:
        have = self.peer_data_map[peer_id].get_protocols() if self.has_peer(peer_id) else []
        room = self._limits.max_protocols_per_peer - len(have)
        fresh = [p for p in dict.fromkeys(self._fit(protocols)) if p not in have]
        super().add_protocols(peer_id, fresh[: max(0, room)])
        self._bound_peers()

    def set_protocols(self, peer_id: ID, protocols: Sequence[str]) -> None:
        fitted = list(dict.fromkeys(self._fit(protocols)))
        super().set_protocols(peer_id, fitted[: self._limits.max_protocols_per_peer])
        self._bound_peers()

    def add_addrs(self, peer_id: ID, addrs: Sequence[Multiaddr], ttl: int = 0) -> None:
        have = self.peer_data_map[peer_id].get_addrs() if self.has_peer(peer_id) else []
        room = max(0, self._limits.max_addrs_per_peer - len(have))
        fresh = [a for a in addrs if a not in have]
        super().add_addrs(peer_id, fresh[:room], ttl)

    def _bound_peers(self) -> None:
        # The library only trims in a cleanup task every five minutes; a flood of
        # identities would grow the map until then. A tenth of slack amortises the sort.
        if len(self.peer_data_map) > self.max_peers * 1.1:
            self._enforce_peer_limit()


def identify_push_handler(
    host: IHost, limits: PeerLimits, report: ReportViolation, clock: Clock = time.monotonic
) -> Callable[[INetStream], Awaitable[None]]:
    """Replaces the library's /ipfs/id/push/1.0.0 handler."""
    pushes = TokenBuckets(_PUSH_BURST, _PUSH_RATE_PER_S, clock)

    async def handle(stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        try:
            if not pushes.take(str(peer)):
                report(peer, "rate_limited", "identify/push")
                return
            with trio.fail_after(_PUSH_READ_TIMEOUT_S):
                data = await read_varint_prefixed_bytes_limited(stream, limits.max_identify_bytes)
            message = Identify()
            message.ParseFromString(data)
            problem = identify_problem(message, limits)
            if problem is not None:
                report(peer, "oversized_identify", problem)
                return
            await update_peerstore_from_identify(host.get_peerstore(), peer, message)
        except MessageTooLarge as exc:
            report(peer, "oversized_identify", str(exc))
        except DecodeError as exc:
            report(peer, "malformed_rpc", f"identify/push: {exc}")
        except Exception as exc:
            # Oversized prefix, timeout, a stream that ended: the push is dropped.
            logger.debug("identify/push from %s dropped: %r", peer, exc)
        finally:
            await close_quietly(stream.close)

    return handle


def identify_problem(message: Identify, limits: PeerLimits) -> str | None:
    """Why an identify message is more than an honest peer sends, or None."""
    if len(message.protocols) > limits.max_protocols_per_peer:
        return f"{len(message.protocols)} protocols"
    if any(
        not isinstance(p, str) or len(p) > limits.max_protocol_length for p in message.protocols
    ):
        return "a protocol id that is too long or not UTF-8"
    if len(message.listen_addrs) > limits.max_addrs_per_peer:
        return f"{len(message.listen_addrs)} listen addresses"
    return None
