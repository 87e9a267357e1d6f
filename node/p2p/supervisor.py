"""Runs the p2p node inside the daemon and restarts it if py-libp2p fails anyway.

Every boundary where a peer's bytes reach py-libp2p is guarded (see `host`), so a peer
should never get this far. If an exception still escapes the node, the supervisor logs
it with the peer that caused it, penalises that peer (the penalties outlive the node, so
a ban survives the restart), and starts a fresh node after a back-off. The daemon's
other services (chain watcher, sender, API, jobs in flight) never see the failure.

The peer is the one named by a `PeerFault` in the exception, else the innermost peer id
found in the failing frames (py-libp2p passes `peer_id` to nearly every per-peer
coroutine), else none: the failure is logged as unattributed.

Connected peers are reported to the daemon (`PeerSeen`) once they have stayed connected
for a poll interval, at most once per peer per `seen_interval_s` and at a bounded rate,
so a stream of throwaway identities cannot flood the state store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

import trio
from libp2p.abc import INetStream
from libp2p.peer.id import ID

from node.exception_groups import first_of
from node.p2p.approve_protocol import ApprovalResponder
from node.p2p.config import P2PConfig
from node.p2p.errors import ListenFailed, P2PError
from node.p2p.identity import NodeIdentity, PeerAddress, PeerId, peer_id_of
from node.p2p.node import P2PNode, ProviderServices
from node.p2p.penalties import Clock, PeerPenalties, TokenBuckets

if TYPE_CHECKING:
    from trio_typing import TaskStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeenPeer:
    peer_id: PeerId
    addresses: tuple[PeerAddress, ...]
    seen_at: int


PeerSeenSink = Callable[[SeenPeer], Awaitable[None]]


class PeerFault(P2PError):
    """Raised (or wrapped around another exception) to name the peer behind a failure."""

    def __init__(self, peer: PeerId, detail: str) -> None:
        super().__init__(f"{peer}: {detail}")
        self.peer = peer


@dataclass(frozen=True)
class SupervisorPolicy:
    restart_backoff_s: float = 1.0
    max_restart_backoff_s: float = 30.0
    # A node that ran this long before failing resets the back-off.
    healthy_after_s: float = 60.0
    peer_poll_interval_s: float = 2.0
    seen_interval_s: float = 300.0
    seen_burst: int = 20
    seen_rate_per_s: float = 1.0


class P2PSupervisor:
    def __init__(
        self,
        identity: NodeIdentity,
        config: P2PConfig,
        *,
        provider: ProviderServices | None = None,
        approvals: ApprovalResponder | None = None,
        on_peer_seen: PeerSeenSink | None = None,
        policy: SupervisorPolicy | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._identity = identity
        self._config = config
        self._provider = provider
        self._approvals = approvals
        self._on_peer_seen = on_peer_seen
        self._policy = policy or SupervisorPolicy()
        self._clock = clock
        self.penalties = PeerPenalties(config.penalties, clock)
        self.node: P2PNode | None = None
        self.restarts = 0
        self.last_fault: str | None = None
        self._node_up = trio.Event()
        self._reported: dict[PeerId, float] = {}
        self._report_rate = TokenBuckets(
            self._policy.seen_burst, self._policy.seen_rate_per_s, clock, max_keys=1
        )

    @property
    def peer_id(self) -> PeerId:
        return self._identity.peer_id

    async def wait_running(self) -> P2PNode:
        """The node once it is up (again)."""
        while True:
            await self._node_up.wait()
            if self.node is not None:
                return self.node

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """`started` once the first node is up, or has failed to come up: the daemon runs
        on either way, and the supervisor keeps trying."""
        policy = self._policy
        backoff = policy.restart_backoff_s
        told_started = False
        while True:
            node = P2PNode(
                self._identity,
                self._config,
                self._provider,
                penalties=self.penalties,
                approvals=self._approvals,
            )
            began = self._clock()
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(node.run)
                    self.node = node
                    self._node_up.set()
                    if not told_started:
                        task_status.started()
                        told_started = True
                    nursery.start_soon(self._report_peers, node)
            except Exception as exc:
                self._fault(node, exc)
            finally:
                self.node = None
                self._node_up = trio.Event()
            if not told_started:
                task_status.started()
                told_started = True
            if self._clock() - began >= policy.healthy_after_s:
                backoff = policy.restart_backoff_s
            logger.warning("p2p node restarts in %.1f s", backoff)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, policy.max_restart_backoff_s)
            self.restarts += 1

    def _fault(self, node: P2PNode, exc: BaseException) -> None:
        own = node.host.peer_id
        culprits = [p for p in attribute_peers(exc) if p != own]
        self.last_fault = repr(exc)
        if not culprits:
            listen = first_of(exc, ListenFailed)
            if listen is not None:  # the operator's to fix: one line, no traceback
                logger.error("p2p node cannot start: %s", listen)
                return
            logger.error("p2p node failed (no peer attributed): %r", exc, exc_info=exc)
            return
        for peer in culprits:
            logger.error("p2p node failed because of peer %s: %r", peer, exc, exc_info=exc)
            # The node and its connections are gone; on restart a banned peer is refused.
            self.penalties.penalise(peer, "crashed_node", repr(exc)[:200])

    async def _report_peers(self, node: P2PNode) -> None:
        if self._on_peer_seen is None:
            return
        policy = self._policy
        previous: set[PeerId] = set()
        while True:
            await trio.sleep(policy.peer_poll_interval_s)
            now = self._clock()
            for peer, at in list(self._reported.items()):
                if at + policy.seen_interval_s <= now:
                    del self._reported[peer]
            current = set(node.host.connected_peers())
            # Reported once connected across two polls: fly-by connections are not news.
            for peer in sorted(current & previous):
                if peer in self._reported or self.penalties.is_banned(peer):
                    continue
                if not self._report_rate.take("seen"):
                    break
                self._reported[peer] = now
                seen = SeenPeer(peer, tuple(node.host.addresses_of(peer)[:4]), int(time.time()))
                await self._on_peer_seen(seen)
            previous = current


def attribute_peers(exc: BaseException) -> list[PeerId]:
    """Who caused `exc`: PeerFaults first, else the innermost libp2p peer id (or stream)
    in each failing traceback."""
    named: list[PeerId] = []
    found: list[PeerId] = []
    for leaf in _leaves(exc):
        if isinstance(leaf, PeerFault):
            named.append(leaf.peer)
            continue
        peer = _peer_in_frames(leaf.__traceback__)
        if peer is not None:
            found.append(peer)
    return list(dict.fromkeys(named or found))


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue  # exception chains can be cycles
        seen.add(id(current))
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
            continue
        yield current
        for linked in (current.__cause__, current.__context__):
            if isinstance(linked, PeerFault):
                stack.append(linked)


def _peer_in_frames(tb: TracebackType | None) -> PeerId | None:
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for value in frame.f_locals.values():
            if isinstance(value, ID):
                return peer_id_of(value)
            if isinstance(value, INetStream):
                return peer_id_of(value.muxed_conn.peer_id)
    return None
