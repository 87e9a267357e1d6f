"""Where collateral comes from: an interface, a cache in front of it, and a PCS/KDS fetcher.

Verification never fetches by itself; callers pass a source. The fetcher does no I/O of its
own either: it is given an `HttpGet` callable (node/collateral wires one with timeouts), and
the cache persists through a `CollateralStore` (node/collateral keeps one in a directory), so
this module stays pure and tests never touch the network.

The cache keeps Intel collateral per FMSPC / PCK CA / TEE until the earliest nextUpdate of
what it holds, AMD collateral per product / chip / TCB until its CRL's nextUpdate (or the
VEK's expiry without a CRL). It refreshes `refresh_before` ahead of that; when the source
fails, it keeps answering from what it holds until that expires.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote

from cryptography import x509

from proofs.cca import CcaTrustAnchors
from proofs.certificates import X509_DECODE_ERRORS, load_crl
from proofs.errors import CollateralError, CollateralUnavailable, ProofError
from proofs.intel_collateral import IntelCollateral
from proofs.pinned_roots import AmdProduct
from proofs.sev_snp import SnpSigner, SnpTcb
from proofs.sev_snp_verify import AmdCollateral


@dataclass(frozen=True)
class IntelCollateralRequest:
    fmspc: str
    """Lower-case hex, 6 bytes."""
    pck_ca: str
    """"platform" or "processor": which PCK CA issued the PCK certificate (its CRL)."""
    tdx: bool


@dataclass(frozen=True)
class AmdCollateralRequest:
    product: AmdProduct | None
    """None for v2 reports, which do not say; a fetcher then cannot build the KDS URL."""
    signer: SnpSigner
    chip_id: bytes
    reported_tcb: SnpTcb


class CollateralSource(Protocol):
    def intel_collateral(self, request: IntelCollateralRequest, at: datetime) -> IntelCollateral:
        """Collateral valid at `at` if the source can tell; raises CollateralError otherwise."""
        ...

    def amd_collateral(self, request: AmdCollateralRequest, at: datetime) -> AmdCollateral: ...

    def cca_trust_anchors(self, at: datetime) -> CcaTrustAnchors:
        """The CPAKs endorsed for CCA platforms; CollateralUnavailable when none is configured."""
        ...


def intel_collateral_expiry(collateral: IntelCollateral) -> datetime:
    """The earliest nextUpdate of everything that expires (TCB info, QE identity, CRLs):
    when a cached copy goes stale."""
    expiries = [collateral.tcb_info.next_update, collateral.qe_identity.next_update]
    for crl in (collateral.root_ca_crl_parsed, collateral.pck_crl_parsed):
        if crl is not None and crl.next_update_utc is not None:
            expiries.append(crl.next_update_utc)
    return min(expiries)


def amd_collateral_expiry(collateral: AmdCollateral) -> datetime:
    """The CRL's nextUpdate, else the VEK certificate's expiry."""
    try:
        vek = x509.load_der_x509_certificate(collateral.vek_der)
        expiries = [vek.not_valid_after_utc]
    except X509_DECODE_ERRORS as exc:
        raise CollateralError(f"VEK certificate does not decode: {exc}") from exc
    if collateral.crl_der is not None:
        next_update = load_crl(collateral.crl_der, "AMD CRL").next_update_utc
        if next_update is not None:
            expiries.append(next_update)
    return min(expiries)


T = TypeVar("T")


class CollateralStore(Protocol):
    """Where a cache keeps its entries across restarts: opaque bytes by key."""

    def load(self, key: str) -> bytes | None: ...

    def save(self, key: str, value: bytes) -> None: ...


class MemoryStore:
    """A store that forgets on restart (tests; callers with no cache directory)."""

    def __init__(self) -> None:
        self.entries: dict[str, bytes] = {}

    def load(self, key: str) -> bytes | None:
        return self.entries.get(key)

    def save(self, key: str, value: bytes) -> None:
        self.entries[key] = value


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


def _unb64(document: Mapping[str, Any], key: str) -> bytes | None:
    value = document.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise CollateralError(f"cached collateral: {key} is not a string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CollateralError(f"cached collateral: {key} is not base64") from exc


_INTEL_FIELDS = (
    "tcb_info_body",
    "qe_identity_body",
    "tcb_signing_chain_pem",
    "root_ca_crl",
    "pck_crl",
    "pck_crl_issuer_chain_pem",
)
_AMD_FIELDS = ("vek_der", "ask_ark_pem", "crl_der")


def encode_intel_collateral(collateral: IntelCollateral) -> bytes:
    return json.dumps({f: _b64(getattr(collateral, f)) for f in _INTEL_FIELDS}).encode()


def encode_amd_collateral(collateral: AmdCollateral) -> bytes:
    return json.dumps({f: _b64(getattr(collateral, f)) for f in _AMD_FIELDS}).encode()


def _decode_fields(data: bytes, fields: tuple[str, ...], required: int) -> list[bytes | None]:
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise CollateralError(f"cached collateral is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise CollateralError("cached collateral is not an object")
    values = [_unb64(document, f) for f in fields]
    if any(v is None for v in values[:required]):
        raise CollateralError("cached collateral lacks a required field")
    return values


def decode_intel_collateral(data: bytes) -> IntelCollateral:
    tcb, qe, chain, root_crl, pck_crl, pck_chain = _decode_fields(data, _INTEL_FIELDS, 4)
    assert tcb is not None and qe is not None and chain is not None and root_crl is not None
    return IntelCollateral(tcb, qe, chain, root_crl, pck_crl, pck_chain)


def decode_amd_collateral(data: bytes) -> AmdCollateral:
    vek, chain, crl = _decode_fields(data, _AMD_FIELDS, 1)
    assert vek is not None
    return AmdCollateral(vek, chain, crl)


def _intel_key(request: IntelCollateralRequest) -> str:
    return f"intel-{'tdx' if request.tdx else 'sgx'}-{request.fmspc}-{request.pck_ca}"


def _amd_key(request: AmdCollateralRequest) -> str:
    product = request.product.value if request.product else "unknown"
    return f"amd-{product}-{request.signer.value}-{request.chip_id.hex()}-{request.reported_tcb.raw:016x}"


@dataclass
class CachedCollateralSource:
    """Keeps collateral until it expires, refreshes it `refresh_before` ahead, and answers
    from what it holds while the source fails, until that expires.

    Not thread-safe; the daemon owns one per verifier task."""

    inner: CollateralSource
    store: CollateralStore = field(default_factory=MemoryStore)
    refresh_before: timedelta = timedelta(hours=6)
    last_refresh_error: str | None = None
    """Why the last refresh failed while a cached copy kept answering (None: it did not)."""
    _intel: dict[str, tuple[IntelCollateral, datetime]] = field(default_factory=dict)
    _amd: dict[str, tuple[AmdCollateral, datetime]] = field(default_factory=dict)

    def intel_collateral(self, request: IntelCollateralRequest, at: datetime) -> IntelCollateral:
        return self._get(
            self._intel,
            _intel_key(request),
            at,
            lambda: self.inner.intel_collateral(request, at),
            intel_collateral_expiry,
            encode_intel_collateral,
            decode_intel_collateral,
        )

    def amd_collateral(self, request: AmdCollateralRequest, at: datetime) -> AmdCollateral:
        return self._get(
            self._amd,
            _amd_key(request),
            at,
            lambda: self.inner.amd_collateral(request, at),
            amd_collateral_expiry,
            encode_amd_collateral,
            decode_amd_collateral,
        )

    def cca_trust_anchors(self, at: datetime) -> CcaTrustAnchors:
        return self.inner.cca_trust_anchors(at)

    def _get(
        self,
        memory: dict[str, tuple[T, datetime]],
        key: str,
        at: datetime,
        fetch: Callable[[], T],
        expiry_of: Callable[[T], datetime],
        encode: Callable[[T], bytes],
        decode: Callable[[bytes], T],
    ) -> T:
        cached = memory.get(key) or self._load(key, expiry_of, decode)
        if cached is not None:
            memory[key] = cached
            if at <= cached[1] - self.refresh_before:
                return cached[0]
        try:
            fresh = fetch()
            expiry = expiry_of(fresh)
        except CollateralUnavailable:
            raise
        except ProofError as exc:
            if cached is not None and at <= cached[1]:
                self.last_refresh_error = str(exc)
                return cached[0]
            raise CollateralError(f"{exc}; no cached collateral valid at {at.isoformat()}") from exc
        self.last_refresh_error = None
        memory[key] = (fresh, expiry)
        self.store.save(key, encode(fresh))
        return fresh

    def _load(
        self, key: str, expiry_of: Callable[[T], datetime], decode: Callable[[bytes], T]
    ) -> tuple[T, datetime] | None:
        data = self.store.load(key)
        if data is None:
            return None
        try:
            value = decode(data)
            return value, expiry_of(value)
        except ProofError:
            # A damaged cache entry is as good as none: the next fetch overwrites it.
            return None


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


HttpGet = Callable[[str], HttpResponse]


@dataclass(frozen=True)
class CollateralUrls:
    """From config. Intel PCS (or a PCCS speaking the same v4 API) and AMD KDS."""

    intel_pcs: str = "https://api.trustedservices.intel.com"
    intel_root_ca_crl: str = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
    amd_kds: str = "https://kdsintf.amd.com"


@dataclass(frozen=True)
class HttpCollateralFetcher:
    """Intel PCS v4 and AMD KDS endpoints. VLEKs are not public on KDS and are refused."""

    get: HttpGet
    urls: CollateralUrls = CollateralUrls()

    def _fetch(self, url: str) -> HttpResponse:
        response = self.get(url)
        if response.status != 200:
            raise CollateralError(f"GET {url}: HTTP {response.status}")
        return response

    def _header_chain(self, response: HttpResponse, name: str) -> bytes:
        for key, value in response.headers.items():
            if key.lower() == name.lower():
                return unquote(value).encode()
        raise CollateralError(f"response lacks the {name} header")

    def intel_collateral(self, request: IntelCollateralRequest, at: datetime) -> IntelCollateral:
        tee = "tdx" if request.tdx else "sgx"
        base = self.urls.intel_pcs.rstrip("/")
        tcb = self._fetch(f"{base}/{tee}/certification/v4/tcb?fmspc={request.fmspc}")
        qe = self._fetch(f"{base}/{tee}/certification/v4/qe/identity")
        pck_crl = self._fetch(
            f"{base}/sgx/certification/v4/pckcrl?ca={request.pck_ca}&encoding=der"
        )
        root_crl = self._fetch(self.urls.intel_root_ca_crl)
        return IntelCollateral(
            tcb_info_body=tcb.body,
            qe_identity_body=qe.body,
            tcb_signing_chain_pem=self._header_chain(tcb, "TCB-Info-Issuer-Chain"),
            root_ca_crl=root_crl.body,
            pck_crl=pck_crl.body,
            pck_crl_issuer_chain_pem=self._header_chain(pck_crl, "SGX-PCK-CRL-Issuer-Chain"),
        )

    def amd_collateral(self, request: AmdCollateralRequest, at: datetime) -> AmdCollateral:
        if request.signer != SnpSigner.VCEK:
            raise CollateralError("VLEK certificates are not public on AMD KDS")
        # v2 reports do not name their product; Milan and Genoa are the ones that send v2.
        products = (request.product,) if request.product else (AmdProduct.MILAN, AmdProduct.GENOA)
        tcb = request.reported_tcb
        for product in products:
            base = f"{self.urls.amd_kds.rstrip('/')}/vcek/v1/{product.value}"
            # Turin VCEKs are keyed by the first 8 bytes of CHIP_ID and carry an FMC SPL.
            hwid = request.chip_id[:8] if product == AmdProduct.TURIN else request.chip_id
            query = (
                f"blSPL={tcb.bootloader}&teeSPL={tcb.tee}&snpSPL={tcb.snp}&ucodeSPL={tcb.microcode}"
            )
            if tcb.fmc is not None:
                query += f"&fmcSPL={tcb.fmc}"
            vek = self.get(f"{base}/{hwid.hex()}?{query}")
            if vek.status == 404 and product != products[-1]:
                continue
            if vek.status != 200:
                raise CollateralError(f"GET {base}/{hwid.hex()}: HTTP {vek.status}")
            chain = self._fetch(f"{base}/cert_chain")
            # The CRL is optional: without it the claims say revocation was not checked.
            crl = self.get(f"{base}/crl")
            if crl.status not in (200, 404):
                raise CollateralError(f"GET {base}/crl: HTTP {crl.status}")
            return AmdCollateral(
                vek_der=vek.body,
                ask_ark_pem=chain.body,
                crl_der=crl.body if crl.status == 200 else None,
            )
        raise CollateralError("no AMD product to ask KDS for")  # unreachable: products is not empty

    def cca_trust_anchors(self, at: datetime) -> CcaTrustAnchors:
        raise CollateralUnavailable(
            "CCA platform keys are not served by Intel PCS or AMD KDS; "
            "configure a trust anchor store"
        )


class NoCollateral:
    """A source with no collateral at all: Intel quotes are then verified crypto-only (their
    claims carry no TCB status); AMD and CCA evidence cannot be verified without theirs."""

    def intel_collateral(self, request: IntelCollateralRequest, at: datetime) -> IntelCollateral:
        raise CollateralUnavailable("no collateral source configured for Intel evidence")

    def amd_collateral(self, request: AmdCollateralRequest, at: datetime) -> AmdCollateral:
        raise CollateralUnavailable("no collateral source configured for AMD evidence")

    def cca_trust_anchors(self, at: datetime) -> CcaTrustAnchors:
        raise CollateralUnavailable("no CCA trust anchor store configured")
