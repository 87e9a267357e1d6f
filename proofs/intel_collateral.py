"""Intel PCS collateral: TCB info and QE identity documents, CRLs and their issuer chains.

TCB info and QE identity are signed over the exact bytes of the `tcbInfo` / `enclaveIdentity`
value as served, so the raw span is cut out of the response body; nothing is re-serialized.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from cryptography import x509

from proofs.bounded_json import nested_too_deep
from proofs.certificates import load_crl
from proofs.errors import CollateralError


@dataclass(frozen=True)
class IntelCollateral:
    """Raw collateral for one quote, as fetched from PCS/PCCS or read from disk."""

    tcb_info_body: bytes
    qe_identity_body: bytes
    tcb_signing_chain_pem: bytes
    root_ca_crl: bytes
    pck_crl: bytes | None = None
    pck_crl_issuer_chain_pem: bytes | None = None

    # Parsed forms, decoded once per collateral object: a warm CachedCollateralSource hands
    # out the same object, so repeated verifications skip the JSON and DER decoding. Fields
    # are immutable, so the memo can never go stale; a parse error is raised again each time.
    @cached_property
    def tcb_document(self) -> SignedDocument:
        return split_signed_document(self.tcb_info_body, "tcbInfo", "TCB info")

    @cached_property
    def qe_document(self) -> SignedDocument:
        return split_signed_document(self.qe_identity_body, "enclaveIdentity", "QE identity")

    @cached_property
    def tcb_info(self) -> TcbInfo:
        return parse_tcb_info(self.tcb_document.content)

    @cached_property
    def qe_identity(self) -> QeIdentity:
        return parse_qe_identity(self.qe_document.content)

    @cached_property
    def root_ca_crl_parsed(self) -> x509.CertificateRevocationList:
        return load_crl(self.root_ca_crl, "Intel root CA CRL")

    @cached_property
    def pck_crl_parsed(self) -> x509.CertificateRevocationList | None:
        return None if self.pck_crl is None else load_crl(self.pck_crl, "PCK CRL")

    @cached_property
    def dcap_qvl_collateral(self) -> object:
        """The same collateral as dcap-qvl's QuoteCollateralV3 (its PCK CRL may be empty)."""
        import dcap_qvl  # parsing-only users never load the native module

        signing_chain = self.tcb_signing_chain_pem.decode("ascii", "replace")
        try:
            collateral: object = dcap_qvl.QuoteCollateralV3(
                (self.pck_crl_issuer_chain_pem or b"").decode("ascii", "replace"),
                self.root_ca_crl,
                self.pck_crl or b"",
                signing_chain,
                self.tcb_document.signed_bytes.decode("utf-8"),
                self.tcb_document.signature,
                signing_chain,
                self.qe_document.signed_bytes.decode("utf-8"),
                self.qe_document.signature,
            )
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            raise CollateralError(f"collateral rejected by dcap-qvl: {exc}") from exc
        return collateral


@dataclass(frozen=True)
class SignedDocument:
    signed_bytes: bytes
    signature: bytes
    content: dict[str, Any]


@dataclass(frozen=True)
class TcbComponents:
    sgx: tuple[int, ...]
    pce_svn: int
    tdx: tuple[int, ...] | None


@dataclass(frozen=True)
class TcbLevel:
    components: TcbComponents
    tcb_date: str
    status: str
    advisory_ids: tuple[str, ...] | None


@dataclass(frozen=True)
class ModuleIdentityLevel:
    isv_svn: int
    status: str
    advisory_ids: tuple[str, ...] | None


@dataclass(frozen=True)
class TdxModuleIdentity:
    identity_id: str
    mr_signer: bytes
    attributes: bytes
    attributes_mask: bytes
    levels: tuple[ModuleIdentityLevel, ...]


@dataclass(frozen=True)
class TcbInfo:
    info_id: str
    version: int
    issue_date: datetime
    next_update: datetime
    fmspc: bytes
    pce_id: bytes
    tcb_evaluation_data_number: int | None
    levels: tuple[TcbLevel, ...]
    tdx_module: TdxModuleIdentity | None
    tdx_module_identities: tuple[TdxModuleIdentity, ...]


