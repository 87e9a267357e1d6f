"""One entry point: evidence bytes, a collateral source and a time in; verified claims out.

`verify_evidence` answers only "are these bytes genuine, signed by this chain, at this TCB
status, at this time"; whether to accept them is `proofs.policy`'s question.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from eth_utils.crypto import keccak

from proofs.attributes import sgx_attribute_names, snp_policy_names, td_attribute_names
from proofs.cca import DEBUG_LIFECYCLES, CcaVerification, looks_like_cca_token, verify_cca_token
from proofs.certificates import require_utc
from proofs.claims import (
    Claims,
    EvidenceHash,
    Measurement,
    ReportData,
    TeeKind,
    tcb_status_from_intel_name,
)
from proofs.collateral_source import AmdCollateralRequest, CollateralSource, IntelCollateralRequest
from proofs.errors import CollateralUnavailable, MalformedEvidence
from proofs.intel_quote import (
    IntelQuote,
    SgxEnclaveReport,
    looks_like_intel_quote,
    parse_intel_quote,
)
from proofs.intel_verify import (
    CollateralTimes,
    IntelVerification,
    pck_fmspc_and_ca,
    verify_intel_quote,
    verify_quote_without_collateral,
)
from proofs.nvidia_collateral import OcspResponder, RimSource
from proofs.nvidia_verify import (
    NvidiaVerification,
    looks_like_nvidia_evidence,
    verify_nvidia_evidence,
)
from proofs.pinned_roots import AmdProduct
from proofs.sev_snp import SnpTcb, looks_like_snp_report, parse_snp_report
from proofs.sev_snp_verify import SnpVerification, verify_snp_report
from proofs.sim import SimEvidence, looks_like_sim_evidence, verify_sim_evidence

MAX_EVIDENCE_SIZE = 64 * 1024


@dataclass(frozen=True)
class VerifiedEvidence:
    claims: Claims
    detail: IntelVerification | SnpVerification | SimEvidence | NvidiaVerification | CcaVerification


def detect_kind(data: bytes) -> TeeKind:
    if looks_like_sim_evidence(data):
        return TeeKind.SIM
    if looks_like_cca_token(data):
        return TeeKind.CCA
    if looks_like_nvidia_evidence(data):
        return TeeKind.NVIDIA_CC
    if looks_like_intel_quote(data):
        return TeeKind.TDX if data[4:8] == b"\x81\x00\x00\x00" else TeeKind.SGX
    if looks_like_snp_report(data):
        return TeeKind.SEV_SNP
    raise MalformedEvidence(
        "not a known evidence format (SGX/TDX quote, SEV-SNP report, NVIDIA GPU, CCA token, sim)"
    )


def intel_collateral_request(quote: IntelQuote) -> IntelCollateralRequest:
    fmspc, pck_ca = pck_fmspc_and_ca(quote.certification.pck_chain_pem)
    return IntelCollateralRequest(fmspc=fmspc.hex(), pck_ca=pck_ca, tdx=quote.is_tdx)


def _hex_ids(*values: bytes) -> tuple[str, ...]:
    return tuple(v.hex() for v in values if any(v))


def _intel_claims(result: IntelVerification, evidence_hash: EvidenceHash) -> Claims:
    quote = result.quote
    body = quote.body
    if isinstance(body, SgxEnclaveReport):
        kind, measurement = TeeKind.SGX, body.mr_enclave
        signer_ids: tuple[str, ...] = (body.mr_signer.hex(),)
        attributes = sgx_attribute_names(body.attributes)
    else:
        kind, measurement = TeeKind.TDX, body.mr_td
        signer_ids = (body.mr_seam.hex(), *_hex_ids(body.mr_owner, body.mr_config_id))
        attributes = td_attribute_names(body.td_attributes, body.mr_service_td)
    return Claims(
        kind=kind,
        version=quote.header.version,
        measurement=Measurement(measurement),
        report_data=ReportData(body.report_data),
        debug=body.debug,
        signer_ids=signer_ids,
        tcb_status=(
            tcb_status_from_intel_name(result.tcb.status) if result.tcb.status is not None else None
        ),
        tcb_status_name=result.tcb.status,
        advisory_ids=result.tcb.advisory_ids,
        evidence_hash=evidence_hash,
        revocation_checked=result.pck_crl_checked,
        valid_until=result.valid_until,
        attributes=attributes,
    )


def _snp_claims(result: SnpVerification, evidence_hash: EvidenceHash) -> Claims:
    report = result.report
    return Claims(
        kind=TeeKind.SEV_SNP,
        version=report.version,
        measurement=Measurement(report.measurement),
        report_data=ReportData(report.report_data),
        debug=report.debug,
        signer_ids=_hex_ids(report.id_key_digest, report.author_key_digest),
        tcb_status=None,
        tcb_status_name=None,
        advisory_ids=None,
        evidence_hash=evidence_hash,
        revocation_checked=result.revocation_checked,
        valid_until=result.valid_until,
        attributes=snp_policy_names(report.policy),
        platform=result.product.value,
        tcb_svns=result.reported_tcb.svns(),
    )


def _cca_claims(result: CcaVerification, evidence_hash: EvidenceHash) -> Claims:
    facts = result.facts
    return Claims(
        kind=TeeKind.CCA,
        version=1,
        measurement=Measurement(result.realm_initial_measurement),
        report_data=ReportData(result.realm_challenge),
        debug=facts.lifecycle_name in DEBUG_LIFECYCLES,
        signer_ids=(facts.implementation_id.hex(), facts.instance_id.hex()),
        tcb_status=None,
        tcb_status_name=None,
        advisory_ids=None,
        evidence_hash=evidence_hash,
        insecure=result.simulator,
        # A trust anchor store is the CPAKs' only revocation: a key leaves the store.
        revocation_checked=False,
        cca=facts,
        not_hardware=(
            "CCA token signed by Arm's published simulator (FVP) platform key"
            if result.simulator
            else None
        ),
    )


def _sim_claims(evidence: SimEvidence, evidence_hash: EvidenceHash) -> Claims:
    return Claims(
        kind=TeeKind.SIM,
        version=1,
        measurement=Measurement(evidence.measurement),
        report_data=ReportData(evidence.report_data),
        debug=False,
        signer_ids=(evidence.host_key,),
        tcb_status=None,
        tcb_status_name=None,
        advisory_ids=None,
        evidence_hash=evidence_hash,
        insecure=True,
        issued_at=evidence.issued_at,
        revocation_checked=False,
    )


def nvidia_claims(result: NvidiaVerification, evidence_hash: EvidenceHash) -> Claims:
    report = result.report
    version = report.spdm_version
    return Claims(
        kind=TeeKind.NVIDIA_CC,
        version=(version >> 4) * 10 + (version & 0xF),
        measurement=Measurement(result.measurement_digest),
        report_data=ReportData(report.nonce),
        # CC vs. devtools mode shows in the measurements, which the RIM comparison judges.
        debug=False,
        signer_ids=(result.device_id,),
        tcb_status=None,
        tcb_status_name=None,
        advisory_ids=None,
        evidence_hash=evidence_hash,
        revocation_checked=result.ocsp is not None,
        valid_until=result.valid_until,
        reference_mismatches=(
            result.reference.mismatched_blocks if result.reference is not None else None
        ),
    )


def verify_evidence(
    data: bytes,
    collateral: CollateralSource,
    at: datetime,
    *,
    ocsp: OcspResponder | None = None,
    rim: RimSource | None = None,
    collateral_times: CollateralTimes | None = None,
) -> VerifiedEvidence:
    """Raises a ProofError subclass with a one-line reason when the evidence is not genuine.

    `ocsp` and `rim` serve NVIDIA GPU evidence only; without them its claims say that
    revocation and reference measurements were not checked. `collateral_times` gives Intel
    collateral files their own instants (a case whose collateral has no common one).
    An Intel quote whose source has no collateral for it (`CollateralUnavailable`) is
    verified crypto-only: its claims carry no TCB status, which the policy judges."""
    at = require_utc(at)
    if len(data) > MAX_EVIDENCE_SIZE:
        raise MalformedEvidence(f"evidence of {len(data)} bytes exceeds {MAX_EVIDENCE_SIZE}")
    data = bytes(data)
    evidence_hash = EvidenceHash(keccak(data))
    kind = detect_kind(data)
    if kind == TeeKind.SIM:
        sim = verify_sim_evidence(data)
        return VerifiedEvidence(_sim_claims(sim, evidence_hash), sim)
    if kind == TeeKind.NVIDIA_CC:
        gpu = verify_nvidia_evidence(data, at, ocsp=ocsp, rim=rim)
        return VerifiedEvidence(nvidia_claims(gpu, evidence_hash), gpu)
    if kind == TeeKind.CCA:
        cca = verify_cca_token(data, collateral.cca_trust_anchors(at))
        return VerifiedEvidence(_cca_claims(cca, evidence_hash), cca)
    if kind in (TeeKind.SGX, TeeKind.TDX):
        quote = parse_intel_quote(data)
        try:
            intel = collateral.intel_collateral(intel_collateral_request(quote), at)
        except CollateralUnavailable:
            bare = verify_quote_without_collateral(data, at)
            return VerifiedEvidence(_intel_claims(bare, evidence_hash), bare)
        result = verify_intel_quote(data, intel, at, parsed=quote, times=collateral_times)
        return VerifiedEvidence(_intel_claims(result, evidence_hash), result)
    report = parse_snp_report(data)
    product = report.product
    request = AmdCollateralRequest(
        product=product,
        signer=report.signer,
        chip_id=report.chip_id,
        reported_tcb=SnpTcb.decode(report.reported_tcb_raw, product or AmdProduct.MILAN),
    )
    snp = verify_snp_report(data, collateral.amd_collateral(request, at), at)
    return VerifiedEvidence(_snp_claims(snp, evidence_hash), snp)
