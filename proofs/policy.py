"""Whether to accept verified evidence for a job: separate from whether it is genuine.

Every reason a policy refuses is listed (not only the first), so an operator sees them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from proofs.attributes import RESERVED_PREFIX
from proofs.binding import KeyBinding, gpu_nonce_for
from proofs.cca import CcaReferenceValues, parse_reference_values, reference_mismatches
from proofs.claims import Claims, ReportData, TcbStatus, TeeKind, tee_kind_from_label
from proofs.errors import PolicyInvalid

HARDWARE_KINDS = frozenset(
    {TeeKind.SGX, TeeKind.TDX, TeeKind.SEV_SNP, TeeKind.NVIDIA_CC, TeeKind.CCA}
)
SNP_TCB_COMPONENTS = ("bootloader", "tee", "snp", "microcode", "fmc")
SNP_PRODUCTS = ("milan", "genoa", "turin")


def _default_required_attributes() -> Mapping[TeeKind, frozenset[str]]:
    # What dcap-qvl (and Intel's own verifier) insist on: without it a TD takes #VE on
    # EPT violations of pending pages, which the guest kernel must then handle safely.
    return {TeeKind.TDX: frozenset({"SEPT_VE_DISABLE"})}


def _default_forbidden_attributes() -> Mapping[TeeKind, frozenset[str]]:
    # A migration agent can move the guest (and its memory) to another machine.
    return {TeeKind.SEV_SNP: frozenset({"MIGRATE_MA"})}


@dataclass(frozen=True)
class Policy:
    """Production defaults: hardware kinds only, no debug, SWHardeningNeeded or better,
    revocation must have been checked, sim and simulator tokens refused, reserved attribute
    bits refused, TDX SEPT_VE_DISABLE required, SEV-SNP migration agent refused, NVIDIA and
    CCA measurements compared with reference values."""

    accepted_kinds: frozenset[TeeKind] = HARDWARE_KINDS
    min_tcb_status: TcbStatus = TcbStatus.SW_HARDENING_NEEDED
    allow_debug: bool = False
    measurement_allowlist: frozenset[bytes] | None = None
    max_evidence_age: timedelta | None = None
    allow_sim: bool = False
    require_revocation_check: bool = True
    rejected_advisories: frozenset[str] = field(default_factory=frozenset)
    require_reference_manifests: bool = True
    """nvidia-cc: the GPU's measurements must have been compared with NVIDIA's RIMs; cca: the
    token must have been compared with `cca_reference_values`."""
    required_attributes: Mapping[TeeKind, frozenset[str]] = field(
        default_factory=_default_required_attributes
    )
    """Per kind, attribute names (`Claims.attributes`) that must be set."""
    forbidden_attributes: Mapping[TeeKind, frozenset[str]] = field(
        default_factory=_default_forbidden_attributes
    )
    """Per kind, attribute names that must not be set (DEBUG is `allow_debug`'s)."""
    allow_reserved_attributes: bool = False
    snp_min_tcb: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """sev-snp: per product ("milan", "genoa", "turin"), the lowest SVN accepted for each
    REPORTED_TCB component named (bootloader, tee, snp, microcode, fmc)."""
    cca_reference_values: CcaReferenceValues | None = None
    sim_hosts: frozenset[str] | None = None
    """sim: the host key addresses (lower-case 0x hex) whose evidence is accepted; None: any.
    Sim evidence proves only which host key signed it, so a devnet's client that accepts sim
    at all may at least pin the simulated machines it trusts."""

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
            required_attributes=_attributes_by_kind(
                raw, "required_attributes", default.required_attributes
            ),
            forbidden_attributes=_attributes_by_kind(
                raw, "forbidden_attributes", default.forbidden_attributes
            ),
            allow_reserved_attributes=_flag(
                raw, "allow_reserved_attributes", default.allow_reserved_attributes
            ),
            snp_min_tcb=_snp_min_tcb(raw.get("snp_min_tcb")),
            cca_reference_values=_cca_reference_values(raw.get("cca_reference_values")),
            sim_hosts=_sim_hosts(raw),
        )


POLICY_KEYS = frozenset(
    {
        "sim_hosts",
        "accepted_kinds",
        "min_tcb_status",
        "allow_debug",
        "measurement_allowlist",
        "max_evidence_age_s",
        "allow_sim",
        "require_revocation_check",
        "rejected_advisories",
        "require_reference_manifests",
        "required_attributes",
        "forbidden_attributes",
        "allow_reserved_attributes",
        "snp_min_tcb",
        "cca_reference_values",
    }
)


def _attributes_by_kind(
    raw: Mapping[Any, Any], key: str, default: Mapping[TeeKind, frozenset[str]]
) -> Mapping[TeeKind, frozenset[str]]:
    value = raw.get(key)
    if value is None:
        return default
    if not isinstance(value, Mapping):
        raise PolicyInvalid(f"{key} is an object of TEE kind to a list of attribute names")
    result = {}
    for label, names in value.items():
        try:
            kind = tee_kind_from_label(str(label))
        except ValueError as exc:
            raise PolicyInvalid(f"{key}: {exc}") from exc
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise PolicyInvalid(f"{key}.{label} must be a list of attribute names")
        result[kind] = frozenset(n.upper() for n in names)
    return result


