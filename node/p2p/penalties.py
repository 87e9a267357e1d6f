"""Misbehaviour points per peer, decaying over time; past the threshold a peer is banned.

Points are kept by us rather than left to GossipSub's scorer: py-libp2p 0.8.1's scorer
penalises IP colocation, which on one host (or behind one NAT) punishes honest peers, and
its reasons are not observable. Each penalty is logged with the reason that caused it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from libp2p.peer.id import ID

from node.p2p.config import PenaltyPolicy
from node.p2p.identity import PeerId

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


class ReportViolation(Protocol):
    """How a guard inside py-libp2p reports a peer (it may not await): penalise, and
    disconnect when asked or when the penalty bans it (`P2PHost.report_violation`)."""

    def __call__(
        self, peer: ID, reason: str, detail: str = "", *, disconnect: bool = False
    ) -> None: ...


# Honest peers can trip the time-based rules (an offer expiring in transit, clock skew, a
# republish racing a change), so those cost little; forged or malformed data costs a lot.
# The library-level reasons (pubsub RPCs, Yamux, identify) are misbehaviour py-libp2p
# tolerates silently; no honest implementation produces them.
PENALTY_POINTS: dict[str, float] = {
    "malformed": 50.0,
    "oversized": 50.0,
    "wrong_chain": 50.0,
    "wrong_market": 50.0,
    "not_standing": 50.0,
    "bad_signature": 100.0,
    "wrong_peer": 100.0,
    "expired": 10.0,
    "stale": 10.0,
    "future": 20.0,
    "replayed": 20.0,
    "rate_limited": 5.0,
    "protocol_violation": 50.0,
    "timeout": 20.0,
    # A peer's input made our own code fail: we cannot tell a bug from an attack, so it
    # costs enough that repeating it gets the peer banned.
    "internal_error": 25.0,
    "malformed_rpc": 50.0,
    "oversized_rpc": 50.0,
    "bad_message_signature": 50.0,
    "control_flood": 10.0,
    "message_flood": 5.0,
    "window_overrun": 100.0,
    "stream_flood": 50.0,
    "oversized_identify": 50.0,
    "upload_refused": 5.0,
    # An exception escaped the node and took it down; the supervisor restarts it.
    "crashed_node": 100.0,
}


@dataclass
class _Account:
    # Points already past their hold, decaying from `settled_at` on.
    settled: float = 0.0
    settled_at: float = 0.0
    # Penalties still within their hold: (when, points), oldest first.
    held: deque[tuple[float, float]] = field(default_factory=deque)
    banned_until: float = 0.0


class PeerPenalties:
    def __init__(self, policy: PenaltyPolicy, clock: Clock) -> None:
        self._policy = policy
        self._clock = clock
        self._accounts: dict[PeerId, _Account] = {}

    def penalise(self, peer: PeerId, reason: str, detail: str = "") -> bool:
        """Add the reason's points; True when this penalty pushed the peer into a ban."""
        now = self._clock()
        account = self._account(peer)
        account.held.append((now, PENALTY_POINTS.get(reason, 10.0)))
        points = self._points(account, now)
        logger.warning("peer %s penalised for %s (%s): %.0f points", peer, reason, detail, points)
        if points >= self._policy.ban_threshold and account.banned_until <= now:
            account.banned_until = now + self._policy.ban_duration_s
            logger.warning("peer %s banned for %.0f s", peer, self._policy.ban_duration_s)
            return True
        return False

    def points(self, peer: PeerId) -> float:
        account = self._accounts.get(peer)
        return 0.0 if account is None else self._points(account, self._clock())

    def is_banned(self, peer: PeerId) -> bool:
        account = self._accounts.get(peer)
        return account is not None and account.banned_until > self._clock()

    def _account(self, peer: PeerId) -> _Account:
        account = self._accounts.get(peer)
        if account is None:
            if len(self._accounts) >= self._policy.max_accounts:
                self._forget_forgiven()
            account = self._accounts[peer] = _Account(settled_at=self._clock())
        return account

    def _points(self, account: _Account, now: float) -> float:
        """Settle every penalty whose hold has ended (in order, so decay is exact)."""
        hold, rate = self._policy.hold_s, self._policy.decay_per_s
        while account.held and account.held[0][0] + hold <= now:
            at, points = account.held.popleft()
            released = at + hold
            decayed = max(0.0, account.settled - (released - account.settled_at) * rate)
            account.settled, account.settled_at = decayed + points, released
        settled = max(0.0, account.settled - (now - account.settled_at) * rate)
        return settled + sum(points for _, points in account.held)

    def _forget_forgiven(self) -> None:
        now = self._clock()
        for peer in [
            p
            for p, a in self._accounts.items()
            if a.banned_until <= now and self._points(a, now) == 0.0
        ]:
            del self._accounts[peer]
        if len(self._accounts) >= self._policy.max_accounts:
            # Still full of live accounts: drop the least-penalised unbanned one.
            candidates = [p for p, a in self._accounts.items() if a.banned_until <= now]
            if candidates:
                del self._accounts[
                    min(candidates, key=lambda p: self._points(self._accounts[p], now))
                ]


class TokenBuckets:
    """One token bucket per key: `burst` tokens, refilled at `rate_per_s`."""

    def __init__(
        self, burst: int, rate_per_s: float, clock: Clock, max_keys: int = 100_000
    ) -> None:
        self._burst = float(burst)
        self._rate = rate_per_s
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> bool:
        now = self._clock()
        tokens, at = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        if key not in self._buckets and len(self._buckets) >= self._max_keys:
            # Full buckets carry no state worth keeping; forgetting them bounds memory.
            self._buckets = {k: v for k, v in self._buckets.items() if v[0] < self._burst}
        self._buckets[key] = (tokens - 1.0, now)
        return True
