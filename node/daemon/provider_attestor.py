"""The provider's attestation: evidence bound to each enclave key, approved by the committee.

For a `RequestApprovals` effect the attestor has the instance produce evidence whose report
data binds the chain, the verifier contract, this provider, the instance's keys, a nonce and
an expiry (`proofs.binding`); the nonce is the hash of a recent block, a value each verifier
checks for freshness on its own. It proposes the KeyAttestation every committee member must
sign identically, asks each configured verifier on /capa/approve/1, keeps only signatures
that recover to a member of the on-chain committee, and answers `KeyApproved` once k of them
(the contract's threshold) signed, in ascending signer order as `registerKey` wants. When
the verifiers' refusals leave fewer than k possible approvals it answers `KeyRefused` with
their reasons; when some verifiers could not be reached it raises, and the effect runner
asks again after a pause.

The same evidence is what clients fetch on /capa/evidence/1: they check it against the
same binding before they seal anything to the key.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import trio
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from node.chain.errors import ChainError
from node.chain.reader import ContractReader
from node.chain.typed_data import KeyAttestation, digest_of, key_attestation_abi, verifier_domain
from node.daemon.enclave_host import EnclaveHost
from node.daemon.errors import DaemonError
from node.daemon.wiring import NodeContext
from node.enclave.backend import BindingRequest
from node.enclave.errors import EnclaveError
from node.p2p.approve_protocol import ApprovalAnswer, ApprovalRequest, request_approval
from node.p2p.errors import ConfigError, P2PError
from node.p2p.evidence_protocol import EvidenceBundle, KeyBindingInputs
from node.p2p.identity import PeerAddress
from node.p2p.node import P2PNode
from node.state import changes as sc
from node.state.effects import Effect, RequestApprovals
from node.state.model import KeyStatus
from proofs.claims import TcbStatus
from proofs.collateral_source import NoCollateral
from proofs.errors import ProofError
from proofs.evidence import verify_evidence
from proofs.receipts import recover_signer

log = logging.getLogger(__name__)

# One verifier's answer; the verifier bounds its own evidence check below this.
APPROVAL_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class AttestedKey:
    """The evidence of one enclave key and the attestation proposed with it."""

    bundle: EvidenceBundle
    attestation: KeyAttestation


class KeyEvidence:
    """Evidence per enclave key, as the attestor last produced it: what /capa/evidence/1
    serves, and the TCB status an offer of the key states."""

    def __init__(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        self._by_key: dict[str, AttestedKey] = {}

    def put(self, enclave_key: str, attested: AttestedKey) -> None:
        self._by_key[to_checksum_address(enclave_key)] = attested

    def get(self, enclave_key: str) -> AttestedKey | None:
        return self._by_key.get(to_checksum_address(enclave_key))

    async def current_evidence(self, enclave_key: str | None = None) -> EvidenceBundle | None:
        if enclave_key is not None:
            attested = self.get(enclave_key)
            return attested.bundle if attested is not None else None
        # No key named: the newest key that is registered on chain now.
        state = self._ctx.service.state
        live = [
            k
            for k in state.keys.values()
            if k.status is KeyStatus.REGISTERED and k.boot_id == state.facts.boot_id
        ]
        for key in sorted(live, key=lambda k: k.expires_at, reverse=True):
            attested = self.get(key.enclave_key)
            if attested is not None:
                return attested.bundle
        return None


def proposed_tcb_status(evidence: bytes, at: datetime) -> int:
    """The TCB status the provider proposes: what its evidence shows without collateral.

    A verifier with collateral may know better, but a lower status is never a false claim:
    the lowest (REVOKED) stands for "not established", as for sim, SEV-SNP and CCA."""
    try:
        claims = verify_evidence(evidence, NoCollateral(), at).claims
    except ProofError:
        return int(TcbStatus.REVOKED)
    return int(claims.tcb_status) if claims.tcb_status is not None else int(TcbStatus.REVOKED)


class Attestor:
    def __init__(self, ctx: NodeContext, host: EnclaveHost, evidence: KeyEvidence) -> None:
        self._ctx = ctx
        self._host = host
        self._evidence = evidence
        self._verifiers: list[PeerAddress] = []
        for text in ctx.config.provider.verifiers:
            try:
                self._verifiers.append(PeerAddress.parse(text))
            except ConfigError as exc:
                raise DaemonError(f"provider.verifiers in {ctx.config.source}: {exc}") from exc

    async def execute(self, effect: Effect) -> sc.StateChange | None:
        assert isinstance(effect, RequestApprovals)
        key = effect.enclave_key
        if self._host.instance(key) is None:
            return sc.KeyRefused(key, "the enclave instance of this key is not running")
        if not self._ctx.p2p.enabled:
            return sc.KeyRefused(key, "p2p is off (p2p.enabled = false): no verifier to ask")
        if not self._verifiers:
            return sc.KeyRefused(
                key, "no verifiers to ask: list them in provider.verifiers (multiaddr/p2p/ID)"
            )
        ctx = self._ctx
        contracts = await ctx.contracts.get()
        reader = contracts.reader(ctx.rpc, "verifier")
        try:
            (threshold,) = await reader.call("threshold")
        except ChainError as exc:
            raise DaemonError(f"cannot read the committee threshold: {exc}") from exc
        if int(threshold) < 1:
            raise DaemonError("the verifier contract has no committee yet (threshold 0)")
        request = await self._proposal(key, contracts.verifier)
        domain = verifier_domain(ctx.config.chain.chain_id, contracts.verifier)
        digest = digest_of(domain, request.attestation)
        node = await ctx.p2p.node()
        signed: dict[str, bytes] = {}
        refusals: list[str] = []
        unreachable: list[str] = []

        async def judge(peer: str, answer: ApprovalAnswer | str) -> bool:
            if isinstance(answer, str):
                unreachable.append(f"{peer}: {answer}")
            elif not answer.approved:
                refusals.append(f"{peer}: {answer.reason or 'refused'}")
            else:
                signer = await self._committee_signer(reader, digest, answer.signature)
                if signer is None:
                    refusals.append(f"{peer}: its signature is not a committee member's")
                else:
                    signed[signer] = answer.signature
            return len(signed) >= int(threshold)

        await self._ask_all(node, request, judge)
        if len(signed) >= threshold:
            order = sorted(signed, key=lambda a: int(a, 16))
            log.info("enclave key %s approved by %d of %d", key, len(signed), threshold)
            return sc.KeyApproved(
                key,
                json.dumps(_attestation_json(request.attestation)),
                json.dumps(["0x" + signed[a].hex() for a in order]),
            )
        if len(signed) + len(unreachable) >= threshold:
            # Those we could not reach may still approve: ask again later.
            raise DaemonError(
                f"{len(signed)} of {threshold} approvals for {key}; unreachable: "
                + "; ".join(unreachable)
            )
        reason = "; ".join(refusals + unreachable) or "no verifier approved"
        log.warning("enclave key %s refused: %s", key, reason)
        # A refused key never runs a job: its instance has nothing left to do.
        self._host.retire_unused(k for k in self._host.running_keys() if k != key)
        return sc.KeyRefused(key, f"{len(signed)} of {threshold} approvals: {reason}")

    async def _proposal(self, key: str, verifier_contract: str) -> ApprovalRequest:
        ctx = self._ctx
        nonce_block, nonce = await self._recent_block()
        expires_at = ctx.chain_time() + ctx.me.provider.key_ttl_s
        try:
            evidence = await self._host.evidence(
                key,
                BindingRequest(
                    chain_id=ctx.config.chain.chain_id,
                    verifier=verifier_contract,
                    provider=ctx.me.address,
                    nonce=nonce,
                    expires_at=expires_at,
                ),
            )
        except EnclaveError as exc:
            raise DaemonError(f"enclave {key} produced no evidence: {exc}") from exc
        instance = self._host.instance(key)
        assert instance is not None
        raw = evidence.cpu.evidence
        attestation = KeyAttestation(
            provider=ctx.me.address,
            enclave_key=key,
            tee_kind=int(instance.kind),
            measurement=bytes(instance.measurement),
            tcb_status=proposed_tcb_status(raw, datetime.now(UTC)),
            evidence_hash=keccak(raw),
            expires_at=expires_at,
        )
        self._evidence.put(
            key,
            AttestedKey(
                EvidenceBundle(
                    tee_kind=int(instance.kind),
                    evidence=raw,
                    collateral_location="",
                    issued_at=ctx.chain_time(),
                    binding=KeyBindingInputs(
                        enclave_key=key,
                        hpke_public_key=instance.hpke_public_key,
                        nonce=nonce,
                        expires_at=expires_at,
                        measurement=bytes(instance.measurement),
                    ),
                ),
                attestation,
            ),
        )
        return ApprovalRequest(
            tee_kind=int(instance.kind),
            evidence=raw,
            collateral_location="",
            hpke_public_key=instance.hpke_public_key,
            nonce_block=nonce_block,
            attestation=attestation,
        )

    async def _recent_block(self) -> tuple[int, bytes]:
        """A block deep enough not to be reorganised away before the verifiers look it up."""
        rpc = self._ctx.rpc
        try:
            head = int(await rpc.call("eth_blockNumber", []), 16)
            number = max(head - self._ctx.config.chain.confirmations, 0)
            block = await rpc.call("eth_getBlockByNumber", [hex(number), False])
            nonce = bytes.fromhex(str(block["hash"])[2:])
        except (ChainError, ValueError, TypeError, KeyError) as exc:
            raise DaemonError(f"cannot read a recent block for the nonce: {exc}") from exc
        if len(nonce) != 32:
            raise DaemonError(f"block {number} has no 32-byte hash")
        return number, nonce

    async def _ask_all(
        self,
        node: P2PNode,
        request: ApprovalRequest,
        judge: Callable[[str, ApprovalAnswer | str], Awaitable[bool]],
    ) -> None:
        """Hand each verifier's answer (or why there is none) to `judge` as it comes; stop
        asking the others once `judge` says enough."""
        send, receive = trio.open_memory_channel[tuple[str, ApprovalAnswer | str]](
            len(self._verifiers)
        )

        async def ask(address: PeerAddress, out: trio.MemorySendChannel[Any]) -> None:
            async with out:
                answer: ApprovalAnswer | str
                try:
                    if not node.host.is_connected(address.peer_id):
                        await node.host.connect(address)
                    answer = await request_approval(
                        node.host, address.peer_id, request, timeout_s=APPROVAL_TIMEOUT_S
                    )
                except P2PError as exc:
                    answer = f"unreachable ({exc})"
                await out.send((address.peer_id, answer))

        async with trio.open_nursery() as nursery:
            async with send:
                for address in self._verifiers:
                    nursery.start_soon(ask, address, send.clone())
            async with receive:
                async for peer, answer in receive:
                    if await judge(peer, answer):
                        break
            nursery.cancel_scope.cancel()

    async def _committee_signer(
        self, reader: ContractReader, digest: bytes, signature: bytes
    ) -> str | None:
        try:
            signer = recover_signer(digest, signature)
        except ProofError:
            return None
        try:
            (member,) = await reader.call("isCommitteeMember", signer)
        except ChainError as exc:
            raise DaemonError(f"cannot read the committee: {exc}") from exc
        return signer if member else None


def _attestation_json(att: KeyAttestation) -> dict[str, object]:
    abi = [("0x" + v.hex()) if isinstance(v, bytes) else v for v in key_attestation_abi(att)]
    return {
        "abi": abi,
        "provider": att.provider,
        "enclaveKey": att.enclave_key,
        "teeKind": att.tee_kind,
        "tcbStatus": att.tcb_status,
        "evidenceHash": "0x" + att.evidence_hash.hex(),
        "expiresAt": att.expires_at,
    }
