"""TCB status of an Intel platform, evaluated the way Intel's Quote Verification Library does.

1. The platform level is the first TCB level (Intel lists them best first) whose 16 SGX
   components and PCESVN are all <= the PCK certificate's; for TDX, its TDX components must
   also be <= the quote's TEE_TCB_SVN (from index 2 when TEE_TCB_SVN[1] > 0, because bytes 0
   and 1 are then the module's SVN and version, judged by the module identity instead).
   No level: "TCBNotSupported".
2. The status converges with the TDX module identity level (TEE_TCB_SVN[1] > 0), then with the
   QE identity level: OutOfDate turns UpToDate / SWHardeningNeeded into OutOfDate and
   ConfigurationNeeded / ConfigurationAndSWHardeningNeeded into OutOfDateConfigurationNeeded;
   Revoked gives Revoked.

go-tdx-guest differs in step 2 (it reports the module status alone); TDX-4 in the testdata
tells the two apart, and we follow QVL.
"""

from __future__ import annotations

from dataclasses import dataclass

from proofs.errors import CertificateInvalid
from proofs.intel_collateral import ModuleIdentityLevel, QeIdentity, TcbInfo, TdxModuleIdentity
from proofs.intel_quote import SgxEnclaveReport, TdReport

TCB_NOT_SUPPORTED = "TCBNotSupported"
TDX_MODULE_NOT_SUPPORTED = "TDXModuleNotSupported"
QE_NOT_SUPPORTED = "QEIdentityNotSupported"


@dataclass(frozen=True)
class PlatformTcb:
    """The TCB claims of the PCK certificate's SGX extension."""

    cpu_svn_components: tuple[int, ...]
    pce_svn: int
    fmspc: bytes
    pce_id: bytes


@dataclass(frozen=True)
class TcbEvaluation:
    """Statuses are None only for a crypto-only verification (no collateral to judge by)."""

    status: str | None
    advisory_ids: tuple[str, ...] | None
    platform_status: str | None
    tdx_module_status: str | None
    qe_status: str | None
    tcb_date: str | None


def _converge(status: str, other: str) -> str:
    if other == "Revoked":
        return "Revoked"
    if other == "OutOfDate":
        if status in ("UpToDate", "SWHardeningNeeded"):
            return "OutOfDate"
        if status in ("ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"):
            return "OutOfDateConfigurationNeeded"
    return status


def _merge_advisories(
    current: tuple[str, ...] | None, extra: tuple[str, ...] | None
) -> tuple[str, ...] | None:
    if extra is None:
        return current
    merged = list(current or ())
    merged.extend(a for a in extra if a not in merged)
    return tuple(merged)


def _first_identity_level(
    levels: tuple[ModuleIdentityLevel, ...], isv_svn: int
) -> ModuleIdentityLevel | None:
    return next((level for level in levels if level.isv_svn <= isv_svn), None)


def _masked_equal(value: bytes, expected: bytes, mask: bytes) -> bool:
    if not (len(value) == len(expected) == len(mask)):
        return False
    return all((v & m) == (e & m) for v, e, m in zip(value, expected, mask, strict=True))


def check_qe_identity(qe_report: SgxEnclaveReport, identity: QeIdentity) -> None:
    """The QE that signed the quote is Intel's: a mismatch means the quote is not genuine."""
    misc_ok = (qe_report.misc_select & identity.misc_select_mask) == (
        identity.misc_select & identity.misc_select_mask
    )
    if not misc_ok:
        raise CertificateInvalid("QE report MISCSELECT does not match the QE identity")
    if not _masked_equal(qe_report.attributes, identity.attributes, identity.attributes_mask):
        raise CertificateInvalid("QE report ATTRIBUTES do not match the QE identity")
    if qe_report.mr_signer != identity.mr_signer:
        raise CertificateInvalid("QE report MRSIGNER is not the QE identity's")
    if qe_report.isv_prod_id != identity.isv_prod_id:
        raise CertificateInvalid("QE report ISVPRODID is not the QE identity's")


