"""The provider facing the market over p2p: quotes, input uploads, offers.

- `QuoteDesk` answers /capa/quote/1: the request becomes a `QuoteRequested` change, the
  transition runs the scheduler's bid rules, and its reply gives the terms (or the refusal);
  the desk signs the EIP-712 Offer bound to the client's exact request.
- `InputDesk` is the gate of /capa/input/1: it admits only uploads for jobs held on chain for
  this provider with the announced input hash, and once the sealed bytes are whole on disk
  records `InputReceived` and returns the provider's signed InputReceipt.
- `OfferPublisher` handles `Publish`: the standing offer of one registered enclave key,
  signed with the account key and advertised on the offer topic; it advertises them again
  on a p2p node the supervisor restarted.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import TYPE_CHECKING

import trio
from eth_utils.address import to_checksum_address

from node.chain.errors import ChainError
from node.chain.typed_data import InputReceipt, JobRequest, Offer, job_market_domain, sign_message
from node.daemon.enclave_host import EnclaveHost
from node.daemon.errors import DaemonError
from node.daemon.provider_attestor import KeyEvidence
from node.daemon.wiring import NodeContext
from node.p2p.errors import RemoteRefused, UploadRefused
from node.p2p.identity import PeerId
from node.p2p.input_store import FileInputStore
from node.p2p.node import P2PNode
from node.p2p.offers import ListingDetails, SignedOffer
from node.p2p.penalties import TokenBuckets
from node.p2p.transfer import Announced
from node.state import changes as sc
from node.state.effects import Effect, Publish
from node.state.errors import InvalidValue
from node.state.model import EnclaveKey, Job, JobStatus, KeyStatus
from node.state.values import JobId, to_address, to_hash32, to_job_id
from scheduler.models import TcbStatus, WorkloadKind

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

# How long a finished upload waits for the chain watcher to confirm the job's match before
# it is refused (the client then resumes, with nothing left to send).
MATCH_WAIT_S = 30.0
# Quotes one peer may ask for at once, and then per second.
QUOTE_BURST = 20
QUOTES_PER_S = 2.0
# How often the publisher looks for a p2p node the supervisor restarted.
NODE_CHECK_INTERVAL_S = 5.0
# On-chain JobMarket.State.Accepted: matched (or accepted) and waiting for its result.
_CHAIN_ACCEPTED = 2
# A job past its input: the input may be sent again (a lost receipt), and is signed again.
_INPUT_TAKEN = frozenset(
    {JobStatus.RUNNING, JobStatus.READY, JobStatus.SUBMITTING, JobStatus.SETTLED}
)


# Jobs that still need their enclave instance: to receive, run, or batch-sign their result.
_NEEDS_INSTANCE = frozenset(
    {JobStatus.ASSIGNED, JobStatus.RUNNING, JobStatus.READY, JobStatus.SUBMITTING}
)
_KEY_IN_USE = frozenset({KeyStatus.ATTESTING, KeyStatus.REGISTERING, KeyStatus.REGISTERED})


def instances_in_use(ctx: NodeContext) -> set[str]:
    """Enclave keys of this boot that a key's life or a job still needs."""
    state = ctx.service.state
    keys = {
        k.enclave_key
        for k in state.keys.values()
        if k.boot_id == state.facts.boot_id and k.status in _KEY_IN_USE
    }
    jobs = {
        j.enclave_key
        for j in state.jobs.values()
        if j.status in _NEEDS_INSTANCE and j.enclave_key is not None
    }
    return keys | jobs


def _live_keys(ctx: NodeContext) -> list[EnclaveKey]:
    state = ctx.service.state
    return [
        k
        for k in state.keys.values()
        if k.status is KeyStatus.REGISTERED and k.boot_id == state.facts.boot_id
    ]


