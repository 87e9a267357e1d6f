"""Whether to accept verified evidence for a job: separate from whether it is genuine.

Every reason a policy refuses is listed (not only the first), so an operator sees them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from proofs.binding import KeyBinding, gpu_nonce_for
from proofs.claims import Claims, ReportData, TcbStatus, TeeKind, tee_kind_from_label

HARDWARE_KINDS = frozenset({TeeKind.SGX, TeeKind.TDX, TeeKind.SEV_SNP, TeeKind.NVIDIA_CC})


@dataclass(frozen=True)
class Policy:
    """Production defaults: hardware kinds only, no debug, SWHardeningNeeded or better,
    revocation must have been checked, sim refused."""

    accepted_kinds: frozenset[TeeKind] = HARDWARE_KINDS
    min_tcb_status: TcbStatus = TcbStatus.SW_HARDENING_NEEDED
    allow_debug: bool = False
    measurement_allowlist: frozenset[bytes] | None = None
    max_evidence_age: timedelta | None = None
    allow_sim: bool = False
    require_revocation_check: bool = True
    rejected_advisories: frozenset[str] = field(default_factory=frozenset)
    require_reference_manifests: bool = True
    """nvidia-cc: the GPU's measurements must have been compared with NVIDIA's RIMs."""

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Policy:
        """From a policy file's JSON: unknown keys are refused rather than silently ignored."""
        known = {
            "accepted_kinds",
            "min_tcb_status",
            "allow_debug",
            "measurement_allowlist",
            "max_evidence_age_s",
            "allow_sim",
            "require_revocation_check",
            "rejected_advisories",
            "require_reference_manifests",
        }
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown policy keys: {', '.join(sorted(unknown))}")
        policy = cls()
        kinds = raw.get("accepted_kinds")
        allowlist = raw.get("measurement_allowlist")
        age = raw.get("max_evidence_age_s")
        min_status = raw.get("min_tcb_status")
        return cls(
            accepted_kinds=(
                frozenset(tee_kind_from_label(k) for k in kinds)
                if kinds is not None
                else policy.accepted_kinds
            ),
            min_tcb_status=(
                TcbStatus[str(min_status).upper()] if min_status else policy.min_tcb_status
            ),
            allow_debug=bool(raw.get("allow_debug", False)),
            measurement_allowlist=(
                frozenset(bytes.fromhex(m.removeprefix("0x")) for m in allowlist)
                if allowlist is not None
                else None
            ),
            max_evidence_age=timedelta(seconds=int(age)) if age is not None else None,
            allow_sim=bool(raw.get("allow_sim", False)),
            require_revocation_check=bool(raw.get("require_revocation_check", True)),
            rejected_advisories=frozenset(raw.get("rejected_advisories", ())),
            require_reference_manifests=bool(raw.get("require_reference_manifests", True)),
        )


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reasons: tuple[str, ...]
    claims: Claims


def evaluate(
    policy: Policy, claims: Claims, at: datetime, binding: KeyBinding | None = None
) -> Verdict:
    reasons: list[str] = []
    if claims.insecure or claims.kind == TeeKind.SIM:
        if not policy.allow_sim:
            reasons.append("INSECURE sim evidence is refused by this policy")
    elif claims.kind not in policy.accepted_kinds:
        reasons.append(f"TEE kind {claims.kind.label} is not accepted")
    if claims.debug and not policy.allow_debug:
        reasons.append("debug mode is enabled")
    if claims.kind in (TeeKind.SGX, TeeKind.TDX):
        if claims.tcb_status is None:
            reasons.append(f"TCB status {claims.tcb_status_name} has no accepted level")
        elif claims.tcb_status < policy.min_tcb_status:
            reasons.append(
                f"TCB status {claims.tcb_status_name} is below {policy.min_tcb_status.name}"
            )
        if policy.require_revocation_check and not claims.revocation_checked:
            reasons.append("PCK revocation was not checked (no PCK CRL)")
    if claims.kind == TeeKind.NVIDIA_CC:
        if policy.require_revocation_check and not claims.revocation_checked:
            reasons.append("GPU certificate revocation was not checked (no OCSP)")
        if claims.reference_mismatches:
            blocks = ", ".join(str(b) for b in claims.reference_mismatches)
            reasons.append(f"GPU measurement blocks {blocks} differ from NVIDIA's manifests")
        elif claims.reference_mismatches is None and policy.require_reference_manifests:
            reasons.append("GPU measurements were not compared with NVIDIA's manifests")
    rejected = sorted(set(claims.advisory_ids or ()) & policy.rejected_advisories)
    if rejected:
        reasons.append(f"rejected advisories apply: {', '.join(rejected)}")
    if (
        policy.measurement_allowlist is not None
        and claims.measurement not in policy.measurement_allowlist
    ):
        reasons.append(f"measurement {claims.measurement.hex()} is not allowed")
    if policy.max_evidence_age is not None:
        if claims.issued_at is None:
            reasons.append("evidence carries no issue time to bound its age")
        elif at - claims.issued_at > policy.max_evidence_age:
            reasons.append(f"evidence is older than {policy.max_evidence_age}")
    if binding is not None:
        expected = binding.report_data()
        if claims.kind == TeeKind.NVIDIA_CC:
            expected = ReportData(gpu_nonce_for(expected))
        if claims.report_data != expected:
            reasons.append("report data does not bind the expected keys, provider and nonce")
        elif at >= binding.expires():
            reasons.append(f"key binding expired at {binding.expires().isoformat()}")
    return Verdict(accepted=not reasons, reasons=tuple(reasons), claims=claims)