def check_tdx_module(td_report: TdReport, module: TdxModuleIdentity) -> None:
    if td_report.mr_signer_seam != module.mr_signer:
        raise CertificateInvalid(f"TDX module MRSIGNERSEAM does not match {module.identity_id}")
    if not _masked_equal(td_report.seam_attributes, module.attributes, module.attributes_mask):
        raise CertificateInvalid(f"TDX module SEAMATTRIBUTES do not match {module.identity_id}")


def evaluate_tcb(
    platform: PlatformTcb,
    tcb_info: TcbInfo,
    qe_report: SgxEnclaveReport,
    qe_identity: QeIdentity,
    td_report: TdReport | None,
) -> TcbEvaluation:
    """Status name and advisories; identity mismatches raise, unmatched levels are reported."""
    check_qe_identity(qe_report, qe_identity)
    qe_level = _first_identity_level(qe_identity.levels, qe_report.isv_svn)
    qe_status = qe_level.status if qe_level else QE_NOT_SUPPORTED

    tee_tcb_svn = td_report.tee_tcb_svn if td_report is not None else None
    module_version = tee_tcb_svn[1] if tee_tcb_svn is not None else 0
    platform_level = None
    for level in tcb_info.levels:
        components = level.components
        if components.pce_svn > platform.pce_svn:
            continue
        if any(
            need > have
            for need, have in zip(components.sgx, platform.cpu_svn_components, strict=True)
        ):
            continue
        if tee_tcb_svn is not None:
            if components.tdx is None:
                continue
            start = 2 if module_version > 0 else 0
            if any(components.tdx[i] > tee_tcb_svn[i] for i in range(start, 16)):
                continue
        platform_level = level
        break

    module_status: str | None = None
    module_advisories: tuple[str, ...] | None = None
    if td_report is not None and tee_tcb_svn is not None:
        if module_version > 0:
            wanted = f"TDX_{module_version:02X}"
            identity = next(
                (m for m in tcb_info.tdx_module_identities if m.identity_id.upper() == wanted),
                None,
            )
            if identity is None:
                module_status = TDX_MODULE_NOT_SUPPORTED
            else:
                check_tdx_module(td_report, identity)
                module_level = _first_identity_level(identity.levels, tee_tcb_svn[0])
                module_status = module_level.status if module_level else TDX_MODULE_NOT_SUPPORTED
                module_advisories = module_level.advisory_ids if module_level else None
        elif tcb_info.tdx_module is not None:
            check_tdx_module(td_report, tcb_info.tdx_module)

    if platform_level is None:
        return TcbEvaluation(
            TCB_NOT_SUPPORTED, None, TCB_NOT_SUPPORTED, module_status, qe_status, None
        )
    if module_status in (TDX_MODULE_NOT_SUPPORTED,) or qe_status == QE_NOT_SUPPORTED:
        unsupported = module_status if module_status == TDX_MODULE_NOT_SUPPORTED else qe_status
        return TcbEvaluation(
            unsupported, None, platform_level.status, module_status, qe_status, None
        )

    status = platform_level.status
    advisories = platform_level.advisory_ids
    if module_status is not None:
        status = _converge(status, module_status)
        advisories = _merge_advisories(advisories, module_advisories)
    status = _converge(status, qe_status)
    advisories = _merge_advisories(advisories, qe_level.advisory_ids if qe_level else None)
    if tcb_info.version == 2:
        # TCB info v2 carries no advisories; "none listed" and "unknown" must not be confused.
        advisories = None
    elif advisories is None:
        advisories = ()
    return TcbEvaluation(
        status=status,
        advisory_ids=advisories,
        platform_status=platform_level.status,
        tdx_module_status=module_status,
        qe_status=qe_status,
        tcb_date=platform_level.tcb_date or None,
    )