class QuoteDesk:
    def __init__(self, ctx: NodeContext, host: EnclaveHost) -> None:
        self._ctx = ctx
        self._host = host
        # Every quote is a recorded state change: one peer may not write them at will.
        self._rate = TokenBuckets(QUOTE_BURST, QUOTES_PER_S, time.monotonic)

    async def quote(self, peer: PeerId, request: JobRequest, client: str) -> SignedOffer:
        ctx = self._ctx
        if not self._rate.take(peer):
            raise RemoteRefused("rate_limited")
        try:
            job_id = to_job_id(request.job_id(client))
            measurement = to_hash32(request.measurement)
            client_address = to_address(client)
        except InvalidValue as exc:
            raise RemoteRefused(f"malformed request: {exc}") from exc
        keys = [k for k in _live_keys(ctx) if k.measurement == measurement]
        expected = {self._host.spec_hash_of(k.enclave_key) for k in keys}
        if keys and request.spec_hash not in expected:
            # The enclave signs the spec it ran: a job naming another spec could never settle.
            raise RemoteRefused(
                "spec hash is not this workload's (this provider runs it without arguments)"
            )
        workload = self._host.workload(keys[0].workload) if keys else None
        change = sc.QuoteRequested(
            uuid.uuid4().hex,
            job_id,
            client_address,
            measurement,
            request.tee_kinds,
            request.max_price,
            request.deadline,
            workload.cpu_cores if workload else 1,
            workload.memory_mib if workload else 0,
            ctx.chain_time(),
        )
        outcome = await ctx.service.request(change)
        if outcome.rejected or not outcome.reply:
            raise RemoteRefused(outcome.rejected or "request not taken")
        terms = json.loads(outcome.reply)
        offer = Offer(
            provider=ctx.me.address,
            enclave_key=str(terms["enclave_key"]),
            tee_kind=int(terms["tee_kind"]),
            measurement=bytes.fromhex(str(terms["measurement"])[2:]),
            price=int(terms["price"]),
            min_duration=int(terms["min_duration"]),
            max_duration=int(terms["max_duration"]),
            valid_until=int(terms["valid_until"]),
            request_hash=request.request_hash(client),
            # A quote's nonce is spent only if this provider ever cancels quotes: unique
            # per request is all it needs.
            nonce=int(change.request_id, 16),
        )
        log.info("quoted job %s to %s: %d wei", job_id, client_address, offer.price)
        return SignedOffer.sign(
            offer, ctx.config.chain.chain_id, ctx.contracts.market, bytes(ctx.account.key)
        )


class InputDesk:
    """The InputGate of a provider: uploads only for its jobs, receipts for whole inputs."""

    def __init__(self, ctx: NodeContext, store: FileInputStore) -> None:
        self._ctx = ctx
        self._store = store

    def _job(self, job_id: JobId) -> Job | None:
        return self._ctx.service.state.jobs.get(job_id)

    async def admit(self, announced: Announced) -> None:
        ctx = self._ctx
        job_id = to_job_id(announced.job_id)
        if announced.enclave_key and not self._runs_here(announced.enclave_key):
            raise UploadRefused("unknown_enclave")
        job = self._job(job_id)
        if job is not None and job.provider == ctx.me.address and job.input_hash is not None:
            if job.status is not JobStatus.ASSIGNED and job.status not in _INPUT_TAKEN:
                raise UploadRefused("not_waiting_for_input")
            if job.input_hash != to_hash32(announced.sha256):
                raise UploadRefused("wrong_input_hash")
            return
        # The chain watcher may not have confirmed the match yet: ask the chain itself. The
        # input hash is checked against the job's once the watcher knows it (`complete`).
        contracts = await ctx.contracts.get()
        try:
            (on_chain,) = await contracts.reader(ctx.rpc, "market").call("getJob", announced.job_id)
        except ChainError as exc:
            log.warning("cannot check job %s on chain: %s", job_id, exc)
            raise UploadRefused("chain_unavailable") from exc
        provider, state = on_chain[2], int(on_chain[4])
        if str(to_checksum_address(provider)) != ctx.me.address or state != _CHAIN_ACCEPTED:
            raise UploadRefused("not_assigned")

    def _runs_here(self, enclave_key: str) -> bool:
        state = self._ctx.service.state
        try:
            key = state.keys.get(to_address(enclave_key))
        except InvalidValue:
            return False
        return (
            key is not None
            and key.boot_id == state.facts.boot_id
            and key.status in (KeyStatus.REGISTERED, KeyStatus.RETIRED)
        )

    async def complete(self, announced: Announced) -> bytes:
        try:
            return await self._receipt_for(announced)
        except UploadRefused as refusal:
            if refusal.reason != "busy":
                # Refused bytes hold no disk: the client may upload again from zero.
                await self._store.release(announced.job_id)
            raise

    async def _receipt_for(self, announced: Announced) -> bytes:
        ctx = self._ctx
        job_id = to_job_id(announced.job_id)
        input_hash = to_hash32(announced.sha256)
        job = await self._wait_for_match(job_id)
        if job.input_hash != input_hash:
            raise UploadRefused("wrong_input_hash")
        if job.status in _INPUT_TAKEN:
            return self._sign(job)
        enclave_key = announced.enclave_key or job.enclave_key
        if not enclave_key or not self._runs_here(enclave_key):
            raise UploadRefused("unknown_enclave")
        change = sc.InputReceived(job_id, input_hash, announced.size, to_address(enclave_key))
        outcome = await ctx.service.request(change)
        if outcome.rejected:
            log.info("input for job %s refused: %s", job_id, outcome.rejected)
            raise UploadRefused(outcome.rejected[:200])
        taken = self._job(job_id)
        if taken is None or taken.status not in _INPUT_TAKEN:
            raise UploadRefused("not_taken")
        log.info("sealed input for job %s received (%d bytes)", job_id, announced.size)
        return self._sign(taken)

    async def _wait_for_match(self, job_id: JobId) -> Job:
        service = self._ctx.service
        seen = -1
        with trio.move_on_after(MATCH_WAIT_S):
            while True:
                job = self._job(job_id)
                if (
                    job is not None
                    and job.provider == self._ctx.me.address
                    and job.input_hash is not None
                    and (job.status is JobStatus.ASSIGNED or job.status in _INPUT_TAKEN)
                ):
                    return job
                seen = await service.wait_for_change(seen)
        raise UploadRefused("not_assigned")

    def _sign(self, job: Job) -> bytes:
        ctx = self._ctx
        assert job.spec_hash is not None and job.input_hash is not None
        receipt = InputReceipt(
            bytes.fromhex(job.job_id[2:]),
            bytes.fromhex(job.spec_hash[2:]),
            bytes.fromhex(job.input_hash[2:]),
        )
        domain = job_market_domain(ctx.config.chain.chain_id, ctx.contracts.market)
        return sign_message(domain, receipt, bytes(ctx.account.key))


