"""The verifier's side of /capa/approve/1: a request becomes ApprovalRequested, the answer
is the decision the state machine records (EvidenceChecked from the checker).

The responder decides nothing itself: it limits each peer's rate, keeps the evidence for
the checker, submits the change and waits (bounded, inside the stream's deadline) for the
approval to leave `checking`. A provider that asks again with the same request gets the
decision already recorded, so a lost answer or a verifier restart costs no second check.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import trio
from eth_utils.crypto import keccak

from node.daemon.state_service import StateService
from node.daemon.verifier_checks import request_id_for
from node.daemon.verifier_requests import HeldRequest, HeldRequests, RequestsFull
from node.p2p.approve_protocol import ApprovalAnswer, ApprovalRequest
from node.p2p.errors import RemoteRefused
from node.p2p.identity import PeerId
from node.state.changes import ApprovalRequested
from node.state.errors import InvalidValue
from node.state.model import Approval, ApprovalStatus
from node.state.values import Hash32, to_address, to_hash32

log = logging.getLogger(__name__)

# Below the stream's deadline (node.p2p.node.APPROVAL_DEADLINE_S = 60 s), so a check that
# takes longer is answered "ask again" rather than cut off without a word.
DECISION_WAIT_S = 45.0
MAX_TRACKED_PEERS = 4096


class PeerRateLimit:
    """A token bucket per peer: `per_minute` requests, refilled evenly over the minute.

    The least recently seen peers are forgotten beyond `max_peers` (the p2p layer bounds
    how many peers can connect at all)."""

    def __init__(self, per_minute: int, max_peers: int = MAX_TRACKED_PEERS) -> None:
        self._capacity = float(per_minute)
        self._refill_per_s = per_minute / 60.0
        self._max_peers = max_peers
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, peer: str, now: float) -> bool:
        tokens, last = self._buckets.pop(peer, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - last) * self._refill_per_s)
        allowed = tokens >= 1.0
        self._buckets[peer] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > self._max_peers:
            self._buckets.popitem(last=False)
        return allowed


class ApprovalService:
    """The `ApprovalResponder` the verifier's p2p node serves."""

    def __init__(
        self,
        service: StateService,
        held: HeldRequests,
        requests_per_minute: int,
        *,
        decision_wait_s: float = DECISION_WAIT_S,
    ) -> None:
        self._service = service
        self._held = held
        self._per_minute = requests_per_minute
        self._limit = PeerRateLimit(requests_per_minute)
        self._decision_wait_s = decision_wait_s

    def decided(self, request_id: Hash32) -> bool:
        approval = self._service.state.approvals.get(request_id)
        return approval is not None and approval.status is not ApprovalStatus.CHECKING

    async def approve(self, peer: PeerId, request: ApprovalRequest) -> ApprovalAnswer:
        peer_id = str(peer)
        if not self._limit.allow(peer_id, trio.current_time()):
            log.info(
                "approval request from %s refused: over %d a minute", peer_id, self._per_minute
            )
            raise RemoteRefused(
                f"rate limited: at most {self._per_minute} approval requests a minute per peer"
            )
        request_id = request_id_for(request)
        if request_id not in self._service.state.approvals:
            await self._record(peer_id, request_id, request)
        approval = await self._decision(request_id)
        if approval is None or approval.status is ApprovalStatus.CHECKING:
            raise RemoteRefused("the check of this request is still running: ask again later")
        if approval.status is ApprovalStatus.APPROVED:
            return ApprovalAnswer(True, approval.reason, bytes.fromhex(approval.signature[2:]))
        return ApprovalAnswer(False, approval.reason, b"")

    async def _record(self, peer_id: str, request_id: Hash32, request: ApprovalRequest) -> None:
        att = request.attestation
        try:
            change = ApprovalRequested(
                request_id,
                to_address(att.provider),
                to_address(att.enclave_key),
                to_hash32(keccak(request.evidence)),
                peer_id,
            )
        except InvalidValue as exc:  # the wire readers checked these already
            raise RemoteRefused(f"malformed request: {exc}") from exc
        try:
            # Kept before the change is recorded: the checker it starts reads it.
            self._held.put(request_id, HeldRequest(peer_id, request), self.decided)
        except RequestsFull as exc:
            raise RemoteRefused(f"verifier busy ({exc}): ask again later") from exc
        except OSError as exc:
            log.error("cannot keep approval request %s: %s", request_id, exc)
            raise RemoteRefused("verifier cannot keep the request now: ask again later") from exc
        try:
            outcome = await self._service.request(change)
        except trio.TooSlowError as exc:
            raise RemoteRefused("verifier busy (its state queue is full): ask again later") from exc
        if outcome.rejected:
            log.debug("approval request %s: %s", request_id, outcome.rejected)

    async def _decision(self, request_id: Hash32) -> Approval | None:
        state = self._service.state
        with trio.move_on_after(self._decision_wait_s):
            seen = self._service.version
            while not self.decided(request_id):
                seen = await self._service.wait_for_change(seen)
        return state.approvals.get(request_id)
