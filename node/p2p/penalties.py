"""Misbehaviour points per peer, decaying over time; past the threshold a peer is banned.

Points are kept by us rather than left to GossipSub's scorer: py-libp2p 0.8.1's scorer
penalises IP colocation, which on one host (or behind one NAT) punishes honest peers, and
its reasons are not observable. Each penalty is logged with the reason that caused it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from node.p2p.config import PenaltyPolicy
from node.p2p.identity import PeerId

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

# Honest peers can trip the time-based rules (an offer expiring in transit, clock skew, a
# republish racing a change), so those cost little; forged or malformed data costs a lot.
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
}


@dataclass
class _Account:
    points: float
    updated_at: float
    banned_until: float = 0.0


class PeerPenalties:
    def __init__(self, policy: PenaltyPolicy, clock: Clock) -> None:
        self._policy = policy
        self._clock = clock
        self._accounts: dict[PeerId, _Account] = {}

    def penalise(self, peer: PeerId, reason: str, detail: str = "") -> bool:
        """Add the reason's points; True when this penalty pushed the peer into a ban."""
        now = self._clock()
        account = self._decayed(peer, now)
        account.points += PENALTY_POINTS.get(reason, 10.0)
        logger.warning(
            "peer %s penalised for %s (%s): %.0f points", peer, reason, detail, account.points
        )
        if account.points >= self._policy.ban_threshold and account.banned_until <= now:
            account.banned_until = now + self._policy.ban_duration_s
            logger.warning("peer %s banned for %.0f s", peer, self._policy.ban_duration_s)
            return True
        return False

    def points(self, peer: PeerId) -> float:
        return self._decayed(peer, self._clock()).points

    def is_banned(self, peer: PeerId) -> bool:
        account = self._accounts.get(peer)
        return account is not None and account.banned_until > self._clock()

    def _decayed(self, peer: PeerId, now: float) -> _Account:
        account = self._accounts.get(peer)
        if account is None:
            account = self._accounts[peer] = _Account(0.0, now)
            return account
        elapsed = max(0.0, now - account.updated_at)
        account.points = max(0.0, account.points - elapsed * self._policy.decay_per_s)
        account.updated_at = now
        return account


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