class OfferPublisher:
    def __init__(self, ctx: NodeContext, host: EnclaveHost, evidence: KeyEvidence) -> None:
        self._ctx = ctx
        self._host = host
        self._evidence = evidence
        self._current: dict[str, tuple[Offer, ListingDetails]] = {}
        self._node: P2PNode | None = None

    async def execute(self, effect: Effect) -> sc.StateChange | None:
        assert isinstance(effect, Publish)
        ctx = self._ctx
        key = ctx.service.state.keys.get(effect.enclave_key)
        if key is None or key.status is not KeyStatus.REGISTERED:
            return sc.EffectCompleted(effect.effect_id, False, "the key is no longer registered")
        if not ctx.p2p.enabled:
            return sc.EffectCompleted(effect.effect_id, False, "p2p is off: no offer published")
        listing = json.loads(effect.listing)
        attested = self._evidence.get(key.enclave_key)
        tcb = attested.attestation.tcb_status if attested else int(TcbStatus.REVOKED)
        offer = Offer(
            provider=ctx.me.address,
            enclave_key=key.enclave_key,
            tee_kind=int(listing["tee_kind"]),
            measurement=bytes.fromhex(str(listing["measurement"])[2:]),
            price=int(listing["price_per_hour"]),
            min_duration=int(listing["min_duration"]),
            max_duration=int(listing["max_duration"]),
            valid_until=int(listing.get("valid_until") or key.expires_at),
            request_hash=bytes(32),
            nonce=int(listing.get("nonce", 0)),
        )
        details = ListingDetails(
            cpu_cores=int(listing["cpu_cores"]),
            memory_mib=int(listing["memory_mib"]),
            tcb_status=TcbStatus(tcb),
            workloads=frozenset({WorkloadKind(str(listing["workload"]))}),
            load_permille=int(listing["load_permille"]),
            # A client with a larger input goes elsewhere before paying, instead of having
            # its upload refused after the match.
            max_input_bytes=ctx.config.provider.input_store_bytes,
        )
        self._current[key.enclave_key] = (offer, details)
        node = await ctx.p2p.node()
        self._advertise(node)
        # A publication follows every change of what the keys are doing (a key registered
        # or replaced, a job matched or ended): the moment to let go of spent instances.
        self._host.retire_unused(instances_in_use(ctx))
        log.info(
            "offer #%d for enclave %s: %d cores, %d MiB, %d wei/h%s",
            offer.nonce,
            key.enclave_key,
            details.cpu_cores,
            details.memory_mib,
            offer.price,
            " (INSECURE: sim enclave, no hardware)" if self._host.insecure else "",
        )
        return sc.EffectCompleted(effect.effect_id, True, f"offer #{offer.nonce} published")

    def _advertise(self, node: P2PNode) -> None:
        live = {k.enclave_key for k in _live_keys(self._ctx)}
        for enclave_key in list(self._current):
            if enclave_key not in live:
                # Retired or expired: its offer must not be matched any more.
                del self._current[enclave_key]
                node.gossip.withdraw(enclave_key)
        for offer, details in self._current.values():
            node.gossip.advertise(offer, details, bytes(self._ctx.account.key))
        self._node = node

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Advertise the current offers again on a p2p node the supervisor restarted."""
        task_status.started()
        if not self._ctx.p2p.enabled:
            return
        while True:
            try:
                node = await self._ctx.p2p.node()
            except DaemonError:
                node = None
            if node is not None and node is not self._node and self._current:
                self._advertise(node)
            await trio.sleep(NODE_CHECK_INTERVAL_S)
