"""CheckProvider: is this candidate's enclave one the client may hand its input to?

Before anything is sent, the client fetches the candidate's evidence for the enclave key its
offer names (/capa/evidence/1), judges it under its own policy (the default production policy
refuses sim, debug and out-of-date TCB), checks that the evidence binds exactly that key, its
HPKE key, this provider and this market's verifier, and asks the verifier contract that the
key is valid now for the provider, of the offered kind and measurement. Any failure is a
refusal with its reason: the candidate is skipped and the next one tried.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio
from eth_utils.address import to_canonical_address

from node.chain.errors import ChainError
from node.chain.reader import Contracts
from node.daemon.client_offers import EvidenceVerdicts
from node.daemon.errors import DaemonError
from node.daemon.judging import Judgement, PresentedEvidence, judge
from node.daemon.wiring import NodeContext
from node.p2p.errors import P2PError
from node.p2p.evidence_protocol import EvidenceBundle, fetch_evidence
from node.p2p.identity import PeerId
from node.state import changes as sc
from node.state.effects import CheckProvider, Effect
from proofs.collateral_source import CollateralSource, NoCollateral
from proofs.errors import ProofError
from proofs.policy import Policy

log = logging.getLogger(__name__)

EVIDENCE_TIMEOUT_S = 15.0


def client_policy(policy_file: Path | None, allow_sim: bool) -> Policy:
    """The client's policy: its file's, else the production default; sim only when allowed.

    `[client] allow_sim` is the one switch for INSECURE sim enclaves: a policy file that
    allows sim on a client configured without it is refused, so nobody gets sim by accident.
    """
    policy = Policy()
    if policy_file is not None:
        try:
            raw = json.loads(policy_file.read_text(encoding="utf-8"))
            policy = Policy.from_mapping(raw)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DaemonError(f"[client] policy_file {policy_file}: cannot be read: {exc}") from exc
        except ProofError as exc:
            raise DaemonError(f"[client] policy_file {policy_file}: {exc}") from exc
        if policy.allow_sim and not allow_sim:
            raise DaemonError(
                f"[client] policy_file {policy_file} allows sim, but [client] allow_sim is "
                "false: set allow_sim = true to accept INSECURE sim enclaves (devnets only)"
            )
    return replace(policy, allow_sim=allow_sim)


def _refused(effect: CheckProvider, reason: str) -> sc.ProviderChecked:
    return sc.ProviderChecked(
        effect.job_id, effect.candidate, False, reason, "", "", effect.tee_kind, False
    )


class ProviderChecker:
    def __init__(
        self,
        ctx: NodeContext,
        policy: Policy,
        verdicts: EvidenceVerdicts,
        collateral: CollateralSource | None = None,
    ) -> None:
        self._ctx = ctx
        self._policy = policy
        self._verdicts = verdicts
        # The client configures no collateral source: Intel evidence is then verified
        # crypto-only and the policy decides on the missing TCB status.
        self._collateral = collateral or NoCollateral()

    async def execute(self, effect: Effect) -> sc.StateChange | None:
        assert isinstance(effect, CheckProvider)
        job = self._ctx.service.state.jobs.get(effect.job_id)
        if job is None:
            return None
        try:
            candidate: dict[str, Any] = json.loads(job.candidates)[effect.candidate]
            enclave_key = str(candidate["enclave_key"])
        except (ValueError, IndexError, KeyError, TypeError):
            return _refused(effect, "the candidate's offer names no enclave key")
        node = await self._ctx.p2p.node()
        try:
            bundle = await fetch_evidence(
                node.host,
                PeerId(effect.peer_id),
                EVIDENCE_TIMEOUT_S,
                enclave_key=enclave_key,
            )
        except P2PError as exc:
            return _refused(effect, f"evidence not served: {type(exc).__name__}: {exc}")
        change = await self._judge(effect, enclave_key, bundle)
        # Only a judged key is remembered: a provider unreachable now may answer next time.
        self._verdicts.record(enclave_key, change.accepted, self._ctx.chain_time())
        if change.accepted:
            log.info(
                "job %s: provider %s enclave %s accepted%s",
                effect.job_id,
                effect.provider,
                enclave_key,
                " (INSECURE sim, allowed by [client] allow_sim)" if change.insecure else "",
            )
        else:
            log.warning(
                "job %s: provider %s refused: %s", effect.job_id, effect.provider, change.reason
            )
        return change

    def _judgement(
        self, effect: CheckProvider, presented: PresentedEvidence, contracts: Contracts
    ) -> Judgement:
        return judge(
            presented,
            chain_id=self._ctx.config.chain.chain_id,
            verifier_contract=contracts.verifier,
            provider=effect.provider,
            policy=self._policy,
            collateral=self._collateral,
            at=datetime.now(UTC),
        )

    async def _judge(
        self, effect: CheckProvider, enclave_key: str, bundle: EvidenceBundle
    ) -> sc.ProviderChecked:
        binding = bundle.binding
        if binding is None:
            return _refused(effect, "evidence served without the key binding it commits to")
        if to_canonical_address(binding.enclave_key) != to_canonical_address(enclave_key):
            return _refused(
                effect,
                f"evidence is for enclave {binding.enclave_key}, the offer names {enclave_key}",
            )
        if bundle.tee_kind != effect.tee_kind:
            return _refused(
                effect,
                f"evidence is of TEE kind {bundle.tee_kind}, the offer says {effect.tee_kind}",
            )
        if "0x" + binding.measurement.hex() != effect.measurement:
            return _refused(
                effect,
                f"evidence measures 0x{binding.measurement.hex()}, the offer says "
                f"{effect.measurement}",
            )
        contracts = await self._ctx.contracts.get()
        presented = PresentedEvidence(
            tee_kind=bundle.tee_kind,
            evidence=bundle.evidence,
            enclave_key=binding.enclave_key,
            hpke_public_key=binding.hpke_public_key,
            nonce=binding.nonce,
            expires_at=binding.expires_at,
            measurement=binding.measurement,
        )
        try:
            judgement = await trio.to_thread.run_sync(self._judgement, effect, presented, contracts)
        except Exception as exc:
            # proofs/ raises ProofError on anything it refuses; anything else is a bug the
            # provider's bytes found: still a refusal, never a crash of the effect.
            log.error("judging evidence of %s failed: %r", effect.provider, exc)
            return _refused(effect, f"evidence could not be judged: {exc!r}")
        if not judgement.accepted:
            return _refused(effect, f"evidence refused by this client's policy: {judgement.reason}")
        try:
            valid, kind, measurement, _tcb = await contracts.reader(self._ctx.rpc, "verifier").call(
                "isValidKey", effect.provider, enclave_key
            )
        except ChainError as exc:
            # The chain's answer decides; without one, ask again (the effect is retried).
            raise DaemonError(f"isValidKey for {enclave_key}: {exc}") from exc
        if not valid:
            return _refused(
                effect,
                f"enclave key {enclave_key} is not valid on chain for {effect.provider} "
                "(unregistered, revoked, expired, or its kind or measurement is no longer allowed)",
            )
        if int(kind) != effect.tee_kind or str(measurement) != effect.measurement:
            return _refused(
                effect,
                f"enclave key {enclave_key} is registered as kind {kind} measuring {measurement}, "
                f"the offer says kind {effect.tee_kind} measuring {effect.measurement}",
            )
        return sc.ProviderChecked(
            effect.job_id,
            effect.candidate,
            True,
            judgement.reason,
            binding.enclave_key,
            "0x" + binding.hpke_public_key.hex(),
            bundle.tee_kind,
            judgement.insecure,
        )