def _snp_min_tcb(value: object) -> Mapping[str, Mapping[str, int]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PolicyInvalid("snp_min_tcb is an object of AMD product to SVN floors")
    floors: dict[str, Mapping[str, int]] = {}
    for product, svns in value.items():
        if str(product).lower() not in SNP_PRODUCTS:
            raise PolicyInvalid(f"snp_min_tcb: product {product!r} is not one of {SNP_PRODUCTS}")
        if not isinstance(svns, Mapping):
            raise PolicyInvalid(f"snp_min_tcb.{product} is an object of component to SVN")
        for component, svn in svns.items():
            if component not in SNP_TCB_COMPONENTS:
                raise PolicyInvalid(
                    f"snp_min_tcb.{product}: {component!r} is not one of {SNP_TCB_COMPONENTS}"
                )
            if not isinstance(svn, int) or isinstance(svn, bool) or not 0 <= svn <= 255:
                raise PolicyInvalid(f"snp_min_tcb.{product}.{component} must be 0..255")
        floors[str(product).lower()] = dict(svns)
    return floors


def _cca_reference_values(value: object) -> CcaReferenceValues | None:
    if value is None:
        return None
    try:
        return parse_reference_values(value, PolicyInvalid)
    except PolicyInvalid as exc:
        # The parser also reads a reference-values file of its own; in a policy file the
        # operator must be told which key of the file is wrong.
        raise PolicyInvalid(f"cca_reference_values: {exc}") from exc


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
    if (claims.insecure or claims.kind == TeeKind.SIM) and not policy.allow_sim:
        what = f"{claims.not_hardware}, not hardware," if claims.not_hardware else "sim evidence"
        reasons.append(f"INSECURE {what} is refused by this policy")
    if claims.kind == TeeKind.SIM and policy.sim_hosts is not None:
        host = claims.signer_ids[0].lower() if claims.signer_ids else "(none)"
        if host not in policy.sim_hosts:
            reasons.append(f"sim host {host} is not one of the policy's sim_hosts")
    if claims.kind != TeeKind.SIM and claims.kind not in policy.accepted_kinds:
        reasons.append(f"TEE kind {claims.kind.label} is not accepted")
    if claims.debug and not policy.allow_debug:
        reasons.append("debug mode is enabled")
    reasons.extend(_attribute_reasons(policy, claims))
    if claims.kind in (TeeKind.SGX, TeeKind.TDX):
        if claims.tcb_status_name is None:
            reasons.append("TCB status unknown: verified without collateral (crypto-only)")
        elif claims.tcb_status is None:
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
    if claims.kind == TeeKind.SEV_SNP:
        if policy.require_revocation_check and not claims.revocation_checked:
            reasons.append("AMD certificate revocation was not checked (no KDS CRL)")
        reasons.extend(_snp_tcb_reasons(policy, claims))
    if claims.kind == TeeKind.CCA:
        reasons.extend(_cca_reasons(policy, claims))
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


def _attribute_reasons(policy: Policy, claims: Claims) -> list[str]:
    reasons = []
    present = set(claims.attributes)
    missing = sorted(policy.required_attributes.get(claims.kind, frozenset()) - present)
    if missing:
        reasons.append(f"{claims.kind.label} attributes {', '.join(missing)} are not set")
    forbidden = sorted(policy.forbidden_attributes.get(claims.kind, frozenset()) & present)
    if forbidden:
        reasons.append(f"{claims.kind.label} attributes {', '.join(forbidden)} are set")
    reserved = sorted(a for a in present if a.startswith(RESERVED_PREFIX))
    if reserved and not policy.allow_reserved_attributes:
        reasons.append(f"reserved attribute bits are set: {', '.join(reserved)}")
    return reasons


def _cca_reasons(policy: Policy, claims: Claims) -> list[str]:
    facts = claims.cca
    if facts is None:
        # The CCA verifier always records the token's facts; CCA claims put together without
        # them must not pass for lack of anything to judge.
        return ["CCA claims carry no platform token facts to judge"]
    reasons = []
    if facts.lifecycle_name != "secured" and not (claims.debug and policy.allow_debug):
        reasons.append(f"CCA platform lifecycle {facts.lifecycle_name} is not secured")
    if policy.cca_reference_values is not None:
        reasons.extend(reference_mismatches(facts, claims.measurement, policy.cca_reference_values))
    elif policy.require_reference_manifests:
        reasons.append("CCA measurements were not compared with reference values")
    return reasons


def _snp_tcb_reasons(policy: Policy, claims: Claims) -> list[str]:
    floor = policy.snp_min_tcb.get((claims.platform or "").lower())
    if not floor:
        return []
    svns = dict(claims.tcb_svns or ())
    below = [
        f"{component} {svns.get(component)} < {minimum}"
        for component, minimum in floor.items()
        if svns.get(component, -1) < minimum
    ]
    if not below:
        return []
    return [f"SEV-SNP {claims.platform} reported TCB below the floor: {', '.join(below)}"]


def _sim_hosts(raw: Mapping[Any, Any]) -> frozenset[str] | None:
    hosts = _optional_strings(raw, "sim_hosts")
    if hosts is None:
        return None
    for host in hosts:
        if not (host.startswith("0x") and len(host) == 42):
            raise PolicyInvalid(f"sim_hosts: {host!r} is not a 0x address of 20 bytes")
        try:
            bytes.fromhex(host[2:])
        except ValueError as exc:
            raise PolicyInvalid(f"sim_hosts: {host!r} is not hex") from exc
    return frozenset(h.lower() for h in hosts)
