"""Judging a provider's evidence: genuine (proofs), bound to its keys (binding), acceptable (policy).

The verifier does it before it signs a KeyAttestation, the client before it sends a provider
anything. Both get the same answer shape: accepted or not, every reason, and the claims when
the evidence was genuine. A malformed or forged presentation is a refusal with a reason,
never an exception past this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from proofs.binding import KeyBinding
from proofs.claims import Claims
from proofs.collateral_source import CollateralSource
from proofs.errors import ProofError
from proofs.evidence import verify_evidence
from proofs.nvidia_collateral import OcspResponder, RimSource
from proofs.policy import Policy, evaluate


@dataclass(frozen=True)
class PresentedEvidence:
    """What a provider hands over for one enclave key: the evidence and its binding inputs."""

    tee_kind: int
    evidence: bytes
    enclave_key: str
    hpke_public_key: bytes
    nonce: bytes
    expires_at: int
    measurement: bytes


@dataclass(frozen=True)
class Judgement:
    accepted: bool
    reasons: tuple[str, ...]
    claims: Claims | None

    @property
    def insecure(self) -> bool:
        return self.claims is not None and self.claims.insecure

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "accepted"


def judge(
    presented: PresentedEvidence,
    *,
    chain_id: int,
    verifier_contract: str,
    provider: str,
    policy: Policy,
    collateral: CollateralSource,
    at: datetime | None = None,
    ocsp: OcspResponder | None = None,
    rim: RimSource | None = None,
) -> Judgement:
    """`ocsp` and `rim` serve GPU evidence (without them its revocation and reference
    measurements are unchecked, which the production policy refuses)."""
    at = at or datetime.now(UTC)
    try:
        verified = verify_evidence(presented.evidence, collateral, at, ocsp=ocsp, rim=rim)
    except ProofError as exc:
        return Judgement(False, (f"evidence NOT verified: {exc}",), None)
    claims = verified.claims
    reasons: list[str] = []
    if int(claims.kind) != presented.tee_kind:
        reasons.append(f"evidence is {claims.kind.label}, presented as kind {presented.tee_kind}")
    if bytes(claims.measurement) != presented.measurement:
        reasons.append(
            f"evidence measures {bytes(claims.measurement).hex()}, "
            f"presented as {presented.measurement.hex()}"
        )
    try:
        binding = KeyBinding(
            chain_id=chain_id,
            verifier=verifier_contract,
            provider=provider,
            enclave_key=presented.enclave_key,
            hpke_public_key=presented.hpke_public_key,
            nonce=presented.nonce,
            expires_at=presented.expires_at,
        )
        binding.report_data()
    except (ValueError, TypeError) as exc:
        return Judgement(False, (*reasons, f"binding inputs are malformed: {exc}"), claims)
    verdict = evaluate(policy, claims, at, binding)
    reasons.extend(verdict.reasons)
    return Judgement(not reasons, tuple(reasons), claims)
