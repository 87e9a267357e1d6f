"""The CheckEvidence handler: judge a held approval request and sign its KeyAttestation.

Facts come from the chain (the nonce's block, the provider's registration, the contracts'
addresses) and from proofs/ (the evidence, under this verifier's policy, with collateral from
its source); verifier_checks.py turns them into reasons. A signature is made only when there
are none. A chain that does not answer is not the provider's fault: the handler raises and
the effect runner asks again later, so no request is refused for an outage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import trio
from eth_utils.crypto import keccak

from node.chain.errors import ChainError
from node.chain.reader import Contracts
from node.daemon.errors import DaemonError
from node.daemon.judging import Judgement, PresentedEvidence, judge
from node.daemon.verifier_checks import (
    NonceBlock,
    VerifierRules,
    attestation_digest,
    attestation_reasons,
    freshness_reasons,
)
from node.daemon.verifier_requests import HeldRequests
from node.daemon.wiring import NodeContext
from node.p2p.approve_protocol import ApprovalRequest
from node.state.changes import EvidenceChecked
from node.state.effects import CheckEvidence, Effect
from node.state.values import to_hash32
from proofs.collateral_source import CollateralSource
from proofs.nvidia_collateral import OcspResponder, RimSource
from proofs.receipts import sign_digest

log = logging.getLogger(__name__)

# ProviderRegistry.Status: only an active provider gets keys approved.
_REGISTRY_STATUS = {0: "is not registered", 1: "is active", 2: "is jailed", 3: "has exited"}
_ACTIVE = 1


@dataclass(frozen=True)
class Collateral:
    """Where evidence's collateral comes from: one source (with its cache) and GPU services."""

    source: CollateralSource
    ocsp: OcspResponder | None = None
    rim: RimSource | None = None
    description: str = ""


@dataclass(frozen=True)
class Decision:
    accepted: bool
    reasons: tuple[str, ...]
    signature: bytes = b""
    insecure: bool = False

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "accepted"


