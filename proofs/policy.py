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
from proofs.errors import PolicyInvalid

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
    def from_mapping(cls, raw: object) -> Policy:
        """From a policy file's JSON. Strict: an unknown key or a value of another JSON type
        is refused (PolicyInvalid), never coerced; `"allow_debug": "false"` must not allow."""
        if not isinstance(raw, Mapping):
            raise PolicyInvalid(f"a policy is a JSON object, not {type(raw).__name__}")
        unknown = sorted(str(key) for key in set(raw) - POLICY_KEYS)
        if unknown:
            raise PolicyInvalid(f"unknown policy keys: {', '.join(unknown)}")
        default = cls()
        kinds = _optional_strings(raw, "accepted_kinds")
        allowlist = _optional_strings(raw, "measurement_allowlist")
        age = raw.get("max_evidence_age_s")
        if age is not None and (not isinstance(age, int) or isinstance(age, bool) or age < 0):
            raise PolicyInvalid("max_evidence_age_s must be a whole number of seconds >= 0")
        try:
            accepted_kinds = (
                frozenset(tee_kind_from_label(k) for k in kinds)
                if kinds is not None
                else default.accepted_kinds
            )
            measurements = (
                frozenset(bytes.fromhex(m.removeprefix("0x")) for m in allowlist)
                if allowlist is not None
                else None
            )
            max_age = timedelta(seconds=age) if age is not None else None
        except (ValueError, OverflowError) as exc:
            raise PolicyInvalid(f"policy: {exc}") from exc
        return cls(
            accepted_kinds=accepted_kinds,
            min_tcb_status=_min_tcb_status(raw.get("min_tcb_status"), default.min_tcb_status),
            allow_debug=_flag(raw, "allow_debug", default.allow_debug),
            measurement_allowlist=measurements,
            max_evidence_age=max_age,
            allow_sim=_flag(raw, "allow_sim", default.allow_sim),
            require_revocation_check=_flag(
                raw, "require_revocation_check", default.require_revocation_check
            ),
            rejected_advisories=frozenset(_optional_strings(raw, "rejected_advisories") or ()),
            require_reference_manifests=_flag(
                raw, "require_reference_manifests", default.require_reference_manifests
            ),
        )


POLICY_KEYS = frozenset(
    {
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
)


def _flag(raw: Mapping[Any, Any], key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise PolicyInvalid(f"{key} must be true or false, not {value!r}")
    return value


def _optional_strings(raw: Mapping[Any, Any], key: str) -> list[str] | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PolicyInvalid(f"{key} must be a list of strings")
    return value


def _min_tcb_status(value: object, default: TcbStatus) -> TcbStatus:
    if value is None:
        return default
    names = ", ".join(status.name.lower() for status in TcbStatus)
    if not isinstance(value, str) or value.upper() not in TcbStatus.__members__:
        raise PolicyInvalid(f"min_tcb_status {value!r} is not one of {names}")
    return TcbStatus[value.upper()]


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
