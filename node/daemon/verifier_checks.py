"""What a verifier decides about one approval request, apart from the I/O that gathers facts.

The checker (verifier_checker.py) reads the chain and verifies the evidence; the rules here
turn those facts into reasons. Every reason is kept, not only the first, so a provider's
operator sees at once all that stands between its key and a signature.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from eth_utils.crypto import keccak

from node.config.model import VerifierSection
from node.daemon.errors import DaemonError
from node.daemon.judging import Judgement
from node.p2p.approve_protocol import ApprovalRequest
from node.p2p.wire import encode_object
from node.state.values import Hash32, to_hash32
from proofs.claims import Claims, TcbStatus, TeeKind
from proofs.errors import ProofError
from proofs.policy import Policy
from proofs.receipts import (
    KeyAttestation,
    attestation_verifier_domain,
    typed_data_digest,
)

# The on-chain TCB status a verifier vouches for when the evidence carries none of Intel's
# levels: sim has no TCB at all; other hardware passed this verifier's own policy (its SVN
# floors, revocation, reference values), which is the verifier's statement of "current".
SIM_TCB_STATUS = int(TcbStatus.REVOKED)
CHECKED_TCB_STATUS = int(TcbStatus.UP_TO_DATE)


@dataclass(frozen=True)
class VerifierRules:
    """The verifier's settings from config, as the decisions use them."""

    policy: Policy
    max_key_ttl: int  # seconds from now a key may be registered for
    max_nonce_age: int  # seconds the binding's block may be old

    @property
    def insecure(self) -> bool:
        return self.policy.allow_sim


def load_rules(section: VerifierSection) -> VerifierRules:
    """The policy file (or the production default) with sim allowed only by `allow_sim`.

    A policy file that allows sim while `verifier.allow_sim` is false is a contradiction an
    operator must resolve, not one this node picks a side of silently."""
    policy = Policy()
    if section.policy_file is not None:
        try:
            raw = json.loads(section.policy_file.read_text(encoding="utf-8"))
            policy = Policy.from_mapping(raw)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DaemonError(
                f"verifier.policy_file {section.policy_file} cannot be read: {exc}"
            ) from exc
        except ProofError as exc:
            raise DaemonError(f"verifier.policy_file {section.policy_file}: {exc}") from exc
        if policy.allow_sim and not section.allow_sim:
            raise DaemonError(
                f"verifier.policy_file {section.policy_file} allows sim evidence but "
                "verifier.allow_sim is false: set both to approve INSECURE sim enclaves"
            )
    return VerifierRules(
        policy=replace(policy, allow_sim=section.allow_sim),
        max_key_ttl=section.max_key_ttl,
        max_nonce_age=section.max_nonce_age,
    )


def describe_policy(rules: VerifierRules, policy_file: Path | None) -> str:
    kinds = ", ".join(sorted(k.label for k in rules.policy.accepted_kinds))
    source = f"policy file {policy_file}" if policy_file else "the default production policy"
    sim = "INSECURE sim evidence ACCEPTED" if rules.insecure else "sim evidence refused"
    return (
        f"{source}: kinds {kinds}; TCB at least {rules.policy.min_tcb_status.name}; "
        f"debug {'allowed' if rules.policy.allow_debug else 'refused'}; {sim}"
    )


def request_id_for(request: ApprovalRequest) -> Hash32:
    """One id per distinct request: a provider asking again after a lost answer (or a
    verifier restart) gets the decision already made, not a second check."""
    return to_hash32(keccak(encode_object(request.to_json())))


@dataclass(frozen=True)
class NonceBlock:
    """The block whose hash the provider bound into its evidence, as this verifier's chain
    has it (None: the chain has no such block)."""

    number: int
    hash: bytes
    timestamp: int


def tcb_ceiling(claims: Claims) -> int:
    """The highest on-chain TCB status this evidence supports."""
    if claims.kind is TeeKind.SIM or claims.insecure:
        return SIM_TCB_STATUS
    if claims.tcb_status is not None:
        return int(claims.tcb_status)
    if claims.kind in (TeeKind.SGX, TeeKind.TDX):
        return int(TcbStatus.REVOKED)  # unknown: the policy has refused it already
    return CHECKED_TCB_STATUS


def freshness_reasons(
    request: ApprovalRequest, block: NonceBlock | None, now: int, rules: VerifierRules
) -> list[str]:
    """The nonce block exists and is recent; the key's expiry lies ahead, within the TTL."""
    reasons: list[str] = []
    if block is None:
        reasons.append(f"nonce block {request.nonce_block} is not on this verifier's chain")
    elif now - block.timestamp > rules.max_nonce_age:
        reasons.append(
            f"stale nonce: block {block.number} is {now - block.timestamp} s old, "
            f"at most {rules.max_nonce_age} s accepted"
        )
    expires_at = request.attestation.expires_at
    if expires_at <= now:
        reasons.append(f"the key's expiry {expires_at} is not in the future (now {now})")
    elif expires_at - now > rules.max_key_ttl:
        reasons.append(
            f"the key would live {expires_at - now} s, more than the {rules.max_key_ttl} s "
            "this verifier signs for"
        )
    return reasons


def attestation_reasons(request: ApprovalRequest, judgement: Judgement) -> list[str]:
    """The KeyAttestation the provider proposes says no more than the evidence shows.

    The provider, enclave key, measurement, kind and expiry are covered by the evidence's
    binding (judge() compares them); the evidence hash and the TCB status are checked here."""
    att = request.attestation
    reasons: list[str] = []
    if request.tee_kind != att.tee_kind:
        reasons.append(f"request says kind {request.tee_kind}, its attestation kind {att.tee_kind}")
    claims = judgement.claims
    if claims is None:
        return reasons
    if att.evidence_hash != bytes(claims.evidence_hash):
        reasons.append("the attestation's evidenceHash is not the hash of the evidence")
    ceiling = tcb_ceiling(claims)
    if att.tcb_status > ceiling:
        reasons.append(
            f"the attestation claims TCB status {att.tcb_status}, the evidence supports "
            f"at most {ceiling}"
        )
    return reasons


def attestation_digest(chain_id: int, verifier_contract: str, att: KeyAttestation) -> bytes:
    """What AttestationVerifier.registerKey recovers committee signers from."""
    return typed_data_digest(
        attestation_verifier_domain(chain_id, verifier_contract), att.hash_struct()
    )