class EvidenceChecker:
    def __init__(
        self,
        ctx: NodeContext,
        rules: VerifierRules,
        held: HeldRequests,
        collateral: Collateral,
    ) -> None:
        self._ctx = ctx
        self._rules = rules
        self._held = held
        self._collateral = collateral
        # The collateral source and its cache are not thread-safe: one check at a time in
        # the worker thread (they are short, and each peer's rate is limited anyway).
        self._proofs = trio.CapacityLimiter(1)

    async def execute(self, effect: Effect) -> EvidenceChecked:
        assert isinstance(effect, CheckEvidence)
        held = self._held.get(to_hash32(effect.request_id))
        if held is None:
            return EvidenceChecked(
                effect.request_id, False, "the request's evidence is no longer held: ask again", ""
            )
        if to_hash32(keccak(held.request.evidence)) != effect.evidence_hash:
            return EvidenceChecked(
                effect.request_id, False, "the held evidence is not the evidence received", ""
            )
        decision = await self.decide(held.request)
        att = held.request.attestation
        if decision.accepted:
            log.log(
                logging.WARNING if decision.insecure else logging.INFO,
                "approved key %s of provider %s (request %s, peer %s)%s",
                att.enclave_key,
                att.provider,
                effect.request_id,
                held.peer_id,
                f": {decision.reason}" if decision.insecure else "",
            )
        else:
            log.info(
                "refused key %s of provider %s (request %s, peer %s): %s",
                att.enclave_key,
                att.provider,
                effect.request_id,
                held.peer_id,
                decision.reason,
            )
        signature = "0x" + decision.signature.hex() if decision.accepted else ""
        return EvidenceChecked(effect.request_id, decision.accepted, decision.reason, signature)

    async def decide(self, request: ApprovalRequest) -> Decision:
        """Every reason to refuse, or the signature; raises DaemonError while the chain is
        out of reach (the check is then retried)."""
        att = request.attestation
        chain_id = self._ctx.config.chain.chain_id
        contracts = await self._ctx.contracts.get()
        try:
            block = await self._nonce_block(request.nonce_block)
            status = await self._registry_status(contracts, att.provider)
        except ChainError as exc:
            raise DaemonError(f"the chain did not answer a verifier check: {exc}") from exc
        now = self._ctx.chain_time()
        reasons: list[str] = []
        if status != _ACTIVE:
            word = _REGISTRY_STATUS.get(status, f"has status {status}")
            reasons.append(f"provider {att.provider} {word} in the ProviderRegistry")
        reasons.extend(freshness_reasons(request, block, now, self._rules))
        presented = PresentedEvidence(
            tee_kind=att.tee_kind,
            evidence=request.evidence,
            enclave_key=att.enclave_key,
            hpke_public_key=request.hpke_public_key,
            nonce=block.hash if block is not None else bytes(32),
            expires_at=att.expires_at,
            measurement=att.measurement,
        )
        judgement = await self._judge(presented, chain_id, contracts.verifier, att.provider)
        for reason in judgement.reasons:
            if reason.startswith("report data does not bind"):
                if block is None:
                    continue  # no nonce to bind: said above already
                # The report data is a hash: say what this verifier hashed, so the provider's
                # operator can find which input differs.
                reason += (
                    f" (this verifier expects chain {chain_id}, verifier contract "
                    f"{contracts.verifier}, provider {att.provider}, enclave key "
                    f"{att.enclave_key}, nonce = hash of block {request.nonce_block}, "
                    f"expiry {att.expires_at})"
                )
            reasons.append(reason)
        reasons.extend(attestation_reasons(request, judgement))
        if reasons:
            return Decision(False, tuple(reasons), insecure=judgement.insecure)
        digest = attestation_digest(chain_id, contracts.verifier, att)
        signature = sign_digest(bytes(self._ctx.account.key), digest)
        if judgement.insecure:
            claims = judgement.claims
            what = claims.not_hardware if claims is not None and claims.not_hardware else "sim"
            # No simulated result is presented as real: the row and the answer say so.
            return Decision(
                True, (f"accepted INSECURE {what} evidence, not hardware",), signature, True
            )
        return Decision(True, (), signature)

    async def _judge(
        self, presented: PresentedEvidence, chain_id: int, verifier: str, provider: str
    ) -> Judgement:
        """judge() in a worker thread (parsing, signatures, collateral over the network)."""
        try:
            judgement: Judgement = await trio.to_thread.run_sync(
                partial(
                    judge,
                    presented,
                    chain_id=chain_id,
                    verifier_contract=verifier,
                    provider=provider,
                    policy=self._rules.policy,
                    collateral=self._collateral.source,
                    at=datetime.now(UTC),
                    ocsp=self._collateral.ocsp,
                    rim=self._collateral.rim,
                ),
                limiter=self._proofs,
            )
        except Exception as exc:
            # judge() answers every ProofError itself; anything else is a fault on hostile
            # bytes. Refused (with the fault named) rather than retried forever.
            log.exception("judging evidence failed unexpectedly")
            return Judgement(False, (f"evidence could not be judged: {type(exc).__name__}",), None)
        return judgement

    async def _nonce_block(self, number: int) -> NonceBlock | None:
        block = await self._ctx.rpc.call("eth_getBlockByNumber", [hex(number), False])
        if block is None:
            return None
        try:
            found = NonceBlock(
                number, bytes.fromhex(str(block["hash"])[2:]), int(str(block["timestamp"]), 16)
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ChainError(f"block {number}: unreadable answer: {exc}") from exc
        if len(found.hash) != 32:
            raise ChainError(f"block {number}: a hash of {len(found.hash)} bytes")
        return found

    async def _registry_status(self, contracts: Contracts, provider: str) -> int:
        (info,) = await contracts.reader(self._ctx.rpc, "registry").call("providerOf", provider)
        try:
            return int(info[2])
        except (IndexError, TypeError, ValueError) as exc:
            raise ChainError(f"ProviderRegistry.providerOf: unreadable answer: {exc}") from exc