@dataclass(frozen=True)
class QeIdentity:
    identity_id: str
    version: int
    issue_date: datetime
    next_update: datetime
    misc_select: int
    misc_select_mask: int
    attributes: bytes
    attributes_mask: bytes
    mr_signer: bytes
    isv_prod_id: int
    levels: tuple[ModuleIdentityLevel, ...]


def split_signed_document(body: bytes, value_key: str, what: str) -> SignedDocument:
    """Cut `{"<value_key>": {...}, "signature": "<hex>"}` into signed bytes and signature."""
    try:
        text = body.decode("utf-8")
        if nested_too_deep(text):
            raise ValueError("nested too deep")
        spans = _top_level_spans(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CollateralError(f"{what}: not a JSON object ({exc})") from exc
    if value_key not in spans or "signature" not in spans:
        raise CollateralError(f"{what}: expected keys {value_key!r} and 'signature'")
    value_text, value = spans[value_key]
    _, signature_hex = spans["signature"]
    if not isinstance(value, dict) or not isinstance(signature_hex, str):
        raise CollateralError(f"{what}: unexpected value types")
    try:
        signature = bytes.fromhex(signature_hex)
    except ValueError as exc:
        raise CollateralError(f"{what}: signature is not hex") from exc
    if len(signature) != 64:
        raise CollateralError(f"{what}: signature must be 64 bytes (r || s)")
    return SignedDocument(value_text.encode("utf-8"), signature, value)


def _top_level_spans(text: str) -> dict[str, tuple[str, Any]]:
    decoder = json.JSONDecoder()
    spans: dict[str, tuple[str, Any]] = {}
    position = _skip_space(text, 0)
    if text[position : position + 1] != "{":
        raise ValueError("expected an object")
    position = _skip_space(text, position + 1)
    while text[position : position + 1] != "}":
        key, position = decoder.raw_decode(text, position)
        position = _skip_space(text, position)
        if text[position : position + 1] != ":" or not isinstance(key, str):
            raise ValueError("expected a key and ':'")
        start = _skip_space(text, position + 1)
        value, end = decoder.raw_decode(text, start)
        spans[key] = (text[start:end], value)
        position = _skip_space(text, end)
        if text[position : position + 1] == ",":
            position = _skip_space(text, position + 1)
        elif text[position : position + 1] != "}":
            raise ValueError("expected ',' or '}'")
    if _skip_space(text, position + 1) != len(text):
        raise ValueError("data after the object")
    return spans


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _get(mapping: dict[str, Any], key: str, kind: type, what: str) -> Any:
    value = mapping.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CollateralError(f"{what}: field {key!r} missing or not {kind.__name__}")
    return value


def _hex(mapping: dict[str, Any], key: str, what: str) -> bytes:
    try:
        return bytes.fromhex(_get(mapping, key, str, what))
    except ValueError as exc:
        raise CollateralError(f"{what}: field {key!r} is not hex") from exc


def _time(mapping: dict[str, Any], key: str, what: str) -> datetime:
    raw = _get(mapping, key, str, what)
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CollateralError(f"{what}: field {key!r} is not an ISO-8601 time") from exc
    if parsed.tzinfo is None:
        raise CollateralError(f"{what}: field {key!r} has no time zone")
    return parsed


def _advisories(level: dict[str, Any], what: str) -> tuple[str, ...] | None:
    if "advisoryIDs" not in level:
        return None
    ids = level["advisoryIDs"]
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise CollateralError(f"{what}: advisoryIDs is not a list of strings")
    return tuple(ids)


def _identity_levels(raw_levels: Any, what: str) -> tuple[ModuleIdentityLevel, ...]:
    if not isinstance(raw_levels, list):
        raise CollateralError(f"{what}: tcbLevels is not a list")
    levels = []
    for raw in raw_levels:
        if not isinstance(raw, dict):
            raise CollateralError(f"{what}: a TCB level is not an object")
        tcb = _get(raw, "tcb", dict, what)
        levels.append(
            ModuleIdentityLevel(
                isv_svn=_get(tcb, "isvsvn", int, what),
                status=_get(raw, "tcbStatus", str, what),
                advisory_ids=_advisories(raw, what),
            )
        )
    return tuple(levels)


def _module_identity(raw: dict[str, Any], what: str, with_levels: bool) -> TdxModuleIdentity:
    return TdxModuleIdentity(
        identity_id=raw.get("id", "") if isinstance(raw.get("id"), str) else "",
        mr_signer=_hex(raw, "mrsigner", what),
        attributes=_hex(raw, "attributes", what),
        attributes_mask=_hex(raw, "attributesMask", what),
        levels=_identity_levels(raw.get("tcbLevels"), what) if with_levels else (),
    )


def _tcb_components(tcb: dict[str, Any], version: int, what: str) -> TcbComponents:
    if version == 2:
        sgx = tuple(_get(tcb, f"sgxtcbcomp{i:02d}svn", int, what) for i in range(1, 17))
        return TcbComponents(sgx, _get(tcb, "pcesvn", int, what), None)
    sgx_raw = _get(tcb, "sgxtcbcomponents", list, what)
    sgx = tuple(_get(c, "svn", int, what) for c in sgx_raw if isinstance(c, dict))
    tdx: tuple[int, ...] | None = None
    if "tdxtcbcomponents" in tcb:
        tdx_raw = _get(tcb, "tdxtcbcomponents", list, what)
        tdx = tuple(_get(c, "svn", int, what) for c in tdx_raw if isinstance(c, dict))
        if len(tdx) != 16:
            raise CollateralError(f"{what}: expected 16 TDX TCB components")
    if len(sgx) != 16:
        raise CollateralError(f"{what}: expected 16 SGX TCB components")
    return TcbComponents(sgx, _get(tcb, "pcesvn", int, what), tdx)


def parse_tcb_info(content: dict[str, Any]) -> TcbInfo:
    what = "TCB info"
    version = _get(content, "version", int, what)
    if version not in (2, 3):
        raise CollateralError(f"{what}: version {version} is not supported (2, 3)")
    info_id = content.get("id", "SGX") if version == 3 else "SGX"
    if info_id not in ("SGX", "TDX"):
        raise CollateralError(f"{what}: unknown id {info_id!r}")
    levels = []
    for raw in _get(content, "tcbLevels", list, what):
        if not isinstance(raw, dict):
            raise CollateralError(f"{what}: a TCB level is not an object")
        levels.append(
            TcbLevel(
                components=_tcb_components(_get(raw, "tcb", dict, what), version, what),
                tcb_date=str(raw.get("tcbDate", "")),
                status=_get(raw, "tcbStatus", str, what),
                advisory_ids=_advisories(raw, what),
            )
        )
    tdx_module = None
    if isinstance(content.get("tdxModule"), dict):
        tdx_module = _module_identity(content["tdxModule"], what, with_levels=False)
    raw_identities = content.get("tdxModuleIdentities", [])
    if not isinstance(raw_identities, list):
        raise CollateralError(f"{what}: tdxModuleIdentities is not a list")
    identities = tuple(
        _module_identity(raw, what, with_levels=True)
        for raw in raw_identities
        if isinstance(raw, dict)
    )
    evaluation_number = content.get("tcbEvaluationDataNumber")
    return TcbInfo(
        info_id=info_id,
        version=version,
        issue_date=_time(content, "issueDate", what),
        next_update=_time(content, "nextUpdate", what),
        fmspc=_hex(content, "fmspc", what),
        pce_id=_hex(content, "pceId", what),
        tcb_evaluation_data_number=evaluation_number
        if isinstance(evaluation_number, int)
        else None,
        levels=tuple(levels),
        tdx_module=tdx_module,
        tdx_module_identities=identities,
    )


def parse_qe_identity(content: dict[str, Any]) -> QeIdentity:
    what = "QE identity"
    return QeIdentity(
        identity_id=_get(content, "id", str, what),
        version=_get(content, "version", int, what),
        issue_date=_time(content, "issueDate", what),
        next_update=_time(content, "nextUpdate", what),
        misc_select=int.from_bytes(_hex(content, "miscselect", what), "big"),
        misc_select_mask=int.from_bytes(_hex(content, "miscselectMask", what), "big"),
        attributes=_hex(content, "attributes", what),
        attributes_mask=_hex(content, "attributesMask", what),
        mr_signer=_hex(content, "mrsigner", what),
        isv_prod_id=_get(content, "isvprodid", int, what),
        levels=_identity_levels(content.get("tcbLevels"), what),
    )
